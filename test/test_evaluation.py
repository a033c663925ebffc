"""`latent-seg evaluate` on a tiny synthetic data set with tiny untrained models: every table
and picture is written and the JSON is sensible."""
import json

import pytest
import torch

from latent_maskrcnn.data.synthetic import make_dataset
from latent_maskrcnn.evaluation.runner import EvaluationSettings, run_methods
from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros import cli


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    make_dataset(root / "data", images=2, seed=5, height=48, width=64, progress=False)
    torch.manual_seed(0)
    latent = LatentMaskRCNN(tiny_config(num_classes=2))
    save_model(latent, root / "latent.safetensors")
    torch.manual_seed(1)
    plain = LatentMaskRCNN(tiny_config(num_classes=2, latent_dim=0))
    save_model(plain, root / "maskrcnn.safetensors")
    return root


def test_evaluate_writes_every_table_and_picture(setup):
    out = setup / "out"
    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "latent.safetensors"), "--baseline", str(setup / "maskrcnn.safetensors"),
        "--data", str(setup / "data"), "--out", str(out), "--samples", "3", "--p-values", "0.5,1.0",
        "--gripper-radius", "2", "--circles", "50", "--score-threshold", "0.05", "--no-progress", "--device", "cpu",
    ])
    assert code == 0
    for name in ("results.json", "results.md", "fig5_double_pick.png", "double_pick_causes.png", "fig8_score_quality.png",
                 "samples.png"):
        path = out / name
        assert path.is_file() and path.stat().st_size > 0, name
        if name.endswith(".png"):
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "results.json").read_text())
    assert report["images"] == 2
    assert [row["method"] for row in report["table_1"]] == ["MaskRCNN", "Latent Union NMS", "Latent Confidence Mask", "Latent Prior Mean"]
    for row in report["table_1"]:
        for key in ("mr_at_hp", "ar_iog", "map"):
            assert row[key] is None or 0.0 <= row[key] <= 100.0
    assert [row["method"] for row in report["table_3"]] == ["MaskRCNN", "Confidence Mask"]
    assert [row["p"] for row in report["confidence_mask_curve"]] == [0.5, 0.9, 1.0]
    for row in report["confidence_mask_curve"]:
        assert row["pickable_area"] is None or row["pickable_area"] >= 0.0
        assert row["double_pick_rate"] is None or 0.0 <= row["double_pick_rate"] <= 1.0
    # a higher p never keeps more pixels than a lower one on the same samples... per p the
    # confidence masks of p = 1.0 need all samples, so they never cover more than p = 0.5
    curve = {row["p"]: row for row in report["confidence_mask_curve"]}
    if curve[0.5]["pickable_area"] is not None:
        assert curve[1.0]["pickable_area"] <= curve[0.5]["pickable_area"] + 1e-9
    assert set(report["methods"]) >= {"maskrcnn", "latent_union_nms", "latent_confidence_mask", "latent_prior_mean"}
    markdown = (out / "results.md").read_text()
    assert "| Latent Confidence Mask |" in markdown and "ROC AUC" in markdown
    # the operating curves of every method and the matched comparison, with the planner's grasps
    curves = report["operating_curves"]
    assert set(curves) == {"confidence_mask", "maskrcnn", "maskrcnn_mirror", "prior_mean", "prior_mean_mirror"}
    for method in ("maskrcnn", "prior_mean"):
        points = curves[method]["points"]
        assert [point["mask_threshold"] for point in points] == [0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85,
                                                                 0.9, 0.95]
        areas = [point["pickable_area"] for point in points]
        assert all(b <= a + 1e-12 for a, b in zip(areas, areas[1:]))  # a higher threshold never grows a mask
        assert all(0 <= point["grasps"] <= 2 for point in points)
    default = next(point for point in curves["maskrcnn"]["points"] if point["mask_threshold"] == 0.5)
    assert default["pickable_area"] == report["reference_points"]["maskrcnn"]["pickable_area"]
    matched = report["matched_comparison"]
    assert matched["reference"] == "confidence_mask" and matched["images"] == 2 and matched["seed"] == 0
    assert {row["metric"] for row in matched["rows"]} <= {"double_pick_rate", "double_pick_rate_on_items",
                                                          "grasp_double_pick_rate", "mean_sealed_cups"}
    assert "## Matched comparison" in markdown and "## Operating curves (Fig. 5)" in markdown
    assert (out / "matched.md").read_text().startswith("# Matched comparison")
    saved = json.loads((out / "curves.json").read_text())
    assert len(saved["curves"]) == 5 and all(len(c["counts"]["picks"][0]) == 2 for c in saved["curves"])


