"""PNG pictures of an evaluation: Fig. 5, Fig. 8 and a grid of sample segmentations.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display needed).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _finite(value) -> bool:
    return value is not None and np.isfinite(value)


def plot_double_pick(report: dict, path: str | Path) -> None:
    """Fig. 5: double-pick rate (percent) against pickable area, one point per p, MaskRCNN
    (and the other single-prediction methods) beside."""
    figure = _figure(6.0, 4.5)
    axes = figure.add_subplot(1, 1, 1)
    curve = [row for row in report["confidence_mask_curve"] if _finite(row["double_pick_rate"]) and _finite(row["pickable_area"])]
    if curve:
        xs = [100.0 * row["double_pick_rate"] for row in curve]
        ys = [row["pickable_area"] for row in curve]
        axes.plot(xs, ys, "o-", color="tab:orange", label="p-Confidence Mask")
        for row, x, y in zip(curve, xs, ys):
            axes.annotate(f"{row['p']:.1f}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    markers = {"maskrcnn": ("s", "tab:blue", "MaskRCNN"), "latent_prior_mean": ("^", "tab:green", "Latent Prior Mean")}
    curves = report.get("operating_curves") or {}
    for key, (marker, colour, label) in markers.items():
        point = report["reference_points"].get(key)
        if point and _finite(point["double_pick_rate"]) and _finite(point["pickable_area"]):
            label = f"{label} (mask threshold {report['settings'].get('mask_threshold', 0.5):g})" if curves else label
            axes.plot([100.0 * point["double_pick_rate"]], [point["pickable_area"]], marker, color=colour, markersize=9, label=label)
    plot_threshold_curves(axes, curves)
    if not axes.lines:
        axes.text(0.5, 0.5, "no gripper circle fell inside exactly one predicted mask",
                  ha="center", va="center", transform=axes.transAxes, fontsize=9)
    axes.set_xlabel("Double Pick Rate % (lower better)")
    axes.set_ylabel("Pickable area: predicted / ground-truth item pixels")
    axes.set_title("Double Pick Rate VS Pickable Area")
    axes.grid(alpha=0.3)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="best", fontsize=7 if curves else None)
    figure.tight_layout()
    figure.savefig(path)


THRESHOLD_CURVE_STYLES = {
    "maskrcnn": ("s", "-", "tab:blue"),
    "maskrcnn_mirror": ("s", "--", "tab:cyan"),
    "prior_mean": ("^", "-", "tab:green"),
    "prior_mean_mirror": ("^", "--", "tab:olive"),
}


def plot_threshold_curves(axes, curves: dict) -> None:
    """The baselines' operating curves over the mask threshold (``report["operating_curves"]``),
    each point labelled with its threshold at the ends and every other point."""
    for method, (marker, line, colour) in THRESHOLD_CURVE_STYLES.items():
        curve = curves.get(method)
        if not curve:
            continue
        points = [p for p in curve["points"] if _finite(p.get("double_pick_rate")) and _finite(p.get("pickable_area"))]
        if not points:
            continue
        xs = [100.0 * p["double_pick_rate"] for p in points]
        ys = [p["pickable_area"] for p in points]
        axes.plot(xs, ys, marker + line, color=colour, markersize=4, linewidth=1.2,
                  label=f"{curve['label']} over the mask threshold")
        for index, (point, x, y) in enumerate(zip(points, xs, ys)):
            if index % 2 == 0 or index == len(points) - 1:
                axes.annotate(f"{point[curve['knob']]:g}", (x, y), textcoords="offset points", xytext=(-14, -9),
                              fontsize=6, color=colour)


def plot_score_quality(report: dict, metrics: dict, path: str | Path) -> None:
    """Fig. 8: left, score against IoU with the closest ground truth for every prediction of
    MaskRCNN and of the confidence masks at the table's p; right, the fraction of predictions
    with IoP > 0.95 for each p, MaskRCNN as a horizontal line."""
    figure = _figure(11.0, 4.5)
    left, right = figure.add_subplot(1, 2, 1), figure.add_subplot(1, 2, 2)
    for key, colour, label in (("maskrcnn", "tab:blue", "MaskRCNN"), ("latent_confidence_mask", "tab:orange", "Confidence Mask")):
        if key not in metrics:
            continue
        images = metrics[key].images
        scores = np.concatenate([e.all_scores for e in images] or [np.zeros(0)])
        ious = np.concatenate([e.best_iou for e in images] or [np.zeros(0)])
        left.scatter(scores, ious, s=8, alpha=0.5, color=colour, label=label)
    left.set_xlim(0, 1.02)
    left.set_ylim(0, 1.02)
    left.set_xlabel("Score of predicted mask")
    left.set_ylabel("IoU(predicted, ground truth)")
    left.set_title("Predicted Score VS IoU")
    curve = [row for row in report["confidence_mask_curve"] if _finite(row["iop95_fraction"])]
    if curve:
        right.plot([row["p"] for row in curve], [row["iop95_fraction"] for row in curve], "o-", color="tab:orange", label="Confidence Mask")
    point = report["reference_points"].get("maskrcnn")
    if point and _finite(point["iop95_fraction"]):
        right.axhline(point["iop95_fraction"], color="tab:blue", linestyle="--", label="MaskRCNN")
    right.set_xlabel("p used in confidence mask")
    right.set_ylabel("Predictions with IoP > 0.95")
    right.set_title("Confidence Mask VS IoP Fraction")
    for axes in (left, right):
        axes.grid(alpha=0.3)
        if axes.get_legend_handles_labels()[0]:
            axes.legend(loc="best")
    figure.tight_layout()
    figure.savefig(path)


def overlay(image: torch.Tensor, masks: torch.Tensor, alpha: float = 0.55) -> np.ndarray:
    """The image (float [3, H, W]) with each instance mask tinted in its own colour, uint8 RGB."""
    from matplotlib import colormaps

    picture = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy().astype(np.float32).copy()
    palette = colormaps["tab20"]
    for index, mask in enumerate(masks.detach().cpu().numpy().astype(bool)):
        colour = np.asarray(palette(index % 20)[:3], dtype=np.float32)
        picture[mask] = (1 - alpha) * picture[mask] + alpha * colour
    return (picture * 255).round().astype(np.uint8)


def plot_sample_grid(rows: Sequence, path: str | Path) -> None:
    """One row per image: image, ground truth, MaskRCNN, latent samples, confidence masks."""
    columns = [("Image", None), ("Ground truth", "ground_truth")]
    if any(row.maskrcnn is not None for row in rows):
        columns.append(("MaskRCNN", "maskrcnn"))
    most_samples = max(len(row.samples) for row in rows)
    columns += [(f"Latent sample {k + 1}", k) for k in range(most_samples)]
    columns.append(("Confidence masks", "confidence"))
    figure = _figure(2.4 * len(columns), 2.2 * len(rows) + 0.4)
    for r, row in enumerate(rows):
        for c, (title, source) in enumerate(columns):
            axes = figure.add_subplot(len(rows), len(columns), r * len(columns) + c + 1)
            axes.set_axis_off()
            if r == 0:
                axes.set_title(title, fontsize=9)
            if source is None:
                picture = overlay(row.image, torch.zeros((0, *row.image.shape[1:]), dtype=torch.bool))
            elif isinstance(source, int):
                if source >= len(row.samples):
                    continue
                picture = overlay(row.image, row.samples[source])
            else:
                masks = getattr(row, source)
                if masks is None:
                    continue
                picture = overlay(row.image, masks)
            axes.imshow(picture)
    figure.tight_layout()
    figure.savefig(path)


CAUSE_COLOURS = {"pair_seam": "tab:red", "glare_split": "tab:pink", "pair_other": "tab:orange", "film": "tab:purple",
                 "glare_stripe": "tab:olive", "plain": "tab:blue", "unknown": "tab:gray"}


def plot_double_pick_causes(report: dict, path: str | Path) -> None:
    """Double-pick rate (percent) of every method and p as stacked bars of its causes, with
    the false-positive rate (circles on no item) as a second axis."""
    rows = report.get("double_pick_causes") or []
    figure = _figure(max(6.0, 0.55 * len(rows) + 2.0), 4.5)
    axes = figure.add_subplot(1, 1, 1)
    labels = [row["method"].replace("Confidence Mask p = ", "p ").replace("Latent ", "") for row in rows]
    positions = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for cause, colour in CAUSE_COLOURS.items():
        heights = np.array([100.0 * (row["causes"][cause]["rate"] or 0.0) for row in rows])
        if heights.any():
            axes.bar(positions, heights, bottom=bottom, color=colour, label=cause, width=0.7)
            bottom += heights
    axes.set_ylim(0, 1.45 * max(float(bottom.max()) if len(rows) else 0.0, 1e-3))  # room for the legends
    axes.set_ylabel("double-pick rate % (D / N), by cause")
    axes.set_xticks(positions)
    axes.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    rates = [row["false_positive_rate"] for row in rows]
    if any(_finite(rate) for rate in rates):
        other = axes.twinx()
        other.plot(positions, [100.0 * rate if _finite(rate) else np.nan for rate in rates], "k.--",
                   label="false positives (right)")
        other.set_ylabel("false-positive picks % (circles on no item)")
        finite = [100.0 * rate for rate in rates if _finite(rate)]
        other.set_ylim(0, 1.45 * max(max(finite), 1e-3))
        other.legend(loc="upper right", fontsize=8)
    if axes.get_legend_handles_labels()[0]:
        axes.legend(loc="upper left", fontsize=8, ncol=3)
    axes.set_title("Where the simulated double picks come from")
    figure.tight_layout()
    figure.savefig(path)
