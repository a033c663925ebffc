"""Union-NMS: Algorithm 2 of Liu et al. (ICRA 2023), the high-recall use of the samples.

All masks of all samples are pooled and visited by decreasing score (ties: sample, then mask
order). A mask not suppressed yet leads a group; every later mask with IoU > ``iou_threshold``
(and the same class, when labels are given) is suppressed by it and joins its group, even if
an earlier leader suppressed it already, exactly as the paper's pseudo-code reads. Each leader
is replaced by the union of its group. ``vote`` > 0 gives the authors' variant: a pixel is kept
where more than that fraction of the group covers it (``vote=0`` is the union).

IoUs are exact: computed at full resolution inside the leader's box, only for masks whose box
meets it; the loop runs over leaders, never over pixels or pairs.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from latent_maskrcnn.mask_blocks import crop_box
from latent_maskrcnn.prepared_samples import DEFAULT_POOL, PreparedSamples, prepare_samples


@dataclass
class UnionNMSResult:
    """Merged masks in leader order; ``support[i]`` lists the ``(sample_index, mask_index)``
    pairs of group i, its leader first."""

    masks: torch.Tensor                      # bool [M, H, W]
    scores: torch.Tensor                     # float32 [M], the leader's score
    labels: torch.Tensor                     # int64 [M], the leader's class
    support: list[list[tuple[int, int]]]
    boxes: torch.Tensor                      # float32 [M, 4]

    @property
    def support_counts(self) -> torch.Tensor:
        """Number of distinct samples in each group, int64 ``[M]``."""
        return torch.tensor(
            [len({sample for sample, _ in group}) for group in self.support], dtype=torch.int64, device=self.masks.device
        )

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def union_nms(
    masks: Sequence[torch.Tensor] | torch.Tensor | PreparedSamples,
    scores: Sequence[torch.Tensor] | torch.Tensor | None,
    iou_threshold: float = 0.5,
    labels: Sequence[torch.Tensor] | torch.Tensor | None = None,
    vote: float = 0.0,
    score_threshold: float | None = None,
) -> UnionNMSResult:
    """Union-NMS over all samples pooled (Algorithm 2, see the module docstring).

    ``masks``: a list of K bool tensors ``[N_k, H, W]``, one pooled tensor ``[N, H, W]``, or
    `PreparedSamples` (then ``scores``/``labels`` come from it). ``score_threshold`` drops
    masks with score <= it first (None keeps every mask, or the prepared threshold).
    """
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)) or not 0.0 <= iou_threshold < 1.0:
        raise ValueError(f"iou_threshold must be a number in [0, 1), got {iou_threshold!r}")
    if isinstance(vote, bool) or not isinstance(vote, (int, float)) or not 0.0 <= vote < 1.0:
        raise ValueError(f"vote must be a number in [0, 1), got {vote!r}")
    if isinstance(masks, PreparedSamples):
        prepared = masks if score_threshold is None else masks.with_threshold(score_threshold)
    else:
        if scores is None:
            raise ValueError("scores are required unless masks are PreparedSamples")
        if isinstance(masks, torch.Tensor):
            masks, scores = [masks], [scores] if isinstance(scores, torch.Tensor) else scores
            if isinstance(labels, torch.Tensor):
                labels = [labels]
        threshold = None if score_threshold is None else score_threshold
        prepared = prepare_samples(masks, scores, labels, score_threshold=threshold, pool=DEFAULT_POOL)
    return _run(prepared, float(iou_threshold), float(vote))


def _run(prepared: PreparedSamples, iou_threshold: float, vote: float) -> UnionNMSResult:
    n = len(prepared)
    order = torch.argsort(prepared.scores, descending=True, stable=True)
    boxes = prepared.cell_boxes.index_select(0, order)
    labels = prepared.labels.index_select(0, order)
    # Pairs (in score order) whose cell boxes meet and whose classes agree: the only ones
    # that can have IoU > 0.
    meets = (
        (boxes[:, None, 0] < boxes[None, :, 2]) & (boxes[:, None, 2] > boxes[None, :, 0])
        & (boxes[:, None, 1] < boxes[None, :, 3]) & (boxes[:, None, 3] > boxes[None, :, 1])
        & (labels[:, None] == labels[None, :])
    )
    meets = torch.triu(meets, diagonal=1)
    order_list = order.tolist()
    suppressed = [False] * n
    groups: list[list[int]] = []                 # rows, leader first
    for position in range(n):
        if suppressed[position]:
            continue
        later = torch.nonzero(meets[position]).flatten()
        members: list[int] = []
        if later.numel():
            rows = order.index_select(0, later)
            above = _iou_above(prepared, order_list[position], rows, iou_threshold)
            chosen = later[above].tolist()
            for member in chosen:
                suppressed[member] = True
            members = [order_list[m] for m in chosen]
        groups.append([order_list[position]] + members)
    return _merge(prepared, groups, vote)


def _iou_above(prepared: PreparedSamples, leader: int, rows: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU(leader, rows) > threshold, exactly. Bounds from the block counts decide most pairs
    (intersection between sum max(0, a + b - cell) and sum min(a, b) per cell); pixels are
    counted only for the pairs the bounds leave open."""
    lists = prepared.cell_lists()
    cells = lists[leader]
    cells = cells[cells < prepared.counts.shape[1]]
    leader_counts = prepared.counts[leader].index_select(0, cells)
    other_counts = prepared.counts.index_select(0, rows).index_select(1, cells)
    sizes = prepared.cell_sizes.index_select(0, cells)
    upper = torch.minimum(leader_counts, other_counts).sum(dim=1, dtype=torch.float64)
    lower = (leader_counts + other_counts - sizes).clamp(min=0).sum(dim=1, dtype=torch.float64)
    total = prepared.areas[leader] + prepared.areas.index_select(0, rows)
    sure = lower / (total - lower) > threshold
    open_pairs = ~sure & (upper / (total - upper) > threshold)
    if bool(open_pairs.any()):
        open_index = torch.nonzero(open_pairs).flatten()
        row0, col0, row1, col1 = prepared.cell_boxes[leader].tolist()
        y0, x0, y1, x1 = prepared.pixel_box(row0, col0, row1, col1)
        crops = prepared.crops([leader] + rows[open_index].tolist(), y0, x0, y1, x1)
        inter = (crops[1:] & crops[:1]).flatten(1).sum(dim=1, dtype=torch.float64)
        sure[open_index] = inter / (total[open_index] - inter) > threshold
    return sure


