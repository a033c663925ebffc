"""ROS 2 side of latent_segmentation_ros: ROS-free core (conversion, pipeline, grasping, replay)
plus thin rclpy nodes (the only modules that import rclpy)."""
