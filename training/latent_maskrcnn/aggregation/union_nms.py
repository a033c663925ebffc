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

from latent_maskrcnn.aggregation.mask_blocks import crop_box
from latent_maskrcnn.aggregation.prepared_samples import DEFAULT_POOL, PreparedSamples, prepare_samples


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
    # Pairs (positions in score order, first < second) whose cell boxes meet and whose classes
    # agree: the only ones that can have IoU > 0. Which of them exceed the threshold is
    # decided for all pairs at once; the greedy loop below then runs on Python lists only.
    meets = (
        (boxes[:, None, 0] < boxes[None, :, 2]) & (boxes[:, None, 2] > boxes[None, :, 0])
        & (boxes[:, None, 1] < boxes[None, :, 3]) & (boxes[:, None, 3] > boxes[None, :, 1])
        & (labels[:, None] == labels[None, :])
    )
    # IoU <= m / (a + b - m) with m = min(a, b, pixels of the two cell boxes' overlap): a
    # cheap bound that already rules out neighbouring items.
    box_overlap = (
        (torch.minimum(boxes[:, None, 2], boxes[None, :, 2]) - torch.maximum(boxes[:, None, 0], boxes[None, :, 0])).clamp(min=0)
        * (torch.minimum(boxes[:, None, 3], boxes[None, :, 3]) - torch.maximum(boxes[:, None, 1], boxes[None, :, 1])).clamp(min=0)
    ) * float(prepared.pool * prepared.pool)
    areas = prepared.areas.index_select(0, order)
    most = torch.minimum(torch.minimum(areas[:, None], areas[None, :]), box_overlap)
    meets &= most / (areas[:, None] + areas[None, :] - most) > iou_threshold
    first, second = torch.nonzero(torch.triu(meets, diagonal=1), as_tuple=True)
    above = _iou_above(prepared, order.index_select(0, first), order.index_select(0, second), iou_threshold)
    suppresses: dict[int, list[int]] = {}
    for a, b in zip(first[above].tolist(), second[above].tolist()):
        suppresses.setdefault(a, []).append(b)
    order_list = order.tolist()
    suppressed = [False] * n
    groups: list[list[int]] = []                 # rows, leader first
    for position in range(n):
        if suppressed[position]:
            continue
        members = suppresses.get(position, [])
        for member in members:
            suppressed[member] = True
        groups.append([order_list[position]] + [order_list[m] for m in members])
    return _merge(prepared, groups, vote)


def _iou_above(prepared: PreparedSamples, rows_a: torch.Tensor, rows_b: torch.Tensor, threshold: float) -> torch.Tensor:
    """IoU(rows_a[i], rows_b[i]) > threshold for every pair, exactly. Bounds from the block
    counts decide most pairs (the intersection lies between sum max(0, a + b - cell) and
    sum min(a, b) over the cells); pixels are counted only for the pairs left open."""
    if rows_a.numel() == 0:
        return torch.zeros(0, dtype=torch.bool, device=prepared.device)
    num_cells = prepared.counts.shape[1]
    lists = prepared.cell_lists()
    lengths = prepared.cell_list_lengths()
    # Walk the cells of the mask with fewer of them; the intersection lies there.
    shorter_first = lengths.index_select(0, rows_a) <= lengths.index_select(0, rows_b)
    walk = torch.where(shorter_first, rows_a, rows_b)
    longest = int(lengths.index_select(0, walk).max())
    cells = lists.index_select(0, walk)[:, :longest]
    present = cells < num_cells
    cells = cells.clamp(max=num_cells - 1)
    counts_a = prepared.counts.view(-1).take(rows_a[:, None] * num_cells + cells) * present
    counts_b = prepared.counts.view(-1).take(rows_b[:, None] * num_cells + cells) * present
    sizes = prepared.cell_sizes.take(cells)
    upper = torch.minimum(counts_a, counts_b).sum(dim=1, dtype=torch.float64)
    lower = (counts_a + counts_b - sizes).clamp_(min=0).sum(dim=1, dtype=torch.float64)
    total = prepared.areas.index_select(0, rows_a) + prepared.areas.index_select(0, rows_b)
    sure = lower / (total - lower) > threshold
    open_pairs = torch.nonzero(~sure & (upper / (total - upper) > threshold)).flatten().tolist()
    if open_pairs:
        boxes = prepared.cell_boxes.tolist()
        a_list, b_list, totals = rows_a.tolist(), rows_b.tolist(), total.tolist()
        for index in open_pairs:
            a, b = a_list[index], b_list[index]
            row0, col0 = max(boxes[a][0], boxes[b][0]), max(boxes[a][1], boxes[b][1])
            row1, col1 = min(boxes[a][2], boxes[b][2]), min(boxes[a][3], boxes[b][3])
            inter = prepared.intersection(a, b, *prepared.pixel_box(row0, col0, row1, col1))
            sure[index] = inter / (totals[index] - inter) > threshold
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
    words = prepared.word_views() is not None and prepared.pool % 8 == 0
    for i, rows in enumerate(groups):
        member_boxes = [cell_box_of[r] for r in rows]
        y0, x0, y1, x1 = prepared.pixel_box(
            min(b[0] for b in member_boxes), min(b[1] for b in member_boxes),
            max(b[2] for b in member_boxes), max(b[3] for b in member_boxes),
        )
        if vote == 0.0 and words:
            merged_words = prepared.word_window(rows[0], y0, x0, y1, x1).clone()
            for r in rows[1:]:
                merged_words |= prepared.word_window(r, y0, x0, y1, x1)
            merged = merged_words.view(torch.uint8).view(torch.bool)
        elif vote == 0.0:
            merged = prepared.window(rows[0], y0, x0, y1, x1).clone()
            for r in rows[1:]:
                merged |= prepared.window(r, y0, x0, y1, x1)
        else:
            views = [prepared.window(r, y0, x0, y1, x1) for r in rows]
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
