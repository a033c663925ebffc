"""Algorithm 1 as one compiled CPU kernel (numba), for masks that live in host memory.

The greedy selection is sequential by nature: each step depends on the pixels the previous
steps claimed, and the work per step is a few thousand cell updates. As torch operations that
is hundreds of tiny kernel launches per step, so on the CPU the whole loop runs here as
machine code instead; on CUDA the vectorised torch version in `confidence_masks` runs.

Same definitions as there: rows are the prepared masks; per row the kernel keeps the
unclaimed pixels of each cell of its cell box (``remaining``), the free pixels per cell, and
the block estimate of |m_a ∩ m_b ∩ unclaimed| for every pair of rows whose boxes meet. A
candidate's support is, per sample, the row with the largest estimated overlap (first of
ties), its own sample first, then the ceil(p K) largest (stable); its pixel estimate is the
sum over its cells of the smallest remaining count in the support. The best candidate
(estimates rounded to 1e-9, then the lower row) is computed exactly at full resolution,
emitted if non-empty and above the threshold, and claimed; otherwise it is dropped for good.
With ``pool = 1`` every estimate is exact and this is exactly Algorithm 1.

Compiling these functions takes about 20 s; the machine code is cached on disk, so later
processes load it in well under a second. numba caches next to this file when that folder is
writable (a colcon or venv install), else in ``$XDG_CACHE_HOME/numba`` (``~/.cache/numba``),
or where ``NUMBA_CACHE_DIR`` says; when no location is writable the kernel is compiled in
every process instead of failing to import. A process that must answer quickly (the
segmentation node) compiles with :func:`compile_in_background` while the torch kernel serves:
:func:`compiled_ready` is what the "auto" kernel choice looks at.
"""
from __future__ import annotations

import threading
import time
from typing import Callable

import numpy as np

try:
    import numba
    from numba.typed import List as TypedList
except ImportError:  # pragma: no cover - numba is an install requirement; torch remains
    numba = None

AVAILABLE = numba is not None
TIE_SCALE = 1e9
# Where the compiled kernels are cached: a folder, or "" when nothing could be cached.
CACHE_PATH = ""


def _jit(function):
    global CACHE_PATH
    if not AVAILABLE:
        return function
    try:
        compiled = numba.njit(cache=True, nogil=True)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available": nothing writable
        return numba.njit(cache=False, nogil=True)(function)
    CACHE_PATH = getattr(getattr(compiled, "_cache", None), "cache_path", "") or CACHE_PATH
    return compiled


_not_ready = threading.Event()  # set while a background compilation runs, or after it failed


def compiled_ready() -> bool:
    """False while a background compilation (:func:`compile_in_background`) runs or after it
    failed; True otherwise (then a first call compiles or loads in the caller's thread)."""
    return AVAILABLE and not _not_ready.is_set()


def compile_in_background(
    warm_up: Callable[[], object], done: Callable[[float, BaseException | None], None] | None = None
) -> threading.Thread:
    """Run ``warm_up`` (a call that compiles or loads every kernel function) on a daemon thread.

    Until it succeeds :func:`compiled_ready` is False, so callers choosing "auto" use the torch
    kernel and never wait for the compiler; ``done(seconds, error)`` is called when it ends.
    """
    _not_ready.set()

    def run() -> None:
        start, error = time.perf_counter(), None
        try:
            warm_up()
            _not_ready.clear()
        except BaseException as caught:  # reported to the caller; the torch kernel remains
            error = caught
        if done is not None:
            done(time.perf_counter() - start, error)

    thread = threading.Thread(target=run, name="confidence_kernel_compile", daemon=True)
    thread.start()
    return thread


