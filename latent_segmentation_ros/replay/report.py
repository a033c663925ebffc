"""Evaluation reports of replayed or recorded predictions: report.json, report.md, PNG overlays.

Per-frame rows are appended to ``frames.jsonl`` while the evaluation runs (so a run that stops
on a damaged bag keeps every row it produced) and copied into ``report.json`` at the end; the
aggregates are running sums, and only the few worst frames are kept in memory for pictures, so
a report of any length is written in constant memory.
"""
from __future__ import annotations

import heapq
import json
import math
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from latent_segmentation_ros.replay.pooled_matches import PooledMatches

FRAMES_FILE = "frames.jsonl"
REPORT_JSON = "report.json"
REPORT_MD = "report.md"


@dataclass
class FrameRecord:
    """Metrics of one camera image of one synchronised pair."""

    frame: int
    camera: str
    stamp_ns: int
    num_predictions: int
    latency_ms: float | None = None
    has_ground_truth: bool = False
    num_ground_truth: int = 0
    mr_at_hp: float | None = None
    ar_iog: float | None = None
    map: float | None = None
    # None where the image has no ground truth: unknown, not zero.
    picks: int | None = None
    double_picks: int | None = None
    double_pick_rate: float | None = None
    predicted_area: int = 0  # pixels of the union of the predicted masks (known without ground truth)
    ground_truth_area: int | None = None
    pickable_area: float | None = None
    grasp_found: bool = False
    grasp_sealed_cups: int | None = None
    grasp_total_cups: int | None = None
    grasp_sealed_cups_on_truth: int | None = None
    grasp_items_touched: int | None = None
    grasp_double_pick: bool | None = None
    # latent_maskrcnn.evaluation.metrics.ImageEvaluation of the image: kept for the data-set metrics.
    evaluation: Any = field(default=None, repr=False, compare=False)

    def as_dict(self) -> dict[str, Any]:
        row = {name: getattr(self, name) for name in ROW_FIELDS}
        return row

    def badness(self) -> tuple:
        """Sort key of how bad a frame is for a picking robot (largest = worst)."""
        return (
            bool(self.grasp_double_pick),
            self.double_pick_rate or 0.0,
            -(self.mr_at_hp if self.mr_at_hp is not None else 1.0),
            -(self.pickable_area if self.pickable_area is not None else 1.0),
        )


ROW_FIELDS = [f for f in FrameRecord.__dataclass_fields__ if f != "evaluation"]


def _number(value: float | None) -> float | None:
    """JSON-safe: NaN (no ground truth, no pick) becomes None."""
    if value is None or not math.isfinite(float(value)):
        return None
    return float(value)


@dataclass
class ReportAccumulator:
    """Running aggregates over frames (sums, counts, latencies)."""

    images: int = 0
    images_with_ground_truth: int = 0
    picks: int = 0
    double_picks: int = 0
    predicted_area: int = 0
    ground_truth_area: int = 0
    grasps: int = 0
    grasp_sealed_cups: int = 0
    grasp_sealed_cups_on_truth: int = 0
    grasp_double_picks: int = 0
    grasps_scored: int = 0
    # The per-image matches the data-set MR@HP / AR / AP need, pooled (see pooled_matches).
    matches: PooledMatches = field(default_factory=PooledMatches)
    _latency: dict[int, float] = field(default_factory=dict)
    latencies: array = field(default_factory=lambda: array("d"))

    def add(self, record: FrameRecord) -> None:
        self.images += 1
        if record.latency_ms is not None and record.frame not in self._latency:
            # One latency per pair (both cameras share one pipeline call).
            self.latencies.append(record.latency_ms)
            self._latency[record.frame] = record.latency_ms
            if len(self._latency) > 4:
                self._latency.pop(next(iter(self._latency)))
        if record.grasp_found:
            self.grasps += 1
            self.grasp_sealed_cups += int(record.grasp_sealed_cups or 0)
        if not record.has_ground_truth:
            return
        self.images_with_ground_truth += 1
        if record.evaluation is not None:
            self.matches.add(record.evaluation)
        self.picks += record.picks or 0
        self.double_picks += record.double_picks or 0
        self.predicted_area += record.predicted_area
        self.ground_truth_area += record.ground_truth_area or 0
        if record.grasp_found and record.grasp_double_pick is not None:
            self.grasps_scored += 1
            self.grasp_sealed_cups_on_truth += int(record.grasp_sealed_cups_on_truth or 0)
            self.grasp_double_picks += int(bool(record.grasp_double_pick))

    def summary(self) -> dict[str, Any]:
        """Data-set numbers: MR@HP, AR and AP from the pooled matches of all images (as COCOeval
        accumulates, not means of per-image numbers); D / N and areas from the summed counts."""
        latencies = np.asarray(self.latencies, dtype=np.float64)
        mr = ar = ap = None
        if self.matches.images:
            from latent_maskrcnn.evaluation import metrics

            pooled = self.matches.evaluation()
            mr = _number(metrics.mr_at_hp(pooled))
            ar = _number(metrics.average_recall(pooled, "iog"))
            ap = _number(metrics.average_precision(pooled, "iou"))
        known = self.images_with_ground_truth > 0  # counts against ground truth: None = unknown
        return {
            "images": self.images,
            "images_with_ground_truth": self.images_with_ground_truth,
            "mr_at_hp": mr,
            "ar_iog": ar,
            "map": ap,
            "double_pick_rate": self.double_picks / self.picks if self.picks else None,
            "picks": self.picks if known else None,
            "double_picks": self.double_picks if known else None,
            "pickable_area": self.predicted_area / self.ground_truth_area if self.ground_truth_area else None,
            "grasps": self.grasps,
            "mean_sealed_cups": self.grasp_sealed_cups / self.grasps if self.grasps else None,
            "mean_sealed_cups_on_truth": (
                self.grasp_sealed_cups_on_truth / self.grasps_scored if self.grasps_scored else None
            ),
            "grasp_double_picks": self.grasp_double_picks if known else None,
            "grasps_scored": self.grasps_scored,
            "grasp_double_pick_rate": self.grasp_double_picks / self.grasps_scored if self.grasps_scored else None,
            "latency_ms": {
                "pairs": int(latencies.size),
                "mean": float(latencies.mean()) if latencies.size else None,
                "p50": float(np.percentile(latencies, 50)) if latencies.size else None,
                "p95": float(np.percentile(latencies, 95)) if latencies.size else None,
                "max": float(latencies.max()) if latencies.size else None,
            },
        }


