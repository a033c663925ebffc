"""PerceptionPipeline with a real (tiny, untrained) Latent-MaskRCNN: per-camera results, the
same output as calling the model and the aggregation directly, re-aggregation without a second
network call, checkpoints, and clear errors for bad input."""
import math

import numpy as np
import pytest
import torch

from latent_maskrcnn.aggregation.aggregate import aggregate
from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros.core.pipeline import (
    CheckpointLoadError,
    PerceptionPipeline,
    PipelineSettings,
    check_images,
)

CAMERAS = ["overhead_left", "overhead_right"]
K = 4


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config(num_classes=3, class_names=["__background__", "polybag", "box"])).eval()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(1)
    left = rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8)
    right = np.ascontiguousarray(left[:, ::-1])  # a different view of similar content
    return [left, right]


def settings(**changes):
    base = dict(mode="confidence_mask", mask_threshold=0.5, num_samples=K, p=0.5, score_threshold=0.05,
                min_mask_area=0, seed=7)
    base.update(changes)
    return PipelineSettings(**base)


def direct(model, images, mode, p, score_threshold, seed=7, num_samples=K, flip=True):
    """What the pipeline should compute: the model on both images in one batch, then aggregate."""
    tensors = [torch.from_numpy(image).permute(2, 0, 1).float() / 255.0 for image in images]
    network_mode = "prior_mean" if mode == "prior_mean" else "sample"
    samples = model.sample(tensors, num_samples=num_samples, seed=seed, mode=network_mode,
                           flip=flip and network_mode == "sample")
    return [aggregate(per_image, mode, p, score_threshold) for per_image in samples]


def assert_same(result, expected, min_area=1):
    areas = expected["masks"].sum(dim=(1, 2)).numpy()
    keep = areas >= min_area
    scores = expected["scores"].numpy()[keep]
    order = np.argsort(-scores, kind="stable")
    np.testing.assert_array_equal(result.masks, expected["masks"].numpy()[keep][order])
    np.testing.assert_allclose(result.scores, scores[order], rtol=1e-6)
    np.testing.assert_array_equal(result.labels, expected["labels"].numpy()[keep][order])
    np.testing.assert_array_equal(result.support_counts, expected["support_counts"].numpy()[keep][order])


def test_results_for_both_cameras(model, images):
    pipeline = PerceptionPipeline(model, settings(), model_id="tiny@0")
    results = pipeline.process(images, CAMERAS)
    assert [r.camera for r in results] == CAMERAS
    assert pipeline.network_calls == 1
    expected = direct(model, images, "confidence_mask", 0.5, 0.05)
    for result, want in zip(results, expected):
        assert result.masks.shape[1:] == (64, 80)
        assert result.masks.shape[0] > 0, "the tiny model must yield masks for this test to mean something"
        assert_same(result, want)
        assert (result.mode, result.p, result.num_samples, result.model_id) == ("confidence_mask", 0.5, K, "tiny@0")
        assert result.inference_time_ms > 0
        assert np.all(np.diff(result.scores) <= 0)
        assert np.all(result.support_counts >= math.ceil(0.5 * K))
        assert np.all(result.support_counts <= K)
        assert set(result.labels) <= {1, 2}
        assert result.class_names == ["polybag", "box"]
        for mask, box in zip(result.masks, result.boxes):
            ys, xs = np.nonzero(mask)
            assert list(box) == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_new_p_and_mode_reaggregate_without_the_network(model, images):
    pipeline = PerceptionPipeline(model, settings())
    first = pipeline.process(images, CAMERAS)
    pipeline.set_p(1.0)
    assert not pipeline.needs_network()
    strict = pipeline.refresh()
    assert pipeline.network_calls == 1
    for result, want in zip(strict, direct(model, images, "confidence_mask", 1.0, 0.05)):
        assert_same(result, want)
        assert result.p == 1.0
        assert np.all(result.support_counts == K)
    # a stricter p never finds more confident area than a looser one
    for loose, tight in zip(first, strict):
        assert tight.masks.any(axis=0).sum() <= loose.masks.any(axis=0).sum()

    pipeline.set_mode("union_nms")
    merged = pipeline.refresh()
    assert pipeline.network_calls == 1
    for result, want in zip(merged, direct(model, images, "union_nms", 1.0, 0.05)):
        assert_same(result, want)
        assert result.mode == "union_nms"

    pipeline.update_settings(mode="confidence_mask", p=0.5, score_threshold=0.2, min_mask_area=30)
    filtered = pipeline.refresh()
    assert pipeline.network_calls == 1
    for result, want in zip(filtered, direct(model, images, "confidence_mask", 0.5, 0.2)):
        assert_same(result, want, min_area=30)
        assert np.all(result.masks.sum(axis=(1, 2)) >= 30)