@_jit
def _initial_state(counts, cell_sizes, boxes, grid_cols):
    """Per-row remaining counts inside the cell boxes, the rows present in each cell (as
    positions into those counts) and the estimated pairwise overlaps."""
    n, num_cells = boxes.shape[0], cell_sizes.shape[0]
    offsets = np.zeros(n + 1, dtype=np.int64)
    for r in range(n):
        offsets[r + 1] = offsets[r] + (boxes[r, 2] - boxes[r, 0]) * (boxes[r, 3] - boxes[r, 1])
    remaining = np.empty(offsets[n], dtype=np.float64)
    per_cell = np.zeros(num_cells + 1, dtype=np.int64)
    for r in range(n):
        position = offsets[r]
        for cell_row in range(boxes[r, 0], boxes[r, 2]):
            for cell_col in range(boxes[r, 1], boxes[r, 3]):
                value = counts[r, cell_row * grid_cols + cell_col]
                remaining[position] = value
                if value > 0:
                    per_cell[cell_row * grid_cols + cell_col + 1] += 1
                position += 1
    # Rows present in each cell, in increasing row order (counting sort by cell).
    cell_starts = np.cumsum(per_cell)
    cell_rows = np.empty(cell_starts[num_cells], dtype=np.int64)
    cell_positions = np.empty(cell_starts[num_cells], dtype=np.int64)
    fill = cell_starts[:num_cells].copy()
    for r in range(n):
        position = offsets[r]
        for cell_row in range(boxes[r, 0], boxes[r, 2]):
            for cell_col in range(boxes[r, 1], boxes[r, 3]):
                if remaining[position] > 0:
                    cell = cell_row * grid_cols + cell_col
                    cell_rows[fill[cell]] = r
                    cell_positions[fill[cell]] = position
                    fill[cell] += 1
                position += 1
    overlap = np.zeros((n, n), dtype=np.float64)
    for cell in range(num_cells):
        for i in range(cell_starts[cell], cell_starts[cell + 1]):
            weighted = remaining[cell_positions[i]] / cell_sizes[cell]
            a = cell_rows[i]
            for j in range(i, cell_starts[cell + 1]):
                b = cell_rows[j]
                overlap[a, b] += weighted * remaining[cell_positions[j]]
    for a in range(n):
        for b in range(a + 1, n):
            overlap[b, a] = overlap[a, b]
    return offsets, remaining, cell_starts, cell_rows, cell_positions, overlap


@_jit
def _evaluate(row, support, overlap, remaining, offsets, boxes, row_sample, sample_starts,
              score_per_pixel, dead, chosen, estimate):
    """Support and estimated score of candidate ``row`` (-inf when unusable)."""
    num_samples = sample_starts.shape[0] - 1
    best_value = np.full(num_samples, -np.inf)
    best_row = np.full(num_samples, -1, dtype=np.int64)
    for k in range(num_samples):
        for b in range(sample_starts[k], sample_starts[k + 1]):
            if overlap[row, b] > best_value[k]:
                best_value[k] = overlap[row, b]
                best_row[k] = b
    own = row_sample[row]
    best_value[own] = np.inf
    best_row[own] = row
    used = np.zeros(num_samples, dtype=np.bool_)
    last_value = np.inf
    for slot in range(support):
        pick = -1
        for k in range(num_samples):
            if not used[k] and (pick < 0 or best_value[k] > best_value[pick]):
                pick = k
        used[pick] = True
        chosen[row, slot] = best_row[pick]
        last_value = best_value[pick]
    if dead[row] or not last_value > 0.0:
        estimate[row] = -np.inf
        return
    row0, col0, row1, col1 = boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3]
    size = (row1 - row0) * (col1 - col0)
    cols = col1 - col0
    smallest = remaining[offsets[row] : offsets[row] + size].copy()
    for slot in range(1, support):
        other = chosen[row, slot]
        other_row0, other_col0, other_row1, other_col1 = boxes[other, 0], boxes[other, 1], boxes[other, 2], boxes[other, 3]
        other_cols = other_col1 - other_col0
        left, right = max(col0, other_col0), min(col1, other_col1)
        for cell_row in range(row0, row1):
            line = smallest[(cell_row - row0) * cols : (cell_row - row0 + 1) * cols]
            if cell_row < other_row0 or cell_row >= other_row1 or left >= right:
                line[:] = 0.0
                continue
            line[: left - col0] = 0.0
            line[right - col0 :] = 0.0
            base = offsets[other] + (cell_row - other_row0) * other_cols - other_col0
            for cell_col in range(left, right):
                line[cell_col - col0] = min(line[cell_col - col0], remaining[base + cell_col])
    pixels = smallest.sum()
    if not pixels > 0.0:
        estimate[row] = -np.inf
        return
    weight = 0.0
    for slot in range(support):
        weight += score_per_pixel[chosen[row, slot]]
    estimate[row] = weight * pixels / support


