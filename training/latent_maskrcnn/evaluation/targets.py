"""The double-pick targets of the comparison with a MaskRCNN baseline, in one place, and their checks.

A model ships when its confidence masks cut double picks against MaskRCNN and the prior mean
while keeping Table I's orderings. Each check reads measured numbers (an evaluation report, or
the rows of a p sweep on a bag), compares them with the target as stated here, and returns one
line: the numbers, the target, and ``met`` / ``not met``, or why it could not be decided
(``no baseline``, ``not measured``). A threshold is never adjusted to the measurement.

The targets that compare methods' double picks ((a), (b2), the grasp target) are decided on a
*margin* (measured minus the limit, negative on the target's side) with its paired-bootstrap
interval when the measurement has per-image counts (`matched.linear_margin`): met only where the
interval lies below zero, not met where it lies above, and otherwise no difference measured, with
the number of scenes or grasps. Without an interval the point estimates decide, as stated.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from latent_maskrcnn.evaluation.bootstrap import BootstrapEstimate

TARGET_P = 0.9
"""The p of the confidence masks the targets speak of."""
MAX_DOUBLE_PICK_RATIO_TO_BASELINE = 0.5
"""(a) simulated double-pick rate of confidence masks at most this times the baseline's ..."""
MIN_PICKABLE_AREA_RATIO_TO_BASELINE = 0.6
"""(a) ... at a pickable area of at least this times the baseline's."""
MONOTONE_P_RANGE = (0.5, 1.0)
"""(b) over these p (inclusive) the double-pick rate must not rise."""
MAX_SEAM_COVERED_SPLIT = 0.1
"""(c) fraction of seamless pairs labelled as two whose confidence masks cover the seam."""
MAX_GRASP_DOUBLE_PICK_RATIO_TO_PRIOR_MEAN = 0.5
"""Grasps: share of chosen grasps that double-pick at p = TARGET_P, at most this times the prior mean's."""

MAX_DOUBLE_PICK_RATIO_TO_BEST_BASELINE = 0.6
"""(m1) D / N of the confidence masks at most this times the best baseline's at the same pickable
area (the best of MaskRCNN and the prior mean, each with and without the mirror view, over the
mask threshold): the target on the ambiguity benchmark (`make-dataset --preset ambiguity`)."""
MAX_GRASP_DOUBLE_PICK_RATIO_TO_MASKRCNN = 0.5
"""(m3) share of chosen grasps that double-pick at most this times thresholded MaskRCNN's at the
same pickable area, with at least its mean sealed cups."""

MET, NOT_MET, NO_BASELINE, NOT_MEASURED = "met", "not met", "no baseline", "not measured"
UNDECIDED = "no difference measured"

_TOLERANCE = 1e-9


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100.0 * value:.2f} %"


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


def _line(key: str, target: str, measured: str, status: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"key": key, "target": target, "measured": measured, "status": status,
            "met": {MET: True, NOT_MET: False}.get(status), "values": values}


def _verdict(ok: bool) -> str:
    return MET if ok else NOT_MET


def decide(point_ok: bool, margins: Sequence[BootstrapEstimate] | None = None, count: str = "") -> str:
    """`MET` / `NOT_MET` from the point estimates, or, with ``margins`` (each negative on the
    target's side), met only when every interval lies below zero, not met when one lies above
    zero, else `UNDECIDED` with ``count`` (the scenes or grasps behind it)."""
    if not margins:
        return _verdict(point_ok)
    if any(m.low is None or m.high is None for m in margins):
        return f"{UNDECIDED} (no interval{', ' + count if count else ''})"
    if all(m.high < 0.0 for m in margins):
        return MET
    if any(m.low > 0.0 for m in margins):
        return NOT_MET
    return f"{UNDECIDED} ({count})" if count else UNDECIDED


def _interval_text(margins: Sequence[BootstrapEstimate] | None, names: Sequence[str] = ("margin",),
                   scales: Sequence[tuple[float, str]] = ((100.0, " points"),)) -> str:
    """``; 95 % interval of <name>: low to high`` for each margin (percentage points or plain)."""
    if not margins:
        return ""
    parts = []
    for margin, name, (scale, unit) in zip(margins, names, scales):
        span = "none" if margin.low is None else f"{scale * margin.low:+.2f} to {scale * margin.high:+.2f}{unit}"
        parts.append(f"{name} {span}")
    return f"; {100 * margins[0].confidence:.0f} % interval of " + ", of ".join(parts)


def _curve_point(curve: Sequence[dict], p: float) -> dict | None:
    return next((row for row in curve if abs(float(row["p"]) - p) < _TOLERANCE), None)


