"""The matches of every scored image, pooled in a few contiguous arrays.

Data-set MR@HP, AR and AP (``latent_maskrcnn.evaluation.metrics``) pool the detections of all images in
image order and sort them by score, as COCOeval accumulates. Keeping one ``ImageEvaluation``
per image for that costs a dozen small NumPy arrays per image that live to the end of the
run; scattered between the large short-lived buffers of each frame (decoded images, ground
truth, CDR messages, decompressed bag chunks), they pin the freed heap space so glibc cannot
reuse it for the next frame's large buffers, and a long replay's resident memory grew by
~100-250 kB per pair although the kept data was ~1 kB per image. Here the same numbers are
appended to a handful of arrays that grow by doubling (few, large allocations), and
``evaluation()`` hands the metrics one ``ImageEvaluation`` holding all images in order, which
gives exactly the per-image list's MR@HP, AR and AP.
"""
from __future__ import annotations

from typing import Any

import numpy as np

_INITIAL_CAPACITY = 256


class _GrowingArray:
    """Rows appended at the end of a preallocated array, capacity doubled when full."""

    def __init__(self, dtype: Any, row_shape: tuple[int, ...] = ()) -> None:
        self._data = np.empty((_INITIAL_CAPACITY, *row_shape), dtype=dtype)
        self.size = 0

    def extend(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=self._data.dtype)
        if rows.shape[1:] != self._data.shape[1:]:
            raise ValueError(f"rows of shape {rows.shape[1:]} do not fit an array of rows {self._data.shape[1:]}")
        end = self.size + rows.shape[0]
        if end > self._data.shape[0]:
            capacity = max(end, 2 * self._data.shape[0])
            grown = np.empty((capacity, *self._data.shape[1:]), dtype=self._data.dtype)
            grown[: self.size] = self._data[: self.size]
            self._data = grown
        self._data[self.size : end] = rows
        self.size = end

    @property
    def capacity(self) -> int:
        return int(self._data.shape[0])

    def values(self) -> np.ndarray:
        """The rows appended so far (a view; valid until the next ``extend``)."""
        return self._data[: self.size]


class PooledMatches:
    """Scores, labels and per-threshold matches of the kept detections of all images, and the
    labels of all ground-truth instances, in image order."""

    def __init__(self) -> None:
        self.images = 0
        self._scores = _GrowingArray(np.float64)
        self._labels = _GrowingArray(np.int64)
        self._truth_labels = _GrowingArray(np.int64)
        self._matched: dict[str, _GrowingArray] = {}

    def __len__(self) -> int:
        return self.images

    @property
    def detections(self) -> int:
        return self._scores.size

    def capacities(self) -> dict[str, int]:
        """Allocated rows per array (they grow by doubling, so stay below twice the rows held)."""
        arrays = {"scores": self._scores, "labels": self._labels, "truth_labels": self._truth_labels}
        arrays.update({f"matched_{kind}": array for kind, array in self._matched.items()})
        return {name: array.capacity for name, array in arrays.items()}

    def add(self, evaluation: Any) -> None:
        """Append one image's ``latent_maskrcnn.evaluation.metrics.ImageEvaluation`` (its matches only)."""
        scores = np.asarray(evaluation.scores, dtype=np.float64).reshape(-1)
        labels = np.asarray(evaluation.labels, dtype=np.int64).reshape(-1)
        if labels.shape != scores.shape:
            raise ValueError(f"an evaluation has {scores.size} scores but {labels.size} labels")
        matched = {kind: np.asarray(flags, dtype=bool) for kind, flags in evaluation.matched.items()}
        for kind, flags in matched.items():
            if flags.ndim != 2 or flags.shape[1] != scores.size:
                raise ValueError(f"an evaluation's {kind} matches have shape {flags.shape}, expected [T, {scores.size}]")
        if self._matched and set(matched) != set(self._matched):
            raise ValueError(f"an evaluation has matches {sorted(matched)}, earlier ones {sorted(self._matched)}")
        for kind, flags in matched.items():
            # Stored one row per detection so that appending stays contiguous.
            self._matched.setdefault(kind, _GrowingArray(bool, (flags.shape[0],))).extend(flags.T)
        self._scores.extend(scores)
        self._labels.extend(labels)
        self._truth_labels.extend(np.asarray(evaluation.truth_labels, dtype=np.int64).reshape(-1))
        self.images += 1

    def evaluation(self) -> Any:
        """All images as one ``ImageEvaluation`` for ``metrics.mr_at_hp``, ``average_recall``
        and ``average_precision`` (which pool detections in image order and sort them stably
        by score, so the result equals that of the list of per-image evaluations)."""
        from latent_maskrcnn.evaluation.metrics import ImageEvaluation

        empty = np.zeros(0)
        return ImageEvaluation(
            image_id=0,
            height=0,
            width=0,
            scores=self._scores.values().copy(),
            labels=self._labels.values().copy(),
            matched={kind: array.values().T.copy() for kind, array in self._matched.items()},
            truth_labels=self._truth_labels.values().copy(),
            best_iou=empty,
            best_iop=empty,
            all_scores=empty,
            picks=None,
        )
