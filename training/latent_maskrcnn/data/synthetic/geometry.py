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

    def bounds(self, pad: float = 0.0) -> tuple[float, float, float, float]:
        """Axis-aligned box (x0, y0, x1, y1) in the tote frame holding the shape grown by ``pad``."""
        cx, cy = self.center
        if self.kind == BLOB:
            r = self.radius + pad
            return cx - r, cy - r, cx + r, cy + r
        spread = sum(abs(amplitude) for _, amplitude, _ in self.harmonics) + pad
        hx, hy = self.half_size[0] + spread, self.half_size[1] + spread
        c, s = abs(np.cos(self.angle)), abs(np.sin(self.angle))
        ex, ey = c * hx + s * hy, s * hx + c * hy
        return cx - ex, cy - ey, cx + ex, cy + ey

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
        nx, ny = lx / hx, ly / hy
        if self.kind == ROUNDED_RECT:
            r = np.float32(min(self.corner, float(min(hx, hy)) * 0.999))
            qx = np.abs(lx) - (hx - r)
            qy = np.abs(ly) - (hy - r)
            px, py = np.maximum(qx, 0), np.maximum(qy, 0)
            d = np.sqrt(px * px + py * py) + np.minimum(np.maximum(qx, qy), 0) - r
            if self.harmonics:
                d += _angular_series(nx, ny, self.harmonics, sine=True)
            return d.astype(np.float32, copy=False)
        rho = np.sqrt(nx * nx + ny * ny)
        radial = 1 + _angular_series(nx, ny, self.harmonics, sine=False)
        return ((rho - radial) * min(hx, hy)).astype(np.float32, copy=False)

    def sdf(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self.sdf_local(*self.to_local(x, y))


def _angular_series(
    x: np.ndarray, y: np.ndarray, harmonics: tuple[tuple[int, float, float], ...], sine: bool
) -> np.ndarray:
    """Sum of amplitude * sin (or cos) (k * theta + phase), theta the polar angle of (x, y).
    Built from cos(theta) and sin(theta) by the angle-addition recurrence: arctan2 costs about
    twenty times more than these products on float32 arrays."""
    radius = np.sqrt(x * x + y * y)
    radius = np.maximum(radius, np.float32(1e-12))
    cos1, sin1 = x / radius, y / radius
    total = np.zeros_like(x)
    cos_k, sin_k = cos1, sin1
    order = 1
    for k, amplitude, phase in sorted(harmonics):
        while order < k:
            cos_k, sin_k = cos_k * cos1 - sin_k * sin1, sin_k * cos1 + cos_k * sin1
            order += 1
        c, s = np.float32(np.cos(phase)), np.float32(np.sin(phase))
        if sine:  # sin(k t + p) = sin(k t) cos p + cos(k t) sin p
            total += np.float32(amplitude) * (sin_k * c + cos_k * s)
        else:  # cos(k t + p) = cos(k t) cos p - sin(k t) sin p
            total += np.float32(amplitude) * (cos_k * c - sin_k * s)
    return total


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
