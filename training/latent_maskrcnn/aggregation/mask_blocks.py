"""Pixel counts of boolean masks per square block of pixels, in one pass over the masks.

The aggregation algorithms score candidates on block counts (the authors pool 8x8) and touch
full-resolution pixels only inside small crops. Reading K x N full-resolution masks once is
the dominant cost, so for 8x8 blocks the masks are read as 32-bit words of four pixels: the
vertical sum of 8 words keeps each byte lane <= 8, so lanes never carry into each other, and
multiplying a word by 0x01010101 adds its four lanes into the top byte (<= 32, so the sign bit
stays clear; the bits that leave the word are dropped by two's-complement wrap-around, as on
every torch backend). 32-bit integer arithmetic is what AVX2 vectorises. Same on CPU and CUDA.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_ONES_PER_BYTE = 0x01010101
_SMALL = 1 << 16  # below this many pixels the plain sum costs fewer operations


def grid_shape(height: int, width: int, block: int) -> tuple[int, int]:
    """Number of block rows and columns covering an image (the last ones may be partial)."""
    return -(-height // block), -(-width // block)


def block_counts(masks: torch.Tensor, block: int) -> torch.Tensor:
    """Count the set pixels of each mask in every ``block`` x ``block`` cell.

    ``masks`` is bool ``[N, H, W]``; returns int32 ``[N, ceil(H / block), ceil(W / block)]``.
    Partial cells at the bottom and right edges count only the pixels inside the image.
    """
    if masks.dtype != torch.bool or masks.dim() != 3:
        raise ValueError(f"block_counts needs bool [N, H, W] masks, got {masks.dtype} {tuple(masks.shape)}")
    if block < 1:
        raise ValueError(f"block size must be >= 1, got {block}")
    n, height, width = masks.shape
    if block == 1:
        return masks.to(torch.int32)
    rows, cols = grid_shape(height, width, block)
    if rows * block != height or cols * block != width:
        masks = F.pad(masks, (0, cols * block - width, 0, rows * block - height))
    if n == 0:
        return torch.zeros((0, rows, cols), dtype=torch.int32, device=masks.device)
    masks = masks.contiguous()
    if block == 8 and masks.numel() > _SMALL:
        words = _as_words(masks)
        if words is not None:
            # [N, rows, 8, 2 * cols] words of 4 pixels; vertical sums stay per byte lane.
            lanes = words.view(n, rows, block, 2 * cols).sum(dim=2, dtype=torch.int32)
            fours = _fold_byte_lanes(lanes)
            return fours[..., 0::2] + fours[..., 1::2]
    pixels = masks.view(torch.uint8).view(n, rows, block, cols, block)
    return pixels.sum(dim=(2, 4), dtype=torch.int32)


def _as_words(masks: torch.Tensor) -> torch.Tensor | None:
    """The masks' bytes reinterpreted as int32 words, or None where the layout does not allow it."""
    try:
        return masks.view(torch.uint8).view(torch.int32)
    except RuntimeError:
        return None


def _fold_byte_lanes(words: torch.Tensor) -> torch.Tensor:
    """Sum the four byte lanes of each int32 word; valid while the sum stays below 128."""
    return (words * _ONES_PER_BYTE) >> 24


def cell_areas(height: int, width: int, block: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Number of image pixels in each cell (edge cells may be partial), int32 ``[rows, cols]``."""
    rows, cols = grid_shape(height, width, block)
    row_sizes = (height - torch.arange(rows, device=device) * block).clamp(max=block)
    col_sizes = (width - torch.arange(cols, device=device) * block).clamp(max=block)
    return (row_sizes[:, None] * col_sizes[None, :]).to(torch.int32)


def occupied_cell_boxes(counts: torch.Tensor) -> torch.Tensor:
    """Per mask, the half-open cell box ``(row0, col0, row1, col1)`` of its non-empty cells.

    ``counts`` is ``[N, rows, cols]``; empty masks get ``(0, 0, 0, 0)``. Returns int64 ``[N, 4]``.
    """
    n, rows, cols = counts.shape
    row_any = counts.amax(dim=2) > 0
    col_any = counts.amax(dim=1) > 0
    row_index = torch.arange(rows, device=counts.device)
    col_index = torch.arange(cols, device=counts.device)
    big = max(rows, cols) + 1
    row0 = torch.where(row_any, row_index, big).amin(dim=1)
    row1 = torch.where(row_any, row_index + 1, 0).amax(dim=1)
    col0 = torch.where(col_any, col_index, big).amin(dim=1)
    col1 = torch.where(col_any, col_index + 1, 0).amax(dim=1)
    empty = ~row_any.any(dim=1)
    boxes = torch.stack([row0, col0, row1, col1], dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def pixel_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes ``(x1, y1, x2, y2)`` of bool masks ``[N, H, W]`` in the prediction-dict
    convention (x2, y2 = last pixel + 1); an empty mask gets an all-zero box."""
    n, height, width = masks.shape
    if n == 0:
        return torch.zeros((0, 4), dtype=torch.float32, device=masks.device)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    y_index = torch.arange(height, device=masks.device)
    x_index = torch.arange(width, device=masks.device)
    y1 = torch.where(rows, y_index, height).amin(dim=1)
    y2 = torch.where(rows, y_index + 1, 0).amax(dim=1)
    x1 = torch.where(cols, x_index, width).amin(dim=1)
    x2 = torch.where(cols, x_index + 1, 0).amax(dim=1)
    boxes = torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)
    empty = ~rows.any(dim=1)
    return torch.where(empty[:, None], torch.zeros_like(boxes), boxes)


def crop_box(crop: torch.Tensor, y0: int, x0: int) -> list[float]:
    """Tight box ``[x1, y1, x2, y2]`` of a bool crop whose top-left pixel is at ``(y0, x0)``
    in the image (x2, y2 one past the last pixel); all zeros for an empty crop."""
    values = crop.view(torch.uint8) if crop.is_contiguous() else crop.to(torch.uint8)
    both = torch.cat([values.amax(dim=1), values.amax(dim=0)]).tolist()
    rows, cols = both[: crop.shape[0]], both[crop.shape[0] :]
    if 1 not in rows:
        return [0.0, 0.0, 0.0, 0.0]
    top, left = rows.index(1), cols.index(1)
    bottom = len(rows) - rows[::-1].index(1)
    right = len(cols) - cols[::-1].index(1)
    return [float(x0 + left), float(y0 + top), float(x0 + right), float(y0 + bottom)]
