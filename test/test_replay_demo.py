"""`latent-seg demo` end to end on a tiny bag and model, and its error without a bundled model."""
import pytest
import torch

from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros import cli
from latent_segmentation_ros.core.resources import default_checkpoint


def test_demo_replays_and_prints_the_report(tmp_path, capsys):
    torch.manual_seed(2)
    checkpoint = tmp_path / "tiny.safetensors"
    save_model(LatentMaskRCNN(tiny_config()).eval(), checkpoint)
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "2", "--height", "64", "--width", "80",
            "--samples", "2", "--checkpoint", str(checkpoint)]
    assert cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "| simulated double-pick rate |" in printed
    assert f"report: {out / 'replay' / 'report.md'}" in printed
    assert (out / "replay" / "report.json").exists() and (out / "bag" / "metadata.yaml").exists()
    assert cli.main(args) == 0  # a second run replaces the demo's own output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    assert cli.main(args[:2] + [str(tmp_path / "mine")] + args[3:]) == 2
    assert "was not made by the demo" in capsys.readouterr().err


def test_missing_bundled_model_says_how_to_get_one(tmp_path, capsys, monkeypatch):
    # The bundled model is looked up where a temporary path says: missing there, then present.
    from latent_segmentation_ros.core import resources

    bundled = tmp_path / "models" / "demo" / "latent_maskrcnn_demo.safetensors"
    monkeypatch.setattr(resources, "DEMO_CHECKPOINT", str(bundled))
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"demo: the bundled demo model {bundled} is missing" in err and "--checkpoint PATH" in err
    assert not out.exists()  # refused before writing anything
    torch.manual_seed(2)
    save_model(LatentMaskRCNN(tiny_config()).eval(), bundled)
    assert default_checkpoint() == bundled


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_models")
    torch.manual_seed(0)  # an untrained model whose masks of about 100 pixels pass the node's score threshold
    save_model(LatentMaskRCNN(tiny_config()).eval(), root / "tiny.safetensors")
    torch.manual_seed(5)  # an untrained plain model with one non-empty mask per image
    save_model(LatentMaskRCNN(tiny_config(latent_dim=0, box_detections_per_img=1)).eval(), root / "maskrcnn.safetensors")
    return root


def demo_args(out, models):
    return ["demo", "--out", str(out), "--frames", "3", "--height", "64", "--width", "80",
            "--samples", "2", "--checkpoint", str(models / "tiny.safetensors"), "--gripper-radius", "1"]


def test_demo_compares_with_the_prior_mean_and_the_baseline(tmp_path, tiny_models, capsys):
    import json

    out = tmp_path / "demo"
    assert cli.main(demo_args(out, tiny_models) + ["--baseline", str(tiny_models / "maskrcnn.safetensors")]) == 0
    printed = capsys.readouterr().out
    assert "demo: MaskRCNN baseline: maskrcnn@" in printed
    table = printed[printed.index("method  "):].splitlines()
    assert table[0].split("  ")[0] == "method" and "double picks (D/N)" in table[0] and "false-positive picks" in table[0]
    assert table[1].startswith("confidence masks p = 0.9 ") and table[2].startswith("prior mean ")
    assert table[3].startswith("MaskRCNN baseline ")
    import re

    second_column = {re.match(r".+?\S\s{2,}", line).end() for line in table[:4]}
    assert len(second_column) == 1  # aligned: the second column starts at one position in every row
    comparison = json.loads((out / "double_pick_comparison.json").read_text())
    assert [row["method"] for row in comparison["rows"]] == ["confidence_mask", "prior_mean", "maskrcnn_baseline"]
    assert comparison["p"] == 0.9 and comparison["baseline"].startswith("maskrcnn@")
    # The confidence-mask row is the replay's own report: same samples, circles and planner.
    report = json.loads((out / "replay" / "report.json").read_text())["aggregate"]
    mine = comparison["rows"][0]
    for key in ("picks", "double_picks", "pickable_area", "grasp_double_picks", "double_pick_rate"):
        assert mine[key] == report[key], key
    assert mine["pickable_area"] > 0 and comparison["rows"][2]["picks"] > 0  # both models predict masks; circles fit
    markdown = (out / "double_pick_comparison.md").read_text()
    assert "MaskRCNN baseline" in markdown and "grasp target" in markdown
    # the comparison itself: every baseline over the mask threshold, read at the confidence masks' area
    matched = comparison["matched_comparison"]
    assert matched["reference"] == "confidence_mask" and matched["reference_value"] == 0.9
    assert matched["images"] == comparison["images"]  # every camera image with ground truth
    assert {row["baseline"] for row in matched["rows"]} <= {"maskrcnn", "maskrcnn_mirror", "prior_mean", "prior_mean_mirror"}
    assert "## Matched comparison" in markdown and "not a comparison" in markdown
    assert "demo: the comparison, at equal pickable area and equal N" in printed
    assert "Reference: confidence masks at p = 0.9" in printed
    sweep = json.loads((out / "comparison" / "sweep.json").read_text())
    assert sweep["mask_thresholds"] == [0.5, 0.7, 0.85, 0.95]
    assert set(sweep["operating_curves"]) == {"confidence_mask", "maskrcnn", "maskrcnn_mirror", "prior_mean",
                                              "prior_mean_mirror"}


