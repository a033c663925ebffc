"""The K sampled segmentations of one image, validated and summarised once for aggregation.

Aggregating the samples of a frame again with another p (an operator turning the knob) must
not redo the expensive part, the one pass over every full-resolution mask. `PreparedSamples`
holds what that pass yields (per-mask block counts, exact areas, cell boxes) plus the
pairwise overlaps of the block counts, computed lazily; `confidence_masks`, `union_nms`
and `aggregate` accept it in place of raw masks.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Sequence

import torch

from latent_maskrcnn.aggregation.mask_blocks import block_counts, cell_areas, grid_shape, occupied_cell_boxes

DEFAULT_POOL = 8


def validate_p(p: float) -> float:
    """p must be a real number in (0, 1]."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(float(p)):
        raise ValueError(f"p must be a finite number in (0, 1], got {p!r}")
    if not 0.0 < float(p) <= 1.0:
        raise ValueError(f"p must lie in (0, 1], got {p!r}")
    return float(p)


def support_size(p: float, num_samples: int) -> int:
    """ceil(p * K) samples must contain a confidence mask (the paper's definition; the authors'
    code uses max(1, floor(p * K)), which lets e.g. p = 0.9, K = 8 pass with 7 of 8 samples).
    A relative tolerance keeps float noise such as 0.7 * 10 = 7.000000000000001 from adding one."""
    return max(1, math.ceil(p * num_samples - 1e-9 * num_samples))


