"""The seamless-pair probe: answers and seam cover on hand-built masks, the data-set
fractions, and the pair outlines found in generated data (both labellings)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from latent_maskrcnn.data.coco_dataset import CocoInstanceDataset
from latent_maskrcnn.data.synthetic import AmbiguityRates, generate_scene, make_dataset
from latent_maskrcnn.data.synthetic.coco import scene_seed
from latent_maskrcnn.evaluation.pair_probe import (
    PairSource,
    ProbeSettings,
    SeamlessPair,
    answer,
    instance_kinds,
    load_probe_set,
    probe_pair,
    probe_scalars,
    seam_cover,
    summarize_probe,
)

H, W = 40, 64


def block(y0, y1, x0, x1):
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


LEFT, RIGHT = block(10, 30, 10, 30), block(10, 30, 30, 50)
MERGED = LEFT | RIGHT


def pair(labelling="split", image_id=1):
    return SeamlessPair(image_id, torch.stack([LEFT, RIGHT]), labelling)


def masks(*items):
    return torch.stack(items) if items else torch.zeros((0, H, W), dtype=torch.bool)


def test_answers_on_known_masks():
    assert answer(masks(MERGED), pair()) == "one"
    assert answer(masks(LEFT, RIGHT), pair()) == "two"
    assert answer(masks(MERGED, LEFT, RIGHT), pair()) == "both"
    # one half has IoU 0.5 with the merged outline too, but it matches the half better
    assert answer(masks(LEFT), pair()) == "neither"
    assert answer(masks(), pair()) == "neither"
    assert answer(masks(block(0, 8, 0, 8)), pair()) == "neither"
    # a slightly shrunk merged mask is still "one"; a mask a bit larger than a half still a half
    assert answer(masks(block(11, 29, 12, 48)), pair()) == "one"
    assert answer(masks(block(10, 30, 8, 33), block(10, 30, 33, 50)), pair()) == "two"


def test_seam_cover_on_known_masks():
    assert seam_cover(masks(MERGED), pair()) == pytest.approx(1.0)
    assert seam_cover(masks(LEFT, RIGHT), pair()) == 0.0
    # a half whose border spills 2 px over the seam holds 10 % of the other half: not covered
    spill = block(10, 30, 10, 32)
    assert seam_cover(masks(spill), pair()) == pytest.approx(0.1)
    assert seam_cover(masks(spill), pair()) < ProbeSettings().seam_fraction
    # a mask over half of one bag and 30 % of the other crosses the seam
    crossing = block(10, 30, 20, 36)
    assert seam_cover(masks(crossing), pair()) == pytest.approx(0.3)
    assert seam_cover(masks(), pair()) == 0.0


def test_sample_sets_with_both_answers_are_mixed():
    one, two, both = masks(MERGED), masks(LEFT, RIGHT), masks(MERGED, LEFT, RIGHT)
    mixed = probe_pair(pair(), [one, two, two, one], {"confidence_mask": two})
    agreeing = probe_pair(pair("merged", 2), [one, one, one, one], {"confidence_mask": one})
    overlapping = probe_pair(pair("split", 3), [both, one, both, one], {"confidence_mask": masks(LEFT)})
    assert mixed.mixed and not agreeing.mixed
    assert not overlapping.mixed  # "both" in one sample is no choice carried by the latent

    summary = summarize_probe([mixed])
    assert summary["samples"]["mixed_fraction"] == 1.0
    assert summary["samples"]["answers"] == {"one": 0.5, "two": 0.5, "both": 0.0, "neither": 0.0}
    assert summary["samples"]["seam_covered_fraction"] == 0.5

    summary = summarize_probe([mixed, agreeing, overlapping])
    assert summary["pairs"] == 3 and summary["pairs_labelled"] == {"merged": 1, "split": 2}
    assert summary["samples"]["mixed_fraction"] == pytest.approx(1 / 3)
    assert summary["samples"]["all_one_fraction"] == pytest.approx(1 / 3)
    method = summary["methods"]["confidence_mask"]
    assert method["answers"] == {"one": pytest.approx(1 / 3), "two": pytest.approx(1 / 3), "both": 0.0,
                                 "neither": pytest.approx(1 / 3)}
    assert method["seam_covered"] == pytest.approx(1 / 3)
    assert method["seam_covered_split"] == 0.0           # the two split pairs keep the seam free
    assert method["seam_covered_merged"] == 1.0
    scalars = probe_scalars(summary)
    assert scalars["probe/samples_mixed"] == pytest.approx(1 / 3)
    assert scalars["probe/confidence_mask_seam_covered_split"] == 0.0


def test_single_prediction_methods_have_no_sample_numbers():
    summary = summarize_probe([probe_pair(pair(), [], {"maskrcnn": masks(MERGED)})])
    assert summary["samples"] is None
    assert summary["methods"]["maskrcnn"]["seam_covered_split"] == 1.0
    assert summary["methods"]["maskrcnn"]["seam_covered_merged"] is None
    assert summarize_probe([])["pairs"] == 0


def test_probe_settings_are_checked():
    with pytest.raises(ValueError, match="seam_fraction"):
        ProbeSettings(seam_fraction=0.0)
    with pytest.raises(ValueError, match="iou_threshold"):
        ProbeSettings(iou_threshold=1.5)


# ---------------------------------------------------------------------------- generated data
def make_pair_data(root, pair_merged):
    rates = AmbiguityRates(seamless_pair=1.0, pair_merged=pair_merged)
    make_dataset(root, images=3, seed=11, height=60, width=80, rates=rates, progress=False)
    return root, rates, "merged" if pair_merged == 1.0 else "split"


@pytest.fixture(scope="module", params=[0.0, 1.0], ids=["split", "merged"])
def pair_data(request, tmp_path_factory):
    return make_pair_data(tmp_path_factory.mktemp("pairs"), request.param)


def test_pairs_of_generated_data_have_both_outlines(pair_data):
    root, rates, labelling = pair_data
    dataset = CocoInstanceDataset(root / "annotations.json", root / "images")
    source = PairSource(dataset)
    found = 0
    for index in range(len(dataset)):
        target = dataset.load_target(index)
        kinds = instance_kinds(dataset, index, target)
        assert len(kinds) == target["masks"].shape[0]
        result = source.pair(index, target)
        if result is None:
            continue
        found += 1
        assert result.labelling == labelling
        entry = dataset.coco.imgs[dataset.image_ids[index]]
        split = generate_scene(scene_seed(11, entry["scene_id"]), 60, 80, 1, rates, pair_labeling="split").views[0]
        halves = [g for g, ref in enumerate(split.instances) if ref.kind == "pair_half"]
        assert torch.equal(result.halves, torch.from_numpy(split.masks[halves]))
        if labelling == "merged":
            assert torch.equal(result.merged, target["masks"][kinds.index("pair_merged")].bool())
    assert found + sum(source.dropped.values()) == 3 and found >= 2


def test_a_changed_image_drops_a_merged_pair_and_user_data_have_no_pairs(tmp_path):
    root, _, _ = make_pair_data(tmp_path / "data", 1.0)   # merged pairs are re-rendered
    images = tmp_path / "images"
    images.mkdir()
    for path in (root / "images").iterdir():
        pixels = np.asarray(Image.open(path)).copy()
        pixels[0, 0, 0] ^= 1
        Image.fromarray(pixels).save(images / path.name)
    probe_set = load_probe_set(str(root / "annotations.json"), str(images), max_images=5)
    assert probe_set.pairs == [] and probe_set.dropped == {"re-rendered image differs": probe_set.scanned}

    document = json.loads((root / "annotations.json").read_text())
    for annotation in document["annotations"]:
        del annotation["ambiguity"]
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(document))
    dataset = CocoInstanceDataset(plain, root / "images")
    assert instance_kinds(dataset, 0, dataset.load_target(0)) is None
    assert load_probe_set(str(plain), str(root / "images"), max_images=5).pairs == []


def test_posterior_answers_are_summarised_per_labelling():
    follows = probe_pair(pair(), [], {})
    follows.posterior = {"merged": "one", "split": "two"}
    ignores = probe_pair(pair("merged", 2), [], {})
    ignores.posterior = {"merged": "one", "split": "one"}
    other_way = probe_pair(pair("split", 3), [], {})
    other_way.posterior = {"merged": "two", "split": "neither"}
    summary = summarize_probe([follows, ignores, other_way, probe_pair(pair("split", 4), [], {})])
    posterior = summary["posterior"]
    assert posterior["pairs"] == 3                        # the pair without posterior answers is left out
    assert posterior["follows_labelling"] == pytest.approx(1 / 3)
    assert posterior["code_changes_answer"] == pytest.approx(2 / 3)
    assert posterior["answers"]["split"] == {"one": pytest.approx(1 / 3), "two": pytest.approx(1 / 3),
                                             "both": 0.0, "neither": pytest.approx(1 / 3)}
    scalars = probe_scalars(summary)
    assert scalars["probe/posterior_follows_labelling"] == pytest.approx(1 / 3)
    assert summarize_probe([probe_pair(pair(), [], {})])["posterior"] is None


def test_labelled_targets_and_the_posterior_of_each_labelling(pair_data):
    from latent_maskrcnn.evaluation.pair_probe import labelled_targets, posterior_answers
    from latent_maskrcnn.model.config import tiny_config
    from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

    root, _, _ = pair_data
    probe_set = load_probe_set(str(root / "annotations.json"), str(root / "images"), max_images=3)
    assert probe_set.pairs and len(probe_set.others) == len(probe_set.pairs)
    torch.manual_seed(0)
    model = LatentMaskRCNN(tiny_config())
    for image, found, others in zip(probe_set.images, probe_set.pairs, probe_set.others):
        targets = labelled_targets(found, others)
        count = others["masks"].shape[0]
        assert torch.equal(targets["merged"]["masks"][count:].bool(), found.merged[None])
        assert torch.equal(targets["split"]["masks"][count:].bool(), found.halves)
        assert torch.equal(targets["split"]["masks"][:count], others["masks"].to(torch.uint8))
        for target in targets.values():
            boxes, masks = target["boxes"], target["masks"].bool()
            assert len(boxes) == len(masks) == len(target["labels"])
            ys, xs = masks[-1].nonzero(as_tuple=True)
            assert boxes[-1].tolist() == [xs.min(), ys.min(), xs.max(), ys.max()]
        # the encoder reads the labelling: the two codes differ
        means = [model.posterior_mean([image], [targets[name]]) for name in ("merged", "split")]
        assert means[0].shape == (1, model.latent_dim) and not torch.allclose(means[0], means[1])
        answers = posterior_answers(model, image, found, others, score_threshold=0.0, iou_threshold=0.5)
        assert set(answers) == {"merged", "split"} and set(answers.values()) <= {"one", "two", "both", "neither"}


def test_several_pairs_per_image_are_found_and_re_rendered(tmp_path):
    """``max_pairs`` > 1: the halves are grouped by ``region_id``; merged pairs re-render each."""
    rates = AmbiguityRates(seamless_pair=1.0, max_pairs=3, transparent_film=1.0, glare_stripe=0.5,
                           styled_kinds=("seamless_pair", "glare_stripe", "transparent_film"))
    make_dataset(tmp_path, images=4, seed=12, height=90, width=120, rates=rates, labellings="both", progress=False)
    dataset = CocoInstanceDataset(tmp_path / "annotations.json", tmp_path / "images")
    source = PairSource(dataset)
    by_file = {}
    several = 0
    for index in range(len(dataset)):
        target = dataset.load_target(index)
        entry = dataset.coco.imgs[dataset.image_ids[index]]
        found = source.pairs(index, target)
        kinds = instance_kinds(dataset, index, target)
        expected = kinds.count("pair_merged") + kinds.count("pair_half") // 2
        assert len(found) + sum(source.dropped.values()) >= expected >= len(found)
        several += len(found) >= 2
        assert all(pair.labelling == entry["style"] for pair in found)
        by_file.setdefault(entry["file_name"], {})[entry["style"]] = {pair.region: pair.halves for pair in found}
        if len(found) >= 2:
            assert source.pair(index, target) is None            # one-pair callers see no single pair
    assert several >= 2 and source.dropped.get("re-rendered image differs", 0) == 0
    compared = 0
    for styles in by_file.values():   # the merged entry's re-rendered halves equal the split entry's
        for region, halves in styles["merged"].items():
            if region in styles["split"]:
                assert torch.equal(halves, styles["split"][region])
                compared += 1
    assert compared >= 4
    probe_set = load_probe_set(str(tmp_path / "annotations.json"), str(tmp_path / "images"), max_images=5)
    assert len(probe_set.pairs) == 5 and len(probe_set.others) == 5
    for found, others in zip(probe_set.pairs, probe_set.others):
        assert not any(torch.equal(mask.bool(), half) for mask in others["masks"] for half in found.halves)
