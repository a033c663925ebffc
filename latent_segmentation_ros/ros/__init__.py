"""The rclpy layer, the only code that imports rclpy, message_filters or diagnostic_updater:
both nodes and their shared base (parameters, pairing and diagnostics with their fallbacks,
the spin loop), both nodes without `ros2 launch`, and the rig that drives them over DDS.
Wiring only: the behaviour is core/'s.
"""
