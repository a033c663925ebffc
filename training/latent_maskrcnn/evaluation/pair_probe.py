"""What the latent has learned about seamless pairs: "one item or two?".

A seamless pair (docs/synthetic_data.md) is two identical-look bags lying edge to edge with no
seam in the pixels, labelled as one item (``pair_merged``) or as two (``pair_half``) by a coin
the image knows nothing about. A model that has learned the ambiguity answers "one" in some of
its K samples and "two" in others, and its p = 0.9 confidence masks then keep the halves apart
(no mask crosses the seam), so no grasp straddles it. The probe measures exactly that, on the
pairs of a held-out set:

- per prediction (a sample, the confidence masks, the prior mean, MaskRCNN): the *answer*.
  Every predicted mask is assigned to whichever of the merged outline, half 0 or half 1 it has
  the largest IoU with, if that IoU is >= ``iou_threshold`` (0.5; ties go to the merged
  outline). "one": a mask is assigned to the merged outline; "two": masks are assigned to both
  halves; "both": the two at once (overlapping detections); "neither": otherwise. Assigning
  to the best outline matters: a mask equal to one half has IoU about 0.5 with the merged
  outline too.
- *seam cover*: a prediction covers the seam when one of its masks holds at least
  ``seam_fraction`` (0.2) of the visible area of *each* half. Border noise of a mask that
  follows one half spills a few pixels over the seam (a few percent of the other half), a mask
  of the whole pair holds about all of both; 0.2 of a half is a band of a fifth of its length,
  about where a gripper circle straddling the seam fits. Relative to the half's area, so it
  does not depend on the image size. The fractions at 0.1 and 0.5 are reported beside it.
- per pair over the K samples: *mixed* when one sample answers "one" and another "two". A
  "both" sample (a merged and two half detections overlapping in one sample) is uncertainty
  inside a sample, not a choice carried by the latent, so it does not count.
- *posterior* (latent models, probe sets loaded with `load_probe_set`): the encoder's code for
  each labelling of the pair (the mean of q(z | x, y), y with the pair merged or split), each
  decoded. ``follows_labelling``: the merged code answers "one" and the split code "two";
  ``code_changes_answer``: the two answers differ. Low values mean the decoder does not use the
  code for the choice at all, so no prior can make the samples disagree; high values with no
  mixed samples mean the prior does not cover the posterior.

The outlines of both labellings are needed for every pair. A pair labelled as two gives its
halves (merged = their union); a pair labelled as one is re-rendered from the data set's seed
with the other labelling (the generator keeps the pixels bit-identical); the re-rendered image
must equal the stored one and the halves' union the stored merged mask, else the pair is
dropped and counted. An image may hold several pairs (``max_pairs``): the ``region_id`` of the
annotations tells which halves belong together, and each pair is probed on its own. Data that
do not come from the generator (no ``ambiguity`` field) have no pairs: the probe reports zero
pairs rather than failing.
"""
from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

LOG = logging.getLogger(__name__)

ANSWERS = ("one", "two", "both", "neither")
SEAM_FRACTIONS = (0.1, 0.2, 0.5)
GENERATOR_NAME = "latent_maskrcnn.synthetic"


@dataclass(frozen=True)
class ProbeSettings:
    """Thresholds of the probe (see the module text for why these values)."""

    iou_threshold: float = 0.5
    seam_fraction: float = 0.2

    def __post_init__(self) -> None:
        for name in ("iou_threshold", "seam_fraction"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"probe {name} must lie in (0, 1], got {value!r}")


@dataclass(frozen=True)
class SeamlessPair:
    """Both outlines of one seamless pair in one image (bool CPU tensors)."""

    image_id: int
    halves: torch.Tensor
    """bool [2, H, W], the visible pixels of each bag."""
    labelling: str
    """How the ground truth labels it: 'merged' (one item) or 'split' (two)."""
    region: int | None = None
    """The pair's ``region_id`` in its scene (None in data without that field)."""

    @property
    def merged(self) -> torch.Tensor:
        return self.halves[0] | self.halves[1]


# ---------------------------------------------------------------------------- ground truth
def _image_entry(dataset, index: int) -> dict:
    return dataset.coco.imgs[dataset.image_ids[index]]


def _annotations(dataset, index: int) -> list[dict]:
    image_id = dataset.image_ids[index]
    return [a for a in dataset.coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]


