"""`latent-seg sweep-p`: the network runs once per frame; every p is scored; Fig. 5 is drawn."""
import json

import pytest
import torch

from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros import cli
from latent_segmentation_ros.replay.runner import build_pair_processor
from latent_segmentation_ros.replay.scoring import ScoringConfig
from latent_segmentation_ros.replay.sweep import SweepOptions, sweep_p
from latent_segmentation_ros.replay.synthetic_bag import BagTiming, write_synthetic_bag


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(LatentMaskRCNN(tiny_config()).eval(), path)
    return path


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "tiny"
    write_synthetic_bag(path, 3, seed=8, height=64, width=80, timing=BagTiming(drop_probability=0.0))
    return path


def counting(model):
    calls = []
    original = model.sample

    def sample(*args, **kwargs):
        calls.append(kwargs.get("mode"))
        return original(*args, **kwargs)

    model.sample = sample
    return calls


@pytest.mark.parametrize("prior_mean", [False, True])
def test_network_runs_once_per_frame(bag, checkpoint, tmp_path, prior_mean):
    setup = build_pair_processor(checkpoint, samples=2, score_threshold=0.0, min_mask_area=1)
    calls = counting(setup.pipeline.model)
    # A small gripper circle, so that some circles fit inside the small masks of 64x80 images.
    options = SweepOptions(bag=bag, out_dir=tmp_path, ps=[0.2, 0.5, 1.0], include_prior_mean=prior_mean, progress=False,
                           scoring=ScoringConfig(gripper_radius=1))
    result = sweep_p(options, setup)
    assert result["pairs"] == 3
    expected = ["sample"] * 3 if not prior_mean else ["sample", "prior_mean"] * 3
    assert calls == expected
    assert result["network_calls"] == len(expected)
    assert [row["p"] for row in result["rows"]] == [0.2, 0.5, 1.0] + ([None] if prior_mean else [])
    for row in result["rows"]:
        assert row["images"] == 6 and row["pickable_area"] is not None
    assert result["rows"][0]["double_pick_rate"] is not None  # p = 0.2 keeps masks a gripper fits in


def test_cli_prints_the_table_and_writes_the_plot(bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "sweep"
    code = cli.main(["sweep-p", "--bag", str(bag), "--out", str(out), "--checkpoint", str(checkpoint),
                     "--samples", "3", "--score-threshold", "0", "--ps", "0.3", "1.0", "--gripper-radius", "1",
                     "--target-double-pick", "1.0", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| p | double-pick rate | pickable area |" in printed and "p = 0.30" in printed
    result = json.loads((out / "sweep.json").read_text())
    low, high, prior = result["rows"]
    assert (low["p"], high["p"], prior["p"]) == (0.3, 1.0, None)
    assert prior["mode"] == "prior_mean" and prior["images"] == 6
    assert result["recommended_p"] == 0.3  # every p meets a 100 % target: the smallest is chosen
    assert (out / "fig5_double_pick_vs_pickable_area.png").stat().st_size > 0
    assert "Fig. 5" in (out / "sweep.md").read_text()


def test_sweep_without_ground_truth_is_a_clear_error(checkpoint, tmp_path, capsys):
    from latent_segmentation_ros.core.messages import get_typestore
    from latent_segmentation_ros.replay.bag_io import BagReader, BagWriter

    source = tmp_path / "src"
    write_synthetic_bag(source, 2, seed=1, height=32, width=40)
    typestore = get_typestore()
    images_only = tmp_path / "images_only"
    with BagReader(source) as reader, BagWriter(images_only, typestore) as writer:
        topics = [t for t in reader.topics if t.endswith("image_raw")]
        for topic in topics:
            writer.add_topic(topic, "sensor_msgs/msg/Image")
        for raw in reader.messages(topics):
            writer.write(raw.topic, raw.log_time_ns, typestore.deserialize_cdr(raw.data, raw.msgtype))
    code = cli.main(["sweep-p", "--bag", str(images_only), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint)])
    assert code == 2
    assert "sweep-p needs ground truth" in capsys.readouterr().err
