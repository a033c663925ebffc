"""The nodes' parameters: names, defaults, ranges, descriptions and validation, without ROS.

The rclpy nodes declare exactly these (with a ParameterDescriptor built from each spec) and
refuse a `ros2 param set` with the reason :meth:`ParameterSet.validate` gives, so the rules are
tested where ROS is not installed and one table documents them (README, config/picking.yaml).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

MODES = ("confidence_mask", "union_nms", "prior_mean")
KINDS = ("double", "integer", "string", "bool", "string_array", "double_array")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")
_NAME_TOKEN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_TOPIC = re.compile(r"^(~/|/)?[A-Za-z_][A-Za-z0-9_]*(/[A-Za-z_][A-Za-z0-9_]*)*$")
# The most pixels (height x width) an input may declare: 8K UHD (7680 x 4320), four times a 4K
# camera. A message's declared size, not only its content, decides what decoding it costs (a mask
# array holds crops of a declared image), so larger claims are refused before anything is read.
MAX_IMAGE_PIXELS = 7680 * 4320


@dataclass(frozen=True)
class ParameterSpec:
    """One node parameter. Ranges are inclusive unless ``exclusive_minimum`` / ``exclusive_maximum``."""

    name: str
    default: Any
    kind: str
    description: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] = ()
    read_only: bool = False
    exclusive_maximum: bool = False

    def check(self, value: Any) -> str | None:
        """The reason ``value`` is refused, or None when it is acceptable on its own."""
        if self.kind == "bool":
            return None if isinstance(value, bool) else f"{self.name} must be true or false, got {value!r}"
        if self.kind == "string":
            if not isinstance(value, str):
                return f"{self.name} must be a string, got {value!r}"
            if self.choices and value not in self.choices:
                return f"{self.name} must be one of {', '.join(self.choices)}; got {value!r}"
            return None
        if self.kind == "string_array":
            if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
                return f"{self.name} must be a list of strings, got {value!r}"
            return None if len(value) else f"{self.name} must not be empty"
        if self.kind == "double_array":
            values = list(value) if isinstance(value, (list, tuple)) else None
            if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
                return f"{self.name} must be a non-empty list of numbers, got {value!r}"
            for item in values:
                reason = self._check_number(float(item))
                if reason:
                    return reason
            return None
        if self.kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                return f"{self.name} must be an integer, got {value!r}"
            return self._check_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"{self.name} must be a number, got {value!r}"
        return self._check_number(float(value))

    def _check_number(self, value: float) -> str | None:
        if isinstance(value, float) and not math.isfinite(value):
            return f"{self.name} must be a finite number, got {value}"
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                return f"{self.name} must be greater than {self.minimum:g}, got {value:g}"
            if not self.exclusive_minimum and value < self.minimum:
                return f"{self.name} must be at least {self.minimum:g}, got {value:g}"
        if self.maximum is not None:
            if self.exclusive_maximum and value >= self.maximum:
                return f"{self.name} must be less than {self.maximum:g}, got {value:g}"
            if not self.exclusive_maximum and value > self.maximum:
                return f"{self.name} must be at most {self.maximum:g}, got {value:g}"
        return None

    def descriptor_range(self) -> tuple[float, float] | None:
        """(from, to) for a ParameterDescriptor's range, which is inclusive: an exclusive minimum
        becomes the next double above it, an exclusive maximum the next below (``ros2 param
        describe`` then shows bounds that are allowed, and rclpy's own range check refuses exactly
        what :meth:`check` refuses)."""
        if self.minimum is None or self.maximum is None:
            return None
        low, high = float(self.minimum), float(self.maximum)
        if self.exclusive_minimum:
            low = math.nextafter(low, math.inf)
        if self.exclusive_maximum:
            high = math.nextafter(high, -math.inf)
        return low, high

    @property
    def constraints(self) -> str:
        """The rule in words, for ParameterDescriptor.additional_constraints and the docs."""
        parts = []
        if self.choices:
            parts.append("one of: " + ", ".join(self.choices))
        if self.minimum is not None or self.maximum is not None:
            low = "" if self.minimum is None else f"{_number(self.minimum)} {'<' if self.exclusive_minimum else '<='} "
            high = "" if self.maximum is None else f" {'<' if self.exclusive_maximum else '<='} {_number(self.maximum)}"
            parts.append(f"{low}value{high}")
        if self.read_only:
            parts.append("read-only: set at start (launch file or YAML)")
        return "; ".join(parts)


def _specs(*specs: ParameterSpec) -> dict[str, ParameterSpec]:
    return {spec.name: spec for spec in specs}


SEGMENTATION_PARAMETERS = _specs(
    ParameterSpec("checkpoint", "", "string", "Latent-MaskRCNN .safetensors checkpoint; empty: the bundled demo model", read_only=True),
    ParameterSpec("device", "auto", "string", "Torch device: auto (cuda when available), cpu, cuda or cuda:N", read_only=True),
    ParameterSpec(
        "camera_topics",
        ["/overhead_left/image_raw", "/overhead_right/image_raw"],
        "string_array",
        "sensor_msgs/Image topics of the cameras, synchronised by stamp",
        read_only=True,
    ),
    ParameterSpec(
        "camera_names",
        ["overhead_left", "overhead_right"],
        "string_array",
        "One name per camera topic; outputs go to <name>/confidence_masks and <name>/segmentation_overlay",
        read_only=True,
    ),
    ParameterSpec("sync_slop", 0.05, "double", "Largest stamp difference (s) of a synchronised image pair", 0.0, 10.0, exclusive_minimum=True, read_only=True),
    ParameterSpec("queue_size", 10, "integer", "Messages per camera the synchroniser keeps while pairing", 1, 1000, read_only=True),
    ParameterSpec("p", 0.9, "double", "Confidence requirement: masks lie inside one item with probability >= p", 0.0, 1.0, exclusive_minimum=True),
    ParameterSpec(
        "mask_threshold",
        0.8,
        "double",
        "Probability at which each detection's mask is binarised; higher: smaller masks (0.8: the prior mean's measured operating point)",
        0.0,
        1.0,
        exclusive_minimum=True,
        exclusive_maximum=True,
    ),
    ParameterSpec("num_samples", 8, "integer", "Samples K drawn from the model per image", 1, 64),
    ParameterSpec(
        "flip_samples",
        True,
        "bool",
        "Decode half of the K codes on the mirrored image (the authors' 4 codes x 2 views): masks shrink where the view changes the answer",
    ),
    ParameterSpec("mode", "prior_mean", "string", "How samples are aggregated (prior_mean: one pass, fewest double picks at equal pickable area, docs/results.md)", choices=MODES),
    ParameterSpec("score_threshold", 0.1, "double", "Detections at or below this score are ignored when aggregating (the paper's tau)", 0.0, 1.0),
    ParameterSpec("min_mask_area", 64, "integer", "Masks with fewer pixels are not published", 0, 100_000_000),
    ParameterSpec("seed", 0, "integer", "Seed of the latent codes (same codes every frame); -1: fresh codes each frame", -1, 2**31 - 1),
    ParameterSpec("publish_overlay", True, "bool", "Publish <camera>/segmentation_overlay images for RViz"),
    ParameterSpec("generic_color_order", "bgr", "string", "Channel order assumed for 8UC3 images (no order in the encoding)", choices=("bgr", "rgb")),
    ParameterSpec(
        "max_image_pixels",
        MAX_IMAGE_PIXELS,
        "integer",
        "Camera images declaring more pixels (height x width) are dropped as too_large before they are read",
        1,
        1_000_000_000,
    ),
    ParameterSpec(
        "input_timeout",
        5.0,
        "double",
        "/diagnostics warns when no input (synchronised image pair) arrived for this many seconds; 0: never",
        0.0,
        3600.0,
    ),
)

GRASP_PARAMETERS = _specs(
    ParameterSpec(
        "confidence_mask_topics",
        ["overhead_left/confidence_masks", "overhead_right/confidence_masks"],
        "string_array",
        "ConfidenceMaskArray topics to plan grasps on",
        read_only=True,
    ),
    ParameterSpec("cup_radius", 6.0, "double", "Suction cup radius in pixels", 0.0, 500.0, exclusive_minimum=True),
    ParameterSpec("cup_spacing", 20.0, "double", "Distance between neighbouring cup centres in pixels", 0.0, 5000.0, exclusive_minimum=True),
    ParameterSpec("cup_rows", 3, "integer", "Rows of cups in the gripper's grid", 1, 16),
    ParameterSpec("cup_cols", 3, "integer", "Columns of cups in the gripper's grid", 1, 16),
    ParameterSpec("angles_deg", [0.0], "double_array", "Rotations of the cup grid tried, in degrees", -180.0, 180.0),
    ParameterSpec("candidates_per_mask", 1, "integer", "Grasps proposed per mask", 1, 100),
    ParameterSpec("min_sealed_cups", 1, "integer", "Grasps sealing fewer cups are not proposed", 1, 256),
    ParameterSpec("max_candidates", 0, "integer", "Most grasps per image (0: no limit)", 0, 100_000),
    ParameterSpec(
        "max_image_pixels",
        MAX_IMAGE_PIXELS,
        "integer",
        "Mask arrays declaring a larger image (image_height x image_width) are dropped as too_large before they are read",
        1,
        1_000_000_000,
    ),
    ParameterSpec(
        "input_timeout",
        5.0,
        "double",
        "/diagnostics warns when no input (confidence mask array) arrived for this many seconds; 0: never",
        0.0,
        3600.0,
    ),
)


class ParameterSet:
    """Current values of one node's parameters; every change is validated as a whole."""

    def __init__(self, specs: Mapping[str, ParameterSpec], overrides: Mapping[str, Any] | None = None) -> None:
        self.specs = dict(specs)
        self.values: dict[str, Any] = {name: spec.default for name, spec in self.specs.items()}
        if overrides:
            reasons = self.validate(overrides, allow_read_only=True)
            if reasons:
                raise ValueError("; ".join(reasons))
            self.values.update({k: _plain(v) for k, v in overrides.items() if k in self.specs})

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    def validate(self, changes: Mapping[str, Any], allow_read_only: bool = False) -> list[str]:
        """Reasons to refuse ``changes`` (empty: accept). Names this set does not own are ignored."""
        reasons = []
        for name, value in changes.items():
            spec = self.specs.get(name)
            if spec is None:
                continue
            if spec.read_only and not allow_read_only and _plain(value) != self.values[name]:
                reasons.append(f"{name} is read-only; set it at start (launch file or YAML)")
                continue
            reason = spec.check(_plain(value))
            if reason:
                reasons.append(reason)
        if reasons:
            return reasons
        merged = {**self.values, **{k: _plain(v) for k, v in changes.items() if k in self.specs}}
        return self._cross_checks(merged)

    def apply(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and store; returns the values that changed. Raises ValueError with the reasons."""
        reasons = self.validate(changes)
        if reasons:
            raise ValueError("; ".join(reasons))
        changed = {}
        for name, value in changes.items():
            if name in self.specs and _plain(value) != self.values[name]:
                self.values[name] = _plain(value)
                changed[name] = self.values[name]
        return changed

    def _cross_checks(self, merged: Mapping[str, Any]) -> list[str]:
        reasons = []
        if "camera_topics" in merged and "camera_names" in merged:
            topics, names = merged["camera_topics"], merged["camera_names"]
            if len(topics) != len(names):
                reasons.append(f"camera_topics has {len(topics)} entries but camera_names has {len(names)}")
            if len(set(names)) != len(names):
                reasons.append(f"camera_names must be unique, got {list(names)}")
            reasons += [f"camera name {n!r} is not a valid topic token" for n in names if not _NAME_TOKEN.match(n)]
            reasons += [f"camera topic {t!r} is not a valid topic name" for t in topics if not _TOPIC.match(t)]
        if "device" in merged and not _DEVICE.match(merged["device"]):
            reasons.append(f"device must be auto, cpu, cuda or cuda:N; got {merged['device']!r}")
        if "confidence_mask_topics" in merged:
            reasons += [
                f"topic {t!r} is not a valid topic name" for t in merged["confidence_mask_topics"] if not _TOPIC.match(t)
            ]
        if {"cup_rows", "cup_cols", "min_sealed_cups"} <= set(merged):
            cups = merged["cup_rows"] * merged["cup_cols"]
            if merged["min_sealed_cups"] > cups:
                reasons.append(f"min_sealed_cups ({merged['min_sealed_cups']}) exceeds the {cups} cups of the gripper")
        if {"cup_radius", "cup_spacing"} <= set(merged):
            rows, cols = merged.get("cup_rows", 1), merged.get("cup_cols", 1)
            if max(rows, cols) > 1 and merged["cup_spacing"] < 2 * merged["cup_radius"]:
                reasons.append(
                    f"cups overlap: cup_spacing ({merged['cup_spacing']:g}) is less than twice cup_radius "
                    f"({merged['cup_radius']:g})"
                )
        return reasons


def _number(value: float) -> str:
    """Integral bounds without exponent notation (100000000, not 1e+08)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _plain(value: Any) -> Any:
    """ROS arrays (array.array, tuples) as lists, so values compare and print plainly."""
    if isinstance(value, (str, bytes, bool, int, float)) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_plain(v) for v in value]
    return value


def describe(specs: Mapping[str, ParameterSpec]) -> Sequence[dict[str, Any]]:
    """Rows for documentation: name, kind, default, constraints, description."""
    return [
        {"name": s.name, "kind": s.kind, "default": s.default, "constraints": s.constraints, "description": s.description}
        for s in specs.values()
    ]
