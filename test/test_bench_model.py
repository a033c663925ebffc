"""`latent-seg bench model`: the report's fields are consistent and the budgets are the same
for both paths (a tiny run; the real measurement is the command itself)."""
import argparse
import json

import pytest

from latent_maskrcnn.bench import model as bench_model
from latent_segmentation_ros import cli


def tiny_args(**overrides):
    parser = argparse.ArgumentParser()
    bench_model.add_arguments(parser)
    args = parser.parse_args(
        ["--backbone", "resnet18_fpn", "--samples", "2", "--images", "1", "--height", "64", "--width", "80",
         "--threads", "1", "--repeats", "1", "--warmup", "0", "--proposals", "50", "--detections", "5",
         "--latent-dim", "8"]
    )
    for key, value in overrides.items():
        setattr(args, key, value)
    return args


def test_tiny_benchmark_report_is_consistent():
    result = bench_model.run(tiny_args())
    for key in ("single_pass_ms", "latent_ms", "ratio", "samples", "proposals_per_image", "detections_per_image",
                "peak_rss_mb", "latent_stages_ms", "single_pass_stages_ms"):
        assert key in result, key
    assert result["samples"] == 2
    assert result["ratio"] == pytest.approx(result["latent_ms"] / result["single_pass_ms"], rel=1e-2)
    assert result["latent_flip_ratio"] == pytest.approx(result["latent_flip_ms"] / result["single_pass_ms"], rel=1e-2)
    # Score threshold 0: every path fills the detection budget; proposals stay within theirs.
    assert result["detections_per_image"] == 5
    assert result["latent_detections_per_image_and_sample"] == 5
    assert 0 < result["proposals_per_image"] <= 50
    assert 0 < result["latent_proposals_per_image_and_sample"] <= 50
    assert set(result["latent_stages_ms"]) == {"backbone", "prior", "rpn", "box_head", "box_postprocess",
                                               "mask_head", "paste_masks"}
    assert set(result["single_pass_stages_ms"]) == {"backbone", "rpn", "roi_heads", "transform_and_postprocess"}
    assert sum(result["latent_stages_ms"].values()) <= result["latent_ms"] * 1.05
    assert result["peak_rss_mb"] >= result["single_pass_peak_rss_mb"] > 0
    assert "ratio latent / single" in bench_model.format_table(result)


def test_benchmark_refuses_bad_arguments():
    with pytest.raises(ValueError, match="--samples must be at least 1"):
        bench_model.run(tiny_args(samples=0))


def test_cli_dispatches_with_json(capsys):
    code = cli.main(["bench", "model", "--backbone", "resnet18_fpn", "--samples", "2", "--images", "1",
                     "--height", "64", "--width", "80", "--threads", "1", "--repeats", "1", "--warmup", "0",
                     "--proposals", "30", "--detections", "3", "--latent-dim", "4", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["samples"] == 2 and report["detections_per_image"] == 3


def test_cli_help_states_the_budgets(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "model", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "box_score_thresh = 0" in text and "per image and per sample" in text


def test_cli_reports_bad_arguments(capsys):
    code = cli.main(["bench", "model", "--samples", "0"])
    assert code == 2
    assert "--samples must be at least 1" in capsys.readouterr().err
