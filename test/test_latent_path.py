"""The latent-path probes (`latent_maskrcnn.evaluation.latent_path`, `latent-seg probe-latent`)
on a tiny model and generated pairs: the code spread is measured, fine-tuning changes a copy and
not the model, the counts stay within the pairs, and bad requests are refused."""
import json

import pytest
import torch

from latent_maskrcnn.data.synthetic import AmbiguityRates, make_dataset
from latent_maskrcnn.evaluation.latent_path import code_spread, fit_labellings
from latent_maskrcnn.evaluation.pair_probe import load_probe_set
from latent_maskrcnn.model.checkpoint import save_model
from latent_maskrcnn.model.config import ModelConfig, tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN
from latent_segmentation_ros import cli


@pytest.fixture(scope="module")
def pair_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("latent_path")
    make_dataset(root, images=3, seed=11, height=60, width=80, rates=AmbiguityRates(seamless_pair=1.0),
                 progress=False)
    return root


@pytest.fixture(scope="module")
def probe_set(pair_data):
    probes = load_probe_set(str(pair_data / "annotations.json"), str(pair_data / "images"), max_images=3)
    assert len(probes.pairs) >= 2
    return probes


@pytest.fixture
def model():
    torch.manual_seed(0)
    return LatentMaskRCNN(tiny_config())


def test_code_spread_is_measured(model, probe_set):
    spread = code_spread(model, probe_set)
    assert spread["pairs"] == len(probe_set.pairs)
    # an untrained encoder still reads the instance masks: the labellings' codes differ
    assert 0.0 < spread["distance_median"] <= spread["distance_max"]
    assert spread["posterior_std_ratio"] > 0.0


@pytest.mark.parametrize("code, injection", [("posterior", "bias"), ("oracle", "bias"), ("oracle", "roi")])
def test_fitting_trains_a_copy_and_counts_within_the_pairs(model, probe_set, code, injection):
    if injection != model.config.latent_injection:
        torch.manual_seed(3)
        model = LatentMaskRCNN(ModelConfig.from_dict({**model.config.to_dict(), "latent_injection": injection})).eval()
    before = {name: value.clone() for name, value in model.state_dict().items()}
    reports = list(fit_labellings(model, probe_set, train_pairs=1, steps=2, lr=1e-3, code=code, report_every=1))
    assert [report["step"] for report in reports] == [0, 1, 2]
    assert reports[0]["loss"] is None and all(report["loss"] > 0 for report in reports[1:])
    for report in reports:
        assert report["train"]["pairs"] == 1 and report["held_out"]["pairs"] == len(probe_set.pairs) - 1
        for part in ("train", "held_out"):
            counts = report[part]
            assert 0 <= counts["follows_labelling"] <= counts["code_changes_answer"] <= counts["pairs"]
    after = model.state_dict()
    assert all(torch.equal(before[name], after[name]) for name in before)  # the given model is untouched


def test_bad_requests_are_refused(model, probe_set):
    with pytest.raises(ValueError, match="code must be one of"):
        next(fit_labellings(model, probe_set, 1, 1, code="bogus"))
    with pytest.raises(ValueError, match="train_pairs"):
        next(fit_labellings(model, probe_set, len(probe_set.pairs) + 1, 1))
    baseline = LatentMaskRCNN(tiny_config(latent_dim=0))
    with pytest.raises(ValueError, match="latent_dim = 0"):
        code_spread(baseline, probe_set)


def test_probe_latent_command(model, pair_data, tmp_path, capsys):
    checkpoint = tmp_path / "model.safetensors"
    save_model(model, checkpoint)
    code = cli.main(["probe-latent", "--checkpoint", str(checkpoint), "--data", str(pair_data), "--pairs", "3",
                     "--train-pairs", "1", "--steps", "1", "--code", "oracle", "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert document["code"] == "oracle" and [report["step"] for report in document["fit"]] == [0, 1]
    assert document["code_spread"]["pairs"] >= 2
    assert cli.main(["probe-latent", "--checkpoint", str(tmp_path / "missing.safetensors"),
                     "--data", str(pair_data)]) == 2
    assert "missing.safetensors" in capsys.readouterr().err
