"""Paired bootstrap over images: confidence intervals for differences between methods.

Every method is measured on the same images, so a difference is resampled by drawing images
(with replacement) and recomputing every method's number on the same draw: the pairing keeps the
image-to-image variation that all methods share out of the interval. A draw is represented by
its multiplicity weights (how often each image was drawn), so data-set numbers that are ratios
of sums (D / N, pickable area) become weighted sums, for all draws at once in one matrix product.

Seeded: the same ``(images, resamples, seed)`` always gives the same draws, so a rerun prints the
same intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from latent_maskrcnn.evaluation.comparison_defaults import BOOTSTRAP_CONFIDENCE, BOOTSTRAP_RESAMPLES

DEFAULT_RESAMPLES = BOOTSTRAP_RESAMPLES
DEFAULT_CONFIDENCE = BOOTSTRAP_CONFIDENCE
MAX_UNDEFINED_FRACTION = 0.01
"""An interval is only given when the statistic is defined on all but this share of the draws
(e.g. a curve that does not reach the matched operating point in some draws)."""


def bootstrap_weights(images: int, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> np.ndarray:
    """``[resamples, images]`` int64: row b holds how often each image was drawn in draw b
    (``images`` draws with replacement, so every row sums to ``images``)."""
    if isinstance(images, bool) or not isinstance(images, (int, np.integer)) or images < 1:
        raise ValueError(f"the bootstrap needs at least one image, got {images!r}")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, images, size=(resamples, images))
    weights = np.zeros((resamples, images), dtype=np.int64)
    np.add.at(weights, (np.arange(resamples)[:, None], draws), 1)
    return weights


def percentile_interval(values: np.ndarray, confidence: float = DEFAULT_CONFIDENCE) -> tuple[float, float]:
    """The central ``confidence`` interval of ``values`` (percentile method; NaNs ignored)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("no defined value to take an interval of")
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class BootstrapEstimate:
    """A statistic on all images (``estimate``) and its paired-bootstrap interval.

    ``low`` / ``high`` are None when the statistic is undefined on the data itself, or on more
    than `MAX_UNDEFINED_FRACTION` of the draws (``undefined`` of ``resamples``)."""

    estimate: float | None
    low: float | None
    high: float | None
    resamples: int
    undefined: int
    confidence: float = DEFAULT_CONFIDENCE

    @property
    def excludes_zero(self) -> bool:
        return self.low is not None and self.high is not None and (self.low > 0.0 or self.high < 0.0)

    def to_dict(self) -> dict:
        return {"estimate": self.estimate, "low": self.low, "high": self.high, "resamples": self.resamples,
                "undefined_resamples": self.undefined, "confidence": self.confidence}

    @classmethod
    def from_dict(cls, data: dict) -> "BootstrapEstimate":
        return cls(data["estimate"], data["low"], data["high"], int(data["resamples"]), int(data["undefined_resamples"]),
                   float(data.get("confidence", DEFAULT_CONFIDENCE)))


def paired_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    images: int,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> BootstrapEstimate:
    """``statistic(weights)`` takes image weights ``[B, images]`` and returns ``[B]`` values (NaN
    where undefined); it is called once with all-ones weights (the data as measured) and once with
    the seeded draws. Returns the estimate and its percentile interval."""
    point = _as_values(statistic(np.ones((1, images), dtype=np.int64)), 1)[0]
    estimate = float(point) if math.isfinite(point) else None
    draws = _as_values(statistic(bootstrap_weights(images, resamples, seed)), resamples)
    undefined = int(np.sum(~np.isfinite(draws)))
    if estimate is None or undefined > MAX_UNDEFINED_FRACTION * resamples:
        return BootstrapEstimate(estimate, None, None, resamples, undefined, confidence)
    low, high = percentile_interval(draws, confidence)
    return BootstrapEstimate(estimate, low, high, resamples, undefined, confidence)


def _as_values(values, count: int) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    if values.shape != (count,):
        raise ValueError(f"the statistic must return one value per draw ({count}), got shape {values.shape}")
    return values
