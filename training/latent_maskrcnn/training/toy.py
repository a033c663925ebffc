"""Train and read a small Latent-MaskRCNN on the toy task (`data/toy_pairs.py`) in minutes.

The regression test of the package's core claim (`test/test_latent_toy.py`) and a quick bench
for the levers of the latent path: does a code drawn from the prior give both answers for a
seamless pair, does the encoder's code give back the labelling it saw, does one code answer
the same way for every pair of an image?

Recipe, each part measured on this task (docs/training.md): the code enters at the box head
(`ModelConfig.latent_injection = "roi"`); box-head positives need IoU >= 0.6 and everything
below is a negative, so a proposal on half a pair is a negative when the pair is labelled one
item (at torchvision's 0.5 / 0.5 it meets the merged box at IoU 0.5 and is ignored); each scene
comes twice in a batch, once per labelling, so that only the code can tell the two label sets
apart; and a small KL weight (1e-3), so the posterior does not collapse onto the prior before
the decoder has learnt to read it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import torch

from latent_maskrcnn.data.toy_pairs import STYLES, ToyRecipe, ToyScene, toy_scene, toy_style
from latent_maskrcnn.evaluation.pair_probe import SeamlessPair, answer
from latent_maskrcnn.model.config import ModelConfig, tiny_config
from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

LOG = logging.getLogger(__name__)
STYLE_ANSWERS = {"merged": "one", "split": "two"}


def toy_model_config(**overrides) -> ModelConfig:
    """The toy network: `tiny_config` with the small CNN on 64 x 64 images, the code at the
    box head."""
    values = dict(
        backbone="small_cnn_fpn",
        backbone_norm="group_norm",
        latent_injection="roi",
        latent_dim=8,
        min_size=64,
        max_size=64,
        box_fg_iou_thresh=0.6,
        box_bg_iou_thresh=0.6,
        box_score_thresh=0.05,
    )
    values.update(overrides)
    return tiny_config(**values)


@dataclass
class ToyTraining:
    """How to train on the toy task."""

    steps: int = 1400
    scenes_per_batch: int = 2
    both_labellings: bool = True
    """Each scene once per labelling in its batch (else one labelling per scene, by its coin)."""
    lr: float = 2e-3
    beta: float = 1e-3
    seed: int = 0
    recipe: ToyRecipe = field(default_factory=ToyRecipe)


def _batch(step: int, training: ToyTraining) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images, targets = [], []
    for offset in range(training.scenes_per_batch):
        seed = training.seed * 1_000_003 + step * training.scenes_per_batch + offset
        scene = toy_scene(seed, training.recipe)
        for style in STYLES if training.both_labellings else (toy_style(seed),):
            images.append(scene.image)
            targets.append(scene.target(style))
    return images, targets


def train_toy(config: ModelConfig, training: ToyTraining = ToyTraining()) -> LatentMaskRCNN:
    """A model trained from scratch: detection losses + beta * KL, AdamW, gradient clipping."""
    torch.manual_seed(training.seed)
    model = LatentMaskRCNN(config).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=training.lr, weight_decay=1e-4)
    started = time.perf_counter()
    for step in range(training.steps):
        images, targets = _batch(step, training)
        losses = model(images, targets)
        kl = losses.pop("loss_kl")
        loss = sum(losses.values()) + training.beta * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        if (step + 1) % 100 == 0:
            LOG.info("toy step %d: loss %.3f, KL %.2f nats, %.0f s", step + 1, float(loss.detach()), float(kl.detach()),
                     time.perf_counter() - started)
    return model.eval()


@dataclass
class ToyReading:
    """What the latent path does on held-out toy scenes (fractions of pairs, or of codes)."""

    pairs: int = 0
    both_answers: float = 0.0
    """Pairs for which the prior's codes give 'one' in some samples and 'two' in others."""
    posterior_follows: float = 0.0
    """Pairs (x 2 labellings) whose labelling's encoder code decodes to that labelling."""
    code_consistent: float = 0.0
    """Of the (code, image) decodes whose pairs (two or more) all answer 'one' or 'two', those
    in which they all answer alike: one code, one annotator style."""
    decisive_decodes: int = 0
    """How many such decodes `code_consistent` is measured on."""
    answers: dict[str, int] = field(default_factory=dict)
    """Counts of the sampled answers ('one', 'two', 'both', 'neither')."""


def _answers(prediction: dict[str, torch.Tensor], scene: ToyScene, score_threshold: float) -> list[str]:
    masks = prediction["masks"][prediction["scores"] >= score_threshold]
    return [answer(masks, SeamlessPair(0, torch.stack(halves), "merged")) for halves in scene.pair_halves]


def read_toy(
    model: LatentMaskRCNN,
    scenes: list[ToyScene],
    num_samples: int = 16,
    score_threshold: float = 0.5,
    seed: int = 0,
) -> ToyReading:
    """Decode ``num_samples`` prior codes and each labelling's posterior mean per scene."""
    reading = ToyReading()
    mixed = follows = consistent = multi = 0
    with torch.no_grad():
        for scene in scenes:
            if not scene.pair_halves:
                continue
            samples = model.sample([scene.image], num_samples=num_samples, seed=seed)[0]
            per_code = [_answers(prediction, scene, score_threshold) for prediction in samples]
            for pair_index in range(len(scene.pair_halves)):
                answers = [code_answers[pair_index] for code_answers in per_code]
                mixed += "one" in answers and "two" in answers
                for value in answers:
                    reading.answers[value] = reading.answers.get(value, 0) + 1
            decisive = [set(a) for a in per_code if len(a) > 1 and set(a) <= {"one", "two"}]
            multi += len(decisive)
            consistent += sum(len(answers) == 1 for answers in decisive)
            for style in STYLES:
                code = model.posterior_mean([scene.image], [scene.target(style)])
                decoded = model.decode([scene.image], code[:, None])[0][0]
                follows += sum(a == STYLE_ANSWERS[style] for a in _answers(decoded, scene, score_threshold))
            reading.pairs += len(scene.pair_halves)
    reading.both_answers = mixed / max(reading.pairs, 1)
    reading.posterior_follows = follows / max(2 * reading.pairs, 1)
    reading.code_consistent = consistent / max(multi, 1)
    reading.decisive_decodes = multi
    return reading