def check_number(name: str, value: float) -> float:
    """A finite real number, or a ValueError naming the parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


@dataclass
class PreparedSamples:
    """K samples of one image after validation and the one full-resolution pass.

    Rows are the masks with score > ``score_threshold`` and at least one pixel, ordered by
    sample then mask index; ``sample_index`` / ``mask_index`` map a row back to the input.
    """

    masks: list[torch.Tensor]          # the K input tensors, bool [N_k, H, W], not copied
    score_threshold: float
    pool: int
    sample_index: torch.Tensor         # int64 [N]
    mask_index: torch.Tensor           # int64 [N]
    scores: torch.Tensor               # float64 [N]
    labels: torch.Tensor               # int64 [N]
    counts: torch.Tensor               # float32 [N, rows * cols], pixels per cell (exact integers)
    areas: torch.Tensor                # float64 [N], exact pixel counts
    cell_boxes: torch.Tensor           # int64 [N, 4], (row0, col0, row1, col1) half-open
    cell_sizes: torch.Tensor           # float32 [rows * cols], image pixels per cell
    _overlaps: torch.Tensor | None = field(default=None, repr=False)
    _cell_lists: torch.Tensor | None = field(default=None, repr=False)
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def num_samples(self) -> int:
        return len(self.masks)

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.masks[0].shape[1]), int(self.masks[0].shape[2])

    @property
    def grid(self) -> tuple[int, int]:
        return grid_shape(*self.image_size, self.pool)

    @property
    def device(self) -> torch.device:
        return self.masks[0].device

    def __len__(self) -> int:
        return int(self.sample_index.numel())

    def overlaps(self) -> torch.Tensor:
        """Block estimate of |m_a ∩ m_b| for every pair of rows, float32 ``[N, N]``.

        Per cell the estimate is counts_a * counts_b / cell size: exact for pool = 1 and for
        cells either mask fills or misses. A sparse product (masks are item-sized, so most
        cells of a row are empty); cached, since it does not depend on p."""
        if self._overlaps is None:
            self._index_cells()
        return self._overlaps

    def cell_lists(self) -> torch.Tensor:
        """Per row, the indices of the cells of its cell box in increasing order, padded with
        ``rows * cols`` (one past the last cell; callers append a zero column there);
        int64 ``[N, L]`` with L the largest box. See `cell_list_lengths`."""
        if self._cell_lists is None:
            self._index_cells()
        return self._cell_lists

    def cell_list_lengths(self) -> torch.Tensor:
        """Number of real (not padding) entries per row of `cell_lists`, int64 ``[N]``."""
        if self._cell_lists is None:
            self._index_cells()
        return self._cache["lengths"]

    def _index_cells(self) -> None:
        """Cell lists from the cell boxes (arithmetic, no search over the counts) and, as a
        sparse matrix over the same entries, the pairwise overlaps."""
        n, num_cells = self.counts.shape
        device = self.counts.device
        _, cols = self.grid
        boxes = self.cell_boxes
        widths = boxes[:, 3] - boxes[:, 1]
        sizes = (boxes[:, 2] - boxes[:, 0]) * widths
        row_starts = torch.zeros(n + 1, dtype=torch.int64, device=device)
        row_starts[1:] = sizes.cumsum(0)
        row_of = torch.repeat_interleave(torch.arange(n, device=device), sizes)
        position = torch.arange(row_of.numel(), device=device) - row_starts[row_of]
        row_width = widths[row_of]
        columns = (boxes[row_of, 0] + position // row_width) * cols + boxes[row_of, 1] + position % row_width
        longest = int(sizes.max()) if n else 0
        lists = torch.full((n, longest), num_cells, dtype=torch.int64, device=device)
        lists[row_of, position] = columns
        self._cell_lists = lists
        self._cache["lengths"] = sizes
        if n == 0:
            self._overlaps = torch.zeros((0, 0), dtype=torch.float32, device=device)
            return
        values = self.counts.view(-1).take(row_of * num_cells + columns) / self.cell_sizes.take(columns)
        with warnings.catch_warnings():  # "sparse CSR support is in beta": the product is all we use
            warnings.simplefilter("ignore", UserWarning)
            weighted = torch.sparse_csr_tensor(row_starts, columns, values, (n, num_cells))
        self._overlaps = torch.sparse.mm(weighted, self.counts.T.contiguous())

    def word_views(self) -> list[torch.Tensor] | None:
        """Each sample's masks as int64 words of 8 pixels ``[N_k, H, W / 8]`` (views, no copy),
        or None where the width or the memory layout does not allow it."""
        if "words" not in self._cache:
            words = None
            if self.image_size[1] % 8 == 0 and all(masks.is_contiguous() for masks in self.masks):
                try:
                    words = [masks.view(torch.uint8).view(torch.int64) for masks in self.masks]
                except RuntimeError:
                    words = None
            self._cache["words"] = words
        return self._cache["words"]

    def row_lists(self) -> tuple[list[int], list[int]]:
        """Sample and mask index of every row as Python lists (for per-row loops)."""
        if "rows" not in self._cache:
            self._cache["rows"] = (self.sample_index.tolist(), self.mask_index.tolist())
        return self._cache["rows"]

    def window(self, row: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
        """Pixels of one row inside a window, bool ``[y1 - y0, x1 - x0]``: a single strided
        view when the sample tensor is contiguous (the hot loops call this a lot)."""
        samples, indices = self.row_lists()
        base = self.masks[samples[row]]
        if not base.is_contiguous():
            return base[indices[row], y0:y1, x0:x1]
        _, height, width = base.shape
        offset = base.storage_offset() + (indices[row] * height + y0) * width + x0
        return torch.as_strided(base, (y1 - y0, x1 - x0), (width, 1), offset)

    def word_window(self, row: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
        """Like `window` as int64 words of 8 pixels (``x0``, ``x1`` multiples of 8; only when
        `word_views` is not None)."""
        samples, indices = self.row_lists()
        base = self.word_views()[samples[row]]
        _, height, width = base.shape
        offset = base.storage_offset() + (indices[row] * height + y0) * width + x0 // 8
        return torch.as_strided(base, (y1 - y0, (x1 - x0) // 8), (width, 1), offset)

    def intersection(self, a: int, b: int, y0: int, x0: int, y1: int, x1: int) -> int:
        """Exact pixel count of rows ``a`` and ``b`` both set inside a window."""
        if x0 % 8 == 0 and x1 % 8 == 0 and self.word_views() is not None:
            both = self.word_window(a, y0, x0, y1, x1) & self.word_window(b, y0, x0, y1, x1)
            return int(both.view(torch.uint8).sum(dtype=torch.int64))  # bytes are 0 or 1
        return int((self.window(a, y0, x0, y1, x1) & self.window(b, y0, x0, y1, x1)).sum())

    def pixel_box(self, row0: int, col0: int, row1: int, col1: int) -> tuple[int, int, int, int]:
        """A cell box in pixels ``(y0, x0, y1, x1)``, clipped to the image."""
        height, width = self.image_size
        return (row0 * self.pool, col0 * self.pool, min(row1 * self.pool, height), min(col1 * self.pool, width))

    def crops(self, rows: Sequence[int], y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
        """Full-resolution pixels of some rows inside one window, bool ``[len(rows), y1-y0, x1-x0]``.

        One indexing operation per sample involved, never a copy of whole masks."""
        rows = [int(r) for r in rows]
        if not rows:
            return torch.zeros((0, y1 - y0, x1 - x0), dtype=torch.bool, device=self.device)
        samples = self.sample_index[rows].tolist()
        indices = self.mask_index[rows].tolist()
        by_sample: dict[int, list[int]] = {}
        for position, sample in enumerate(samples):
            by_sample.setdefault(sample, []).append(position)
        pieces, order = [], []
        for sample, positions in by_sample.items():
            wanted = torch.tensor([indices[i] for i in positions], device=self.device)
            pieces.append(self.masks[sample][:, y0:y1, x0:x1][wanted])
            order.extend(positions)
        stacked = torch.cat(pieces) if len(pieces) > 1 else pieces[0]
        if order == list(range(len(rows))):
            return stacked
        inverse = torch.empty(len(order), dtype=torch.long, device=self.device)
        inverse[torch.tensor(order, device=self.device)] = torch.arange(len(order), device=self.device)
        return stacked[inverse]

    def subset(self, keep: torch.Tensor) -> "PreparedSamples":
        """The same samples restricted to some rows (the cached overlaps are restricted too)."""
        overlaps = None if self._overlaps is None else self._overlaps[keep][:, keep]
        cell_lists = None if self._cell_lists is None else self._cell_lists[keep]
        cache = {} if cell_lists is None else {"lengths": self._cache["lengths"][keep]}
        return PreparedSamples(
            masks=self.masks, score_threshold=self.score_threshold, pool=self.pool,
            sample_index=self.sample_index[keep], mask_index=self.mask_index[keep],
            scores=self.scores[keep], labels=self.labels[keep], counts=self.counts[keep],
            areas=self.areas[keep], cell_boxes=self.cell_boxes[keep], cell_sizes=self.cell_sizes,
            _overlaps=overlaps, _cell_lists=cell_lists, _cache=cache,
        )

    def with_threshold(self, score_threshold: float) -> "PreparedSamples":
        """Rows with score > ``score_threshold`` (only raising the threshold is possible)."""
        score_threshold = check_number("score_threshold", score_threshold)
        if score_threshold == self.score_threshold:
            return self
        if score_threshold < self.score_threshold:
            raise ValueError(
                f"these samples were prepared with score_threshold={self.score_threshold}; "
                f"prepare them again for the lower threshold {score_threshold}"
            )
        result = self.subset(torch.nonzero(self.scores > score_threshold).flatten())
        result.score_threshold = score_threshold
        return result


def _as_list(name: str, value, num_samples: int | None) -> list:
    if isinstance(value, torch.Tensor) or not isinstance(value, (list, tuple)):
        raise ValueError(f"{name} must be a list with one tensor per sample, got {type(value).__name__}")
    if num_samples is not None and len(value) != num_samples:
        raise ValueError(f"{name} has {len(value)} entries but masks has {num_samples} samples")
    return list(value)


def validate_samples(
    masks: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor] | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
    """Check K samples of one image; a ValueError names the first problem found.

    Returns the masks, scores as float64 and labels as int64 (all ones when not given)."""
    masks = _as_list("masks", masks, None)
    if not masks:
        raise ValueError("masks is empty: at least one sample is needed")
    scores = _as_list("scores", scores, len(masks))
    labels = None if labels is None else _as_list("labels", labels, len(masks))
    device = masks[0].device if isinstance(masks[0], torch.Tensor) else None
    size = None
    out_scores, out_labels = [], []
    for k, sample_masks in enumerate(masks):
        if not isinstance(sample_masks, torch.Tensor):
            raise ValueError(f"masks[{k}] is a {type(sample_masks).__name__}, not a tensor")
        if sample_masks.dtype != torch.bool:
            raise ValueError(f"masks[{k}] must be boolean, got dtype {sample_masks.dtype}")
        if sample_masks.dim() != 3:
            raise ValueError(f"masks[{k}] must have shape [N, H, W], got {tuple(sample_masks.shape)}")
        if sample_masks.device != device:
            raise ValueError(f"masks[{k}] is on {sample_masks.device}, masks[0] on {device}")
        if size is None:
            size = tuple(sample_masks.shape[1:])
            if size[0] == 0 or size[1] == 0:
                raise ValueError(f"masks have an empty image size {size}")
        elif tuple(sample_masks.shape[1:]) != size:
            raise ValueError(
                f"masks of different sizes: masks[{k}] is {tuple(sample_masks.shape[1:])}, masks[0] is {size}"
            )
        count = int(sample_masks.shape[0])
        sample_scores = scores[k]
        if not isinstance(sample_scores, torch.Tensor) or sample_scores.dim() != 1 or sample_scores.numel() != count:
            shape = tuple(sample_scores.shape) if isinstance(sample_scores, torch.Tensor) else type(sample_scores).__name__
            raise ValueError(f"scores[{k}] must have shape [{count}] to match masks[{k}], got {shape}")
        if sample_scores.is_complex() or sample_scores.dtype == torch.bool:
            raise ValueError(f"scores[{k}] must be real numbers, got dtype {sample_scores.dtype}")
        sample_scores = sample_scores.to(device=device, dtype=torch.float64)
        if not torch.isfinite(sample_scores).all():
            raise ValueError(f"scores[{k}] contains NaN or infinite values")
        out_scores.append(sample_scores)
        if labels is None:
            out_labels.append(torch.ones(count, dtype=torch.int64, device=device))
        else:
            sample_labels = labels[k]
            if not isinstance(sample_labels, torch.Tensor) or sample_labels.dim() != 1 or sample_labels.numel() != count:
                shape = tuple(sample_labels.shape) if isinstance(sample_labels, torch.Tensor) else type(sample_labels).__name__
                raise ValueError(f"labels[{k}] must have shape [{count}] to match masks[{k}], got {shape}")
            if sample_labels.is_floating_point() or sample_labels.is_complex():
                raise ValueError(f"labels[{k}] must be integers, got dtype {sample_labels.dtype}")
            out_labels.append(sample_labels.to(device=device, dtype=torch.int64))
    return masks, out_scores, out_labels


def prepare_samples(
    masks: Sequence[torch.Tensor],
    scores: Sequence[torch.Tensor],
    labels: Sequence[torch.Tensor] | None = None,
    score_threshold: float | None = 0.1,
    pool: int = DEFAULT_POOL,
) -> PreparedSamples:
    """Validate K samples and summarise every mask with score > ``score_threshold``
    (None keeps every mask).

    ``pool`` is the block size of the candidate scoring (the authors use 8; 1 scores
    candidates exactly at full resolution, at a much higher cost)."""
    if isinstance(pool, bool) or not isinstance(pool, int) or pool < 1:
        raise ValueError(f"pool must be a positive integer, got {pool!r}")
    score_threshold = -math.inf if score_threshold is None else check_number("score_threshold", score_threshold)
    masks, scores, labels = validate_samples(masks, scores, labels)
    device = masks[0].device
    height, width = int(masks[0].shape[1]), int(masks[0].shape[2])
    rows, cols = grid_shape(height, width, pool)

    sample_index, mask_index, kept_counts = [], [], []
    for k, sample_masks in enumerate(masks):
        keep = torch.nonzero(scores[k] > score_threshold).flatten()
        if keep.numel() == 0:
            continue
        chosen = sample_masks if keep.numel() == sample_masks.shape[0] else sample_masks[keep]
        kept_counts.append(block_counts(chosen, pool).flatten(1))
        sample_index.append(torch.full((keep.numel(),), k, dtype=torch.int64, device=device))
        mask_index.append(keep)
    if kept_counts:
        counts = torch.cat(kept_counts).to(torch.float32)
        sample_index_t = torch.cat(sample_index)
        mask_index_t = torch.cat(mask_index)
    else:
        counts = torch.zeros((0, rows * cols), dtype=torch.float32, device=device)
        sample_index_t = torch.zeros(0, dtype=torch.int64, device=device)
        mask_index_t = torch.zeros(0, dtype=torch.int64, device=device)
    all_scores = torch.cat(scores) if scores else torch.zeros(0, dtype=torch.float64)
    all_labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    offsets = torch.tensor([0] + [int(m.shape[0]) for m in masks], device=device).cumsum(0)
    flat = offsets[sample_index_t] + mask_index_t
    areas = counts.sum(dim=1, dtype=torch.float64)
    nonempty = torch.nonzero(areas > 0).flatten()
    prepared = PreparedSamples(
        masks=masks,
        score_threshold=score_threshold,
        pool=pool,
        sample_index=sample_index_t,
        mask_index=mask_index_t,
        scores=all_scores[flat],
        labels=all_labels[flat],
        counts=counts,
        areas=areas,
        cell_boxes=occupied_cell_boxes(counts.view(-1, rows, cols)),
        cell_sizes=cell_areas(height, width, pool, device).flatten().to(torch.float32),
    )
    if nonempty.numel() != len(prepared):
        prepared = prepared.subset(nonempty)
    return prepared
