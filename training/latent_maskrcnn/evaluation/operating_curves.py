"""Operating curves: a method's numbers at every setting of its knob, kept per image.

A model can always trade pickable area for fewer double picks by shrinking its masks (the paper,
Section V-E), so methods are compared where their curves meet, not at their default settings:
the confidence masks over p, MaskRCNN and the prior mean over the mask threshold. A curve keeps
per image and per knob value the counts behind each number (D, N, areas, chosen grasps), so any
draw of images (`bootstrap`) recomputes the whole curve as weighted sums.

Numbers are ratios of sums over images, as the data-set numbers are everywhere in the package
(`double_pick.double_pick_rate`, `pickable_area`): `METRICS` names each numerator and denominator.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from latent_maskrcnn.evaluation.double_pick import PickCounts

PICK_COUNTS = ("double_picks", "picks", "picks_on_items", "predicted_area", "truth_area")
GRASP_COUNTS = ("grasps", "grasp_double_picks", "sealed_cups")


@dataclass(frozen=True)
class Metric:
    """``numerator / denominator`` summed over images (a plain sum without a denominator);
    ``lower_is_better`` None for an operating-point axis such as the pickable area."""

    numerator: str
    denominator: str | None
    label: str
    lower_is_better: bool | None


METRICS: dict[str, Metric] = {
    "double_pick_rate": Metric("double_picks", "picks", "D / N", True),
    "double_pick_rate_on_items": Metric("double_picks", "picks_on_items", "D / circles on items", True),
    "pickable_area": Metric("predicted_area", "truth_area", "pickable area fraction", None),
    "picks": Metric("picks", None, "N (circles inside one mask)", None),
    "grasp_double_pick_rate": Metric("grasp_double_picks", "grasps", "chosen grasps that double-pick", True),
    "mean_sealed_cups": Metric("sealed_cups", "grasps", "mean sealed cups", False),
}


@dataclass(frozen=True)
class GraspOutcome:
    """The planner's chosen grasp on one image: whether there is one, whether its switched-on
    cups touch two or more ground-truth items, and how many of them seal on one item."""

    found: bool
    double_pick: bool = False
    sealed_cups: int = 0


@dataclass(frozen=True)
class OperatingCurve:
    """``counts[name]`` is ``[len(values), images]``: per knob value (in the curve's order) and
    per image. Every curve compared with another must hold the same images in the same order."""

    method: str
    knob: str
    values: tuple[float, ...]
    counts: Mapping[str, np.ndarray]
    label: str = ""

    def __post_init__(self) -> None:
        shapes = {name: np.shape(array) for name, array in self.counts.items()}
        if not self.values or any(len(shape) != 2 or shape[0] != len(self.values) for shape in shapes.values()):
            raise ValueError(f"curve {self.method}: counts must be [values ({len(self.values)}), images], got {shapes}")
        if len({shape[1] for shape in shapes.values()}) > 1:
            raise ValueError(f"curve {self.method}: counts cover different numbers of images: {shapes}")

    @property
    def images(self) -> int:
        return int(next(iter(self.counts.values())).shape[1]) if self.counts else 0

    def has(self, metric: str) -> bool:
        spec = METRICS[metric]
        return spec.numerator in self.counts and (spec.denominator is None or spec.denominator in self.counts)

    def index(self, value: float) -> int:
        """The position of knob ``value`` on the curve (ValueError if it is not a point of it)."""
        for position, knob in enumerate(self.values):
            if abs(knob - float(value)) < 1e-9:
                return position
        raise ValueError(f"{self.knob} = {value} is not on the curve of {self.method} ({list(self.values)})")

    def metric(self, name: str, weights: np.ndarray | None = None) -> np.ndarray:
        """``[len(values)]`` (no weights: every image once) or ``[len(values), B]`` for image
        weights ``[B, images]``; NaN where the denominator is zero."""
        spec = METRICS[name]
        numerator = _weighted(self.counts[spec.numerator], weights)
        if spec.denominator is None:
            return numerator
        denominator = _weighted(self.counts[spec.denominator], weights)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)

    def total(self, name: str) -> np.ndarray:
        """``[len(values)]`` sums over the images of one count."""
        return np.asarray(self.counts[name], dtype=np.float64).sum(axis=1)

    def points(self) -> list[dict]:
        """JSON-ready rows: the knob value and every metric this curve has counts for."""
        names = [name for name in METRICS if self.has(name)]
        values = {name: self.metric(name) for name in names}
        rows = []
        for position, knob in enumerate(self.values):
            row = {self.knob: knob}
            for name in names:
                number = float(values[name][position])
                row[name] = number if np.isfinite(number) else None
            if "grasps" in self.counts:
                row["grasps"] = int(self.total("grasps")[position])
            rows.append(row)
        return rows

    def to_dict(self) -> dict:
        """Everything, per image included (`from_dict` reads it back): a curve saved by one
        evaluation can be matched against a new model's on the same images."""
        return {"method": self.method, "label": self.label, "knob": self.knob, "values": list(self.values),
                "counts": {name: np.asarray(array).tolist() for name, array in self.counts.items()}}

    @classmethod
    def from_dict(cls, data: Mapping) -> "OperatingCurve":
        return cls(str(data["method"]), str(data["knob"]), tuple(float(v) for v in data["values"]),
                   {name: np.asarray(array, dtype=np.float64) for name, array in data["counts"].items()},
                   str(data.get("label", "")))


def _weighted(counts: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64)
    if weights is None:
        return counts.sum(axis=1)
    return counts @ np.asarray(weights, dtype=np.float64).T


@dataclass
class CurveRecorder:
    """Collects per-image counts while an evaluation runs: ``add(method, value, image, picks,
    grasp)`` for every method, knob value and image; `curves` builds the `OperatingCurve`s.
    Images are identified by their position in the run (the same for every method)."""

    knobs: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    _rows: dict[str, dict[float, dict[int, dict[str, float]]]] = field(default_factory=dict)

    def add(self, method: str, value: float, image: int, picks: PickCounts, grasp: GraspOutcome | None = None) -> None:
        row = {
            "double_picks": picks.double_picks,
            "picks": picks.picks,
            "picks_on_items": picks.picks - picks.false_positives,
            "predicted_area": picks.predicted_area,
            "truth_area": picks.ground_truth_area,
        }
        if grasp is not None:
            row.update(grasps=int(grasp.found), grasp_double_picks=int(grasp.found and grasp.double_pick),
                       sealed_cups=int(grasp.sealed_cups) if grasp.found else 0)
        self._rows.setdefault(method, {}).setdefault(float(value), {})[int(image)] = row

    def curves(self) -> dict[str, OperatingCurve]:
        """One curve per method, its knob values in increasing order. Raises ValueError when a
        method misses an image another has (the curves could not be paired)."""
        images = sorted({image for by_value in self._rows.values() for rows in by_value.values() for image in rows})
        curves = {}
        for method, by_value in self._rows.items():
            values = sorted(by_value)
            names = set.intersection(*(set(row) for rows in by_value.values() for row in rows.values()))
            counts = {}
            for name in [n for n in (*PICK_COUNTS, *GRASP_COUNTS) if n in names]:
                array = np.zeros((len(values), len(images)))
                for position, value in enumerate(values):
                    rows = by_value[value]
                    missing = [image for image in images if image not in rows]
                    if missing:
                        raise ValueError(f"{method} at {value} lacks images {missing[:5]}: curves must cover the same images")
                    array[position] = [rows[image][name] for image in images]
                counts[name] = array
            curves[method] = OperatingCurve(method, self.knobs.get(method, "knob"), tuple(values), counts,
                                            self.labels.get(method, method))
        return curves


# ---------------------------------------------------------------------------- interpolation
def crossing(x: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where a curve first reaches ``target`` along its knob: for ``x [P, B]`` (or ``[P]``) and
    ``target [B]`` (or a scalar), the segment index ``k [B]`` (-1: the curve never reaches the
    target, no extrapolation) and the weight ``w [B]`` so that the point is
    ``(1 - w) x[k] + w x[k + 1]``. A curve that crosses the target several times (N need not be
    monotone in the threshold) is read at its first crossing in knob order."""
    x = np.asarray(x, dtype=np.float64)
    single = x.ndim == 1
    x = x[:, None] if single else x
    target = np.broadcast_to(np.asarray(target, dtype=np.float64), (x.shape[1],))
    points = x.shape[0]
    if points == 1:
        hit = x[0] == target
        return _squeeze(np.where(hit, 0, -1), np.zeros(x.shape[1]), single)
    side = np.sign(x - target[None, :])
    side[~np.isfinite(x)] = np.nan
    crosses = (side[:-1] * side[1:]) <= 0  # NaN compares False
    found = crosses.any(axis=0)
    segment = np.where(found, np.argmax(crosses, axis=0), -1)
    safe = np.maximum(segment, 0)
    columns = np.arange(x.shape[1])
    left, right = x[safe, columns], x[np.minimum(safe + 1, points - 1), columns]
    span = right - left
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = np.where(span != 0, (target - left) / np.where(span != 0, span, 1.0), 0.0)
    weight = np.where(found, np.clip(weight, 0.0, 1.0), np.nan)
    return _squeeze(segment, weight, single)


def _squeeze(segment: np.ndarray, weight: np.ndarray, single: bool):
    return (int(segment[0]), float(weight[0])) if single else (segment, weight)


def read_at(y: np.ndarray, segment, weight):
    """``y [P, B]`` (or ``[P]``) at the points `crossing` found: NaN where there is none."""
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1:
        if segment < 0:
            return float("nan")
        if y.shape[0] == 1:
            return float(y[0])
        return float((1.0 - weight) * y[segment] + weight * y[segment + 1])
    points = y.shape[0]
    columns = np.arange(y.shape[1])
    safe = np.maximum(segment, 0)
    left, right = y[safe, columns], y[np.minimum(safe + 1, points - 1), columns]
    value = (1.0 - weight) * left + weight * right if points > 1 else left
    return np.where(segment >= 0, value, np.nan)


def interpolate_at(x: Sequence[float], y: Sequence[float], target: float) -> float | None:
    """``y`` where the curve ``(x, y)`` (points in knob order) first reaches ``x = target``,
    linearly between the two points around it; None when it never does."""
    segment, weight = crossing(np.asarray(x, dtype=np.float64), float(target))
    value = read_at(np.asarray(y, dtype=np.float64), segment, weight)
    return None if not np.isfinite(value) else float(value)