def _aligned_annotations(dataset, index: int, target: dict) -> list[dict] | None:
    """The annotations of item ``index`` in mask order, or None when the data set is augmented
    (instances may be dropped) or the masks cannot be lined up with the annotations."""
    if not hasattr(dataset, "coco") or getattr(dataset, "transforms", None) is not None:
        return None
    annotations = _annotations(dataset, index)
    count = int(target["masks"].shape[0])
    if len(annotations) != count:  # the loader leaves out empty masks
        annotations = [a for a in annotations if dataset.coco.annToMask(a).any()]
        if len(annotations) != count:
            LOG.warning("image %s: %d annotations for %d masks; its ambiguity kinds are unknown",
                        dataset.image_ids[index], len(annotations), count)
            return None
    return annotations


def instance_kinds(dataset, index: int, target: dict) -> list[str | None] | None:
    """The ``ambiguity`` kind of every ground-truth mask of ``target`` (item ``index`` of a
    `CocoInstanceDataset`), in mask order; None when the data carry no kinds, the data set is
    augmented (instances may be dropped) or the masks cannot be lined up with the annotations."""
    if not hasattr(dataset, "coco") or not any("ambiguity" in a for a in _annotations(dataset, index)):
        return None
    annotations = _aligned_annotations(dataset, index, target)
    return None if annotations is None else [a.get("ambiguity") for a in annotations]


def instance_regions(dataset, index: int, target: dict) -> list[int | None] | None:
    """The ``region_id`` of every ground-truth mask (the ambiguous region an instance belongs
    to: both halves of a split pair share it), in mask order; None as for `instance_kinds` or
    when the data carry no region ids."""
    if not hasattr(dataset, "coco") or not any("region_id" in a for a in _annotations(dataset, index)):
        return None
    annotations = _aligned_annotations(dataset, index, target)
    return None if annotations is None else [a.get("region_id") for a in annotations]


