"""Checkpoints: safetensors round trip, clear errors for wrong or damaged files, and
initialisation from a torchvision MaskRCNN state dict."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from latent_maskrcnn.model.checkpoint import (
    CheckpointError,
    load_model,
    load_torchvision_maskrcnn_weights,
    load_weights,
    read_config,
    save_model,
)
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN


def images():
    generator = torch.Generator().manual_seed(0)
    return [torch.rand((3, 64, 80), generator=generator), torch.rand((3, 48, 64), generator=generator)]


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    torch.manual_seed(0)
    model = LatentMaskRCNN(tiny_config(backbone_norm="batch_norm")).eval()
    # Make batch-norm statistics non-trivial so the round trip covers buffers too.
    model.train()
    model.backbone(torch.rand(2, 3, 64, 64))
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "model.safetensors"
    save_model(model, path)
    return model, path


def assert_same_predictions(first, second):
    for a_image, b_image in zip(first, second):
        assert len(a_image) == len(b_image)
        for a, b in zip(a_image, b_image):
            for key in ("boxes", "labels", "scores", "masks"):
                assert torch.equal(a[key], b[key]), key


def test_round_trip_gives_identical_outputs(saved):
    model, path = saved
    loaded = load_model(path)
    assert not loaded.training
    assert loaded.config == model.config
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    assert_same_predictions(model.sample(images(), num_samples=3, seed=7), loaded.sample(images(), num_samples=3, seed=7))
    assert_same_predictions(model.sample(images(), mode="prior_mean"), loaded.sample(images(), mode="prior_mean"))


def test_one_file_with_config_metadata_and_a_sidecar(saved):
    model, path = saved
    assert read_config(path) == model.config
    sidecar = json.loads(path.with_name(path.name + ".json").read_text())
    assert sidecar["config"] == model.config.to_dict()
    assert sidecar["num_parameters"] == sum(p.numel() for p in model.parameters())


def test_float16_storage_is_smaller_and_loads_close(saved, tmp_path):
    model, path = saved
    half = save_model(model, tmp_path / "half.safetensors", dtype="float16")
    assert half.stat().st_size < 0.6 * path.stat().st_size
    loaded = load_model(half)
    assert loaded.backbone.body.conv1.weight.dtype == torch.float32
    torch.testing.assert_close(
        loaded.roi_heads.box_head.fc6.weight, model.roi_heads.box_head.fc6.weight, atol=1e-3, rtol=1e-3
    )


def test_bad_storage_dtype_is_refused(saved, tmp_path):
    model, _ = saved
    with pytest.raises(ValueError, match="dtype must be None, float32, float16 or bfloat16"):
        save_model(model, tmp_path / "x.safetensors", dtype=torch.int8)


def test_truncated_file_is_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    broken = tmp_path / "truncated.safetensors"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated.safetensors is not a readable safetensors file"):
        load_model(broken)


def test_not_a_safetensors_file_is_refused(tmp_path):
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"PK\x03\x04 this is a zip, not safetensors" * 20)
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_model(junk)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nothing.safetensors")


def test_foreign_safetensors_file_is_refused(tmp_path):
    foreign = tmp_path / "foreign.safetensors"
    save_file({"weight": torch.zeros(2)}, str(foreign))
    with pytest.raises(CheckpointError, match="not a latent_maskrcnn checkpoint"):
        load_model(foreign)


def test_missing_and_mismatched_tensors_are_named(saved, tmp_path):
    _, path = saved
    tensors = load_file(str(path))
    from safetensors import safe_open

    with safe_open(str(path), "pt") as handle:
        metadata = handle.metadata()
    del tensors["roi_heads.box_head.fc7.bias"]
    tensors["rpn.head.cls_logits.weight"] = torch.zeros(5, 32, 1, 1)
    tensors["extra.thing"] = torch.zeros(1)
    edited = tmp_path / "edited.safetensors"
    save_file(tensors, str(edited), metadata=metadata)
    with pytest.raises(CheckpointError) as error:
        load_model(edited)
    message = str(error.value)
    assert "missing keys: roi_heads.box_head.fc7.bias" in message
    assert "unexpected keys: extra.thing" in message
    assert "rpn.head.cls_logits.weight: checkpoint [5, 32, 1, 1] vs model [3, 32, 1, 1]" in message


def test_loading_into_a_model_with_another_config_names_the_differences(saved):
    _, path = saved
    other = LatentMaskRCNN(tiny_config(num_classes=3, backbone_norm="batch_norm"))
    with pytest.raises(CheckpointError, match="num_classes: checkpoint 2 vs model 3"):
        load_weights(other, path)
    with pytest.raises(CheckpointError, match="roi_heads.box_predictor.cls_score.weight: checkpoint \\[2, 64\\] vs model \\[3, 64\\]"):
        load_weights(other, path, strict_config=False)


def test_torchvision_state_dict_initialises_the_decoder(tmp_path):
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91)
    state = reference.state_dict()
    del reference
    model = LatentMaskRCNN(tiny_config(backbone="resnet50_fpn", fpn_channels=256, box_head_dim=1024,
                                       mask_head_channels=256, anchor_sizes=[32, 64, 128, 256, 512]))
    report = load_torchvision_maskrcnn_weights(model, state)
    own = model.state_dict()
    for key in ("backbone.body.layer3.2.conv2.weight", "backbone.fpn.layer_blocks.0.0.weight",
                "rpn.head.conv.0.0.weight", "roi_heads.box_head.fc6.weight", "roi_heads.mask_head.3.0.weight",
                "roi_heads.mask_predictor.conv5_mask.weight"):
        assert key in report.loaded
        assert torch.equal(own[key], state[key]), key
    assert set(report.skipped) == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
        "roi_heads.mask_predictor.mask_fcn_logits.bias",
    }
    assert report.skipped["roi_heads.box_predictor.cls_score.weight"] == "shape [91, 1024] vs model [2, 1024]"
    assert "injection.code_proj.0.weight" in report.not_initialised
    assert "prior.mlp.0.weight" in report.not_initialised
    # The same through a file, read with weights_only=True.
    path = tmp_path / "maskrcnn.pth"
    torch.save({"model": {k: v for k, v in state.items() if k.startswith("rpn.")}}, path)
    from_file = load_torchvision_maskrcnn_weights(model, path)
    assert sorted(from_file.loaded) == sorted(k for k in state if k.startswith("rpn."))


def test_torchvision_loader_refuses_unrelated_weights(tmp_path):
    model = LatentMaskRCNN(tiny_config())
    with pytest.raises(CheckpointError, match="no tensor of the given state dict matches"):
        load_torchvision_maskrcnn_weights(model, {"fc.weight": torch.zeros(3, 3)})
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file at all")
    with pytest.raises(CheckpointError, match="not a readable torch state dict"):
        load_torchvision_maskrcnn_weights(model, bad)
