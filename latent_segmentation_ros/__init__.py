"""The ROS 2 side of latent_segmentation_ros, one layer per subpackage (docs/architecture.md):
``core`` (what the nodes do, without ROS), ``replay`` (offline evaluation on rosbag2 files),
``ros`` (the rclpy layer, the only code that imports ROS), ``bench`` and ``cli`` (``latent-seg``)."""
