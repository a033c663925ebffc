"""Defaults of the simulated suction gripper of the double-pick metric (paper Section V-D).

One definition for every user (the metric itself, the evaluation, the replay scoring and the
command lines); kept free of torch so that ``latent-seg --help`` can show them cheaply.
"""

SIMULATED_GRIPPER_RADIUS = 8
"""Radius in pixels of the circle standing for the gripper."""

SIMULATED_GRIPPER_CIRCLES = 1000
"""Circles dropped per image."""
