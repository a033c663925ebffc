"""What the nodes do, without ROS: parameters, image conversion, camera pairing, the perception
pipeline, grasp planning, the messages (rosbags and rclpy through one factory), overlays, the
segmentation and grasping behaviour of each node, shutdown signals, heap trimming and where
the data files live. May import latent_maskrcnn; never rclpy nor another subpackage.
"""
