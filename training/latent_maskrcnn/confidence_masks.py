"""p-confidence masks: Algorithm 1 of Liu et al. (ICRA 2023), greedy and vectorised.

Each step, for every candidate mask m_h of every sample, each other sample contributes the
mask with the largest intersection with m_h outside the pixels already chosen; the ceil(p K)
samples with the largest intersections (m_h's own sample always counts) form the support C;
the candidate is the intersection of C outside the chosen pixels and scores
mean_{j in C} s_j |c| / |m_j| (the score-weighted IoU of Sec. IV-B, since c lies inside every
m_j). The best candidate is emitted and its pixels are excluded from all later steps; the
loop stops when the best score is <= ``score_threshold`` or no candidate is non-empty.

Choices where the paper is silent (see also the notes on the authors' implementation):
- Detections with score <= ``score_threshold`` are dropped first (as the authors do).
- Support size ceil(p K), the paper's definition (the authors use max(1, floor(p K))).
- Matching across samples ignores classes; the label of an emitted mask is the class with
  the largest summed score in its support (as the authors do).
- Chosen pixels are excluded for every class, so the emitted masks are pairwise disjoint
  (the authors exclude per class, which lets masks of different classes overlap; a suction
  gripper needs disjoint regions, so that variant is not offered).
- Ties (scores within 1e-9, equal intersections) go to the lower sample, then mask, index,
  so the result does not depend on float summation order or device.

Speed: the pairwise intersections and the candidate intersections are estimated on block
counts (``pool`` x ``pool`` pixels, the authors use 8) and updated incrementally after each
step, only where the new mask lies. Only the chosen candidate is computed at full
resolution, so the emitted masks and scores are exact; with ``pool=1`` the estimates are
exact as well and the result is exactly Algorithm 1. A candidate whose exact intersection
turns out empty (or scores <= ``score_threshold``) is dropped for good, so the loop always
ends: every step either adds pixels to the chosen set or drops a candidate.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import torch

from latent_maskrcnn.mask_blocks import block_counts, crop_box
from latent_maskrcnn.prepared_samples import (
    DEFAULT_POOL,
    PreparedSamples,
    prepare_samples,
    support_size,
    validate_p,
)

TIE_DECIMALS = 1e9
ROUND_WINDOW = 64


@dataclass
class ConfidenceMaskResult:
    """Disjoint confidence masks of one image, in selection order.

    ``support[i]`` lists the ``(sample_index, mask_index)`` pairs (indices into the input
    lists) whose intersection is ``masks[i]``: one mask from each of ceil(p K) samples, the
    candidate's own first."""

    masks: torch.Tensor                      # bool [M, H, W], pairwise disjoint
    scores: torch.Tensor                     # float32 [M]
    labels: torch.Tensor                     # int64 [M]
    support: list[list[tuple[int, int]]]
    boxes: torch.Tensor = field(default=None)  # float32 [M, 4], (x1, y1, x2, y2), x2 exclusive

    @property
    def support_counts(self) -> torch.Tensor:
        """Number of supporting samples per mask, int64 ``[M]``."""
        return torch.tensor([len(s) for s in self.support], dtype=torch.int64, device=self.masks.device)

    def __len__(self) -> int:
        return int(self.masks.shape[0])


def confidence_masks(
    masks: Sequence[torch.Tensor] | PreparedSamples,
    scores: Sequence[torch.Tensor] | None,
    p: float,
    score_threshold: float = 0.1,
    labels: Sequence[torch.Tensor] | None = None,
    pool: int = DEFAULT_POOL,
) -> ConfidenceMaskResult:
    """p-confidence masks of K samples of one image (Algorithm 1, see the module docstring).

    ``masks``: a list of K bool tensors ``[N_k, H, W]`` (``N_k`` may be 0), or samples already
    prepared with `prepare_samples` (then ``scores``, ``labels`` and ``pool`` are taken from
    it and ``scores`` may be None) so that a new p costs no pass over the full masks.
    ``scores``/``labels``: lists of K tensors ``[N_k]``. A mask is emitted only if it lies
    inside a mask of each of at least ceil(p K) distinct samples.
    """
    p = validate_p(p)
    if isinstance(masks, PreparedSamples):
        prepared = masks.with_threshold(score_threshold)
    else:
        if scores is None:
            raise ValueError("scores are required unless masks are PreparedSamples")
        prepared = prepare_samples(masks, scores, labels, score_threshold=score_threshold, pool=pool)
    return _GreedySelection(prepared, support_size(p, prepared.num_samples)).run()


