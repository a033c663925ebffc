"""Fuzzing node parameters: random names, types and values, one at a time and several at once,
as `ros2 param set` or a launch file can send them (bool, integer, double with NaN and
infinities, string, byte and typed arrays, and an unset value). Every change is accepted whole
or refused with a reason; it never raises, never leaves a value the rules refuse, and a refused
change changes nothing; the grasp node's planner and the segmentation pipeline follow what was
accepted."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import MIB, bounded, fuzz
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros.core import messages
from latent_segmentation_ros.core.grasping import PLANNER_PARAMETERS, GraspCore
from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS, SEGMENTATION_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.pipeline import PerceptionPipeline
from latent_segmentation_ros.core.segmentation import PIPELINE_SETTINGS, SegmentationCore

FACTORY = messages.rosbags_factory()
INT64 = st.integers(-(2**63), 2**63 - 1)
DOUBLE = st.floats(allow_nan=True, allow_infinity=True)
# What a ROS parameter can hold (rcl_interfaces/ParameterValue), biased to plausible numbers;
# None is PARAMETER_NOT_SET.
ROS_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 100),
    INT64,
    st.floats(-1.0, 2.0),
    DOUBLE,
    st.text(max_size=12),
    st.sampled_from(["confidence_mask", "union_nms", "prior_mean", "cpu", "cuda:1", "bgr", "/a/b", "a"]),
    st.binary(max_size=8),
    st.lists(st.booleans(), max_size=4),
    st.lists(INT64, max_size=4),
    st.lists(DOUBLE, max_size=4),
    st.lists(st.floats(-180, 180), min_size=1, max_size=4),
    st.lists(st.text(max_size=8), max_size=4),
    st.lists(st.sampled_from(["/overhead_left/image_raw", "cam_a", "cam_b", "x/y"]), min_size=1, max_size=3),
)


def plausible(spec):
    """Values of the spec's own kind, mostly in its range: to reach the cross checks and what
    an accepted change does."""
    low = -1e6 if spec.minimum is None else spec.minimum
    high = 1e6 if spec.maximum is None else spec.maximum
    if spec.kind == "bool":
        return st.booleans()
    if spec.kind == "integer":
        return st.integers(int(low) - 1, min(int(high), int(low) + 64) + 1)
    if spec.kind == "double":
        return st.floats(low, high)
    if spec.kind == "double_array":
        return st.lists(st.floats(low, high), min_size=1, max_size=4)
    if spec.kind == "string":
        return st.sampled_from(list(spec.choices) or ["", "cpu", "auto", "cuda:0", "/tmp/model.safetensors"])
    return st.lists(st.sampled_from(["/overhead_left/image_raw", "/overhead_right/image_raw", "cam_a", "x/y"]),
                    min_size=1, max_size=3)


def changes(specs):
    """A change of 1 to 4 parameters (now and then a name the node does not have)."""
    def value_for(name):
        if name not in specs:
            return ROS_VALUES
        return st.one_of(plausible(specs[name]), plausible(specs[name]), ROS_VALUES)

    names = st.lists(st.sampled_from(sorted(specs) + ["no_such_parameter"]), min_size=1, max_size=4, unique=True)
    return names.flatmap(lambda chosen: st.fixed_dictionaries({name: value_for(name) for name in chosen}))


def check_set(parameters: ParameterSet, proposed: dict, reasons: list[str], before: dict) -> None:
    assert isinstance(reasons, list) and all(isinstance(r, str) and r for r in reasons)
    if reasons:
        event("refused")
        with pytest.raises(ValueError):
            parameters.apply(proposed)
        assert parameters.values == before
        return
    event("accepted")
    parameters.apply(proposed)
    for name, spec in parameters.specs.items():
        assert spec.check(parameters.values[name]) is None, (name, parameters.values[name])
    assert ParameterSet(parameters.specs, parameters.values).values == parameters.values


@pytest.mark.parametrize("specs", [SEGMENTATION_PARAMETERS, GRASP_PARAMETERS], ids=["segmentation", "grasp"])
@fuzz(600)
@given(data=st.data())
def test_parameter_changes_are_accepted_whole_or_refused_with_reasons(specs, data):
    parameters = ParameterSet(specs)
    for _ in range(3):  # a few changes in a row, each starting where the last one left off
        proposed = data.draw(changes(specs))
        before = dict(parameters.values)
        with bounded(seconds=5, max_bytes=MIB):
            reasons = parameters.validate(proposed)
        check_set(parameters, proposed, reasons, before)


@pytest.mark.parametrize("specs", [SEGMENTATION_PARAMETERS, GRASP_PARAMETERS], ids=["segmentation", "grasp"])
@fuzz(300)
@given(data=st.data())
def test_start_up_values_are_accepted_or_refused_with_reasons(specs, data):
    overrides = data.draw(changes(specs))
    try:
        parameters = ParameterSet(specs, overrides)
    except ValueError as error:
        assert str(error)
        event("refused at start")
        return
    event("started")
    for name, spec in specs.items():
        assert spec.check(parameters.values[name]) is None


@fuzz(400)
@given(data=st.data())
def test_the_grasp_node_plans_with_what_it_accepted(data):
    core = GraspCore(FACTORY)
    for _ in range(3):
        proposed = data.draw(changes(GRASP_PARAMETERS))
        before = dict(core.parameters.values)
        decision = core.on_parameters(proposed)
        if not decision.accepted:
            event("refused")
            assert decision.reason and core.parameters.values == before
            continue
        event("accepted")
        values = core.parameters.values
        layout = core.planner.layout
        assert layout.num_cups == values["cup_rows"] * values["cup_cols"]
        assert math.isclose(layout.cup_radius, values["cup_radius"])
        assert core.planner.angles == [math.radians(a) for a in values["angles_deg"]]
        assert (core.planner.candidates_per_mask, core.planner.min_sealed_cups, core.planner.max_candidates) == (
            values["candidates_per_mask"], values["min_sealed_cups"], values["max_candidates"])
        assert set(decision.changed) <= set(GRASP_PARAMETERS)
    assert set(PLANNER_PARAMETERS) <= set(GRASP_PARAMETERS)


@pytest.fixture(scope="module")
def segmentation_core():
    torch.manual_seed(0)
    model = LatentMaskRCNN(tiny_config()).eval()
    return SegmentationCore(PerceptionPipeline(model, model_id="tiny@0"), FACTORY,
                            ParameterSet(SEGMENTATION_PARAMETERS))


@fuzz(400)
@given(data=st.data())
def test_the_segmentation_pipeline_follows_what_the_node_accepted(segmentation_core, data):
    core = segmentation_core
    for _ in range(3):
        proposed = data.draw(changes(SEGMENTATION_PARAMETERS))
        before = dict(core.parameters.values)
        decision = core.on_parameters(proposed)
        if not decision.accepted:
            event("refused")
            assert decision.reason and core.parameters.values == before
            continue
        event("accepted")
        settings = core.pipeline.settings
        for name in PIPELINE_SETTINGS:
            assert getattr(settings, name) == core.parameters[name], name


def test_regression_a_number_for_a_list_parameter_is_refused_with_a_reason():
    """Found by fuzzing: validating a number (or None) for a list parameter raised TypeError from
    iterating it instead of returning the reason (rclpy refuses a wrong type before the node's
    rules run, the ROS-free rule set must not rely on that)."""
    parameters = ParameterSet(GRASP_PARAMETERS)
    assert parameters.validate({"angles_deg": 5.0}) == ["angles_deg must be a non-empty list of numbers, got 5.0"]
    assert parameters.validate({"angles_deg": None}) == ["angles_deg must be a non-empty list of numbers, got None"]
    assert parameters.validate({"confidence_mask_topics": 3}, allow_read_only=True) == [
        "confidence_mask_topics must be a list of strings, got 3"]


@pytest.fixture(scope="module")
def grasp_node():
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("latent_segmentation_ros.msg", reason="messages not built (colcon build)")
    from rclpy.context import Context

    from latent_segmentation_ros.ros.grasp_node import GraspNode

    context = Context()
    rclpy.init(context=context)
    node = GraspNode(context=context)
    yield node
    node.destroy_node()
    rclpy.shutdown(context=context)


def ros_parameter(name, value):
    """An rclpy Parameter of the type ``value`` implies, or None where rclpy has no such type."""
    from rclpy.parameter import Parameter

    try:
        return Parameter(name, value=value)
    except (TypeError, ValueError):
        return None


@fuzz(300)
@given(data=st.data())
def test_ros2_param_set_of_anything_answers_with_a_result(grasp_node, data):
    """Through rclpy's own set_parameters (what the node's service runs): typed values of any
    kind, valid or not, for the grasp node's names; the node answers each and stays consistent."""
    from hypothesis import assume

    proposed = data.draw(changes(GRASP_PARAMETERS))
    parameters = [ros_parameter(name, value) for name, value in proposed.items()]
    assume(all(parameter is not None for parameter in parameters))
    try:
        results = grasp_node.set_parameters(parameters)
    except Exception as error:  # rclpy's own refusals of undeclared names
        from rclpy.exceptions import ParameterNotDeclaredException

        assert isinstance(error, ParameterNotDeclaredException), error
        event("undeclared name")
        return
    assert len(results) == len(parameters)
    for parameter, result in zip(parameters, results):
        assert isinstance(result.successful, bool) and (result.successful or result.reason)
        event("accepted" if result.successful else "refused")
        declared = grasp_node.get_parameter(parameter.name).value
        kept = grasp_node.parameter_set[parameter.name]
        assert (list(declared) if isinstance(declared, (list, tuple)) or hasattr(declared, "tolist") else declared) == kept
