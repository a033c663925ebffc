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
from latent_segmentation_ros.replay.sweep import SweepOptions, grasp_target_line, sweep_p
from latent_segmentation_ros.replay.synthetic_bag import BagTiming, write_synthetic_bag
from tiny_models import save_tiny_checkpoint


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"), seed=1)


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
    # One view: the tiny model's masks on the mirror image hardly overlap its masks on the image.
    setup = build_pair_processor(checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, score_threshold=0.0, min_mask_area=1, flip_samples=False)
    calls = counting(setup.pipeline.model)
    # A small gripper circle, so that some circles fit inside the small masks of 64x80 images.
    options = SweepOptions(bag=bag, out_dir=tmp_path, ps=[0.2, 0.5, 1.0], include_prior_mean=prior_mean, progress=False,
                           scoring=ScoringConfig(gripper_radius=1), mask_thresholds=())
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
                     "--target-double-pick", "1.0", "--no-progress", "--no-curves"])
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


@pytest.fixture(scope="module")
def baseline_checkpoint(tmp_path_factory):
    # An untrained plain model whose one detection per image has a mask of a few hundred pixels,
    # so that gripper circles fall inside exactly one mask (N > 0).
    torch.manual_seed(5)
    path = tmp_path_factory.mktemp("baseline") / "maskrcnn.safetensors"
    save_model(LatentMaskRCNN(tiny_config(latent_dim=0, box_detections_per_img=1)).eval(), path)
    return path


def test_baseline_is_one_more_method_scored_like_the_others(bag, checkpoint, baseline_checkpoint, tmp_path):
    from latent_segmentation_ros.replay.sweep import BASELINE, PRIOR_MEAN, load_baseline

    scoring = ScoringConfig(gripper_radius=1)
    setup = build_pair_processor(checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, score_threshold=0.0, min_mask_area=1)
    baseline = load_baseline(baseline_checkpoint, setup)
    calls = counting(baseline.model)
    result = sweep_p(SweepOptions(bag=bag, out_dir=tmp_path / "with", ps=[0.5, 0.9], progress=False, scoring=scoring,
                                  mask_thresholds=()), setup, baseline)
    assert calls == ["prior_mean"] * 3 and result["baseline_network_calls"] == 3
    assert [row["method"] for row in result["rows"]] == ["confidence_mask", "confidence_mask", PRIOR_MEAN, BASELINE]
    row = result["rows"][-1]
    assert row["p"] is None and row["images"] == 6 and row["picks"] > 0
    for r in result["rows"]:
        assert 0 <= r["false_positive_picks"] <= r["picks"] and 0 <= r["double_picks"] <= r["picks"]
        assert r["grasp_double_picks"] <= r["grasps_scored"] <= r["grasps"]
        if r["picks"]:
            assert r["false_positive_rate"] == r["false_positive_picks"] / r["picks"]
        if r["picks"] > r["false_positive_picks"]:
            assert r["double_pick_rate_on_items"] == r["double_picks"] / (r["picks"] - r["false_positive_picks"])
    # The baseline row is what the same bag gives when the baseline is the swept model itself
    # (a latent_dim = 0 model's prior mean is its one prediction): the same scorer and planner.
    own = build_pair_processor(baseline_checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, score_threshold=0.0, min_mask_area=1)
    alone = sweep_p(SweepOptions(bag=bag, out_dir=tmp_path / "alone", ps=[1.0], progress=False, scoring=scoring,
                                 mask_thresholds=()), own)
    prior = alone["rows"][-1]
    for key in ("picks", "double_picks", "false_positive_picks", "pickable_area", "grasp_double_picks", "mr_at_hp"):
        assert row[key] == prior[key], key
    # The grasp target compares p = 0.9 with the prior mean, from the same rows.
    at_09, prior_row = result["rows"][1], result["rows"][2]
    assert result["grasp_target"]["values"]["confidence_mask"] == at_09["grasp_double_pick_rate"]
    assert result["grasp_target"]["values"]["prior_mean"] == prior_row["grasp_double_pick_rate"]
    assert result["grasp_target"]["status"] in {"met", "not met", "not measured"}
    assert result["grasp_target"]["grasps"] == {
        "confidence_mask": [at_09["grasp_double_picks"], at_09["grasps_scored"]],
        "prior_mean": [prior_row["grasp_double_picks"], prior_row["grasps_scored"]]}
    assert grasp_target_line(result).endswith(
        f"({at_09['grasp_double_picks']}/{at_09['grasps_scored']} against "
        f"{prior_row['grasp_double_picks']}/{prior_row['grasps_scored']} chosen grasps): {result['grasp_target']['status']}")
    assert alone["grasp_target"]["status"] == "not measured"  # no p = 0.9 in that sweep
    written = json.loads((tmp_path / "with" / "sweep.json").read_text())
    assert written["rows"] == result["rows"]
    markdown = (tmp_path / "with" / "sweep.md").read_text()
    assert "| MaskRCNN baseline |" in markdown and "grasp target" in markdown


