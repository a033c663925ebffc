"""A method against baselines at the same operating point, with paired-bootstrap intervals.

The reference (a point of one `OperatingCurve`: the confidence masks at p = 0.9, or a new model)
fixes an operating point: its pickable area, its N, or its mean sealed cups (``axis``). Each
baseline's curve is read at that point by linear interpolation along its knob (`operating_curves
.crossing`), and each metric is compared there: difference = reference - baseline. Every draw of
the paired bootstrap (`bootstrap`) redraws the images, recomputes the reference's point and every
curve, and interpolates again, so the interval includes the uncertainty of the matching itself.

The verdict follows one rule: a method is *better* only where the interval of the difference
excludes zero; otherwise no difference was measured, said with the number of scenes (and of
chosen grasps for grasp metrics). The *best baseline* is the one with the lowest double-pick rate
at the reference's pickable area (the first axis and metric): the one a new model has to beat.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from latent_maskrcnn.evaluation.bootstrap import (
    DEFAULT_CONFIDENCE,
    DEFAULT_RESAMPLES,
    BootstrapEstimate,
    bootstrap_weights,
    paired_bootstrap,
)
from latent_maskrcnn.evaluation.operating_curves import METRICS, OperatingCurve, crossing, read_at

DEFAULT_AXES = ("pickable_area", "picks")
DEFAULT_METRICS = ("double_pick_rate", "double_pick_rate_on_items", "grasp_double_pick_rate", "mean_sealed_cups")
AXIS_METRICS = {"picks": ("double_pick_rate",)}
"""At equal N only D / N is compared (N and D / N share their circles); other axes compare all."""
BETTER, WORSE, NO_DIFFERENCE, NOT_REACHED = "better", "worse", "no difference measured", "not reached"


@dataclass(frozen=True)
class MatchedRow:
    """One baseline, one axis, one metric: the values at the matched point and the difference."""

    baseline: str
    axis: str
    metric: str
    reference_value: float | None
    baseline_value: float | None
    baseline_knob: float | None
    difference: BootstrapEstimate
    verdict: str
    sentence: str
    baseline_interval: BootstrapEstimate | None = None  # the baseline's own value at the point

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "axis": self.axis, "metric": self.metric,
                "reference_value": self.reference_value, "baseline_value": self.baseline_value,
                "baseline_knob": self.baseline_knob, "difference": self.difference.to_dict(),
                "verdict": self.verdict, "sentence": self.sentence,
                "baseline_interval": None if self.baseline_interval is None else self.baseline_interval.to_dict()}


@dataclass
class MatchedComparison:
    reference: str
    reference_knob: str
    reference_value: float
    reference_point: dict
    images: int
    grasps: int | None
    resamples: int
    seed: int
    confidence: float
    rows: list[MatchedRow] = field(default_factory=list)
    best_baseline: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    reference_intervals: dict[str, BootstrapEstimate] = field(default_factory=dict)  # metric -> its value

    def row(self, baseline: str, axis: str, metric: str) -> MatchedRow | None:
        return next((r for r in self.rows if (r.baseline, r.axis, r.metric) == (baseline, axis, metric)), None)

    def to_dict(self) -> dict:
        return {"reference": self.reference, "reference_knob": self.reference_knob,
                "reference_value": self.reference_value, "reference_point": self.reference_point,
                "images": self.images, "grasps": self.grasps, "resamples": self.resamples, "seed": self.seed,
                "confidence": self.confidence, "best_baseline": self.best_baseline, "labels": self.labels,
                "reference_intervals": {name: value.to_dict() for name, value in self.reference_intervals.items()},
                "rows": [row.to_dict() for row in self.rows]}


def comparison_from_dict(data: dict) -> MatchedComparison:
    """A `MatchedComparison` read back from its `to_dict` (e.g. from a results.json)."""
    comparison = MatchedComparison(
        data["reference"], data["reference_knob"], float(data["reference_value"]), dict(data["reference_point"]),
        int(data["images"]), data.get("grasps"), int(data["resamples"]), int(data["seed"]), float(data["confidence"]),
        best_baseline=data.get("best_baseline"), labels=dict(data.get("labels") or {}),
        reference_intervals={name: BootstrapEstimate.from_dict(value)
                             for name, value in (data.get("reference_intervals") or {}).items()})
    for row in data["rows"]:
        own = row.get("baseline_interval")
        comparison.rows.append(MatchedRow(
            row["baseline"], row["axis"], row["metric"], row["reference_value"], row["baseline_value"],
            row["baseline_knob"], BootstrapEstimate.from_dict(row["difference"]), row["verdict"], row["sentence"],
            None if own is None else BootstrapEstimate.from_dict(own)))
    return comparison


def linear_margin(
    terms: Sequence[tuple[float, OperatingCurve, float, str]],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> BootstrapEstimate:
    """``sum(coefficient * metric of curve at knob value)`` over ``terms`` with its paired-bootstrap
    interval: a target such as "D / N at most half of MaskRCNN's" is the margin
    ``D/N(confidence masks) - 0.5 D/N(MaskRCNN)``, met where its interval lies below zero."""
    if not terms:
        raise ValueError("a margin needs at least one term")
    images = terms[0][1].images
    if any(curve.images != images for _, curve, _, _ in terms):
        raise ValueError("a margin's curves must hold the same images")
    positions = [curve.index(value) for _, curve, value, _ in terms]

    def statistic(draws: np.ndarray) -> np.ndarray:
        return sum(coefficient * curve.metric(metric, draws)[position]
                   for (coefficient, curve, _, metric), position in zip(terms, positions))

    return paired_bootstrap(statistic, images, resamples, seed, confidence)


def verdict(difference: BootstrapEstimate, lower_is_better: bool) -> str:
    """`BETTER` / `WORSE` (the reference against the baseline) only when the interval of
    reference - baseline excludes zero; `NO_DIFFERENCE` otherwise; `NOT_REACHED` without one."""
    if difference.estimate is None or difference.low is None or difference.high is None:
        return NOT_REACHED
    if not difference.excludes_zero:
        return NO_DIFFERENCE
    reference_lower = difference.high < 0.0
    return BETTER if reference_lower == lower_is_better else WORSE


def matched_comparison(
    reference: OperatingCurve,
    reference_value: float,
    baselines: Sequence[OperatingCurve],
    axes: Sequence[str] = DEFAULT_AXES,
    metrics: Sequence[str] = DEFAULT_METRICS,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> MatchedComparison:
    """``reference`` at knob ``reference_value`` against every baseline curve, read at the
    reference's value of each axis (`METRICS` names). Metrics a curve has no counts for (grasps
    without a planner) are left out. All curves must hold the same images in the same order."""
    position = reference.index(reference_value)
    for curve in baselines:
        if curve.images != reference.images:
            raise ValueError(f"{curve.method} covers {curve.images} images, {reference.method} {reference.images}: "
                             "matched curves must hold the same images")
    for name in (*axes, *metrics):
        if name not in METRICS:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    images = reference.images
    if images == 0:
        raise ValueError("no image to compare on")
    weights = bootstrap_weights(images, resamples, seed)
    grasps = int(reference.total("grasps")[position]) if "grasps" in reference.counts else None
    point = {name: _finite(reference.metric(name)[position]) for name in METRICS if reference.has(name)}
    result = MatchedComparison(reference.method, reference.knob, float(reference_value), point, images, grasps,
                               resamples, seed, confidence,
                               labels={curve.method: curve.label or curve.method for curve in (reference, *baselines)})
    for curve in baselines:
        for axis in axes:
            if not (reference.has(axis) and curve.has(axis)):
                continue
            chosen = AXIS_METRICS.get(axis, metrics)
            for metric in [m for m in chosen if m in metrics and reference.has(m) and curve.has(m)]:
                result.rows.append(_row(reference, position, curve, axis, metric, weights, resamples, seed, confidence,
                                        images, grasps))
    for metric in [m for m in metrics if reference.has(m)]:
        result.reference_intervals[metric] = paired_bootstrap(
            lambda draws, metric=metric: reference.metric(metric, draws)[position], images, resamples, seed, confidence)
    result.best_baseline = best_baseline(result, axes[0] if axes else None, metrics[0] if metrics else None)
    return result


def _matched_statistic(reference: OperatingCurve, position: int, curve: OperatingCurve, axis: str, metric: str,
                       ratio: float = 1.0):
    """Per draw: the reference's ``metric`` minus ``ratio`` x the baseline's, read on its curve
    where its ``axis`` equals the reference's."""
    def statistic(draws: np.ndarray) -> np.ndarray:
        target = reference.metric(axis, draws)[position]
        segment, weight = crossing(curve.metric(axis, draws), target)
        return reference.metric(metric, draws)[position] - ratio * read_at(curve.metric(metric, draws), segment, weight)
    return statistic


