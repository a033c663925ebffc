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

from latent_maskrcnn.aggregation import confidence_kernel
from latent_maskrcnn.aggregation.mask_blocks import block_counts, crop_box
from latent_maskrcnn.aggregation.prepared_samples import (
    DEFAULT_POOL,
    PreparedSamples,
    prepare_samples,
    support_size,
    validate_p,
)

TIE_DECIMALS = confidence_kernel.TIE_SCALE  # both kernels break ties alike
ROUND_WINDOW = 64
KERNELS = ("auto", "compiled", "torch")


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
    kernel: str = "auto",
) -> ConfidenceMaskResult:
    """p-confidence masks of K samples of one image (Algorithm 1, see the module docstring).

    ``masks``: a list of K bool tensors ``[N_k, H, W]`` (``N_k`` may be 0), or samples already
    prepared with `prepare_samples` (then ``scores``, ``labels`` and ``pool`` are taken from
    it and ``scores`` may be None) so that a new p costs no pass over the full masks.
    ``scores``/``labels``: lists of K tensors ``[N_k]``. A mask is emitted only if it lies
    inside a mask of each of at least ceil(p K) distinct samples.

    ``kernel``: ``"compiled"`` runs the greedy loop as one compiled CPU kernel (numba; CPU
    tensors only), ``"torch"`` as vectorised torch operations (any device); ``"auto"`` picks
    the compiled kernel for CPU tensors when numba is installed, torch otherwise. Both follow
    the same definitions; with ``pool=1`` both are exactly Algorithm 1.
    """
    p = validate_p(p)
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    if isinstance(masks, PreparedSamples):
        prepared = masks.with_threshold(score_threshold)
    else:
        if scores is None:
            raise ValueError("scores are required unless masks are PreparedSamples")
        prepared = prepare_samples(masks, scores, labels, score_threshold=score_threshold, pool=pool)
    support = support_size(p, prepared.num_samples)
    if resolve_kernel(kernel, prepared.device) == "compiled":
        return _compiled_selection(prepared, support)
    return _GreedySelection(prepared, support).run()


def resolve_kernel(kernel: str, device: torch.device | str) -> str:
    """The kernel ``"auto"`` stands for on ``device`` ("compiled" for CPU tensors when numba is
    installed and not being compiled in the background, else "torch"); a ValueError for an
    unknown kernel or an impossible request."""
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r}; valid kernels: {', '.join(KERNELS)}")
    compiled_possible = torch.device(device).type == "cpu" and confidence_kernel.AVAILABLE
    if kernel == "compiled" and not compiled_possible:
        raise ValueError(
            "kernel='compiled' needs CPU tensors and numba"
            + ("" if confidence_kernel.AVAILABLE else " (not installed)")
            + f"; these samples are on {device}"
        )
    if kernel == "auto":  # not while the compiled kernel is being compiled in the background
        return "compiled" if compiled_possible and confidence_kernel.compiled_ready() else "torch"
    return kernel


def warm_up_compiled_kernel() -> bool:
    """Compile the CPU kernel now (tens of seconds on a fresh install, then cached on disk),
    so that the first frame of a node or a replay is not the one that pays for it. Returns
    whether the compiled kernel is available."""
    if not confidence_kernel.AVAILABLE:
        return False
    tiny = torch.zeros((1, 8, 8), dtype=torch.bool)
    tiny[0, 2:6, 2:6] = True
    confidence_masks([tiny, tiny.clone()], [torch.ones(1), torch.ones(1)], 1.0, kernel="compiled")
    return True


def _compiled_selection(prepared: PreparedSamples, support: int) -> ConfidenceMaskResult:
    """Algorithm 1 through `confidence_kernel.greedy_selection` on numpy views of the CPU tensors."""
    height, width = prepared.image_size
    row_sample, row_mask = prepared.row_lists()
    per_sample = torch.bincount(prepared.sample_index, minlength=prepared.num_samples)
    sample_starts = torch.cat([per_sample.new_zeros(1), per_sample.cumsum(0)])
    owner, rows, supports, scores, boxes = confidence_kernel.greedy_selection(
        confidence_kernel.mask_list(prepared.masks),
        prepared.sample_index.numpy(),
        prepared.mask_index.numpy(),
        prepared.counts.numpy(),
        prepared.cell_sizes.numpy(),
        prepared.cell_boxes.numpy(),
        (prepared.scores / prepared.areas).numpy(),
        sample_starts.numpy(),
        support,
        float(prepared.score_threshold),
        prepared.pool,
        height,
        width,
        prepared.grid[1],
    )
    masks = torch.zeros((len(rows), height, width), dtype=torch.bool)
    confidence_kernel.masks_from_owner(owner, boxes, masks.numpy())
    row_label, row_score = prepared.labels.tolist(), prepared.scores.tolist()
    support_rows = supports.tolist()
    return ConfidenceMaskResult(
        masks=masks,
        scores=torch.from_numpy(scores).to(torch.float32),
        labels=torch.tensor(
            [_majority_label([row_label[r] for r in rs], [row_score[r] for r in rs]) for rs in support_rows],
            dtype=torch.int64,
        ),
        support=[[(row_sample[r], row_mask[r]) for r in rs] for rs in support_rows],
        boxes=torch.from_numpy(boxes).to(torch.float32).view(-1, 4),
    )