@dataclass(order=True)
class _Kept:
    key: tuple
    order: int
    record: FrameRecord = field(compare=False)
    picture: dict[str, Any] = field(compare=False)


class WorstFrames:
    """The ``limit`` worst frames seen so far, with what is needed to draw them."""

    def __init__(self, limit: int = 4) -> None:
        self.limit = limit
        self._heap: list[_Kept] = []
        self._order = 0

    def would_keep(self, record: FrameRecord) -> bool:
        if self.limit <= 0 or not record.has_ground_truth:
            return False
        return len(self._heap) < self.limit or record.badness() > self._heap[0].key

    def offer(self, record: FrameRecord, picture: dict[str, Any]) -> None:
        """``picture``: rgb [H, W, 3], pred_masks [N, H, W], truth_masks [G, H, W], grasp cups."""
        if not self.would_keep(record):
            return
        self._order += 1
        item = _Kept(record.badness(), -self._order, record, picture)
        if len(self._heap) < self.limit:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def worst_first(self) -> list[tuple[FrameRecord, dict[str, Any]]]:
        return [(k.record, k.picture) for k in sorted(self._heap, reverse=True)]


def overlay_title(record: FrameRecord) -> str:
    """What an overlay picture shows about its frame, in words."""
    parts = [f"{record.camera} frame {record.frame}", f"{record.num_predictions} masks"]
    if not record.has_ground_truth:
        parts.append("no ground truth")
    if record.double_pick_rate is not None:
        parts.append(f"double-pick {100 * record.double_pick_rate:.1f}%")
    if record.mr_at_hp is not None:
        parts.append(f"MR@HP {record.mr_at_hp:.2f}")
    if record.grasp_double_pick:
        parts.append("GRASP DOUBLE PICK")
    return " | ".join(parts)