def test_evaluate_refuses_a_plain_maskrcnn_as_the_model(setup, capsys):
    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "maskrcnn.safetensors"), "--data", str(setup / "data"),
        "--out", str(setup / "refused"), "--no-progress", "--device", "cpu",
    ])
    assert code == 2
    assert "latent_dim = 0" in capsys.readouterr().err


def test_evaluate_reports_bad_input(setup, capsys):
    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "latent.safetensors"), "--data", str(setup / "nowhere"),
        "--out", str(setup / "bad"), "--no-progress",
    ])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "latent.safetensors"), "--data", str(setup / "data"),
        "--out", str(setup / "bad"), "--p", "1.5", "--no-progress",
    ])
    assert code == 2 and "p must" in capsys.readouterr().err


def test_every_method_sees_the_same_samples(setup):
    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset
    from latent_maskrcnn.model.checkpoint import load_model

    dataset = CocoInstanceDataset(setup / "data" / "annotations.json", setup / "data" / "images")
    model = load_model(setup / "latent.safetensors")
    calls = []
    original = model.sample

    def counting_sample(*args, **kwargs):
        calls.append(kwargs.get("mode", "sample"))
        return original(*args, **kwargs)

    model.sample = counting_sample
    settings = EvaluationSettings(num_samples=2, p_values=(0.5,), gripper_radius=2, circles=20, grid_images=1,
                                  curves=False)
    run = run_methods(model, dataset, None, settings, progress=False)
    assert calls == ["sample", "prior_mean"] * len(dataset)  # once per image, reused for every p and mode
    assert "maskrcnn" not in run.metrics and len(run.grid) == 1
    assert all(len(m.images) == len(dataset) for m in run.metrics.values())
    assert run.curves == {}
    # The curves add the prior mean on the mirror image, once per image: every mask threshold
    # re-binarises the kept mask probabilities instead of running the network again.
    calls.clear()
    settings = EvaluationSettings(num_samples=2, p_values=(0.5,), gripper_radius=2, circles=20, grid_images=0,
                                  mask_thresholds=(0.3, 0.6, 0.9))
    run = run_methods(model, dataset, None, settings, progress=False)
    assert calls == ["sample", "prior_mean", "prior_mean"] * len(dataset)
    assert set(run.curves) == {"confidence_mask", "prior_mean", "prior_mean_mirror"}
    assert run.curves["prior_mean"].values == (0.3, 0.5, 0.6, 0.9)  # the table's threshold joins the curve
    assert run.curves["confidence_mask"].values == (0.5, 0.9)
    assert all(curve.images == len(dataset) for curve in run.curves.values())


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory):
    from latent_maskrcnn.data.synthetic import AmbiguityRates

    root = tmp_path_factory.mktemp("evaluate_pairs")
    make_dataset(root, images=3, seed=5, height=48, width=64, progress=False,
                 rates=AmbiguityRates(seamless_pair=1.0, pair_merged=0.5))
    return root