def grasp_target(
    confidence_rate: float | None,
    prior_mean_rate: float | None,
    p: float = TARGET_P,
    margin: BootstrapEstimate | None = None,
    count: str = "",
) -> dict[str, Any]:
    """Share of chosen grasps that double-pick: confidence masks at ``p`` against the prior mean;
    ``margin``: share(confidence masks) - limit x share(prior mean) with its interval."""
    confidence_rate, prior_mean_rate = _number(confidence_rate), _number(prior_mean_rate)
    limit = MAX_GRASP_DOUBLE_PICK_RATIO_TO_PRIOR_MEAN
    target = f"grasp double-pick share at p = {TARGET_P:g} <= {limit:g} x the prior mean's"
    values = {"confidence_mask": confidence_rate, "prior_mean": prior_mean_rate,
              "ratio": _ratio(confidence_rate, prior_mean_rate)}
    measured = f"p = {p:g}: {_pct(confidence_rate)}, prior mean: {_pct(prior_mean_rate)}"
    margins = [margin] if margin is not None else None
    measured += _interval_text(margins, (f"share - {limit:g} x the prior mean's",))
    if abs(p - TARGET_P) > _TOLERANCE or confidence_rate is None or prior_mean_rate is None:
        return _line("grasps", target, measured, NOT_MEASURED, values)
    status = decide(confidence_rate <= limit * prior_mean_rate + _TOLERANCE, margins, count)
    return _line("grasps", target, measured, status, values)


def double_pick_targets(
    report: dict[str, Any], margins: Mapping[str, Sequence[BootstrapEstimate]] | None = None, count: str = ""
) -> list[dict[str, Any]]:
    """Targets (a)-(d) from an evaluation report (`runner.write_report`'s dict: ``confidence_mask_curve``,
    ``reference_points``, ``table_1``, ``table_3``, ``pair_probe``, ``settings``). Without a
    MaskRCNN baseline in it, the checks that need one say ``no baseline``. ``margins["a"]`` (D / N
    and area margins) and ``margins["b2"]`` decide those targets by their intervals (`decide`),
    ``count`` names the scenes behind them."""
    margins = margins or {}
    curve = report.get("confidence_mask_curve") or []
    points = report.get("reference_points") or {}
    baseline = points.get("maskrcnn")
    prior = points.get("latent_prior_mean")
    at_p = _curve_point(curve, TARGET_P)
    cm_rate = None if at_p is None else _number(at_p.get("double_pick_rate"))
    cm_area = None if at_p is None else _number(at_p.get("pickable_area"))
    lines = []

    # (a) double picks against the baseline, at a comparable pickable area
    target = (f"double-pick rate at p = {TARGET_P:g} <= {MAX_DOUBLE_PICK_RATIO_TO_BASELINE:g} x MaskRCNN's, "
              f"pickable area >= {MIN_PICKABLE_AREA_RATIO_TO_BASELINE:g} x MaskRCNN's")
    base_rate = None if baseline is None else _number(baseline.get("double_pick_rate"))
    base_area = None if baseline is None else _number(baseline.get("pickable_area"))
    values = {"double_pick_rate": cm_rate, "baseline_double_pick_rate": base_rate,
              "double_pick_ratio": _ratio(cm_rate, base_rate), "pickable_area": cm_area,
              "baseline_pickable_area": base_area, "pickable_area_ratio": _ratio(cm_area, base_area)}
    measured = (f"{_pct(cm_rate)} vs {_pct(base_rate)} (x {_fmt(values['double_pick_ratio'])}), "
                f"area {_fmt(cm_area)} vs {_fmt(base_area)} (x {_fmt(values['pickable_area_ratio'])})")
    if baseline is None:
        status = NO_BASELINE
    elif None in (cm_rate, cm_area, base_rate, base_area):
        status = NOT_MEASURED
    else:
        measured += _interval_text(margins.get("a"), ("D / N - 0.5 x MaskRCNN's", "0.6 x MaskRCNN's area - area"),
                                   ((100.0, " points"), (1.0, "")))
        status = decide(cm_rate <= MAX_DOUBLE_PICK_RATIO_TO_BASELINE * base_rate + _TOLERANCE
                        and cm_area + _TOLERANCE >= MIN_PICKABLE_AREA_RATIO_TO_BASELINE * base_area, margins.get("a"), count)
    lines.append(_line("a", target, measured, status, values))

    # (b1) the knob: the double-pick rate does not rise over p in MONOTONE_P_RANGE
    low, high = MONOTONE_P_RANGE
    span = sorted((row for row in curve if low - _TOLERANCE <= float(row["p"]) <= high + _TOLERANCE), key=lambda r: float(r["p"]))
    rates = [_number(row.get("double_pick_rate")) for row in span]
    target = f"double-pick rate non-increasing as p goes {low:.1f} -> {high:.1f}"
    measured = ", ".join(f"{float(row['p']):.2f}: {_pct(rate)}" for row, rate in zip(span, rates)) or "no p in range"
    values = {"p": [float(row["p"]) for row in span], "double_pick_rate": rates}
    if len(span) < 2 or any(rate is None for rate in rates):
        status = NOT_MEASURED
    else:
        status = _verdict(all(b <= a + _TOLERANCE for a, b in zip(rates, rates[1:])))
    lines.append(_line("b1", target, measured, status, values))

    # (b2) the p = 0.9 point below the prior-mean point (a lower double-pick rate)
    prior_rate = None if prior is None else _number(prior.get("double_pick_rate"))
    target = f"double-pick rate at p = {TARGET_P:g} below the prior mean's"
    values = {"double_pick_rate": cm_rate, "prior_mean_double_pick_rate": prior_rate}
    status = NOT_MEASURED if cm_rate is None or prior_rate is None else decide(cm_rate < prior_rate, margins.get("b2"), count)
    measured = f"{_pct(cm_rate)} vs prior mean {_pct(prior_rate)}" + _interval_text(margins.get("b2"), ("the difference",))
    lines.append(_line("b2", target, measured, status, values))

    lines.append(_seam_line(report))
    lines += _table_lines(report)
    return lines