def draw_overlay(path: Path, record: FrameRecord, picture: dict[str, Any]) -> Path:
    """PNG: image, predicted masks (colour), ground-truth outlines (white, where there is ground
    truth), the chosen grasp's cups (sealed green, idle red); the title wraps to the picture's
    width and a legend below says what each mark is."""
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle, Patch

    rgb = np.asarray(picture["rgb"], dtype=np.float32) / 255.0
    pred = np.asarray(picture["pred_masks"], dtype=bool)
    truth = None if picture.get("truth_masks") is None else np.asarray(picture["truth_masks"], dtype=bool)
    height, width = rgb.shape[:2]
    overlay = rgb.copy()
    colours = plt.get_cmap("tab10")
    for index in range(pred.shape[0]):
        colour = np.asarray(colours(index % 10)[:3], dtype=np.float32)
        overlay[pred[index]] = 0.45 * overlay[pred[index]] + 0.55 * colour
    figure_width = max(width / 80 + 0.5, 4.5)  # inches: room for the legend on small images
    title = textwrap.fill(overlay_title(record), width=max(24, int(figure_width * 13)))
    title_lines = title.count("\n") + 1
    figure, axis = plt.subplots(figsize=(figure_width, height / 80 + 0.9 + 0.15 * title_lines), dpi=100)
    axis.imshow(overlay, interpolation="nearest")
    handles = [Patch(facecolor=colours(0), label=f"predicted masks ({pred.shape[0]}, one colour each)")]
    if truth is not None:
        for index in range(truth.shape[0]):
            axis.contour(truth[index].astype(np.float32), levels=[0.5], colors="white", linewidths=0.8)
        handles.append(Line2D([], [], color="white", linewidth=1.5, label="ground-truth items"))
    radius = float(picture.get("cup_radius", 0.0))
    cups = list(zip(picture.get("cups", []), picture.get("cup_sealed", [])))
    for (u, v), sealed in cups:
        axis.add_patch(Circle((u, v), radius, fill=False, linewidth=1.2, edgecolor="lime" if sealed else "red"))
    if cups:
        handles += [
            Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="lime", label="sealed cup"),
            Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="red", label="idle cup"),
        ]
    axis.set_title(title, fontsize=8)
    axis.set_axis_off()
    legend = figure.legend(handles=handles, loc="lower center", ncol=2, fontsize=6.5, frameon=True)
    legend.get_frame().set_facecolor("0.45")  # white outlines and lime cups stay visible
    for text in legend.get_texts():
        text.set_color("white")
    figure.tight_layout(rect=(0, 0.12 if len(handles) > 2 else 0.08, 1, 1))
    figure.savefig(path, bbox_inches="tight", pad_inches=0.08)  # nothing of the title or legend cut off
    plt.close(figure)
    return path