class PairSource:
    """Finds the seamless pairs of each image of a `CocoInstanceDataset` and counts the pairs
    it has to drop (``dropped``: reason -> count)."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset
        info = dataset.coco.dataset.get("info", {}) if hasattr(dataset, "coco") else {}
        self.info = info if isinstance(info, dict) else {}
        self.dropped: Counter = Counter()

    def _drop(self, reason: str, image_id: int) -> None:
        self.dropped[reason] += 1
        LOG.debug("image %s: seamless pair dropped (%s)", image_id, reason)

    def pair(self, index: int, target: dict, image: torch.Tensor | None = None) -> SeamlessPair | None:
        """The pair of image ``index`` when it holds exactly one (else None; an image with
        several is counted as dropped: use `pairs`)."""
        found = self.pairs(index, target, image, several=False)
        return found[0] if found else None

    def pairs(self, index: int, target: dict, image: torch.Tensor | None = None,
              several: bool = True) -> list[SeamlessPair]:
        """Every usable pair of image ``index`` (``target`` as the data set returns it;
        ``image`` float [3, H, W], loaded if needed), in ``region_id`` order."""
        kinds = instance_kinds(self.dataset, index, target)
        if kinds is None:
            return []
        image_id = int(self.dataset.image_ids[index])
        regions = instance_regions(self.dataset, index, target) or [None] * len(kinds)
        masks = target["masks"].to(torch.bool).cpu()
        groups: dict[int | None, dict[str, list[int]]] = {}
        for g, (kind, region) in enumerate(zip(kinds, regions)):
            if kind in ("pair_half", "pair_merged"):
                groups.setdefault(region, {"pair_half": [], "pair_merged": []})[kind].append(g)
        if not groups:
            return []
        if len(groups) > 1 and not several:
            self._drop("several pairs", image_id)
            return []
        found: list[SeamlessPair] = []
        rendered: list = []  # the re-rendered split view, made once per image
        for region in sorted(groups, key=lambda r: (r is None, r if r is not None else 0)):
            halves, merged = groups[region]["pair_half"], groups[region]["pair_merged"]
            if merged:
                if len(merged) != 1 or halves:
                    self._drop("several pairs", image_id)
                    continue
                regenerated = self._regenerate_halves(index, image, masks[merged[0]], region, rendered)
                if regenerated is not None:
                    found.append(SeamlessPair(image_id, regenerated, "merged", region))
            elif len(halves) != 2:
                self._drop("a half outside the view", image_id)
            else:
                found.append(SeamlessPair(image_id, masks[halves], "split", region))
        return found

    def _split_view(self, index: int, image: torch.Tensor | None, rendered: list):
        """The image's view re-rendered with every pair split (the other regions labelled as
        stored), checked against the stored image; None (and a drop reason) when impossible."""
        if rendered:
            return rendered[0]
        from latent_maskrcnn.data.synthetic import AmbiguityRates, generate_scene
        from latent_maskrcnn.data.synthetic.coco import scene_seed

        info, entry = self.info, _image_entry(self.dataset, index)
        needed = ("seed", "views", "height", "width", "ambiguity_rates")
        result: tuple | None = None
        if info.get("generator") != GENERATOR_NAME or any(key not in info for key in needed) \
                or "scene_id" not in entry or "view" not in entry:
            result = (None, "not re-renderable (no generator info)")
        else:
            try:
                rates = AmbiguityRates(**info["ambiguity_rates"])
                scene = generate_scene(scene_seed(info["seed"], entry["scene_id"]), info["height"], info["width"],
                                       int(entry["view"]) + 1, rates, pair_labeling="split", style=entry.get("style"))
            except (TypeError, ValueError) as error:
                result = (None, f"not re-renderable ({error})")
            else:
                view = scene.views[int(entry["view"])]
                if image is None:
                    image = self.dataset.load_image(index)
                stored = (image.detach().cpu() * 255.0).round().to(torch.uint8).permute(1, 2, 0)
                if tuple(stored.shape) != view.image.shape or not torch.equal(stored, torch.from_numpy(view.image)):
                    result = (None, "re-rendered image differs")
                else:
                    result = (view, None)
        rendered.append(result)
        return result

    def _regenerate_halves(self, index: int, image: torch.Tensor | None, merged_mask: torch.Tensor,
                           region: int | None, rendered: list) -> torch.Tensor | None:
        image_id = int(_image_entry(self.dataset, index)["id"])
        view, problem = self._split_view(index, image, rendered)
        if view is None:
            self._drop(problem, image_id)
            return None
        halves = [g for g, ref in enumerate(view.instances)
                  if ref.kind == "pair_half" and (region is None or ref.region == region)]
        if len(halves) != 2:
            self._drop("a half outside the view", image_id)
            return None
        result = torch.from_numpy(view.masks[halves]).to(torch.bool)
        if not torch.equal(result[0] | result[1], merged_mask):
            self._drop("re-rendered halves differ from the merged mask", image_id)
            return None
        return result


# ---------------------------------------------------------------------------- one prediction
def _overlaps(masks: torch.Tensor, pair: SeamlessPair) -> tuple[torch.Tensor, torch.Tensor]:
    """(intersections [M, 2] with the halves, areas [M]) as float64."""
    masks = masks.detach().to("cpu", torch.bool)
    if masks.shape[0] == 0:
        return torch.zeros((0, 2), dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    flat = masks.flatten(1).to(torch.float32)
    intersections = (flat @ pair.halves.flatten(1).to(torch.float32).T).to(torch.float64)
    return intersections, flat.sum(dim=1).to(torch.float64)


def answer(masks: torch.Tensor, pair: SeamlessPair, iou_threshold: float = 0.5) -> str:
    """'one', 'two', 'both' or 'neither' for one prediction's masks (bool [M, H, W])."""
    intersections, areas = _overlaps(masks, pair)
    if areas.numel() == 0:
        return "neither"
    half_areas = pair.halves.flatten(1).sum(dim=1).to(torch.float64)
    merged_inter = intersections.sum(dim=1)
    iou_merged = merged_inter / (areas + half_areas.sum() - merged_inter)
    iou_halves = intersections / (areas[:, None] + half_areas[None, :] - intersections)
    ious = torch.cat([iou_merged[:, None], iou_halves], dim=1)           # [M, 3]: merged, half 0, half 1
    best, which = ious.max(dim=1)                                          # first maximum: ties go to merged
    assigned = set(which[best >= iou_threshold].tolist())
    one = 0 in assigned
    two = {1, 2} <= assigned
    return "both" if one and two else "one" if one else "two" if two else "neither"