def _fmt(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _seam_line(report: dict[str, Any]) -> dict[str, Any]:
    """(c) seam cover on pairs labelled as two, with MaskRCNN's beside it."""
    target = f"confidence masks at p = {TARGET_P:g} cover the seam in <= {MAX_SEAM_COVERED_SPLIT:g} of pairs labelled as two"
    probe = report.get("pair_probe")
    p = _number((report.get("settings") or {}).get("p"))
    if not probe:
        return _line("c", target, "probe not run", NOT_MEASURED, {})
    methods = probe.get("methods") or {}
    split = (probe.get("pairs_labelled") or {}).get("split", 0)
    covered = _number((methods.get("confidence_mask") or {}).get("seam_covered_split"))
    maskrcnn = _number((methods.get("maskrcnn") or {}).get("seam_covered_split"))
    values = {"pairs_labelled_two": split, "p": p, "seam_covered_split": covered, "maskrcnn_seam_covered_split": maskrcnn}
    beside = "no baseline" if "maskrcnn" not in methods else _pct(maskrcnn)
    measured = f"{_pct(covered)} of {split} pairs (MaskRCNN: {beside})"
    if p is None or abs(p - TARGET_P) > _TOLERANCE:
        return _line("c", target, f"probe ran at p = {p}", NOT_MEASURED, values)
    if not split or covered is None:
        return _line("c", target, measured, NOT_MEASURED, values)
    return _line("c", target, measured, _verdict(covered <= MAX_SEAM_COVERED_SPLIT + _TOLERANCE), values)


def _table_lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    """(d) Table I's orderings and Table III's ROC AUC, each against MaskRCNN."""
    table = {row["key"]: row for row in report.get("table_1") or []}
    auc = {row["key"]: _number(row.get("roc_auc")) for row in report.get("table_3") or []}
    has_baseline = "maskrcnn" in table
    names = {"maskrcnn": "MaskRCNN", "latent_union_nms": "Union-NMS", "latent_confidence_mask": "CM",
             "latent_prior_mean": "prior mean"}
    lines = []
    for key, column, best, label in (
        ("d1", "mr_at_hp", "latent_confidence_mask", "confidence masks best MR@HP"),
        ("d2", "ar_iog", "latent_union_nms", "Union-NMS best AR (IoG)"),
    ):
        values = {names[k]: _number(row.get(column)) for k, row in table.items()}
        measured = ", ".join(f"{name} {_fmt(value, 1)}" for name, value in values.items()) or "no table"
        mine = values.get(names[best])
        others = [value for name, value in values.items() if name != names[best]]
        if not has_baseline:
            status = NO_BASELINE
        elif mine is None or not others or any(value is None for value in others):
            status = NOT_MEASURED
        else:
            status = _verdict(all(mine >= value for value in others))
        lines.append(_line(key, label, measured, status, values))
    prior_map = _number(table.get("latent_prior_mean", {}).get("map"))
    base_map = _number(table.get("maskrcnn", {}).get("map"))
    values = {"prior_mean": prior_map, "maskrcnn": base_map}
    measured = f"{_fmt(prior_map, 1)} vs {_fmt(base_map, 1)}"
    status = NO_BASELINE if not has_baseline else (
        NOT_MEASURED if prior_map is None or base_map is None else _verdict(prior_map >= base_map))
    lines.append(_line("d3", "prior mean mAP >= MaskRCNN's", measured, status, values))
    cm_auc, base_auc = auc.get("latent_confidence_mask"), auc.get("maskrcnn")
    values = {"confidence_mask": cm_auc, "maskrcnn": base_auc}
    status = NO_BASELINE if "maskrcnn" not in auc else (
        NOT_MEASURED if cm_auc is None or base_auc is None else _verdict(cm_auc > base_auc))
    lines.append(_line("d4", "ROC AUC: confidence masks > MaskRCNN", f"{_fmt(cm_auc)} vs {_fmt(base_auc)}", status, values))
    return lines


def targets_markdown(lines: Sequence[dict[str, Any]]) -> list[str]:
    """The lines as a Markdown table (target, measured, result)."""
    rows = ["| | target | measured | result |", "| --- | --- | --- | --- |"]
    rows += [f"| {line['key']} | {line['target']} | {line['measured']} | {line['status']} |" for line in lines]
    return rows


def matched_targets(
    best_baseline: str | None,
    margins: Mapping[str, BootstrapEstimate],
    values: Mapping[str, float | None],
    count: str = "",
    grasp_count: str = "",
) -> list[dict[str, Any]]:
    """Targets at the confidence masks' pickable area, each decided on its interval:
    (m1) D / N <= 0.6 x the best baseline's (``margins["m1"]``: D / N - 0.6 x best);
    (m2) no worse than the best baseline (``margins["m2"]``: D / N - best; not met only where its
    interval lies above zero); (m3) chosen grasps that double-pick <= 0.5 x thresholded MaskRCNN's
    (``margins["m3"]``) with at least its mean sealed cups (``margins["m3_cups"]``: cups - its;
    not met where that interval lies below zero)."""
    lines = []
    best = best_baseline or "none"
    limit = MAX_DOUBLE_PICK_RATIO_TO_BEST_BASELINE
    target = f"D / N at the same pickable area <= {limit:g} x the best baseline's"
    m1 = margins.get("m1")
    measured = f"{_pct(values.get('confidence_mask'))} vs {best} {_pct(values.get('best_baseline'))}"
    if m1 is None:
        lines.append(_line("m1", target, measured, NO_BASELINE, dict(values)))
    else:
        measured += _interval_text([m1], (f"D / N - {limit:g} x the best's",))
        lines.append(_line("m1", target, measured, decide(m1.estimate is not None and m1.estimate <= 0, [m1], count),
                           dict(values)))
    m2 = margins.get("m2")
    target = "D / N at the same pickable area no worse than the best baseline's"
    if m2 is None or m2.low is None:
        lines.append(_line("m2", target, measured if m2 is None else measured + " (no interval)",
                           NO_BASELINE if m2 is None else NOT_MEASURED, dict(values)))
    else:
        text = f"{_pct(values.get('confidence_mask'))} vs {best} {_pct(values.get('best_baseline'))}"
        text += _interval_text([m2], ("the difference",))
        lines.append(_line("m2", target, text, NOT_MET if m2.low > 0.0 else MET, dict(values)))
    m3, cups = margins.get("m3"), margins.get("m3_cups")
    limit = MAX_GRASP_DOUBLE_PICK_RATIO_TO_MASKRCNN
    target = (f"chosen grasps that double-pick <= {limit:g} x thresholded MaskRCNN's at the same pickable area, "
              "with at least its mean sealed cups")
    text = (f"{_pct(values.get('grasp_confidence_mask'))} vs MaskRCNN {_pct(values.get('grasp_maskrcnn'))}; "
            f"sealed cups {_fmt(values.get('cups_confidence_mask'))} vs {_fmt(values.get('cups_maskrcnn'))}")
    if m3 is None or cups is None:
        lines.append(_line("m3", target, text, NO_BASELINE, dict(values)))
    else:
        text += _interval_text([m3, cups], (f"share - {limit:g} x MaskRCNN's", "cups - MaskRCNN's"),
                               ((100.0, " points"), (1.0, "")))
        fewer_cups = cups.high is not None and cups.high < 0.0
        status = NOT_MET if fewer_cups else decide(m3.estimate is not None and m3.estimate <= 0, [m3], grasp_count)
        lines.append(_line("m3", target, text, status, dict(values)))
    return lines
