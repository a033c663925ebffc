"""`latent-seg evaluate` on a tiny synthetic data set with tiny untrained models: every table
and picture is written and the JSON is sensible."""
import json

import pytest
import torch

from latent_maskrcnn.checkpoint import save_model
from latent_maskrcnn.config import tiny_config
from latent_maskrcnn.evaluation import EvaluationSettings, run_methods
from latent_maskrcnn.latent_mask_rcnn import LatentMaskRCNN
from latent_maskrcnn.synthetic import make_dataset
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
    for name in ("results.json", "results.md", "fig5_double_pick.png", "fig8_score_quality.png", "samples.png"):
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
    from latent_maskrcnn.checkpoint import load_model
    from latent_maskrcnn.data import CocoInstanceDataset

    dataset = CocoInstanceDataset(setup / "data" / "annotations.json", setup / "data" / "images")
    model = load_model(setup / "latent.safetensors")
    calls = []
    original = model.sample

    def counting_sample(*args, **kwargs):
        calls.append(kwargs.get("mode", "sample"))
        return original(*args, **kwargs)

    model.sample = counting_sample
    settings = EvaluationSettings(num_samples=2, p_values=(0.5,), gripper_radius=2, circles=20, grid_images=1)
    run = run_methods(model, dataset, None, settings, progress=False)
    assert calls == ["sample", "prior_mean"] * len(dataset)  # once per image, reused for every p and mode
    assert "maskrcnn" not in run.metrics and len(run.grid) == 1
    assert all(len(m.images) == len(dataset) for m in run.metrics.values())
