"""Does the latent path carry the seamless-pair labelling? Probes of its two ends, in minutes.

- `code_spread`: how far apart the encoder puts the two labellings of a pair (the distance of
  the posterior means, in prior standard deviations, norm over the dimensions) against the
  posterior's own spread (posterior std / prior std, mean over the dimensions). A labelling
  the decoder could read lies well outside that spread.
- `fit_labellings`: fine-tune a copy of a model on a few pair images, each in a batch with both
  its labellings (same pixels, so only the code can tell the labels apart), beta = 0, and count
  after every ``report_every`` steps the pairs whose two codes decode to different answers and
  to the labelled ones ('merged' -> one, 'split' -> two), on those pairs and on held-out ones.
  With ``code="posterior"`` the codes are the encoder's posterior means (can the whole path
  learn it?); with ``code="oracle"`` they are the prior mean plus / minus ``amplitude`` prior
  standard deviations along the first dimension (can the decoder read a clean bit?).

docs/results.md reports both for the double-pick runs.
"""
from __future__ import annotations

import copy
import statistics
import time
from typing import Iterator

import torch

from latent_maskrcnn.evaluation.pair_probe import ProbeSet, answer, labelled_targets

CODES = ("posterior", "oracle")
LABELLINGS = ("merged", "split")


def _require_latent(model) -> None:
    if model.latent_dim == 0:
        raise ValueError("a model with latent_dim = 0 has no latent path to probe")


def _pairs(probe_set: ProbeSet) -> range:
    if not probe_set.pairs:
        raise ValueError("the probe set holds no seamless pair")
    return range(len(probe_set.pairs))


def code_spread(model, probe_set: ProbeSet) -> dict[str, float | int]:
    """Distance between the labellings' posterior means against the posterior spread."""
    _require_latent(model)
    distances, spreads = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index in _pairs(probe_set):
                image = probe_set.images[index]
                targets = labelled_targets(probe_set.pairs[index], probe_set.others[index])
                posteriors = {}
                for labelling in LABELLINGS:
                    image_list, prepared, features = model.preprocess([image], [targets[labelling]])
                    posteriors[labelling] = model.encoder(features, prepared, image_list.image_sizes)
                image_list, _, features = model.preprocess([image])
                prior = model.prior_distribution(image_list, features)
                difference = (posteriors["merged"].mean - posteriors["split"].mean) / prior.std
                distances.append(float(difference.norm()))
                spreads.append(float((posteriors["merged"].std / prior.std).mean()))
    finally:
        model.train(was_training)
    return {
        "pairs": len(distances),
        "distance_median": statistics.median(distances),
        "distance_max": max(distances),
        "posterior_std_ratio": statistics.mean(spreads),
    }


def _oracle_codes(prior, amplitude: float) -> torch.Tensor:
    """``[2, D]``: the prior mean plus (merged) and minus (split) ``amplitude`` prior standard
    deviations along the first dimension; ``prior`` holds one image (used for both) or two."""
    mean, std = prior.mean.expand(2, -1), prior.std.expand(2, -1)
    offset = torch.zeros_like(mean)
    offset[:, 0] = torch.tensor([amplitude, -amplitude], dtype=mean.dtype)
    return mean + offset * std


def _codes(model, image: torch.Tensor, targets: dict, code: str, amplitude: float) -> torch.Tensor:
    """``[2, D]``: the code of each labelling (merged, split) of one image."""
    if code == "posterior":
        return torch.stack([model.posterior_mean([image], [targets[labelling]])[0] for labelling in LABELLINGS])
    image_list, _, features = model.preprocess([image])
    return _oracle_codes(model.prior_distribution(image_list, features), amplitude)


def _answers(model, probe_set: ProbeSet, targets: dict[int, dict], indices: list[int], code: str,
             amplitude: float, score_threshold: float, iou_threshold: float) -> dict[str, int]:
    follows = changes = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for index in indices:
                image, pair = probe_set.images[index], probe_set.pairs[index]
                codes = _codes(model, image, targets[index], code, amplitude)
                decoded = model.decode_reference([image], codes[None])[0]
                merged, split = (
                    answer(prediction["masks"][prediction["scores"] > score_threshold], pair, iou_threshold)
                    for prediction in decoded
                )
                follows += merged == "one" and split == "two"
                changes += merged != split
    finally:
        model.train(was_training)
    return {"pairs": len(indices), "follows_labelling": follows, "code_changes_answer": changes}


def _step_losses(model, image: torch.Tensor, targets: dict, code: str, amplitude: float) -> torch.Tensor:
    """The detection losses of one image under both labellings (batch of two), beta = 0."""
    if code == "posterior":
        losses = model([image, image], [targets["merged"], targets["split"]], posterior_or_prior_mean_coin=False)
        return sum(value for name, value in losses.items() if name != "loss_kl")
    image_list, prepared, features = model.preprocess([image, image], [targets["merged"], targets["split"]])
    codes = _oracle_codes(model.prior_distribution(image_list, features), amplitude)
    _, losses = model._detect(image_list, features, codes, prepared)  # wherever the code enters
    return sum(losses.values())


def fit_labellings(
    model,
    probe_set: ProbeSet,
    train_pairs: int,
    steps: int,
    lr: float = 1e-3,
    code: str = "posterior",
    amplitude: float = 3.0,
    report_every: int = 100,
    score_threshold: float = 0.1,
    iou_threshold: float = 0.5,
) -> Iterator[dict]:
    """Fine-tune a copy of ``model`` (the given one is left as it is) and yield a report at
    step 0 and every ``report_every`` steps: the loss and the answer counts on the first
    ``train_pairs`` pairs and on the rest."""
    _require_latent(model)
    if code not in CODES:
        raise ValueError(f"code must be one of {list(CODES)}, got {code!r}")
    indices = list(_pairs(probe_set))
    if not 1 <= train_pairs <= len(indices):
        raise ValueError(f"train_pairs must lie in 1..{len(indices)} (the probe set's pairs), got {train_pairs}")
    if steps < 0 or report_every < 1:
        raise ValueError(f"steps must be >= 0 and report_every >= 1, got {steps} and {report_every}")
    trained, held_out = indices[:train_pairs], indices[train_pairs:]
    model = copy.deepcopy(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    targets = {index: labelled_targets(probe_set.pairs[index], probe_set.others[index]) for index in indices}

    def report(step: int, loss: float | None, started: float) -> dict:
        return {
            "step": step,
            "loss": loss,
            "train": _answers(model, probe_set, targets, trained, code, amplitude, score_threshold, iou_threshold),
            "held_out": _answers(model, probe_set, targets, held_out, code, amplitude, score_threshold,
                                 iou_threshold),
            "seconds": round(time.monotonic() - started, 1),
        }

    started = time.monotonic()
    yield report(0, None, started)
    model.train()
    for step in range(1, steps + 1):
        index = trained[(step - 1) % len(trained)]
        loss = _step_losses(model, probe_set.images[index], targets[index], code, amplitude)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % report_every == 0 or step == steps:
            yield report(step, float(loss.detach()), started)
            model.train()
