"""Offline evaluation on rosbag2 files: bag reading and writing, synthetic two-camera bags with
ground truth, replay through the node's own pipeline, scoring, reports and the p sweep. May
import core/ and latent_maskrcnn; never rclpy, ros/ or cli/.
"""
