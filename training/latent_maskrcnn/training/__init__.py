"""Training: the run configuration and KL schedule, the trainer (AMP, DDP, TensorBoard, the
probe at every checkpoint) and its resumable state. May import model/, data/ and evaluation/.
"""