def test_demo_without_a_baseline_compares_with_the_prior_mean_only(tmp_path, tiny_models, capsys):
    import json

    out = tmp_path / "demo"
    missing = tmp_path / "no_such_baseline.safetensors"
    assert cli.main(demo_args(out, tiny_models) + ["--baseline", str(missing)]) == 0
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if "MaskRCNN baseline" in line]
    assert len(notes) == 1 and "comparing with the prior mean only" in notes[0] and str(missing) in notes[0]
    comparison = json.loads((out / "double_pick_comparison.json").read_text())
    assert [row["method"] for row in comparison["rows"]] == ["confidence_mask", "prior_mean"]
    assert comparison["baseline"] is None
    assert not any(line.startswith("MaskRCNN baseline ") for line in printed.splitlines())  # no table row


def test_demo_uses_the_bundled_baseline_when_there_is_one(tmp_path, tiny_models, capsys):
    from latent_segmentation_ros.core.resources import default_baseline

    try:
        bundled = default_baseline()
    except FileNotFoundError:
        bundled = None
    assert cli.main(demo_args(tmp_path / "demo", tiny_models)) == 0
    printed = capsys.readouterr().out
    if bundled is None:
        assert "demo: no MaskRCNN baseline bundled (models/demo/maskrcnn_baseline.safetensors)" in printed
    else:
        assert f"({bundled})" in printed and "MaskRCNN baseline " in printed


def test_the_replay_reuses_the_comparisons_pairs_and_runs_the_pipeline_when_out_of_step(tiny_models):
    import numpy as np

    from latent_segmentation_ros.cli.commands.demo import RecordedPairs
    from latent_segmentation_ros.replay.runner import build_pair_processor

    setup = build_pair_processor(tiny_models / "tiny.safetensors", mode="confidence_mask", mask_threshold=0.5, samples=2)
    rng = np.random.default_rng(0)
    first = [rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8) for _ in setup.cameras]
    second = [rng.integers(0, 256, size=(64, 80, 3), dtype=np.uint8) for _ in setup.cameras]
    recorded = RecordedPairs(setup)
    recorded.observe(first, setup.pipeline.process(first, setup.cameras))
    recorded.observe(second, setup.pipeline.process(second, setup.cameras))
    calls = setup.pipeline.network_calls
    kept = recorded.pairs[0][1]
    assert recorded.process_pair(first) is kept and setup.pipeline.network_calls == calls  # no second network pass
    outcome = recorded.process_pair(first)  # not the next kept pair: the pipeline runs, the rest is dropped
    assert setup.pipeline.network_calls == calls + 1 and recorded.pairs == []
    for got, want in zip(outcome.results, kept.results):
        np.testing.assert_array_equal(got.masks, want.masks)
