"""Latent-MaskRCNN (Liu et al., ICRA 2023) on torchvision's MaskRCNN, with p-confidence masks,
Union-NMS, prior-mean predictions, metrics, synthetic data and training. Never imports ROS."""
