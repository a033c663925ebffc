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


def test_missing_bundled_model_says_how_to_get_one(tmp_path, capsys):
    try:
        default_checkpoint()
        pytest.skip("the bundled demo model is present")
    except FileNotFoundError:
        pass
    assert cli.main(["demo", "--out", str(tmp_path / "demo")]) == 2
    err = capsys.readouterr().err
    assert "latent_maskrcnn_demo.safetensors is missing" in err and "--checkpoint" in err
