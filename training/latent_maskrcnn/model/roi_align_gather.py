"""RoIAlign (torchvision's, ``aligned=False``) as weighted row gathers from a channels-last map.

Every output bin of RoIAlign is a weighted sum of at most ``sampling_ratio^2 * 4`` feature cells
(bilinear corners of its sampling points, divided by their count). Written as "bags" of (cell,
weight) pairs, all RoIs are pooled by one ``embedding_bag`` call that reads whole channel
vectors, instead of torchvision's CPU kernel that walks each channel of each RoI on one thread.
The bag weights summed per bin are ``RoIAlign(1)`` for free: the weight of a constant map, which
the latent code bias needs (`batched_decoding.py`). Same sampling rule as torchvision's kernel,
including points outside the map; results agree to float rounding.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import MultiScaleRoIAlign


def _axis_samples(
    start: Tensor, length: Tensor, bins: int, ratio: int, size: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Low/high cell and weights of every sampling coordinate along one axis: ``[n, bins, ratio]``.
    Points beyond ``[-1, size]`` get zero weight (torchvision counts them as empty)."""
    bin_size = length / bins
    steps = torch.arange(bins, dtype=start.dtype, device=start.device)[:, None] * bin_size[:, None, None]
    offsets = (torch.arange(ratio, dtype=start.dtype, device=start.device) + 0.5) * (bin_size / ratio)[:, None, None]
    coord = start[:, None, None] + steps + offsets
    valid = (coord >= -1.0) & (coord <= size)
    coord = coord.clamp(min=0.0)
    low = coord.floor().long()
    at_edge = low >= size - 1
    low = torch.where(at_edge, torch.full_like(low, size - 1), low)
    high = torch.where(at_edge, low, low + 1)
    coord = torch.where(at_edge, low.to(coord.dtype), coord)
    frac = coord - low.to(coord.dtype)
    valid = valid.to(coord.dtype)
    return low, high, (1.0 - frac) * valid, frac * valid


def roi_align_bags(
    rois: Tensor, height: int, width: int, output_size: tuple[int, int], spatial_scale: float, sampling_ratio: int
) -> tuple[Tensor, Tensor]:
    """Cell indices (into a ``[B * height * width]`` table) and weights of every bin:
    ``[n * ph * pw, sampling_ratio^2 * 4]`` each, bins in row-major (n, ph, pw) order."""
    if sampling_ratio <= 0:
        raise ValueError("roi_align_bags needs a fixed sampling_ratio > 0")
    pooled_h, pooled_w = output_size
    count = rois.shape[0]
    boxes = rois[:, 1:] * spatial_scale
    roi_w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1.0)
    roi_h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1.0)
    y_low, y_high, y_w_low, y_w_high = _axis_samples(boxes[:, 1], roi_h, pooled_h, sampling_ratio, height)
    x_low, x_high, x_w_low, x_w_high = _axis_samples(boxes[:, 0], roi_w, pooled_w, sampling_ratio, width)
    base = rois[:, 0].long() * (height * width)
    rows = torch.stack([y_low, y_high], dim=-1) * width + base[:, None, None, None]  # [n, ph, r, 2]
    cols = torch.stack([x_low, x_high], dim=-1)  # [n, pw, r, 2]
    row_w = torch.stack([y_w_low, y_w_high], dim=-1)
    col_w = torch.stack([x_w_low, x_w_high], dim=-1)
    # [n, ph, pw, r_y, r_x, 2, 2]
    index = rows[:, :, None, :, None, :, None] + cols[:, None, :, None, :, None, :]
    weight = row_w[:, :, None, :, None, :, None] * col_w[:, None, :, None, :, None, :]
    per_bin = sampling_ratio * sampling_ratio * 4
    weight = weight / (sampling_ratio * sampling_ratio)
    return index.reshape(count * pooled_h * pooled_w, per_bin), weight.reshape(count * pooled_h * pooled_w, per_bin)