def test_evaluate_splits_double_picks_by_cause_and_probes_the_pairs(setup, pair_data):
    out = setup / "out_pairs"
    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "latent.safetensors"), "--baseline", str(setup / "maskrcnn.safetensors"),
        "--data", str(pair_data), "--out", str(out), "--samples", "3", "--p-values", "0.5,1.0",
        "--gripper-radius", "2", "--circles", "200", "--score-threshold", "0.05", "--no-progress", "--device", "cpu",
        "--grid-images", "0",
    ])
    assert code == 0
    report = json.loads((out / "results.json").read_text())
    rows = {row["key"]: row for row in report["double_pick_causes"]}
    assert set(rows) == {"maskrcnn", "latent_prior_mean", "latent_union_nms", "confidence_mask_p0.50",
                         "confidence_mask_p0.90", "confidence_mask_p1.00"}
    for key, row in rows.items():
        method = report["methods"][key]
        # the paper's D / N is unchanged; the causes partition it
        assert (row["picks"], row["double_picks"]) == (method["picks"], method["double_picks"])
        assert row["double_pick_rate"] == method["double_pick_rate"]
        assert sum(cause["count"] for cause in row["causes"].values()) == row["double_picks"]
        assert row["causes"]["unknown"]["count"] == 0 and row["images_without_kinds"] == 0
        assert 0 <= row["false_positives"] <= row["picks"] - row["double_picks"]
    probe = report["pair_probe"]
    assert probe["pairs"] + sum(probe["dropped"].values()) == 3 and probe["pairs"] >= 2
    assert set(probe["methods"]) == {"confidence_mask", "prior_mean", "union_nms", "maskrcnn"}
    assert probe["samples"]["num_samples"] == 3
    assert sum(probe["samples"]["answers"].values()) == pytest.approx(1.0)
    markdown = (out / "results.md").read_text()
    assert "## Double picks by cause" in markdown and "## Seamless-pair probe" in markdown

    code = cli.main([
        "evaluate", "--checkpoint", str(setup / "latent.safetensors"), "--data", str(setup / "data"),
        "--out", str(setup / "out_no_probe"), "--samples", "2", "--p-values", "0.5", "--gripper-radius", "2",
        "--circles", "50", "--no-progress", "--device", "cpu", "--grid-images", "0", "--no-probe",
    ])
    assert code == 0
    assert json.loads((setup / "out_no_probe" / "results.json").read_text())["pair_probe"] is None


def test_data_without_ambiguity_kinds_degrade_to_unknown(setup, pair_data, tmp_path):
    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset
    from latent_maskrcnn.evaluation.pair_probe import summarize_probe
    from latent_maskrcnn.evaluation.runner import cause_table
    from latent_maskrcnn.model.checkpoint import load_model

    document = json.loads((pair_data / "annotations.json").read_text())
    for annotation in document["annotations"]:
        del annotation["ambiguity"]
    (tmp_path / "plain.json").write_text(json.dumps(document))
    dataset = CocoInstanceDataset(tmp_path / "plain.json", pair_data / "images")
    settings = EvaluationSettings(num_samples=2, p_values=(0.5,), gripper_radius=2, circles=200, grid_images=0,
                                  score_threshold=0.05)
    run = run_methods(load_model(setup / "latent.safetensors"), dataset, None, settings, progress=False)
    for row in cause_table(run):
        assert row["images_without_kinds"] == 3
        assert row["causes"]["unknown"]["count"] == row["double_picks"]
    assert run.probe == [] and summarize_probe(run.probe)["pairs"] == 0


def test_a_set_with_both_labellings_scores_every_entry(setup, tmp_path):
    """``make-dataset --labellings both``: each image is scored against each annotator style, its
    pairs probed in both labellings, the halves of different pairs told apart by region id."""
    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset
    from latent_maskrcnn.data.synthetic import AMBIGUITY_RATES
    from latent_maskrcnn.evaluation.runner import cause_table
    from latent_maskrcnn.model.checkpoint import load_model

    make_dataset(tmp_path, images=2, seed=3, height=72, width=96, rates=AMBIGUITY_RATES, labellings="both",
                 progress=False)
    dataset = CocoInstanceDataset(tmp_path / "annotations.json", tmp_path / "images")
    settings = EvaluationSettings(num_samples=2, p_values=(0.5,), gripper_radius=2, circles=200, grid_images=0,
                                  score_threshold=0.05)
    run = run_methods(load_model(setup / "latent.safetensors"), dataset, None, settings, progress=False)
    assert run.images == len(dataset) == 4
    assert all(len(metrics.images) == 4 for metrics in run.metrics.values())
    for row in cause_table(run):
        assert row["images_without_kinds"] == 0 and row["causes"]["unknown"]["count"] == 0
    labelled = {labelling: sorted((r.image_id - 1) // 2 for r in run.probe if r.labelling == labelling)
                for labelling in ("merged", "split")}
    assert labelled["merged"] and labelled["merged"] == labelled["split"]   # every pair, in both labellings
