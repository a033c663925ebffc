"""Node parameter rules: ranges, choices, read-only names, cross-parameter checks."""
import math

import pytest

from latent_segmentation_ros.core.parameters import (
    GRASP_PARAMETERS,
    SEGMENTATION_PARAMETERS,
    ParameterSet,
    describe,
)


@pytest.mark.parametrize(
    "name, value, reason",
    [
        ("p", 1.7, "p must be at most 1, got 1.7"),
        ("p", math.nan, "p must be a finite number"),
        ("p", 0.0, "p must be greater than 0"),
        ("p", "high", "p must be a number"),
        ("num_samples", -3, "num_samples must be at least 1, got -3"),
        ("num_samples", 2.5, "num_samples must be an integer"),
        ("num_samples", True, "num_samples must be an integer"),
        ("mode", "mean", "mode must be one of confidence_mask, union_nms, prior_mean"),
        ("score_threshold", -0.1, "score_threshold must be at least 0"),
        ("publish_overlay", 1, "publish_overlay must be true or false"),
        ("seed", -2, "seed must be at least -1"),
    ],
)
def test_segmentation_values_refused_with_reason(name, value, reason):
    parameters = ParameterSet(SEGMENTATION_PARAMETERS)
    reasons = parameters.validate({name: value})
    assert len(reasons) == 1 and reason in reasons[0]
    with pytest.raises(ValueError, match=reason.split(",")[0]):
        parameters.apply({name: value})
    assert parameters[name] == SEGMENTATION_PARAMETERS[name].default


def test_valid_changes_apply_and_report_what_changed():
    parameters = ParameterSet(SEGMENTATION_PARAMETERS)
    assert parameters.validate({"p": 1.0, "mode": "union_nms", "num_samples": 16}) == []
    changed = parameters.apply({"p": 0.95, "mode": "union_nms", "num_samples": 8, "use_sim_time": True})
    assert changed == {"p": 0.95, "mode": "union_nms"}  # num_samples was already 8; foreign names ignored
    assert parameters["p"] == 0.95


def test_a_change_is_all_or_nothing():
    parameters = ParameterSet(SEGMENTATION_PARAMETERS)
    with pytest.raises(ValueError, match="num_samples"):
        parameters.apply({"p": 0.5, "num_samples": 0})
    assert parameters["p"] == 0.9


def test_read_only_parameters_are_refused_at_run_time_but_accepted_at_start():
    parameters = ParameterSet(SEGMENTATION_PARAMETERS)
    assert parameters.validate({"checkpoint": "/tmp/other.safetensors"}) == [
        "checkpoint is read-only; set it at start (launch file or YAML)"
    ]
    assert parameters.validate({"checkpoint": ""}) == []  # unchanged value: fine
    started = ParameterSet(SEGMENTATION_PARAMETERS, {"checkpoint": "/models/a.safetensors", "device": "cuda:1"})
    assert started["checkpoint"] == "/models/a.safetensors" and started["device"] == "cuda:1"


def test_camera_lists_and_device_are_checked_at_start():
    with pytest.raises(ValueError, match="camera_topics has 3 entries but camera_names has 2"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"camera_topics": ["/a/image", "/b/image", "/c/image"]})
    with pytest.raises(ValueError, match="camera_names must be unique"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"camera_names": ["left", "left"]})
    with pytest.raises(ValueError, match="'left cam' is not a valid topic token"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"camera_names": ["left cam", "right"]})
    with pytest.raises(ValueError, match="'/a//image' is not a valid topic name"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"camera_topics": ["/a//image", "/b/image"]})
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"device": "gpu"})
    with pytest.raises(ValueError, match="camera_topics must not be empty"):
        ParameterSet(SEGMENTATION_PARAMETERS, {"camera_topics": [], "camera_names": []})
    single = ParameterSet(SEGMENTATION_PARAMETERS, {"camera_topics": ["/cam/image_raw"], "camera_names": ["cam"]})
    assert single["camera_names"] == ["cam"]


def test_ros_array_values_are_plain_lists():
    import array

    parameters = ParameterSet(GRASP_PARAMETERS, {"angles_deg": array.array("d", [0.0, 45.0])})
    assert parameters["angles_deg"] == [0.0, 45.0]


def test_grasp_cross_checks():
    parameters = ParameterSet(GRASP_PARAMETERS)
    assert parameters.validate({"cup_spacing": 10.0}) == [
        "cups overlap: cup_spacing (10) is less than twice cup_radius (6)"
    ]
    assert parameters.validate({"cup_spacing": 10.0, "cup_rows": 1, "cup_cols": 1}) == []
    assert parameters.validate({"min_sealed_cups": 10}) == ["min_sealed_cups (10) exceeds the 9 cups of the gripper"]
    assert parameters.validate({"angles_deg": [0.0, 270.0]}) == ["angles_deg must be at most 180, got 270"]
    assert parameters.validate({"angles_deg": []})[0].startswith("angles_deg must be a non-empty list")


def test_descriptions_cover_every_parameter():
    for specs in (SEGMENTATION_PARAMETERS, GRASP_PARAMETERS):
        for row in describe(specs):
            assert row["description"]
            spec = specs[row["name"]]
            assert spec.check(spec.default) is None, f"default of {spec.name} breaks its own rule"
    assert SEGMENTATION_PARAMETERS["p"].constraints == "0 < value <= 1"
    assert "read-only" in SEGMENTATION_PARAMETERS["checkpoint"].constraints
    assert SEGMENTATION_PARAMETERS["mode"].constraints == "one of: confidence_mask, union_nms, prior_mean"


@pytest.mark.parametrize("spec", [s for s in {**SEGMENTATION_PARAMETERS, **GRASP_PARAMETERS}.values()
                                  if s.descriptor_range() is not None], ids=lambda s: s.name)
def test_the_descriptor_range_accepts_exactly_what_the_rules_accept(spec):
    """`ros2 param describe` shows this range and rclpy refuses outside it: its ends must be
    allowed values and the next values beyond them refused (p: 0 is refused, so not [0, 1])."""
    low, high = spec.descriptor_range()
    if spec.kind == "integer":
        low = math.ceil(low)
        inside, outside = (int(low), int(high)), (int(low) - 1, int(high) + 1)
    else:
        inside, outside = (low, high), (math.nextafter(low, -math.inf), math.nextafter(high, math.inf))
    for value in inside:
        assert spec.check([value] if spec.kind.endswith("_array") else value) is None, (spec.name, value)
    for value in outside:
        assert spec.check([value] if spec.kind.endswith("_array") else value) is not None, (spec.name, value)
    if spec.exclusive_minimum:
        assert low > spec.minimum
    if spec.exclusive_maximum:
        assert high < spec.maximum