def seam_cover(masks: torch.Tensor, pair: SeamlessPair) -> float:
    """The largest, over the masks, of the smaller fraction of a half's visible area the mask
    holds (0 without masks): >= ``seam_fraction`` means the prediction covers the seam."""
    intersections, areas = _overlaps(masks, pair)
    if areas.numel() == 0:
        return 0.0
    half_areas = pair.halves.flatten(1).sum(dim=1).to(torch.float64).clamp(min=1.0)
    return float((intersections / half_areas[None, :]).min(dim=1).values.max())


@dataclass
class PairResult:
    """The probe's reading of one pair."""

    image_id: int
    labelling: str
    sample_answers: list[str] = field(default_factory=list)
    sample_seam: list[float] = field(default_factory=list)
    methods: dict[str, tuple[str, float]] = field(default_factory=dict)
    """method -> (answer, seam cover)."""
    posterior: dict[str, str] = field(default_factory=dict)
    """labelling ('merged' | 'split') -> the answer of the decoded posterior mean of that labelling."""

    @property
    def mixed(self) -> bool:
        return "one" in self.sample_answers and "two" in self.sample_answers


def probe_pair(
    pair: SeamlessPair,
    samples: Sequence[torch.Tensor],
    methods: dict[str, torch.Tensor],
    settings: ProbeSettings = ProbeSettings(),
) -> PairResult:
    """Read one pair: ``samples`` are the K samples' masks (already score-filtered), ``methods``
    the masks of each single prediction (confidence masks, prior mean, MaskRCNN, ...)."""
    result = PairResult(pair.image_id, pair.labelling)
    for masks in samples:
        result.sample_answers.append(answer(masks, pair, settings.iou_threshold))
        result.sample_seam.append(seam_cover(masks, pair))
    for name, masks in methods.items():
        result.methods[name] = (answer(masks, pair, settings.iou_threshold), seam_cover(masks, pair))
    return result


# ---------------------------------------------------------------------------- data-set summary
def _fraction(count: int, total: int) -> float | None:
    return count / total if total else None


def summarize_probe(results: Sequence[PairResult], settings: ProbeSettings = ProbeSettings(),
                    dropped: dict[str, int] | None = None) -> dict:
    """JSON-ready data-set numbers: per method the answer fractions and the seam-cover fraction
    (over all pairs, over those labelled as two and as one, and at other thresholds); for the
    samples the answer fractions, the mixed fraction and the mean fraction of samples covering
    the seam."""
    results = list(results)
    labelled = Counter(r.labelling for r in results)
    summary: dict[str, Any] = {
        "pairs": len(results),
        "pairs_labelled": {"merged": labelled.get("merged", 0), "split": labelled.get("split", 0)},
        "iou_threshold": settings.iou_threshold,
        "seam_fraction": settings.seam_fraction,
        "dropped": dict(dropped or {}),
        "samples": None,
        "methods": {},
    }
    with_samples = [r for r in results if r.sample_answers]
    if with_samples:
        answers = Counter(a for r in with_samples for a in r.sample_answers)
        total = sum(answers.values())
        summary["samples"] = {
            "num_samples": max(len(r.sample_answers) for r in with_samples),
            "answers": {a: _fraction(answers.get(a, 0), total) for a in ANSWERS},
            "mixed_fraction": _fraction(sum(r.mixed for r in with_samples), len(with_samples)),
            "all_one_fraction": _fraction(sum(set(r.sample_answers) == {"one"} for r in with_samples), len(with_samples)),
            "all_two_fraction": _fraction(sum(set(r.sample_answers) == {"two"} for r in with_samples), len(with_samples)),
            "seam_covered_fraction": sum(
                sum(s >= settings.seam_fraction for s in r.sample_seam) / len(r.sample_seam) for r in with_samples
            ) / len(with_samples),
        }
    with_posterior = [r for r in results if set(r.posterior) == {"merged", "split"}]
    summary["posterior"] = None
    if with_posterior:
        summary["posterior"] = {
            "pairs": len(with_posterior),
            "follows_labelling": _fraction(
                sum(r.posterior["merged"] == "one" and r.posterior["split"] == "two" for r in with_posterior),
                len(with_posterior),
            ),
            "code_changes_answer": _fraction(
                sum(r.posterior["merged"] != r.posterior["split"] for r in with_posterior), len(with_posterior)
            ),
            "answers": {
                labelling: {
                    a: _fraction(sum(r.posterior[labelling] == a for r in with_posterior), len(with_posterior))
                    for a in ANSWERS
                }
                for labelling in ("merged", "split")
            },
        }
    names = sorted({name for r in results for name in r.methods})
    for name in names:
        rows = [r for r in results if name in r.methods]
        answers = Counter(r.methods[name][0] for r in rows)
        covered = [r.methods[name][1] >= settings.seam_fraction for r in rows]
        by_label = {
            label: [c for c, r in zip(covered, rows) if r.labelling == label] for label in ("split", "merged")
        }
        summary["methods"][name] = {
            "pairs": len(rows),
            "answers": {a: _fraction(answers.get(a, 0), len(rows)) for a in ANSWERS},
            "seam_covered": _fraction(sum(covered), len(rows)),
            "seam_covered_split": _fraction(sum(by_label["split"]), len(by_label["split"])),
            "seam_covered_merged": _fraction(sum(by_label["merged"]), len(by_label["merged"])),
            "seam_covered_at": {
                f"{t:g}": _fraction(sum(r.methods[name][1] >= t for r in rows), len(rows)) for t in SEAM_FRACTIONS
            },
        }
    return summary


