"""From K sampled segmentations to one result: p-confidence masks (Algorithm 1) with their
compiled CPU loop, Union-NMS (Algorithm 2), the prepared samples both share, 8x8 block counts.
torch and numpy (numba for the kernel); nothing else of the package.
"""