@_jit
def _pixel_window(row, boxes, pool, height, width):
    """The row's cell box in pixels ``(y0, x0, y1, x1)``, clipped to the image."""
    return (boxes[row, 0] * pool, boxes[row, 1] * pool,
            min(boxes[row, 2] * pool, height), min(boxes[row, 3] * pool, width))


@_jit
def _exact(row, support, chosen, masks, row_sample, row_mask, claimed, boxes, pool, window, taken):
    """Full-resolution intersection of the support outside the claimed pixels, in ``window``
    (the row's cell box in pixels, one byte per pixel); ``taken`` gets its pixels per cell.
    Returns the pixel count."""
    height, width = claimed.shape
    y0, x0, y1, x1 = _pixel_window(row, boxes, pool, height, width)
    span, cols, row0 = x1 - x0, boxes[row, 3] - boxes[row, 1], boxes[row, 0]
    taken[:] = 0
    if pool == 8 and width % 8 == 0:
        # Eight pixels (one cell row) per 64-bit word; bytes are 0 or 1, so multiplying by
        # 0x0101010101010101 adds the eight bytes into the top byte.
        words, claimed_words = window.view(np.uint64), claimed.view(np.uint64)
        first = x0 // 8
        for y in range(y0, y1):
            for c in range(cols):
                words[y - y0, c] = ~claimed_words[y, first + c] & np.uint64(0x0101010101010101)
        for slot in range(support):
            other = chosen[row, slot]
            pixels = masks[row_sample[other]][row_mask[other]].view(np.uint64)
            for y in range(y0, y1):
                for c in range(cols):
                    words[y - y0, c] &= pixels[y, first + c]
        total = 0
        for y in range(y0, y1):
            base = (y // 8 - row0) * cols
            for c in range(cols):
                count = np.int64((words[y - y0, c] * np.uint64(0x0101010101010101)) >> np.uint64(56))
                taken[base + c] += count
                total += count
        return total
    for y in range(y0, y1):
        line, used = window[y - y0], claimed[y]
        for i in range(span):
            line[i] = 1 - used[x0 + i]
    for slot in range(support):
        other = chosen[row, slot]
        pixels = masks[row_sample[other]][row_mask[other]]
        for y in range(y0, y1):
            line, source = window[y - y0], pixels[y]
            for i in range(span):
                line[i] &= source[x0 + i]
    total = 0
    for y in range(y0, y1):
        line, base = window[y - y0], (y // pool - row0) * cols
        for i in range(span):
            taken[base + i // pool] += np.int64(line[i])
            total += np.int64(line[i])
    return total


@_jit
def _claim(row, support, chosen, index, boxes, remaining, free, overlap, cell_starts, cell_rows,
           cell_positions, grid_cols, pool, window, taken, claimed, owner, tight_box, member, present):
    """Mark the candidate in ``window`` as mask ``index``; update the free pixels of the
    claimed cells, the remaining pixels of every row present there and the overlaps among
    those rows; returns the rows that had pixels in the claimed cells (to re-score)."""
    height, width = owner.shape
    y0, x0, y1, x1 = _pixel_window(row, boxes, pool, height, width)
    row0, col0, row1, col1 = boxes[row, 0], boxes[row, 1], boxes[row, 2], boxes[row, 3]
    span = x1 - x0
    label = np.int32(index + 1)
    top, left, bottom, right = height, width, -1, -1
    for y in range(y0, y1):
        line, used, target = window[y - y0], claimed[y], owner[y]
        any_set = 0
        for i in range(span):
            used[x0 + i] |= line[i]
            target[x0 + i] += line[i] * label  # the window holds only unclaimed pixels
            any_set |= line[i]
        if any_set:
            top, bottom = min(top, y), y
            first = 0
            while not line[first]:
                first += 1
            last = span - 1
            while not line[last]:
                last -= 1
            left, right = min(left, x0 + first), max(right, x0 + last)
    tight_box[0], tight_box[1], tight_box[2], tight_box[3] = left, top, right + 1, bottom + 1

    for slot in range(support):
        member[chosen[row, slot]] = True
    most = 0
    for cell_row in range(row0, row1):
        for cell_col in range(col0, col1):
            cell = cell_row * grid_cols + cell_col
            most = max(most, cell_starts[cell + 1] - cell_starts[cell])
    old = np.empty(most)
    new = np.empty(most)
    touched = []
    cols = col1 - col0
    for local in range(taken.shape[0]):
        if taken[local] == 0:
            continue
        cell = (row0 + local // cols) * grid_cols + col0 + local % cols
        free_before = free[cell]
        free_after = free_before - taken[local]
        free[cell] = free_after
        first, last = cell_starts[cell], cell_starts[cell + 1]
        for i in range(first, last):
            value = remaining[cell_positions[i]]
            # A support mask contains the candidate, so it loses exactly what was taken; any
            # other mask loses its share of the cell.
            if member[cell_rows[i]]:
                updated = max(value - taken[local], 0.0)
            else:
                updated = value * free_after / free_before
            old[i - first], new[i - first] = value, updated
            remaining[cell_positions[i]] = updated
            if value > 0.0 and not present[cell_rows[i]]:
                present[cell_rows[i]] = True
                touched.append(cell_rows[i])
        weight_after = 1.0 / max(free_after, 1.0) if free_after > 0.0 else 0.0
        for i in range(last - first):
            if old[i] == 0.0:
                continue
            a = cell_rows[first + i]
            for j in range(i, last - first):
                if old[j] == 0.0:
                    continue
                b = cell_rows[first + j]
                delta = new[i] * new[j] * weight_after - old[i] * old[j] / free_before
                overlap[a, b] += delta
                if a != b:
                    overlap[b, a] += delta
    for slot in range(support):
        member[chosen[row, slot]] = False
    rescore = np.empty(len(touched), dtype=np.int64)
    for i in range(len(touched)):
        rescore[i] = touched[i]
        present[touched[i]] = False
    rescore.sort()
    return rescore


@_jit
def greedy_selection(masks, row_sample, row_mask, counts, cell_sizes, boxes, score_per_pixel,
                     sample_starts, support, threshold, pool, height, width, grid_cols):
    """Run Algorithm 1. Returns ``owner`` (int32 [H, W], 0 = unclaimed, i + 1 = mask i), and
    per emitted mask its row, support rows, exact score and tight (x1, y1, x2, y2) box."""
    n = boxes.shape[0]
    owner = np.zeros((height, width), dtype=np.int32)
    claimed = np.zeros((height, width), dtype=np.uint8)
    offsets, remaining, cell_starts, cell_rows, cell_positions, overlap = _initial_state(counts, cell_sizes, boxes, grid_cols)
    member = np.zeros(n, dtype=np.bool_)
    present = np.zeros(n, dtype=np.bool_)
    free = cell_sizes.astype(np.float64)
    chosen = np.zeros((n, support), dtype=np.int64)
    estimate = np.full(n, -np.inf)
    dead = np.zeros(n, dtype=np.bool_)
    emitted_rows = np.empty(n, dtype=np.int64)
    emitted_support = np.empty((n, support), dtype=np.int64)
    emitted_scores = np.empty(n, dtype=np.float64)
    emitted_boxes = np.empty((n, 4), dtype=np.int64)
    largest_box = 0
    for r in range(n):
        largest_box = max(largest_box, (boxes[r, 2] - boxes[r, 0]) * (boxes[r, 3] - boxes[r, 1]))
        _evaluate(r, support, overlap, remaining, offsets, boxes, row_sample, sample_starts,
                  score_per_pixel, dead, chosen, estimate)
    window = np.zeros((max(1, (boxes[:, 2] - boxes[:, 0]).max() if n else 1) * pool,
                       max(1, (boxes[:, 3] - boxes[:, 1]).max() if n else 1) * pool), dtype=np.uint8)
    taken = np.zeros(max(largest_box, 1), dtype=np.int64)
    emitted = 0
    # Each step emits a mask (claiming >= 1 pixel) or drops a candidate for good.
    for _ in range(n + height * width):
        best, best_key = -1, -np.inf
        for r in range(n):
            if estimate[r] == -np.inf:
                continue
            key = np.floor(estimate[r] * TIE_SCALE + 0.5)
            if best < 0 or key > best_key:
                best, best_key = r, key
        if best < 0 or not estimate[best] > threshold:
            break
        cells = (boxes[best, 2] - boxes[best, 0]) * (boxes[best, 3] - boxes[best, 1])
        pixels = _exact(best, support, chosen, masks, row_sample, row_mask, claimed, boxes, pool, window, taken[:cells])
        weight = 0.0
        for slot in range(support):
            weight += score_per_pixel[chosen[best, slot]]
        score = weight * pixels / support
        if pixels == 0 or not score > threshold:
            dead[best] = True
            estimate[best] = -np.inf
            continue
        emitted_rows[emitted] = best
        emitted_support[emitted] = chosen[best]
        emitted_scores[emitted] = score
        rescore = _claim(best, support, chosen, emitted, boxes, remaining, free, overlap, cell_starts, cell_rows,
                         cell_positions, grid_cols, pool, window, taken[:cells], claimed, owner, emitted_boxes[emitted],
                         member, present)
        emitted += 1
        for r in rescore:
            _evaluate(r, support, overlap, remaining, offsets, boxes, row_sample, sample_starts,
                      score_per_pixel, dead, chosen, estimate)
    return (owner, emitted_rows[:emitted].copy(), emitted_support[:emitted].copy(),
            emitted_scores[:emitted].copy(), emitted_boxes[:emitted].copy())


@_jit
def masks_from_owner(owner, boxes, out):
    """Write mask i (pixels with owner i + 1) into ``out[i]`` inside its tight box."""
    for i in range(boxes.shape[0]):
        for y in range(boxes[i, 1], boxes[i, 3]):
            for x in range(boxes[i, 0], boxes[i, 2]):
                if owner[y, x] == i + 1:
                    out[i, y, x] = True


@_jit
def _list_of(first):
    """A typed list holding ``first``. Built in compiled (and disk-cached) code: a typed list
    filled from Python compiles its methods again in every process (0.5 to 1 s, more on a busy
    CPU), which every command and the node paid on their first aggregation."""
    items = TypedList()
    items.append(first)
    return items


@_jit
def _append(items, array):
    items.append(array)


def mask_list(masks: list) -> "numba.typed.List":
    """The K bool mask tensors as a typed list of C-contiguous uint8 arrays (views when the
    tensors are contiguous, which model outputs are)."""
    arrays = [np.ascontiguousarray(sample_masks.numpy()).view(np.uint8) for sample_masks in masks]
    if not arrays:
        raise ValueError("no samples to aggregate")
    typed = _list_of(arrays[0])
    for array in arrays[1:]:
        _append(typed, array)
    return typed
