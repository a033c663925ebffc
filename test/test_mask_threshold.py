"""The mask threshold on every path: pasting, the model, the kept probabilities, the pipeline, the
node's parameter and every command's option. A higher threshold never grows a mask; values
outside (0, 1) are refused with the reason."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_maskrcnn.model.postprocess import (
    MASK_PROBABILITIES,
    MaskProbabilities,
    paste_masks_binary,
    validate_mask_threshold,
    with_mask_threshold,
)
from latent_segmentation_ros import cli
from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS, ParameterSet
from latent_segmentation_ros.core.pipeline import PerceptionPipeline, PipelineSettings

BAD_VALUES = [(0.0, "greater than 0"), (1.0, "less than 1"), (-0.2, "greater than 0"), (1.5, "less than 1"),
              (math.nan, "finite"), (math.inf, "finite")]


@pytest.mark.parametrize("value, reason", BAD_VALUES)
def test_values_outside_the_open_interval_are_refused_with_the_reason(value, reason):
    with pytest.raises(ValueError, match=reason):
        validate_mask_threshold(value)
    node_reason = SEGMENTATION_PARAMETERS["mask_threshold"].check(value)
    assert node_reason is not None and reason in node_reason
    with pytest.raises(ValueError, match=reason):
        PipelineSettings(mask_threshold=value)


def test_the_parameter_is_documented_as_an_open_interval():
    spec = SEGMENTATION_PARAMETERS["mask_threshold"]
    assert spec.default == 0.8 and spec.constraints == "0 < value < 1" and not spec.read_only
    assert validate_mask_threshold(1e-6) == 1e-6 and validate_mask_threshold(0.999) == 0.999
    for bad in (True, "0.5", None):
        with pytest.raises(ValueError, match="finite number"):
            validate_mask_threshold(bad)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.01, 0.98), st.floats(0.0, 0.5))
def test_a_higher_threshold_never_grows_a_mask(seed, low, step):
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand((3, 1, 7, 7), generator=generator)
    corners = torch.rand((3, 2), generator=generator) * torch.tensor([30.0, 20.0])
    sizes = torch.rand((3, 2), generator=generator) * 25 + 1
    boxes = torch.cat([corners, corners + sizes], dim=1)
    high = min(low + step, 0.99)
    masks_low = paste_masks_binary(probs, boxes, (24, 36), low)
    masks_high = paste_masks_binary(probs, boxes, (24, 36), high)
    assert not (masks_high & ~masks_low).any()
    kept = MaskProbabilities(probs, boxes, (24, 36))
    assert torch.equal(kept.binarize(low), masks_low) and torch.equal(kept.mirror().binarize(high), masks_high.flip(-1))


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config(num_classes=2, class_names=["__background__", "polybag"])).eval()


def images():
    generator = torch.Generator().manual_seed(3)
    return [torch.rand((3, 64, 80), generator=generator), torch.rand((3, 64, 80), generator=generator)]


def test_kept_probabilities_rebinarise_exactly_as_the_model_binarises(model):
    kept = model.sample(images(), num_samples=3, seed=2, flip=True, keep_mask_probabilities=True)
    direct = model.sample(images(), num_samples=3, seed=2, flip=True, mask_threshold=0.8)
    plain = model.sample(images(), num_samples=3, seed=2, flip=True)
    assert sum(len(p["masks"]) for samples in kept for p in samples) > 0
    for kept_image, direct_image, plain_image in zip(kept, direct, plain):
        for with_probs, at_08, at_05 in zip(kept_image, direct_image, plain_image):  # sample 3 is a mirrored one
            assert isinstance(with_probs[MASK_PROBABILITIES], MaskProbabilities) and MASK_PROBABILITIES not in at_05
            assert torch.equal(with_probs["masks"], at_05["masks"])
            assert torch.equal(with_mask_threshold(with_probs, 0.8)["masks"], at_08["masks"])
            assert torch.equal(with_mask_threshold(with_probs, 0.5)["masks"], at_05["masks"])
            assert not (at_08["masks"] & ~at_05["masks"]).any()
            assert torch.equal(at_08["scores"], at_05["scores"])  # the threshold changes masks only
    with pytest.raises(ValueError, match="keep_mask_probabilities"):
        with_mask_threshold(plain[0][0], 0.7)
    with pytest.raises(ValueError, match="open interval"):
        model.sample(images(), mask_threshold=1.0)


def test_the_pipeline_rebinarises_the_last_frame_without_the_network(model):
    rng = np.random.default_rng(1)
    frames = [rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8) for _ in range(2)]
    base = dict(num_samples=3, p=0.5, score_threshold=0.05, min_mask_area=0, seed=7)
    for mode in ("confidence_mask", "prior_mean"):
        pipeline = PerceptionPipeline(model, PipelineSettings(mode=mode, mask_threshold=0.5, **base))
        first = pipeline.process(frames, ["a", "b"])
        pipeline.update_settings(mask_threshold=0.8)
        refreshed = pipeline.refresh()
        assert pipeline.network_calls == 1
        fresh = PerceptionPipeline(model, PipelineSettings(mode=mode, mask_threshold=0.8, **base)).process(frames, ["a", "b"])
        for got, want, before in zip(refreshed, fresh, first):
            np.testing.assert_array_equal(got.masks, want.masks)
            np.testing.assert_array_equal(got.scores, want.scores)
            if mode == "prior_mean":  # one prediction: every mask shrinks or stays
                assert got.masks.any(axis=0).sum() <= before.masks.any(axis=0).sum()
        pipeline.update_settings(mask_threshold=0.5)
        for got, want in zip(pipeline.refresh(), first):
            np.testing.assert_array_equal(got.masks, want.masks)
        assert pipeline.network_calls == 1


def test_the_node_refuses_or_applies_the_threshold_live(model):
    from latent_segmentation_ros.core import messages
    from latent_segmentation_ros.core.image_conversion import numpy_to_image
    from latent_segmentation_ros.core.node_support import Work
    from latent_segmentation_ros.core.segmentation import SegmentationCore

    factory = messages.rosbags_factory(messages.get_typestore())
    parameters = ParameterSet(SEGMENTATION_PARAMETERS, {"num_samples": 2, "mode": "prior_mean", "score_threshold": 0.05,
                                                        "min_mask_area": 0})
    core = SegmentationCore(PerceptionPipeline(model, model_id="tiny@0"), factory, parameters)
    for value, reason in ((1.0, "mask_threshold must be less than 1, got 1"),
                          (0.0, "mask_threshold must be greater than 0, got 0")):
        decision = core.on_parameters({"mask_threshold": value})
        assert not decision.accepted and reason in decision.reason
    rgb = np.random.default_rng(2).integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    pair = []
    for frame_id in ("left", "right"):
        fields = numpy_to_image(rgb, "rgb8")
        pair.append(factory.image(header=factory.make_header(5, 0, frame_id), height=fields.height, width=fields.width,
                                  encoding="rgb8", is_bigendian=0, step=fields.step, data=factory.byte_array(bytes(fields.data))))
    first = core.handle(Work("pair", tuple(pair)))
    calls = core.pipeline.network_calls
    decision = core.on_parameters({"mask_threshold": 0.9})
    assert decision.accepted and decision.refresh and decision.changed == {"mask_threshold": 0.9}
    outcome = core.handle(Work("refresh"))
    assert core.pipeline.network_calls == calls and outcome.output.refreshed
    before = sum(int(m.area) for _, array in first.output.mask_arrays for m in array.masks)
    after = sum(int(m.area) for _, array in outcome.output.mask_arrays for m in array.masks)
    assert after <= before


@pytest.fixture(scope="module")
def command_inputs(tmp_path_factory):
    from latent_maskrcnn.data.synthetic import make_dataset
    from latent_maskrcnn.model.checkpoint import save_model
    from latent_segmentation_ros.replay.synthetic_bag import write_synthetic_bag

    root = tmp_path_factory.mktemp("mask_threshold")
    torch.manual_seed(0)
    save_model(LatentMaskRCNN(tiny_config()).eval(), root / "tiny.safetensors")
    make_dataset(root / "data", images=1, seed=5, height=48, width=64, progress=False)
    write_synthetic_bag(root / "bag", 2, seed=3, height=48, width=64)
    return root


@pytest.mark.parametrize("value, reason", [("1", "mask_threshold must be less than 1"),
                                           ("0", "mask_threshold must be greater than 0"),
                                           ("1.2", "mask_threshold must be less than 1")])
def test_every_command_refuses_a_threshold_outside_the_open_interval(command_inputs, tmp_path, capsys, value, reason):
    root = command_inputs
    checkpoint = str(root / "tiny.safetensors")
    commands = {
        "replay": ["replay", "--bag", str(root / "bag"), "--checkpoint", checkpoint, "--no-progress"],
        "sweep-p": ["sweep-p", "--bag", str(root / "bag"), "--checkpoint", checkpoint, "--no-progress"],
        "evaluate": ["evaluate", "--checkpoint", checkpoint, "--data", str(root / "data"), "--no-progress",
                     "--device", "cpu"],
        "grasp-causes": ["grasp-causes", "--data", str(root / "data"), "--checkpoint", checkpoint, "--no-progress"],
        "demo": ["demo", "--checkpoint", checkpoint, "--frames", "2", "--height", "48", "--width", "64"],
    }
    for name, args in commands.items():
        code = cli.main(args + ["--out", str(tmp_path / name), "--mask-threshold", value])
        assert code == 2, name
        assert reason in capsys.readouterr().err, name
        assert not (tmp_path / name / "results.json").exists()


def test_replay_and_grasp_causes_apply_the_threshold(command_inputs, tmp_path):
    root = command_inputs
    checkpoint = str(root / "tiny.safetensors")
    areas = {}
    for value in ("0.3", "0.9"):
        out = tmp_path / f"replay{value}"
        assert cli.main(["replay", "--bag", str(root / "bag"), "--checkpoint", checkpoint, "--no-progress",
                         "--mode", "prior_mean", "--score-threshold", "0", "--out", str(out), "--mask-threshold", value]) == 0
        report = json.loads((out / "report.json").read_text())
        assert report["mask_threshold"] == float(value)
        areas[value] = report["aggregate"]["pickable_area"]
        out = tmp_path / f"causes{value}"
        assert cli.main(["grasp-causes", "--data", str(root / "data"), "--checkpoint", checkpoint, "--no-progress",
                         "--out", str(out), "--mask-threshold", value]) == 0
        assert json.loads((out / "grasp_causes.json").read_text())["mask_threshold"] == float(value)
    assert areas["0.9"] <= areas["0.3"]  # the prior mean's masks only shrink