def probe_scalars(summary: dict, prefix: str = "probe") -> dict[str, float]:
    """The headline numbers of a probe summary as flat scalars (TensorBoard), None left out."""
    values: dict[str, float | None] = {f"{prefix}/pairs": summary["pairs"]}
    samples = summary.get("samples")
    if samples:
        values[f"{prefix}/samples_mixed"] = samples["mixed_fraction"]
        values[f"{prefix}/samples_seam_covered"] = samples["seam_covered_fraction"]
        for a in ANSWERS:
            values[f"{prefix}/samples_{a}"] = samples["answers"][a]
    posterior = summary.get("posterior")
    if posterior:
        values[f"{prefix}/posterior_follows_labelling"] = posterior["follows_labelling"]
        values[f"{prefix}/posterior_code_changes_answer"] = posterior["code_changes_answer"]
    for name, method in summary["methods"].items():
        values[f"{prefix}/{name}_seam_covered"] = method["seam_covered"]
        values[f"{prefix}/{name}_seam_covered_split"] = method["seam_covered_split"]
        values[f"{prefix}/{name}_one"] = method["answers"]["one"]
        values[f"{prefix}/{name}_two"] = method["answers"]["two"]
    return {key: float(value) for key, value in values.items() if value is not None}


def labelled_targets(pair: SeamlessPair, others: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """The image's ground truth under both labellings of its pair: 'merged' (one instance over
    both bags) and 'split' (one per bag), the other instances unchanged."""
    from torchvision.ops import masks_to_boxes

    label = others["labels"].new_ones(()) if others["labels"].numel() == 0 else others["labels"].max()
    targets = {}
    for labelling, pair_masks in (("merged", pair.merged[None]), ("split", pair.halves)):
        masks = torch.cat([others["masks"].to(torch.uint8), pair_masks.to(torch.uint8)])
        targets[labelling] = {
            "masks": masks,
            "boxes": masks_to_boxes(masks.bool()).to(torch.float32),
            "labels": torch.cat([others["labels"], label.expand(len(pair_masks))]),
        }
    return targets


def posterior_answers(model, image: torch.Tensor, pair: SeamlessPair, others: dict[str, torch.Tensor],
                      score_threshold: float, iou_threshold: float) -> dict[str, str]:
    """Decode the posterior mean of each labelling of the pair: if the decoder uses the code
    for the choice, the 'merged' code answers 'one' and the 'split' code 'two'."""
    targets = labelled_targets(pair, others)
    device = image.device
    codes = torch.stack([
        model.posterior_mean([image], [{k: v.to(device) for k, v in targets[labelling].items()}])[0]
        for labelling in ("merged", "split")
    ])
    decoded = model.decode_reference([image], codes[None])[0]
    return {
        labelling: answer(prediction["masks"][prediction["scores"] > score_threshold].cpu(), pair, iou_threshold)
        for labelling, prediction in zip(("merged", "split"), decoded)
    }


# ---------------------------------------------------------------------------- a held-out probe set
@dataclass
class ProbeSet:
    """The usable seamless pairs of the first images of a COCO set, loaded once (an image with
    several pairs is listed once per pair)."""

    images: list[torch.Tensor]
    pairs: list[SeamlessPair]
    scanned: int
    dropped: dict[str, int]
    others: list[dict[str, torch.Tensor]] = field(default_factory=list)
    """Per image, the ground truth of every instance but the pair (masks, boxes, labels)."""


def load_probe_set(annotations: str, images: str, max_images: int) -> ProbeSet:
    """Scan a COCO set in image-id order until ``max_images`` usable pairs are found (an image
    with several pairs gives one entry per pair; raises `DatasetError` for a broken set)."""
    from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset

    if max_images < 1:
        raise ValueError(f"max_images must be at least 1, got {max_images}")
    dataset = CocoInstanceDataset(annotations, images)
    source = PairSource(dataset)
    loaded, pairs, others, scanned = [], [], [], 0
    for index in range(len(dataset)):
        if len(pairs) >= max_images:
            break
        scanned += 1
        target = dataset.load_target(index)
        kinds = instance_kinds(dataset, index, target)
        if not kinds or not ({"pair_half", "pair_merged"} & set(kinds)):
            continue
        image = dataset.load_image(index)
        regions = instance_regions(dataset, index, target) or [None] * len(kinds)
        for pair in source.pairs(index, target, image)[: max_images - len(pairs)]:
            loaded.append(image)
            pairs.append(pair)
            keep = torch.tensor([kind not in ("pair_half", "pair_merged") or (pair.region is not None and region != pair.region)
                                 for kind, region in zip(kinds, regions)], dtype=torch.bool)
            others.append({key: target[key][keep] for key in ("masks", "boxes", "labels")})
    if not pairs:
        LOG.warning("%s: no usable seamless pair in %d images (dropped: %s); the probe reports zero pairs",
                    annotations, scanned, dict(source.dropped))
    return ProbeSet(loaded, pairs, scanned, dict(source.dropped), others)


def run_probe(
    model,
    probe_set: ProbeSet,
    num_samples: int = 8,
    p: float = 0.9,
    score_threshold: float = 0.1,
    seed: int = 0,
    settings: ProbeSettings = ProbeSettings(),
) -> dict:
    """Run ``model`` on the probe set and summarize. A Latent-MaskRCNN gives K samples, the
    p-confidence masks (``confidence_mask``) and the prior mean (``prior_mean``); a plain
    MaskRCNN (``latent_dim = 0``) its single prediction (``maskrcnn``). Adds ``seconds``."""
    from latent_maskrcnn.aggregation.aggregate import aggregate, prepare_prediction_samples

    start = time.perf_counter()
    device = next(model.parameters()).device
    latent = getattr(model, "latent_dim", 0) != 0
    results = []
    for index, (image, pair) in enumerate(zip(probe_set.images, probe_set.pairs)):
        images = [image.to(device)]
        prior = model.sample(images, num_samples=1, mode="prior_mean")[0]
        single = aggregate(prior, "prior_mean", score_threshold=score_threshold)["masks"].cpu()
        if not latent:
            results.append(probe_pair(pair, [], {"maskrcnn": single}, settings))
            continue
        samples = model.sample(images, num_samples=num_samples, seed=seed + index)[0]
        prepared = prepare_prediction_samples(samples, score_threshold)
        confidence = aggregate(prepared, "confidence_mask", p=p, score_threshold=score_threshold)["masks"].cpu()
        shown = [s["masks"][s["scores"] > score_threshold].cpu() for s in samples]
        result = probe_pair(pair, shown, {"confidence_mask": confidence, "prior_mean": single}, settings)
        if index < len(probe_set.others):
            result.posterior = posterior_answers(model, images[0], pair, probe_set.others[index],
                                                 score_threshold, settings.iou_threshold)
        results.append(result)
    summary = summarize_probe(results, settings, probe_set.dropped)
    summary["images_scanned"] = probe_set.scanned
    summary["num_samples"] = num_samples if latent else 1
    summary["p"] = p
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


__all__ = [
    "ANSWERS",
    "PairResult",
    "PairSource",
    "ProbeSet",
    "ProbeSettings",
    "SeamlessPair",
    "answer",
    "instance_kinds",
    "instance_regions",
    "labelled_targets",
    "load_probe_set",
    "posterior_answers",
    "probe_pair",
    "probe_scalars",
    "run_probe",
    "seam_cover",
    "summarize_probe",
]
