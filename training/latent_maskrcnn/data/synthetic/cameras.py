"""The overhead camera rig: one homography per view from image pixels to the tote frame.

View 0 is the reference camera (tote frame = pixel / height). The other views are fixed,
slightly shifted, rotated, zoomed and tilted cameras over the same tote, as in a picking cell
with two overhead cameras. Their specular glints move with the camera.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class CameraPose:
    shift: tuple[float, float]
    """Translation of the looked-at point, tote units."""
    rotation: float
    """Radians."""
    zoom: float
    """> 1 sees a larger part of the tote."""
    tilt: tuple[float, float]
    """Projective terms (keystone) in the centred tote frame."""
    glint_shift: tuple[float, float]
    """How far specular glints move on a bag seen from this camera (tote units)."""


RIG = (
    CameraPose((0.0, 0.0), 0.0, 1.0, (0.0, 0.0), (0.0, 0.0)),
    CameraPose((0.05, -0.015), np.deg2rad(2.5), 1.04, (0.05, 0.01), (-0.025, 0.008)),
    CameraPose((-0.05, 0.015), np.deg2rad(-2.0), 1.03, (-0.04, 0.02), (0.025, -0.008)),
    CameraPose((0.0, 0.04), np.deg2rad(1.0), 1.06, (0.0, -0.05), (0.0, -0.02)),
)
MAX_VIEWS = len(RIG)


def pixel_to_tote(view: int, height: int, width: int) -> np.ndarray:
    """3x3 homography mapping homogeneous pixel coordinates (x right, y down, pixel centres at
    +0.5) of a view to tote coordinates."""
    if not 0 <= view < MAX_VIEWS:
        raise ValueError(f"view must be in [0, {MAX_VIEWS - 1}], got {view}")
    pose = RIG[view]
    aspect = width / height
    centre = np.array([aspect / 2, 0.5])

    def translate(t) -> np.ndarray:
        return np.array([[1, 0, t[0]], [0, 1, t[1]], [0, 0, 1]], dtype=np.float64)

    c, s = np.cos(pose.rotation), np.sin(pose.rotation)
    rotate = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    zoom = np.diag([pose.zoom, pose.zoom, 1.0])
    tilt = np.array([[1, 0, 0], [0, 1, 0], [pose.tilt[0], pose.tilt[1], 1]])
    normalise = np.diag([1.0 / height, 1.0 / height, 1.0])
    return translate(centre + np.asarray(pose.shift)) @ rotate @ zoom @ tilt @ translate(-centre) @ normalise


def apply_homography(matrix: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = matrix[2, 0] * x + matrix[2, 1] * y + matrix[2, 2]
    return (
        (matrix[0, 0] * x + matrix[0, 1] * y + matrix[0, 2]) / w,
        (matrix[1, 0] * x + matrix[1, 1] * y + matrix[1, 2]) / w,
    )


@lru_cache(maxsize=16)
def tote_grid(view: int, height: int, width: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Tote coordinates of every pixel centre of a view (read-only float32 [H, W] each) and the
    size of one pixel in tote units (at the image centre). Cached: bags render many frames."""
    matrix = pixel_to_tote(view, height, width)
    u, v = np.meshgrid(np.arange(width, dtype=np.float64) + 0.5, np.arange(height, dtype=np.float64) + 0.5)
    x, y = apply_homography(matrix, u, v)
    cx, cy = apply_homography(matrix, np.array([width / 2, width / 2 + 1, width / 2]), np.array([height / 2, height / 2, height / 2 + 1]))
    jacobian = abs((cx[1] - cx[0]) * (cy[2] - cy[0]) - (cx[2] - cx[0]) * (cy[1] - cy[0]))
    x, y = x.astype(np.float32), y.astype(np.float32)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y, float(np.sqrt(jacobian))