def test_cli_baseline_option_and_a_baseline_that_does_not_load(bag, checkpoint, baseline_checkpoint, tmp_path, capsys):
    common = ["sweep-p", "--bag", str(bag), "--checkpoint", str(checkpoint), "--samples", "2", "--score-threshold", "0",
              "--ps", "0.9", "--gripper-radius", "1", "--no-progress", "--no-prior-mean"]
    assert cli.main(common + ["--out", str(tmp_path / "a"), "--baseline", str(baseline_checkpoint)]) == 0
    printed = capsys.readouterr().out
    assert "| MaskRCNN baseline |" in printed
    assert "grasp target" in printed and "not measured" in printed  # no prior mean in this sweep
    result = json.loads((tmp_path / "a" / "sweep.json").read_text())
    assert [row["method"] for row in result["rows"]] == ["confidence_mask", "maskrcnn_baseline"]
    assert cli.main(common + ["--out", str(tmp_path / "b"), "--baseline", str(tmp_path / "missing.safetensors")]) == 2
    assert "missing.safetensors" in capsys.readouterr().err


def test_baselines_over_the_mask_threshold_meet_the_confidence_masks(bag, checkpoint, baseline_checkpoint, tmp_path):
    """The curves: each baseline once through the network per frame (plus one pass on the mirror
    images), every threshold re-binarised; the default threshold's point is the baseline's own
    row; the matched comparison is seeded and reads each curve at the reference's area."""
    from latent_segmentation_ros.replay.sweep import BASELINE, PRIOR_MEAN, load_baseline

    scoring = ScoringConfig(gripper_radius=1)
    setup = build_pair_processor(checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, score_threshold=0.0, min_mask_area=1, flip_samples=False)
    baseline = load_baseline(baseline_checkpoint, setup)
    latent_calls, baseline_calls = counting(setup.pipeline.model), counting(baseline.model)
    options = SweepOptions(bag=bag, out_dir=tmp_path / "curves", ps=[0.5], progress=False, scoring=scoring,
                           mask_thresholds=(0.3, 0.7, 0.9), resamples=200)
    result = sweep_p(options, setup, baseline)
    # p = 0.9 (the reference) joins the sweep; per frame: K samples, the prior mean, its mirror view
    assert [row["p"] for row in result["rows"]] == [0.5, 0.9, None, None]
    assert latent_calls == ["sample", "prior_mean", "prior_mean"] * 3
    assert baseline_calls == ["prior_mean", "prior_mean"] * 3
    assert result["curve_network_calls"] == 6 and result["mask_thresholds"] == [0.3, 0.7, 0.9]
    curves = result["operating_curves"]
    assert set(curves) == {"confidence_mask", "prior_mean", "prior_mean_mirror", "maskrcnn", "maskrcnn_mirror"}
    rows = {row["method"]: row for row in result["rows"] if row["p"] is None}
    for method, key in (("prior_mean", PRIOR_MEAN), ("maskrcnn", BASELINE)):
        points = curves[method]["points"]
        assert [point["mask_threshold"] for point in points] == [0.3, 0.5, 0.7, 0.9]
        areas = [point["pickable_area"] for point in points]
        assert all(b <= a + 1e-12 for a, b in zip(areas, areas[1:]))  # a higher threshold never grows a mask
        default = points[1]
        row = rows[key]
        assert default["pickable_area"] == pytest.approx(row["pickable_area"])
        assert default["picks"] == row["picks"] and default["grasps"] == row["grasps_scored"]
        if row["picks"]:
            assert default["double_pick_rate"] == pytest.approx(row["double_pick_rate"])
    confidence = {point["p"]: point for point in curves["confidence_mask"]["points"]}
    at_09 = next(row for row in result["rows"] if row["p"] == 0.9)
    assert confidence[0.9]["pickable_area"] == pytest.approx(at_09["pickable_area"])
    matched = result["matched_comparison"]
    assert matched["reference"] == "confidence_mask" and matched["reference_value"] == 0.9 and matched["images"] == 6
    assert {row["baseline"] for row in matched["rows"]} <= set(curves) - {"confidence_mask"}
    for row in matched["rows"]:
        assert row["verdict"] in {"better", "worse", "no difference measured", "not reached"}
    again = sweep_p(SweepOptions(bag=bag, out_dir=tmp_path / "again", ps=[0.5], progress=False, scoring=scoring,
                                 mask_thresholds=(0.3, 0.7, 0.9), resamples=200), setup, baseline)
    assert again["matched_comparison"] == matched  # seeded: a rerun prints the same intervals
    markdown = (tmp_path / "curves" / "sweep.md").read_text()
    assert "## Matched comparison" in markdown and "pickable area fraction" in markdown
    saved = json.loads((tmp_path / "curves" / "curves.json").read_text())
    assert {curve["method"] for curve in saved["curves"]} == set(curves)