def matched_margin(
    reference: OperatingCurve,
    reference_value: float,
    curve: OperatingCurve,
    ratio: float,
    metric: str = "double_pick_rate",
    axis: str = "pickable_area",
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> BootstrapEstimate:
    """``metric(reference) - ratio x metric(baseline)`` at the reference's ``axis`` value, with its
    paired-bootstrap interval: "D / N at most 0.6 x the best baseline's at the same pickable area"
    is met where the interval lies below zero."""
    if curve.images != reference.images:
        raise ValueError(f"{curve.method} covers {curve.images} images, {reference.method} {reference.images}")
    statistic = _matched_statistic(reference, reference.index(reference_value), curve, axis, metric, ratio)
    return paired_bootstrap(statistic, reference.images, resamples, seed, confidence)


def _row(reference, position, curve, axis, metric, weights, resamples, seed, confidence, images, grasps) -> MatchedRow:
    statistic = _matched_statistic(reference, position, curve, axis, metric)

    def own_value(draws: np.ndarray) -> np.ndarray:
        segment, weight = crossing(curve.metric(axis, draws), reference.metric(axis, draws)[position])
        return read_at(curve.metric(metric, draws), segment, weight)

    difference = paired_bootstrap(statistic, images, resamples, seed, confidence)
    baseline_interval = paired_bootstrap(own_value, images, resamples, seed, confidence)
    target = reference.metric(axis)[position]
    segment, weight = crossing(curve.metric(axis), target)
    baseline_value = _finite(read_at(curve.metric(metric), segment, weight))
    knob = _finite(read_at(np.asarray(curve.values, dtype=np.float64), segment, weight))
    spec = METRICS[metric]
    decided = verdict(difference, bool(spec.lower_is_better))
    reference_value = _finite(reference.metric(metric)[position])
    row = MatchedRow(curve.method, axis, metric, reference_value, baseline_value, knob, difference, decided, "",
                     baseline_interval)
    return MatchedRow(**{**row.__dict__, "sentence": sentence(row, reference.label or reference.method,
                                                              curve.label or curve.method, images, grasps)})


def _finite(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def best_baseline(result: MatchedComparison, axis: str | None, metric: str | None) -> str | None:
    """The baseline whose curve, read at the reference's ``axis`` value, has the best ``metric``."""
    rows = [r for r in result.rows if r.axis == axis and r.metric == metric and r.baseline_value is not None
            and r.verdict != NOT_REACHED]
    if not rows:
        return None
    lower = METRICS[metric].lower_is_better is not False
    chosen = min(rows, key=lambda r: r.baseline_value if lower else -r.baseline_value)
    return chosen.baseline


def _amount(metric: str, value: float | None) -> str:
    if value is None:
        return "n/a"
    if metric in ("double_pick_rate", "double_pick_rate_on_items", "grasp_double_pick_rate"):
        return f"{100.0 * value:.2f} %"
    return f"{value:.3f}" if metric != "picks" else f"{value:.0f}"


def _difference(metric: str, estimate: BootstrapEstimate) -> str:
    points = metric in ("double_pick_rate", "double_pick_rate_on_items", "grasp_double_pick_rate")
    scale, unit = (100.0, " points") if points else (1.0, "")

    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{scale * value:+.2f}"

    if estimate.estimate is None:
        return "n/a"
    if estimate.low is None:
        return f"{cell(estimate.estimate)}{unit} (no interval)"
    return f"{cell(estimate.estimate)}{unit} ({100 * estimate.confidence:.0f} % interval {cell(estimate.low)} to {cell(estimate.high)})"


def counts_note(metric: str, images: int, grasps: int | None) -> str:
    if metric.startswith("grasp") or metric == "mean_sealed_cups":
        return f"{images} scenes, {grasps if grasps is not None else 'n/a'} chosen grasps"
    return f"{images} scenes"


def sentence(row: MatchedRow, reference: str, baseline: str, images: int, grasps: int | None) -> str:
    """The row in words, by the rule: better only where the interval excludes zero."""
    metric = METRICS[row.metric].label
    axis = "the same " + METRICS[row.axis].label
    counts = counts_note(row.metric, images, grasps)
    if row.verdict == NOT_REACHED:
        return (f"{baseline} does not reach {reference}'s {METRICS[row.axis].label} on its curve "
                f"(or not in enough draws): no comparison of {metric}")
    measured = f"{metric} {_amount(row.metric, row.reference_value)} against {_amount(row.metric, row.baseline_value)}"
    change = _difference(row.metric, row.difference)
    if row.verdict == NO_DIFFERENCE:
        return f"at {axis}, no difference measured between {reference} and {baseline} in {metric} ({measured}, {change}; {counts})"
    winner, loser = (reference, baseline) if row.verdict == BETTER else (baseline, reference)
    return f"at {axis}, better in {metric}: {winner}, against {loser} ({measured}, {change}; {counts})"


TABLE_HEADER = ("baseline", "matched at", "baseline knob", "metric", "reference", "baseline", "difference", "verdict")


def comparison_cells(comparison: MatchedComparison) -> list[tuple[str, ...]]:
    """One tuple of `TABLE_HEADER` cells per row of the comparison."""
    labels = comparison.labels
    cells = []
    for row in comparison.rows:
        knob = "n/a" if row.baseline_knob is None else f"{row.baseline_knob:.3f}"
        verdict_text = row.verdict
        if row.verdict == NO_DIFFERENCE:
            verdict_text = f"{NO_DIFFERENCE} ({counts_note(row.metric, comparison.images, comparison.grasps)})"
        elif row.verdict in (BETTER, WORSE):
            verdict_text = f"reference {row.verdict}"
        cells.append((labels.get(row.baseline, row.baseline), METRICS[row.axis].label, knob, METRICS[row.metric].label,
                      _amount(row.metric, row.reference_value), _amount(row.metric, row.baseline_value),
                      _difference(row.metric, row.difference), verdict_text))
    return cells


AXIS_WORDS = {
    "pickable_area": "its pickable area fraction (predicted mask area over ground-truth area: over 1 where masks "
                     "cover floor or overlap)",
    "picks": "its N (circles inside exactly one mask)",
}


def comparison_intro(comparison: MatchedComparison) -> str:
    reference = comparison.labels.get(comparison.reference, comparison.reference)
    axes = list(dict.fromkeys(row.axis for row in comparison.rows)) or ["pickable_area"]
    where = " and at ".join(AXIS_WORDS.get(axis, METRICS[axis].label) for axis in axes)
    return (f"Reference: {reference} at {comparison.reference_knob} = {comparison.reference_value:g}; "
            f"each baseline read along its curve at the reference's {where.removeprefix('its ')}; difference = "
            f"reference - baseline with its paired-bootstrap {100 * comparison.confidence:.0f} % interval over "
            f"{comparison.images} scenes ({comparison.resamples} draws, seed {comparison.seed}).")


def best_baseline_lines(comparison: MatchedComparison, bullet: str = "- ") -> list[str]:
    if comparison.best_baseline is None:
        return []
    best = comparison.labels.get(comparison.best_baseline, comparison.best_baseline)
    return ([f"Best baseline (lowest D / N at the reference's pickable area): {best}."]
            + [f"{bullet}{row.sentence}" for row in comparison.rows if row.baseline == comparison.best_baseline])


def _with_interval(metric: str, value: float | None, interval: BootstrapEstimate | None) -> str:
    if interval is None or interval.low is None:
        return _amount(metric, value)
    return f"{_amount(metric, value)} ({_amount(metric, interval.low)} to {_amount(metric, interval.high)})"


POINT_METRICS = ("double_pick_rate", "double_pick_rate_on_items", "grasp_double_pick_rate", "mean_sealed_cups")


def point_table(comparison: MatchedComparison, axis: str = "pickable_area") -> list[tuple[str, ...]]:
    """Every method at the reference's ``axis`` value, each number with its own interval (the
    paper's Table II layout: rows are methods): header first."""
    metrics = [m for m in POINT_METRICS if m in comparison.reference_intervals]
    labels = comparison.labels
    table = [("method", f"{comparison.reference_knob} / mask threshold", *(METRICS[m].label for m in metrics))]
    table.append((labels.get(comparison.reference, comparison.reference), f"{comparison.reference_value:g}",
                  *(_with_interval(m, comparison.reference_point.get(m), comparison.reference_intervals[m])
                    for m in metrics)))
    for baseline in dict.fromkeys(row.baseline for row in comparison.rows if row.axis == axis):
        cells = []
        knob = None
        for metric in metrics:
            row = comparison.row(baseline, axis, metric)
            knob = knob if row is None or row.baseline_knob is None else row.baseline_knob
            reached = row is not None and row.verdict != NOT_REACHED
            cells.append(_with_interval(metric, row.baseline_value, row.baseline_interval) if reached else "not reached")
        table.append((labels.get(baseline, baseline), "n/a" if knob is None else f"{knob:.3f}", *cells))
    return table


def comparison_markdown(comparison: MatchedComparison) -> list[str]:
    """The matched comparison in Markdown: every method at the reference's pickable area with
    its own intervals (Table II layout), the differences (one row per baseline, axis and
    metric) and the best baseline's sentences."""
    points = point_table(comparison)
    lines = [comparison_intro(comparison), ""]
    if len(points) > 1:
        lines += [f"At the reference's pickable area fraction, each number with its {100 * comparison.confidence:.0f} % "
                  "interval:", "", "| " + " | ".join(points[0]) + " |", "| " + " | ".join("---" for _ in points[0]) + " |"]
        lines += ["| " + " | ".join(row) + " |" for row in points[1:]] + ["", "The differences:", ""]
    lines += ["| " + " | ".join(TABLE_HEADER) + " |", "| " + " | ".join("---" for _ in TABLE_HEADER) + " |"]
    lines += ["| " + " | ".join(cells) + " |" for cells in comparison_cells(comparison)]
    best = best_baseline_lines(comparison)
    return lines + ([""] + best if best else [])


def comparison_text(comparison: MatchedComparison) -> list[str]:
    """The same as aligned plain text, for a terminal."""
    lines = [comparison_intro(comparison), ""]
    points = point_table(comparison)
    if len(points) > 1:
        lines += _aligned(points) + [""]
    lines += _aligned([TABLE_HEADER, *comparison_cells(comparison)])
    best = best_baseline_lines(comparison, bullet="  ")
    return lines + ([""] + best if best else [])


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
