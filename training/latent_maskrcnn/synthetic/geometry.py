"""Item outlines as signed distance functions in the tote frame.

The tote frame is continuous and camera independent: y spans [0, 1] over the reference
camera's image height and x spans [0, aspect]. Shapes are evaluated there, so every camera
view and the coarse layout grid see exactly the same geometry.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUNDED_RECT = "rounded_rect"
BLOB = "blob"


@dataclass(frozen=True)
class Shape:
    """A soft-cornered rectangle or a lobed blob, posed in the tote frame."""

    kind: str
    center: tuple[float, float]
    angle: float
    half_size: tuple[float, float]
    corner: float = 0.0
    """Corner radius of a rounded rectangle (tote units)."""
    harmonics: tuple[tuple[int, float, float], ...] = ()
    """(k, amplitude, phase): outline wobble of a rectangle (amplitude in tote units) or the
    radial lobes of a blob (amplitude relative to its radius)."""

    def __post_init__(self) -> None:
        if self.kind not in (ROUNDED_RECT, BLOB):
            raise ValueError(f"unknown shape kind {self.kind!r}")
        if min(self.half_size) <= 0:
            raise ValueError(f"shape half sizes must be positive, got {self.half_size}")

    @property
    def radius(self) -> float:
        """Radius of a circle around the centre that contains the whole shape."""
        hx, hy = self.half_size
        spread = sum(abs(amplitude) for _, amplitude, _ in self.harmonics)
        if self.kind == BLOB:
            return max(hx, hy) * (1.0 + spread)
        return float(np.hypot(hx, hy)) + spread

    def to_local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tote coordinates to the shape's own frame (origin at the centre, x along its length)."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        dx = x - np.float32(self.center[0])
        dy = y - np.float32(self.center[1])
        return (np.float32(c) * dx + np.float32(s) * dy, np.float32(-s) * dx + np.float32(c) * dy)

    def to_tote(self, lx: float, ly: float) -> tuple[float, float]:
        c, s = np.cos(self.angle), np.sin(self.angle)
        return (self.center[0] + c * lx - s * ly, self.center[1] + s * lx + c * ly)

    def sdf_local(self, lx: np.ndarray, ly: np.ndarray) -> np.ndarray:
        """Approximate signed distance (tote units, negative inside) in the shape's frame."""
        hx, hy = (np.float32(v) for v in self.half_size)
        if self.kind == ROUNDED_RECT:
            r = np.float32(min(self.corner, float(min(hx, hy)) * 0.999))
            qx = np.abs(lx) - (hx - r)
            qy = np.abs(ly) - (hy - r)
            outside = np.hypot(np.maximum(qx, 0), np.maximum(qy, 0))
            inside = np.minimum(np.maximum(qx, qy), 0)
            d = outside + inside - r
            if self.harmonics:
                theta = np.arctan2(ly / hy, lx / hx)
                for k, amplitude, phase in self.harmonics:
                    d = d + np.float32(amplitude) * np.sin(k * theta + np.float32(phase))
            return d.astype(np.float32, copy=False)
        rho = np.hypot(lx / hx, ly / hy)
        theta = np.arctan2(ly / hy, lx / hx)
        radial = np.ones_like(rho)
        for k, amplitude, phase in self.harmonics:
            radial = radial + np.float32(amplitude) * np.cos(k * theta + np.float32(phase))
        return ((rho - radial) * min(hx, hy)).astype(np.float32, copy=False)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.sdf_local(*self.to_local(x, y))


def sample_shape(
    rng: np.random.Generator,
    center: tuple[float, float],
    long_half: float,
    aspect_ratio: float,
    blob_probability: float = 0.3,
) -> Shape:
    """A random bag outline: mostly soft-cornered rectangles (folded polybags), some blobs."""
    angle = float(rng.uniform(-np.pi, np.pi))
    half = (float(long_half), float(long_half * aspect_ratio))
    if rng.random() < blob_probability:
        lobes = tuple(
            (int(k), float(rng.uniform(0.02, 0.09)), float(rng.uniform(0, 2 * np.pi)))
            for k in rng.choice([2, 3, 4, 5], size=2, replace=False)
        )
        return Shape(BLOB, center, angle, half, harmonics=lobes)
    corner = float(rng.uniform(0.15, 0.45) * min(half))
    wobble_amplitude = float(rng.uniform(0.0, 0.004))
    wobble = ((int(rng.integers(3, 7)), wobble_amplitude, float(rng.uniform(0, 2 * np.pi))),)
    return Shape(ROUNDED_RECT, center, angle, half, corner=corner, harmonics=wobble)