def _fmt(value: Any, percent: bool = False, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if percent:
        return f"{100.0 * value:.2f} %"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


NO_TRUTH = "unknown (no ground truth)"


def summary_table(summary: dict[str, Any]) -> str:
    """The aggregate metrics as a Markdown table (also printed on the console). Metrics that
    need ground truth say so where no image had any, instead of a 0 that would mean 'none'."""
    latency = summary.get("latency_ms", {})
    known = summary["images_with_ground_truth"] > 0

    def truth_cell(text: str) -> str:
        return text if known else NO_TRUTH

    grasp_rate = _fmt(summary["grasp_double_pick_rate"], percent=True)
    rows = [
        ("images", str(summary["images"])),
        ("images with ground truth", str(summary["images_with_ground_truth"])),
        ("MR@HP (IoP)", truth_cell(_fmt(summary["mr_at_hp"]))),
        ("AR (IoG)", truth_cell(_fmt(summary["ar_iog"]))),
        ("mAP (IoU)", truth_cell(_fmt(summary["map"]))),
        ("simulated double-pick rate", truth_cell(_fmt(summary["double_pick_rate"], percent=True))),
        ("pickable area (predicted / ground-truth pixels)", truth_cell(_fmt(summary["pickable_area"]))),
        ("chosen grasps", _fmt(summary["grasps"])),
        ("mean sealed cups (planned)", _fmt(summary["mean_sealed_cups"], digits=2)),
        ("mean sealed cups (on ground truth)", truth_cell(_fmt(summary["mean_sealed_cups_on_truth"], digits=2))),
        ("grasp double picks", truth_cell(f"{summary['grasp_double_picks']} ({grasp_rate})")),
        ("latency per pair, mean / p95 [ms]", f"{_fmt(latency.get('mean'), digits=1)} / {_fmt(latency.get('p95'), digits=1)}"),
    ]
    throughput = summary.get("throughput")
    if throughput:
        rows.append(("throughput [pairs/s]", f"{_fmt(throughput.get('pairs_per_s'), digits=2)} "
                                             f"({throughput['pairs']} pairs in {throughput['seconds']:.1f} s)"))
    lines = ["| metric | value |", "| --- | --- |"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


class SampledFrames:
    """Frames without ground truth, which have no 'worst': up to ``limit`` pictures of frames
    spread evenly over the ``expected`` frame indices (all cameras of a chosen frame)."""

    def __init__(self, limit: int, expected: int | None, cameras: int = 2) -> None:
        count = max(0, limit // max(1, cameras))
        last = max(0, (expected or 1) - 1)
        self.targets = {round(i * last / (count - 1)) for i in range(count)} if count > 1 else ({0} if count else set())
        self.kept: list[tuple[FrameRecord, dict[str, Any]]] = []
        self.limit = limit

    def would_keep(self, record: FrameRecord) -> bool:
        return not record.has_ground_truth and record.frame in self.targets and len(self.kept) < self.limit

    def offer(self, record: FrameRecord, picture: dict[str, Any]) -> None:
        if self.would_keep(record):
            self.kept.append((record, picture))


class ReportWriter:
    """Owns the output folder of one evaluation: rows as they come, the report at the end."""

    def __init__(self, out_dir: str | Path, worst_limit: int = 4, expected_frames: int | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.frames_path = self.out_dir / FRAMES_FILE
        self._frames = self.frames_path.open("w", encoding="utf-8")
        self.accumulator = ReportAccumulator()
        self.worst = WorstFrames(worst_limit)
        self.sampled = SampledFrames(worst_limit, expected_frames)
        self.throughput: dict[str, Any] | None = None

    def add(self, record: FrameRecord, picture: dict[str, Any] | None = None) -> None:
        self._frames.write(json.dumps(record.as_dict()) + "\n")
        self._frames.flush()
        self.accumulator.add(record)
        if picture is not None:
            self.worst.offer(record, picture)
            self.sampled.offer(record, picture)

    def wants_picture(self, record: FrameRecord) -> bool:
        return self.worst.would_keep(record) or self.sampled.would_keep(record)

    def set_throughput(self, pairs: int, seconds: float) -> None:
        """Pairs processed and the wall time they took (reading, network, scoring, writing)."""
        self.throughput = {"pairs": pairs, "seconds": seconds, "pairs_per_s": pairs / seconds if seconds > 0 else None}

    def finish(self, header: dict[str, Any]) -> dict[str, Any]:
        """Write report.json, report.md and the overlays; returns the report without its rows."""
        self._frames.close()
        pictures = []
        for rank, (record, picture) in enumerate(self.worst.worst_first()):
            name = f"worst_{rank + 1:02d}_{record.camera}_frame{record.frame:05d}.png"
            pictures.append(str(draw_overlay(self.out_dir / name, record, picture)))
        frame_pictures = [
            str(draw_overlay(self.out_dir / f"frame{record.frame:05d}_{record.camera}.png", record, picture))
            for record, picture in self.sampled.kept
        ]
        summary = self.accumulator.summary()
        if self.throughput is not None:
            summary["throughput"] = self.throughput
        report = dict(header)
        report["aggregate"] = summary
        report["worst_frames"] = pictures
        report["frame_pictures"] = frame_pictures
        report["frames_file"] = str(self.frames_path)
        self._write_json(report)
        (self.out_dir / REPORT_MD).write_text(self._markdown(report), encoding="utf-8")
        return report

    def _write_json(self, report: dict[str, Any]) -> None:
        # Rows are streamed from frames.jsonl into the "frames" list, never all held at once.
        head = json.dumps(report, indent=2)
        with (self.out_dir / REPORT_JSON).open("w", encoding="utf-8") as out:
            out.write(head[:-2] + ',\n  "frames": [')
            first = True
            with self.frames_path.open(encoding="utf-8") as rows:
                for line in rows:
                    if not line.strip():
                        continue
                    out.write(("\n    " if first else ",\n    ") + line.strip())
                    first = False
            out.write("\n  ]\n}\n")

    def _markdown(self, report: dict[str, Any]) -> str:
        lines = [f"# {report.get('title', 'Evaluation report')}", ""]
        for key in ("bag", "predictions", "ground_truth", "checkpoint", "model_id", "mode", "p", "num_samples", "flip_samples"):
            if report.get(key) is not None:
                lines.append(f"- {key.replace('_', ' ')}: `{report[key]}`")
        counts = report.get("counts", {})
        for key, value in counts.items():
            lines.append(f"- {key.replace('_', ' ')}: {json.dumps(value)}")
        if report.get("stopped"):
            stopped = report["stopped"]
            lines += ["", f"**Stopped early at frame {stopped['frame']}:** {stopped['error']}"]
        lines += ["", "## Aggregate", "", summary_table(report["aggregate"]), ""]
        if report["worst_frames"]:
            lines += ["## Worst frames", ""]
            lines += [f"![{Path(p).stem}]({Path(p).name})" for p in report["worst_frames"]]
            lines.append("")
        if report.get("frame_pictures"):
            lines += ["## Frames without ground truth (spread over the bag)", ""]
            lines += [f"![{Path(p).stem}]({Path(p).name})" for p in report["frame_pictures"]]
            lines.append("")
        lines.append(f"Per-frame metrics: `{REPORT_JSON}` (key `frames`) and `{FRAMES_FILE}`.")
        return "\n".join(lines) + "\n"


def read_frames(path: str | Path) -> Iterable[dict[str, Any]]:
    """Rows of a frames.jsonl file, one at a time."""
    with Path(path).open(encoding="utf-8") as rows:
        for line in rows:
            if line.strip():
                yield json.loads(line)