def test_cli_mask_threshold_outside_the_open_interval_is_refused(bag, checkpoint, tmp_path, capsys):
    for value, reason in (("1.0", "mask_threshold must be less than 1"), ("0", "mask_threshold must be greater than 0")):
        code = cli.main(["sweep-p", "--bag", str(bag), "--out", str(tmp_path / value), "--checkpoint", str(checkpoint),
                         "--mask-threshold", value, "--no-progress"])
        assert code == 2 and reason in capsys.readouterr().err
    code = cli.main(["sweep-p", "--bag", str(bag), "--out", str(tmp_path / "list"), "--checkpoint", str(checkpoint),
                     "--mask-thresholds", "0.5", "1.2", "--no-progress"])
    assert code == 2 and "open interval (0, 1)" in capsys.readouterr().err


def test_a_curve_point_is_scored_as_the_sweep_scores_its_rows(baseline_checkpoint):
    """`prediction_outcome` (a curve point from kept samples) gives the circles and the chosen
    grasp that `Scorer` gives the published masks of the same prediction."""
    import numpy as np

    from latent_maskrcnn.evaluation.threshold_curves import threshold_prediction
    from latent_segmentation_ros.replay.grasp_outcomes import prediction_outcome, record_outcome
    from latent_segmentation_ros.replay.scoring import Scorer

    setup = build_pair_processor(baseline_checkpoint, mode="prior_mean", mask_threshold=0.5, score_threshold=0.0, min_mask_area=4,
                                 grasp_overrides={"cup_rows": 1, "cup_cols": 1, "cup_radius": 2.0})
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8) for _ in setup.cameras]
    truth = np.zeros((2, 64, 80), dtype=bool)
    truth[0, 5:40, 5:50], truth[1, 30:60, 40:78] = True, True
    outcome = setup.process_pair(images)
    assert any(len(result.masks) for result in outcome.results) and any(outcome.grasps)  # something to score
    scoring = ScoringConfig(gripper_radius=1)
    for index, (result, grasps) in enumerate(zip(outcome.results, outcome.grasps)):
        record = Scorer(scoring).score(frame=0, stamp_ns=1000 + index, result=result, truth_masks=truth, grasps=grasps,
                                       cup_radius=setup.cup_radius)
        views = [setup.pipeline.last_samples()[index][0]]
        point = prediction_outcome(threshold_prediction(views, 0.5, 0.0), truth, 1000 + index, setup.planner,
                                   scoring.gripper(), 4)
        assert point == record_outcome(record)