def test_sampling_changes_rerun_the_network_on_the_kept_images(model, images):
    pipeline = PerceptionPipeline(model, settings())
    assert pipeline.refresh() is None
    pipeline.process(images, CAMERAS)
    pipeline.set_mode("prior_mean")
    assert pipeline.needs_network()
    means = pipeline.refresh()
    assert pipeline.network_calls == 2
    for result, want in zip(means, direct(model, images, "prior_mean", 0.5, 0.05, num_samples=1)):
        assert_same(result, want)
        assert result.num_samples == 1
        assert np.all(result.support_counts == 1)
    pipeline.set_num_samples(2)  # prior_mean draws one code whatever K is: no network run
    pipeline.refresh()
    assert pipeline.network_calls == 2
    pipeline.update_settings(mode="confidence_mask", seed=3)
    reseeded = pipeline.refresh()
    assert pipeline.network_calls == 3
    for result, want in zip(reseeded, direct(model, images, "confidence_mask", 0.5, 0.05, seed=3, num_samples=2)):
        assert_same(result, want)
        assert result.num_samples == 2
    pipeline.update_settings(flip_samples=False)  # the mirror views are part of the network's output
    assert pipeline.needs_network()
    unflipped = pipeline.refresh()
    assert pipeline.network_calls == 4
    for result, want in zip(unflipped, direct(model, images, "confidence_mask", 0.5, 0.05, seed=3, num_samples=2, flip=False)):
        assert_same(result, want)
    pipeline.set_mode("prior_mean")  # one code, no mirror: flip_samples does not apply
    pipeline.refresh()
    calls = pipeline.network_calls
    pipeline.update_settings(flip_samples=True)
    pipeline.refresh()
    assert pipeline.network_calls == calls


def test_bad_images_are_refused_with_reasons(model, images):
    pipeline = PerceptionPipeline(model, settings())
    with pytest.raises(ValueError, match=r"differ in size.*overhead_left 64x80, overhead_right 32x80"):
        pipeline.process([images[0], images[1][:32]], CAMERAS)
    with pytest.raises(ValueError, match="1 images for 2 cameras"):
        pipeline.process(images[:1], CAMERAS)
    with pytest.raises(ValueError, match=r"overhead_right: expected a uint8 \[H, W, 3\] RGB array, got float32"):
        pipeline.process([images[0], images[1].astype(np.float32)], CAMERAS)
    with pytest.raises(ValueError, match="expected a uint8"):
        pipeline.process([images[0], images[1][:, :, 0]], CAMERAS)
    with pytest.raises(ValueError, match="unique"):
        check_images(images, ["a", "a"])
    assert pipeline.network_calls == 0


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"p": 1.7}, "p must be at most 1"),
        ({"p": float("nan")}, "p must be a finite number"),
        ({"p": 0.0}, "p must be greater than 0"),
        ({"num_samples": -2}, "num_samples must be at least 1"),
        ({"mode": "average"}, "mode must be one of confidence_mask, union_nms, prior_mean"),
        ({"score_threshold": 1.5}, "score_threshold must be at most 1"),
        ({"min_mask_area": -1}, "min_mask_area must be at least 0"),
        ({"colour": 1}, "unknown pipeline settings: colour"),
    ],
)
def test_bad_settings_are_refused_and_nothing_changes(model, changes, reason):
    pipeline = PerceptionPipeline(model, settings())
    before = pipeline.settings
    with pytest.raises(ValueError, match=reason):
        pipeline.update_settings(**changes)
    assert pipeline.settings == before


def test_checkpoint_loading(model, images, tmp_path):
    path = save_model(model, tmp_path / "tiny.safetensors")
    pipeline = PerceptionPipeline.from_checkpoint(path, device="cpu", settings=settings())
    assert pipeline.model_id.startswith("tiny@") and len(pipeline.model_id) == len("tiny@") + 12
    assert pipeline.class_names == ["polybag", "box"]
    for result, want in zip(pipeline.process(images, CAMERAS), direct(model, images, "confidence_mask", 0.5, 0.05)):
        assert_same(result, want)

    missing = tmp_path / "nowhere.safetensors"
    with pytest.raises(CheckpointLoadError, match=f"{missing}: no such file"):
        PerceptionPipeline.from_checkpoint(missing)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointLoadError, match=f"cannot load checkpoint {garbage}: .+"):
        PerceptionPipeline.from_checkpoint(garbage, device="cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CheckpointLoadError, match="CUDA is not available"):
            PerceptionPipeline.from_checkpoint(path, device="cuda")
