"""The package's core claim at toy scale: sampling the latent shows where labellers disagree.

A small Latent-MaskRCNN is trained from scratch on toy scenes (`latent_maskrcnn.data.toy_pairs`)
whose seamless pairs an annotator style labels as one item or as two, one coin per image. On
held-out scenes:

- codes drawn from the prior give both answers for most pairs (the samples disagree exactly
  where the labels do);
- the encoder's code for each labelling decodes back to that labelling (the code carries it);
- one fixed code answers one way (the variation comes from the code, not from the decoder),
  and alike for every pair of an image (one code explains the annotator's habit).

Both places the code can enter are trained: the paper's (the FPN maps, `bias`) and the box
head (`roi`, what the bundled tote model uses). Each takes about two minutes of one core; every
assertion has a margin below what the recipe reaches (docs/training.md has the measurements).
"""
from __future__ import annotations

import pytest
import torch

from latent_maskrcnn.data.toy_pairs import toy_scene
from latent_maskrcnn.training.toy import STYLE_ANSWERS, ToyTraining, read_toy, toy_model_config, train_toy

HELD_OUT = [toy_scene(10**9 + index) for index in range(30)]


# one worker per injection trains its model once for all the tests below
@pytest.fixture(scope="module", params=[pytest.param(injection, marks=pytest.mark.xdist_group(f"toy_{injection}"))
                                        for injection in ("bias", "roi")])
def toy_model(request):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield train_toy(toy_model_config(latent_injection=request.param), ToyTraining())
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def reading(toy_model):
    return read_toy(toy_model, HELD_OUT)


def test_prior_codes_give_both_answers_where_labels_disagree(reading):
    assert reading.pairs >= 40
    assert reading.both_answers >= 0.8, reading


def test_encoder_code_gives_back_its_labelling(reading):
    assert reading.posterior_follows >= 0.8, reading


def test_one_code_gives_one_answer_for_every_pair_of_an_image(toy_model, reading):
    assert reading.decisive_decodes >= 50 and reading.code_consistent >= 0.8, reading
    scene = next(s for s in HELD_OUT if len(s.pair_halves) > 1)
    code = toy_model.prior_for_images([scene.image]).mean[:, None].repeat(1, 4, 1)
    repeated = toy_model.decode([scene.image], code)[0]
    for prediction in repeated[1:]:
        assert torch.equal(prediction["masks"], repeated[0]["masks"])
        assert torch.equal(prediction["scores"], repeated[0]["scores"])


def test_toy_styles_label_the_same_pixels_both_ways():
    scene = HELD_OUT[0]
    merged, split = scene.target("merged"), scene.target("split")
    assert len(split["masks"]) == len(merged["masks"]) + len(scene.pair_halves)
    assert torch.equal(merged["masks"].any(dim=0), split["masks"].any(dim=0))
    assert set(STYLE_ANSWERS) == {"merged", "split"}