def _merge(prepared: PreparedSamples, groups: list[list[int]], vote: float) -> UnionNMSResult:
    """Each group's masks merged inside the group's box: pixels covered by more than
    ``vote`` of the group (any member, for ``vote=0``)."""
    device = prepared.device
    height, width = prepared.image_size
    masks = torch.zeros((len(groups), height, width), dtype=torch.bool, device=device)
    boxes, support = [], []
    sample_of, mask_of = prepared.sample_index.tolist(), prepared.mask_index.tolist()
    cell_box_of = prepared.cell_boxes.tolist()
    for i, rows in enumerate(groups):
        member_boxes = [cell_box_of[r] for r in rows]
        y0, x0, y1, x1 = prepared.pixel_box(
            min(b[0] for b in member_boxes), min(b[1] for b in member_boxes),
            max(b[2] for b in member_boxes), max(b[3] for b in member_boxes),
        )
        views = [prepared.masks[sample_of[r]][mask_of[r], y0:y1, x0:x1] for r in rows]
        if vote == 0.0:
            merged = views[0].clone()
            for view in views[1:]:
                merged |= view
        else:
            coverage = torch.zeros((y1 - y0, x1 - x0), dtype=torch.int32, device=device)
            for view in views:
                coverage += view
            merged = coverage > vote * len(rows)
        masks[i, y0:y1, x0:x1] = merged
        boxes.append(crop_box(merged, y0, x0))
        support.append([(sample_of[r], mask_of[r]) for r in rows])
    leaders = torch.tensor([rows[0] for rows in groups], dtype=torch.int64, device=device)
    return UnionNMSResult(
        masks=masks,
        scores=prepared.scores.index_select(0, leaders).to(torch.float32),
        labels=prepared.labels.index_select(0, leaders),
        support=support,
        boxes=torch.tensor(boxes, dtype=torch.float32, device=device).view(-1, 4),
    )