class _GreedySelection:
    """State of one run of Algorithm 1 over prepared samples (block estimates, chosen pixels).

    This is the hot loop: the work per candidate is a few dozen small tensor operations, so
    Python lists mirror what the exact computation needs, and claims are applied per round."""

    def __init__(self, prepared: PreparedSamples, support: int) -> None:
        self.prepared = prepared
        self.support = support
        self.threshold = prepared.score_threshold
        device = prepared.device
        n = self.n = len(prepared)
        height, width = prepared.image_size
        self.claimed = torch.zeros((height, width), dtype=torch.bool, device=device)
        num_cells = prepared.counts.shape[1]
        # Unclaimed pixels per row and cell, plus a zero column that padded cell lists point at
        # and a zero row that padded sample slots (samples without masks) point at.
        self.remaining = prepared.counts.new_zeros((n + 1, num_cells + 1))
        self.remaining[:n, :num_cells] = prepared.counts
        self.stride = num_cells + 1
        # Free pixels per cell, plus a dummy cell of one pixel for padded cell tables.
        self.free = torch.ones(num_cells + 1, dtype=torch.float32, device=device)
        self.free[:num_cells] = prepared.cell_sizes
        # Estimated |m_a ∩ m_b ∩ unclaimed| for all pairs, plus a -inf column for padded
        # sample slots and a dummy row for padded row tables.
        self.overlap = prepared.counts.new_full((n + 1, n + 1), float("-inf"))
        self.overlap[:n, :n] = prepared.overlaps()
        self.cell_lists = prepared.cell_lists()
        self.list_lengths = prepared.cell_list_lengths()
        self.score_per_pixel = torch.zeros(n + 1, dtype=torch.float64, device=device)
        self.score_per_pixel[:n] = prepared.scores / prepared.areas
        sample_rows = _rows_by_sample(prepared)
        self.num_samples, self.sample_width = sample_rows.shape
        self.sample_rows = sample_rows.flatten()
        self.sample_offsets = torch.arange(self.num_samples, device=device) * self.sample_width
        self.estimate = torch.full((n,), float("-inf"), dtype=torch.float64, device=device)
        self.dead = torch.zeros(n, dtype=torch.bool, device=device)
        grid_rows, self.grid_cols = prepared.grid
        self.cell_ids = torch.arange(grid_rows * self.grid_cols, device=device).view(grid_rows, self.grid_cols)
        # Python mirrors for the per-candidate work.
        self.chosen: list[list[int]] = [[] for _ in range(n)]
        self.row_sample, self.row_mask = prepared.row_lists()
        self.row_cell_box = prepared.cell_boxes.tolist()
        self.row_score_per_pixel = self.score_per_pixel[:n].tolist()
        self.row_label = prepared.labels.tolist()
        self.row_score = prepared.scores.tolist()
        self.words = prepared.word_views() if prepared.pool == 8 else None
        if self.words is not None:
            self.claimed_words = self.claimed.view(torch.uint8).view(torch.int64)

    # ---------------------------------------------------------------- candidate estimates
    def evaluate(self, rows: torch.Tensor) -> None:
        """Recompute support and estimated score of the candidates ``rows``, in groups of
        similar cell-list length so that a few large masks do not pad every gather."""
        count = rows.numel()
        if count == 0:
            return
        if count <= 64:
            self._evaluate(rows)
            return
        by_length = rows.index_select(0, torch.argsort(self.list_lengths.index_select(0, rows)))
        for chunk in torch.tensor_split(by_length, 3):
            self._evaluate(chunk)

    def _evaluate(self, rows: torch.Tensor) -> None:
        m, count = self.support, rows.numel()
        values = self.overlap.index_select(0, rows).index_select(1, self.sample_rows)
        values = values.view(count, self.num_samples, self.sample_width)
        position = values.argmax(dim=2, keepdim=True)                          # first of ties
        best_value = values.gather(2, position).squeeze(2)                     # [S, K]
        best_row = self.sample_rows.take(position.squeeze(2) + self.sample_offsets)
        own = self.prepared.sample_index.index_select(0, rows).unsqueeze(1)
        best_value.scatter_(1, own, float("inf"))                              # own sample first
        best_row.scatter_(1, own, rows.unsqueeze(1))
        order = best_value.argsort(dim=1, descending=True, stable=True)[:, :m]
        support_rows = best_row.gather(1, order)                               # [S, m]
        enough = best_value.gather(1, order[:, m - 1 :]).squeeze(1) > 0
        longest = int(self.list_lengths.index_select(0, rows).max())
        cells = self.cell_lists.index_select(0, rows)[:, :longest]             # [S, L]
        flat = (support_rows * self.stride).unsqueeze(2) + cells.unsqueeze(1)
        pixels = self.remaining.view(-1).take(flat).amin(dim=1).sum(dim=1, dtype=torch.float64)
        score = self.score_per_pixel.take(support_rows).sum(dim=1) * pixels / m
        unusable = ~(enough & (pixels > 0)) | self.dead.index_select(0, rows)
        self.estimate.index_copy_(0, rows, score.masked_fill_(unusable, float("-inf")))
        for row, support in zip(rows.tolist(), support_rows.tolist()):
            self.chosen[row] = support

    # ---------------------------------------------------------------- selection
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
        if self.prepared.pool == 1:
            row = int(keys.argmax())                                           # first of ties
            return [row] if float(self.estimate[row]) > self.threshold else []
        window = torch.argsort(keys, descending=True, stable=True)[:ROUND_WINDOW]
        above = (self.estimate.index_select(0, window) > self.threshold).tolist()
        count = above.index(False) if False in above else len(above)
        if count <= 1:
            return window[:count].tolist()
        window = window[:count]
        shared = self.overlap.index_select(0, window).index_select(1, window) > 0
        independent = ~torch.tril(shared, diagonal=-1).any(dim=1)
        return window[independent].tolist()

    # ---------------------------------------------------------------- exact candidate
    def _exact(self, row: int):
        """Candidate ``row`` at full resolution, its pixels claimed; None if it is empty or
        scores <= the threshold (possible only when the block estimate was optimistic)."""
        prepared, pool = self.prepared, self.prepared.pool
        support = self.chosen[row]
        row0, col0, row1, col1 = self.row_cell_box[row]
        y0, x0, y1, x1 = prepared.pixel_box(row0, col0, row1, col1)
        if self.words is not None:
            # 8 pixels per int64 word; the window is 8-aligned since the cells are, so word j
            # of a row is that row's part of cell column j.
            claimed = torch.as_strided(self.claimed_words, (y1 - y0, col1 - col0), (self.claimed_words.shape[1], 1),
                                       y0 * self.claimed_words.shape[1] + col0)
            words = ~claimed
            for r in support:
                words &= prepared.word_window(r, y0, x0, y1, x1)
            lanes = words if (y1 - y0) % 8 == 0 else torch.nn.functional.pad(words, (0, 0, 0, 8 - (y1 - y0) % 8))
            lanes = lanes.view(row1 - row0, 8, col1 - col0).sum(dim=1)       # byte lanes stay <= 8
            taken = (lanes * 0x0101010101010101) >> 56                        # sum of the 8 lanes
            candidate = words.view(torch.uint8).view(torch.bool)               # bytes are 0 or 1 again
        else:
            claimed = self.claimed[y0:y1, x0:x1]
            candidate = ~claimed
            for r in support:
                candidate &= prepared.window(r, y0, x0, y1, x1)
            taken = block_counts(candidate[None], pool)[0]
        pixels = int(taken.sum())
        if pixels == 0:
            return None
        # mean over C of s_j |c| / |m_j|
        score = sum(self.row_score_per_pixel[r] for r in support) * pixels / self.support
        if score <= self.threshold:
            return None
        if self.words is not None:
            claimed |= words
        else:
            claimed |= candidate
        label = _majority_label([self.row_label[r] for r in support], [self.row_score[r] for r in support])
        pairs = [(self.row_sample[r], self.row_mask[r]) for r in support]
        emitted = _Emitted((y0, x0, y1, x1), candidate, score, label, pairs)
        return emitted, (support, (row0, col0, row1, col1), taken.view(-1))

    # ---------------------------------------------------------------- claims
    def _claim(self, claims: list) -> None:
        """Exclude the pixels emitted this round (disjoint sets of cells): update the free
        pixels per cell, the remaining pixels of every row present there and the overlaps
        among those rows, all claims at once in padded ``[claim, row, cell]`` blocks; then
        re-score every row touched."""
        device, n, num_cells = self.prepared.device, self.n, self.stride - 1
        r = len(claims)
        cells = torch.cat([self.cell_ids[r0:r1, c0:c1].reshape(-1) for _, (r0, c0, r1, c1), _ in claims])
        taken = torch.cat([t for _, _, t in claims])
        owner = torch.repeat_interleave(
            torch.arange(r, device=device), torch.tensor([t.numel() for _, _, t in claims], device=device)
        )
        keep = torch.nonzero(taken).flatten()
        cells, owner = cells.index_select(0, keep), owner.index_select(0, keep)
        taken = taken.index_select(0, keep).to(torch.float32)
        cells_pad, taken_pad = _pad_by_owner(owner, r, (cells, num_cells), (taken, 0.0))      # [r, C]
        # Rows that may have pixels there: those whose cell box meets the claim's box.
        boxes = self.prepared.cell_boxes
        claim_boxes = torch.tensor([box for _, box, _ in claims], device=device)
        meets = (
            (boxes[None, :, 0] < claim_boxes[:, None, 2]) & (boxes[None, :, 2] > claim_boxes[:, None, 0])
            & (boxes[None, :, 1] < claim_boxes[:, None, 3]) & (boxes[None, :, 3] > claim_boxes[:, None, 1])
        )
        claim_of, row_of = torch.nonzero(meets, as_tuple=True)
        (rows_pad,) = _pad_by_owner(claim_of, r, (row_of, n))                                     # [r, T]
        flat = (rows_pad * self.stride).unsqueeze(2) + cells_pad.unsqueeze(1)                     # [r, T, C]
        old = self.remaining.view(-1).take(flat)
        free_before = self.free.take(cells_pad)
        free_after = free_before - taken_pad
        # A support mask contains its candidate, so it loses exactly what was taken; any other
        # mask loses its share of the cell (exact when cells are single pixels).
        supports = torch.tensor([support for support, _, _ in claims], device=device)             # [r, m]
        member = (rows_pad.unsqueeze(2) == supports.unsqueeze(1)).any(dim=2, keepdim=True)
        new = torch.where(member, (old - taken_pad.unsqueeze(1)).clamp_(min=0), old * (free_after / free_before).unsqueeze(1))
        self.remaining.view(-1).index_copy_(0, flat.view(-1), new.view(-1))
        self.free.index_copy_(0, cells, self.free.take(cells) - taken)
        weight_after = torch.where(free_after > 0, free_after.clamp(min=1).reciprocal(), 0.0).unsqueeze(1)
        delta = torch.bmm(new * weight_after, new.transpose(1, 2))
        delta -= torch.bmm(old / free_before.unsqueeze(1), old.transpose(1, 2))
        flat = (rows_pad * (n + 1)).unsqueeze(2) + rows_pad.unsqueeze(1)
        self.overlap.view(-1).index_add_(0, flat.view(-1), delta.view(-1))
        present = old.amax(dim=2) > 0
        self.evaluate(torch.unique(rows_pad[present & (rows_pad < n)]))


def _pad_by_owner(owner: torch.Tensor, groups: int, *columns: tuple[torch.Tensor, float]) -> list[torch.Tensor]:
    """Scatter values listed with their group (``owner``, sorted) into ``[groups, longest]``
    tables, each padded with its fill value."""
    per_group = torch.bincount(owner, minlength=groups)
    longest = max(int(per_group.max()), 1) if owner.numel() else 1
    position = torch.arange(owner.numel(), device=owner.device) - (per_group.cumsum(0) - per_group).index_select(0, owner)
    tables = []
    for values, fill in columns:
        table = torch.full((groups, longest), fill, dtype=values.dtype, device=values.device)
        table[owner, position] = values
        tables.append(table)
    return tables


class _Emitted(NamedTuple):
    box: tuple[int, int, int, int]     # (y0, x0, y1, x1) of the crop
    crop: torch.Tensor                 # bool, the mask inside the crop
    score: float
    label: int
    support: list[tuple[int, int]]


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
