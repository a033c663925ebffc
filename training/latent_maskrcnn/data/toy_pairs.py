"""A toy task with exactly one ambiguity, small enough to train a model on in minutes.

Flat-coloured items on a noisy floor: plain discs, and *seamless pairs*: two squares of the
same colour edge to edge, which the pixels show as one 2:1 rectangle. An annotator style, one coin
per image, labels every pair of the image as one item (``merged``) or as two (``split``), as
one annotator's habits would. The same pixels thus carry both labellings across the data set,
and only a latent code that knows the style can predict them: the regression test of the
package's core claim (`test/test_latent_toy.py`).

Plain items are discs and pairs are 2:1 rectangles, so the image shows *where* the ambiguity
is (a square of flat colour is only ever half of a pair); what it cannot show is *which*
labelling the annotator chose.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

STYLES = ("merged", "split")


@dataclass(frozen=True)
class ToyRecipe:
    """Sizes and counts of the toy scenes (defaults: 64 x 64 images, 1-2 pairs, 1-2 discs)."""

    size: int = 64
    side: tuple[int, int] = (11, 15)
    pairs: tuple[int, int] = (1, 2)
    discs: tuple[int, int] = (1, 2)
    gap: int = 3
    noise: float = 0.03
    plain: str = "disc"
    """Shape of the plain items: "disc", or "square" (then half a pair looks like a plain item
    inside its box, and only the context around the box tells them apart)."""


@dataclass
class ToyScene:
    """One rendered scene and what both labellings need."""

    image: torch.Tensor
    """float [3, H, W] in [0, 1]."""
    pair_halves: list[tuple[torch.Tensor, torch.Tensor]]
    """bool [H, W] masks of the two squares of each pair."""
    discs: list[torch.Tensor]
    """bool [H, W] masks of the plain items."""

    def target(self, style: str) -> dict[str, torch.Tensor]:
        """Ground truth with every pair labelled the ``style`` way."""
        if style not in STYLES:
            raise ValueError(f"style must be one of {list(STYLES)}, got {style!r}")
        masks = list(self.discs)
        for first, second in self.pair_halves:
            masks.extend([first | second] if style == "merged" else [first, second])
        stacked = torch.stack(masks)
        return {"boxes": _boxes(stacked), "labels": torch.ones(len(masks), dtype=torch.int64),
                "masks": stacked.to(torch.uint8)}


def _boxes(masks: torch.Tensor) -> torch.Tensor:
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    boxes = []
    for row, col in zip(rows, cols):
        ys, xs = torch.where(row)[0], torch.where(col)[0]
        boxes.append([float(xs[0]), float(ys[0]), float(xs[-1] + 1), float(ys[-1] + 1)])
    return torch.tensor(boxes, dtype=torch.float32)


def _free(occupied: np.ndarray, top: int, left: int, height: int, width: int, gap: int) -> bool:
    return not occupied[max(0, top - gap):top + height + gap, max(0, left - gap):left + width + gap].any()


def toy_scene(seed: int, recipe: ToyRecipe = ToyRecipe()) -> ToyScene:
    """Scene ``seed`` (deterministic): items are placed without overlap, ``gap`` pixels apart."""
    rng = np.random.default_rng([seed, 7001])
    size = recipe.size
    floor = rng.uniform(0.25, 0.45)
    image = np.full((3, size, size), floor, dtype=np.float32)
    occupied = np.zeros((size, size), dtype=bool)
    wanted = ["pair"] * int(rng.integers(recipe.pairs[0], recipe.pairs[1] + 1))
    wanted += ["disc"] * int(rng.integers(recipe.discs[0], recipe.discs[1] + 1))
    pair_halves, discs = [], []
    for kind in wanted:
        side = int(rng.integers(recipe.side[0], recipe.side[1] + 1))
        horizontal = bool(rng.random() < 0.5)
        height, width = (side, 2 * side) if kind == "pair" and horizontal else \
            (2 * side, side) if kind == "pair" else (side, side)
        for _ in range(100):
            top, left = int(rng.integers(0, size - height + 1)), int(rng.integers(0, size - width + 1))
            if _free(occupied, top, left, height, width, recipe.gap):
                break
        else:
            continue  # no room left: fewer items
        occupied[top:top + height, left:left + width] = True
        colour = rng.uniform(0.0, 1.0, size=3)
        colour[int(rng.integers(0, 3))] = rng.uniform(0.75, 1.0)  # clearly off the grey floor
        mask = torch.zeros((size, size), dtype=torch.bool)
        mask[top:top + height, left:left + width] = True
        if kind == "disc" and recipe.plain == "disc":
            rows, cols = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            centre = (side - 1) / 2
            mask &= (rows - top - centre) ** 2 + (cols - left - centre) ** 2 <= (side / 2) ** 2
        image[:, mask.numpy()] = colour[:, None]
        if kind == "disc":
            discs.append(mask)
            continue
        first = mask.clone()
        if horizontal:
            first[:, left + side:] = False
        else:
            first[top + side:, :] = False
        pair_halves.append((first, mask & ~first))
    image += rng.normal(0.0, recipe.noise, size=image.shape).astype(np.float32)
    return ToyScene(torch.from_numpy(np.clip(image, 0.0, 1.0)), pair_halves, discs)


def toy_style(seed: int) -> str:
    """The annotator style of scene ``seed``: a fair coin of its own stream."""
    return STYLES[int(np.random.default_rng([seed, 7002]).integers(0, 2))]