class _GreedySelection:
    """State of one run of Algorithm 1 over prepared samples (block estimates, chosen pixels).

    Per step only a few dozen small tensor operations run (this is the hot loop): Python
    lists mirror what the exact emission needs, tensors hold what the candidates need."""

    def __init__(self, prepared: PreparedSamples, support: int) -> None:
        self.prepared = prepared
        self.support = support
        self.threshold = prepared.score_threshold
        device = prepared.device
        n = self.n = len(prepared)
        height, width = prepared.image_size
        self.claimed = torch.zeros((height, width), dtype=torch.bool, device=device)
        # Unclaimed pixels per row and cell, plus a zero column that padded cell lists point at
        # and a zero row that padded sample slots (samples without masks) point at.
        self.remaining = prepared.counts.new_zeros((n + 1, prepared.counts.shape[1] + 1))
        self.remaining[:n, :-1] = prepared.counts
        self.stride = self.remaining.shape[1]
        self.free = prepared.cell_sizes.clone()
        # Estimated |m_a ∩ m_b ∩ unclaimed| for all pairs, plus a -inf column for padded slots.
        self.overlap = torch.cat([prepared.overlaps(), prepared.counts.new_full((n, 1), float("-inf"))], dim=1)
        self.cell_lists = prepared.cell_lists()
        self.list_lengths = (self.cell_lists < self.stride - 1).sum(dim=1)
        self.score_per_pixel = torch.nn.functional.pad(prepared.scores / prepared.areas, (0, 1))
        sample_rows = _rows_by_sample(prepared)
        self.num_samples, self.sample_width = sample_rows.shape
        self.sample_rows = sample_rows.flatten()
        self.sample_offsets = torch.arange(self.num_samples, device=device) * self.sample_width
        self.chosen = torch.zeros((n, support), dtype=torch.int64, device=device)
        self.estimate = torch.full((n,), float("-inf"), dtype=torch.float64, device=device)
        self.dead = torch.zeros(n, dtype=torch.bool, device=device)
        grid_rows, self.grid_cols = prepared.grid
        self.cell_ids = torch.arange(grid_rows * self.grid_cols, device=device).view(grid_rows, self.grid_cols)
        self.words = _word_views(prepared) if prepared.pool % 8 == 0 and width % 8 == 0 else None
        if self.words is not None:
            self.claimed_words = self.claimed.view(torch.uint8).view(torch.int64)
        # Python mirrors for the per-step exact work.
        self.row_sample = prepared.sample_index.tolist()
        self.row_mask = prepared.mask_index.tolist()
        self.row_cell_box = prepared.cell_boxes.tolist()
        self.row_score_per_pixel = self.score_per_pixel[:n].tolist()
        self.row_label = prepared.labels.tolist()
        self.row_score = prepared.scores.tolist()

    def evaluate(self, rows: torch.Tensor) -> None:
        """Recompute the support and the estimated score of the candidates ``rows``."""
        count = rows.numel()
        if count == 0:
            return
        m = self.support
        values = self.overlap.index_select(0, rows).index_select(1, self.sample_rows)
        values = values.view(count, self.num_samples, self.sample_width)
        position = values.argmax(dim=2, keepdim=True)                          # first of ties
        best_value = values.gather(2, position).squeeze(2)                     # [S, K]
        best_row = self.sample_rows.take(position.squeeze(2) + self.sample_offsets)
        own = self.prepared.sample_index.index_select(0, rows)[:, None]
        best_value.scatter_(1, own, float("inf"))                              # own sample first
        best_row.scatter_(1, own, rows[:, None])
        order = best_value.argsort(dim=1, descending=True, stable=True)[:, :m]
        support_rows = best_row.gather(1, order)                               # [S, m]
        enough = best_value.gather(1, order[:, m - 1:]).squeeze(1) > 0
        longest = int(self.list_lengths.index_select(0, rows).max())
        cells = self.cell_lists.index_select(0, rows)[:, :longest]             # [S, L]
        flat = (support_rows * self.stride)[:, :, None] + cells[:, None, :]
        pixels = self.remaining.view(-1).take(flat).amin(dim=1).sum(dim=1, dtype=torch.float64)
        score = self.score_per_pixel.take(support_rows).sum(dim=1) * pixels / m
        unusable = ~(enough & (pixels > 0)) | self.dead.index_select(0, rows)
        self.estimate.index_copy_(0, rows, score.masked_fill_(unusable, float("-inf")))
        self.chosen.index_copy_(0, rows, support_rows)

    def run(self) -> ConfidenceMaskResult:
        height, width = self.prepared.image_size
        emitted: list[_Emitted] = []
        if self.n:
            self.evaluate(torch.arange(self.n, device=self.prepared.device))
        # Each round emits >= 1 mask (adding >= 1 pixel to the chosen set) or drops a
        # candidate for good, so this bound is never reached.
        for _ in range(self.n + height * width):
            if self.n == 0:
                break
            rows = self._round()
            if not rows:
                break
            claims = []
            for row in rows:
                outcome = self._exact(row)
                if outcome is None:
                    self.dead[row] = True
                    self.estimate[row] = float("-inf")
                else:
                    emitted.append(outcome[0])
                    claims.append(outcome[1])
            if claims:
                self._claim(claims)
        return _result(emitted, height, width, self.prepared.device)

    def _round(self) -> list[int]:
        """The candidates to compute exactly now, best first.

        The best candidate, plus (when ``pool`` > 1) every candidate of the next best that
        shares no cell with any better-ranked one: claims elsewhere leave its block estimate
        unchanged, so it would be chosen at the same value later. With ``pool`` = 1 the
        candidates are re-scored after every single mask, exactly as in Algorithm 1."""
        keys = torch.round(self.estimate * TIE_DECIMALS)
        window = torch.argsort(keys, descending=True, stable=True)[:ROUND_WINDOW]
        above = (self.estimate.index_select(0, window) > self.threshold).tolist()
        count = above.index(False) if False in above else len(above)
        if count == 0:
            return []
        if count == 1 or self.prepared.pool == 1:
            return [int(window[0])]
        window = window[:count]
        shared = self.overlap.index_select(0, window).index_select(1, window) > 0
        independent = ~torch.tril(shared, diagonal=-1).any(dim=1)
        return window[independent].tolist()

    def _exact(self, row: int):
        """Candidate ``row`` at full resolution, its pixels claimed; None if it is empty or
        scores <= the threshold (possible only when the block estimate was optimistic)."""
        support_rows = self.chosen[row]
        support_list = support_rows.tolist()
        row0, col0, row1, col1 = self.row_cell_box[row]
        y0, x0, y1, x1 = self.prepared.pixel_box(row0, col0, row1, col1)
        if self.words is not None:
            # 8 pixels per int64 word: the crop is 8-aligned since the cells are.
            words = ~self.claimed_words[y0:y1, x0 // 8 : x1 // 8]
            for r in support_list:
                words &= self.words[self.row_sample[r]][self.row_mask[r], y0:y1, x0 // 8 : x1 // 8]
            candidate = words.view(torch.uint8).view(torch.bool)  # bytes are 0 or 1 again
        else:
            masks = self.prepared.masks
            candidate = ~self.claimed[y0:y1, x0:x1]
            for r in support_list:
                candidate &= masks[self.row_sample[r]][self.row_mask[r], y0:y1, x0:x1]
        taken = block_counts(candidate[None], self.prepared.pool).flatten()
        pixels = int(taken.sum())
        if pixels == 0:
            return None
        # mean over C of s_j |c| / |m_j|
        score = sum(self.row_score_per_pixel[r] for r in support_list) * pixels / self.support
        if score <= self.threshold:
            return None
        self.claimed[y0:y1, x0:x1] |= candidate
        label = _majority_label([self.row_label[r] for r in support_list], [self.row_score[r] for r in support_list])
        pairs = [(self.row_sample[r], self.row_mask[r]) for r in support_list]
        local = torch.nonzero(taken).flatten()
        cells = self.cell_ids[row0:row1, col0:col1].reshape(-1).index_select(0, local)
        claim = (support_rows, cells, taken.index_select(0, local).to(torch.float32))
        return _Emitted((y0, x0, y1, x1), candidate, score, label, pairs), claim

    def _claim(self, claims: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]) -> None:
        """Exclude the pixels just emitted (disjoint sets of cells): update the free pixels per
        cell, the remaining pixels of every row present there and the overlaps among those
        rows; then re-score every row touched."""
        touched_all = []
        for support_rows, cells, taken in claims:
            old = self.remaining.index_select(1, cells)                       # [N + 1, C]
            touched = torch.nonzero(old.amax(dim=1) > 0).flatten()
            old = old.index_select(0, touched)
            free_before = self.free.index_select(0, cells)
            free_after = free_before - taken
            # A support mask contains its candidate, so it loses exactly what was taken; any
            # other mask loses its share of the cell (exact when cells are single pixels).
            new = old * (free_after / free_before)
            in_support = torch.searchsorted(touched, support_rows)
            new[in_support] = (old.index_select(0, in_support) - taken).clamp_(min=0)
            flat = (touched * self.stride)[:, None] + cells[None, :]
            self.remaining.view(-1).index_copy_(0, flat.flatten(), new.flatten())
            self.free.index_copy_(0, cells, free_after)
            weight_after = torch.where(free_after > 0, free_after.clamp(min=1).reciprocal(), 0.0)
            both = torch.cat([new * weight_after, old / -free_before], dim=1)
            delta = both @ torch.cat([new, old], dim=1).T                    # new products - old
            flat = (touched * (self.n + 1))[:, None] + touched[None, :]
            self.overlap.view(-1).index_add_(0, flat.flatten(), delta.flatten())
            touched_all.append(touched)
        touched = torch.unique(torch.cat(touched_all)) if len(touched_all) > 1 else touched_all[0]
        self.evaluate(touched)


class _Emitted(NamedTuple):
    box: tuple[int, int, int, int]     # (y0, x0, y1, x1) of the crop
    crop: torch.Tensor                 # bool, the mask inside the crop
    score: float
    label: int
    support: list[tuple[int, int]]


def _word_views(prepared: PreparedSamples) -> list[torch.Tensor] | None:
    """Each sample's masks as int64 words of 8 pixels ``[N_k, H, W / 8]`` (no copy), or None
    where the memory layout does not allow it."""
    try:
        return [masks.view(torch.uint8).view(torch.int64) for masks in prepared.masks]
    except RuntimeError:
        return None


def _rows_by_sample(prepared: PreparedSamples) -> torch.Tensor:
    """``[K, most rows of one sample]`` row indices per sample, padded with ``N``."""
    n, device = len(prepared), prepared.device
    per_sample = torch.bincount(prepared.sample_index, minlength=prepared.num_samples)
    width = max(int(per_sample.max()) if n else 0, 1)
    table = torch.full((prepared.num_samples, width), n, dtype=torch.int64, device=device)
    starts = torch.cumsum(per_sample, 0) - per_sample
    position = torch.arange(n, device=device) - starts[prepared.sample_index]
    table[prepared.sample_index, position] = torch.arange(n, device=device)
    return table


def _result(emitted: list[_Emitted], height: int, width: int, device: torch.device) -> ConfidenceMaskResult:
    masks = torch.zeros((len(emitted), height, width), dtype=torch.bool, device=device)
    boxes = []
    for i, item in enumerate(emitted):
        y0, x0, y1, x1 = item.box
        masks[i, y0:y1, x0:x1] = item.crop
        boxes.append(crop_box(item.crop, y0, x0))
    return ConfidenceMaskResult(
        masks=masks,
        scores=torch.tensor([e.score for e in emitted], dtype=torch.float32, device=device),
        labels=torch.tensor([e.label for e in emitted], dtype=torch.int64, device=device),
        support=[e.support for e in emitted],
        boxes=torch.tensor(boxes, dtype=torch.float32, device=device).view(-1, 4),
    )


def _majority_label(labels: list[int], scores: list[float]) -> int:
    """The class with the largest summed score (ties: the smaller class id)."""
    totals: dict[int, float] = {}
    for label, score in zip(labels, scores):
        totals[label] = totals.get(label, 0.0) + score
    return min(totals, key=lambda label: (-totals[label], label))