def roi_align_nhwc(
    table: Tensor,
    height: int,
    width: int,
    rois: Tensor,
    output_size: tuple[int, int],
    spatial_scale: float,
    sampling_ratio: int,
) -> tuple[Tensor, Tensor]:
    """RoIAlign from ``table [B * height * width, C]`` (a channels-last map, flattened):
    returns pooled features ``[n, ph, pw, C]`` and ``RoIAlign(1)`` ``[n, ph, pw]``."""
    pooled_h, pooled_w = output_size
    count = rois.shape[0]
    if count == 0:
        return table.new_zeros((0, pooled_h, pooled_w, table.shape[1])), table.new_zeros((0, pooled_h, pooled_w))
    index, weight = roi_align_bags(rois, height, width, output_size, spatial_scale, sampling_ratio)
    per_bin = index.shape[1]
    offsets = torch.arange(0, index.numel(), per_bin, device=index.device)
    pooled = F.embedding_bag(
        index.reshape(-1), table, offsets, mode="sum", per_sample_weights=weight.reshape(-1).to(table.dtype)
    )
    return pooled.view(count, pooled_h, pooled_w, -1), weight.sum(dim=1).view(count, pooled_h, pooled_w)


def expand_boxes(boxes: Tensor, factor: float) -> Tensor:
    """``[N, 4]`` boxes grown by ``factor`` in width and height about their centres."""
    if factor == 1.0:
        return boxes
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    half = (boxes[:, 2:] - boxes[:, :2]) * (factor / 2)
    return torch.cat([centre - half, centre + half], dim=1)


class GatherMultiScaleRoIAlign(MultiScaleRoIAlign):
    """torchvision's `MultiScaleRoIAlign` (same levels, scales and sampling), pooling CPU maps
    with `roi_align_nhwc`. Autograd runs through ``embedding_bag``, whose backward is a scatter-add
    of whole channel vectors: training steps spend about half the time torchvision's CPU kernel
    spends in RoIAlign's backward. Other devices use torchvision's kernel.

    With ``context > 1`` each box is pooled from a window that many times its width and height
    about its centre (`ModelConfig.box_context`): a box head then sees what lies around a
    proposal, e.g. whether the print of a bag goes on past its edge."""

    def __init__(self, featmap_names: list[str], output_size: int, sampling_ratio: int, context: float = 1.0) -> None:
        super().__init__(featmap_names, output_size, sampling_ratio)
        self.context = float(context)

    def forward(self, x: dict[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]) -> Tensor:
        boxes = [expand_boxes(b, self.context) for b in boxes]
        maps = [value for key, value in x.items() if key in self.featmap_names]
        if maps[0].device.type != "cpu":
            return super().forward(x, boxes, image_shapes)
        if self.scales is None or self.map_levels is None:
            MultiScaleRoIAlign.forward(self, x, [b[:0] for b in boxes], image_shapes)  # torchvision's scale setup
        rois = torch.cat([torch.cat([b.new_full((len(b), 1), index), b], dim=1) for index, b in enumerate(boxes)])
        levels = self.map_levels(boxes) if len(maps) > 1 else torch.zeros(len(rois), dtype=torch.int64)
        size = tuple(self.output_size)
        first = maps[0]
        result = first.new_zeros((len(rois), first.shape[1]) + size)
        for level, (feature, scale) in enumerate(zip(maps, self.scales)):
            index = torch.where(levels == level)[0]
            if len(index) == 0:
                continue
            batch, channels, height, width = feature.shape
            table = feature.permute(0, 2, 3, 1).reshape(batch * height * width, channels)
            pooled, _ = roi_align_nhwc(table, height, width, rois[index].to(feature.dtype), size, scale,
                                       self.sampling_ratio)
            result[index] = pooled.permute(0, 3, 1, 2).to(result.dtype)
        return result
