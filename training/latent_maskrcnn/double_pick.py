"""Simulated double picks and pickable area (paper Section V-D).

A suction gripper is approximated by a circle of fixed radius in pixels. Circles are dropped at
random (seeded) centres where the whole circle lies inside the image. N counts the circles that
lie entirely inside exactly one predicted mask (a grasp the robot would take); D counts those
of them that touch more than one ground-truth mask (the grasp would lift two items). The rate is
D / N. The pickable area is the area covered by predicted masks over the area covered by
ground-truth masks (unions, so overlapping MaskRCNN masks are not counted twice).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class GripperSimulation:
    """Circle radius in pixels, circles per image, and the seed (per image it is combined with
    the image id, so every method evaluated on an image sees the same circles)."""

    radius: int = 8
    circles: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 0:
            raise ValueError(f"gripper radius must be a non-negative integer number of pixels, got {self.radius!r}")
        if isinstance(self.circles, bool) or not isinstance(self.circles, int) or self.circles < 1:
            raise ValueError(f"circles must be a positive integer, got {self.circles!r}")


@dataclass(frozen=True)
class PickCounts:
    """Per image: circles inside exactly one prediction, those of them on two or more items,
    and the covered areas in pixels."""

    picks: int
    double_picks: int
    predicted_area: int
    ground_truth_area: int


def disk_offsets(radius: int) -> torch.Tensor:
    """``[d, 2]`` (dy, dx) of the pixels whose centre lies within ``radius`` of the centre."""
    span = torch.arange(-radius, radius + 1)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    inside = dy * dy + dx * dx <= radius * radius
    return torch.stack([dy[inside], dx[inside]], dim=1)


def circle_centres(height: int, width: int, simulation: GripperSimulation, image_id: int) -> torch.Tensor:
    """``[circles, 2]`` (y, x) centres, uniform over positions keeping the circle in the image."""
    r = simulation.radius
    if height < 2 * r + 1 or width < 2 * r + 1:
        raise ValueError(f"a gripper circle of radius {r} does not fit into a {height}x{width} image")
    generator = torch.Generator().manual_seed(simulation.seed * 1_000_003 + int(image_id))
    ys = torch.randint(r, height - r, (simulation.circles,), generator=generator)
    xs = torch.randint(r, width - r, (simulation.circles,), generator=generator)
    return torch.stack([ys, xs], dim=1)


def simulate_picks(
    predicted_masks: torch.Tensor,
    ground_truth_masks: torch.Tensor,
    simulation: GripperSimulation = GripperSimulation(),
    image_id: int = 0,
) -> PickCounts:
    """Drop the circles on one image; ``predicted_masks`` ``[N, H, W]`` and
    ``ground_truth_masks`` ``[G, H, W]`` are bool (on any device; counted on the CPU)."""
    predicted_masks = predicted_masks.detach().to("cpu")
    ground_truth_masks = ground_truth_masks.detach().to("cpu")
    height, width = predicted_masks.shape[-2:]
    centres = circle_centres(height, width, simulation, image_id)
    offsets = disk_offsets(simulation.radius)
    pixels = (centres[:, None, 0] + offsets[None, :, 0]) * width + (centres[:, None, 1] + offsets[None, :, 1])
    pixels = pixels.flatten()                                               # circles * d
    shape = (simulation.circles, offsets.shape[0])
    inside = predicted_masks.flatten(1)[:, pixels].view(-1, *shape).all(dim=2)    # [N, circles]
    single = inside.sum(dim=0) == 1
    touched = ground_truth_masks.flatten(1)[:, pixels].view(-1, *shape).any(dim=2).sum(dim=0)
    return PickCounts(
        picks=int(single.sum()),
        double_picks=int((single & (touched > 1)).sum()),
        predicted_area=int(predicted_masks.any(dim=0).sum()) if predicted_masks.shape[0] else 0,
        ground_truth_area=int(ground_truth_masks.any(dim=0).sum()) if ground_truth_masks.shape[0] else 0,
    )


def double_pick_rate(counts: PickCounts | list[PickCounts]) -> float:
    """D / N over one image or a data set (NaN when no circle lies inside one prediction)."""
    counts = [counts] if isinstance(counts, PickCounts) else counts
    picks = sum(c.picks for c in counts)
    return sum(c.double_picks for c in counts) / picks if picks else float("nan")


def pickable_area(counts: PickCounts | list[PickCounts]) -> float:
    """Predicted area over ground-truth area (NaN without ground truth)."""
    counts = [counts] if isinstance(counts, PickCounts) else counts
    truth = sum(c.ground_truth_area for c in counts)
    return sum(c.predicted_area for c in counts) / truth if truth else float("nan")
