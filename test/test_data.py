"""COCO data sets of any origin: decoding, label mapping, empty images, augmentations, errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from latent_maskrcnn.data.coco_dataset import (
    CocoInstanceDataset,
    ColorJitter,
    Compose,
    DatasetError,
    RandomHorizontalFlip,
    ScaleJitter,
    augment_generator,
    build_augmentations,
    collate,
    labelling_groups,
    masks_to_boxes,
)
from latent_maskrcnn.data.synthetic import AMBIGUITY_RATES, make_dataset


@pytest.fixture(scope="module")
def synthetic_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    path = make_dataset(root, images=3, seed=2, height=48, width=64, progress=False)
    return path, root / "images"


def _write_image(path, height, width, value=100):
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(path)


@pytest.fixture()
def handmade_set(tmp_path):
    """Two categories with non-contiguous ids, a polygon, an uncompressed RLE, a compressed
    RLE, a crowd region and an image without instances."""
    images = tmp_path / "images"
    images.mkdir()
    _write_image(images / "a.png", 20, 30)
    _write_image(images / "b.jpg", 20, 30)
    square = np.zeros((20, 30), np.uint8)
    square[2:6, 3:9] = 1
    compressed = mask_utils.encode(np.asfortranarray(square))
    compressed["counts"] = compressed["counts"].decode("ascii")
    column = np.zeros((20, 30), np.uint8)
    column[10:18, 20:22] = 1
    runs, previous, count = [], 0, 0
    for value in column.flatten(order="F"):
        if value != previous:
            runs.append(count)
            previous, count = value, 0
        count += 1
    runs.append(count)
    document = {
        "images": [
            {"id": 5, "file_name": "a.png", "height": 20, "width": 30},
            {"id": 9, "file_name": "b.jpg", "height": 20, "width": 30},
        ],
        "categories": [{"id": 7, "name": "shirt"}, {"id": 3, "name": "bag"}],
        "annotations": [
            {"id": 1, "image_id": 5, "category_id": 7, "segmentation": [[10, 10, 20, 10, 20, 15, 10, 15]], "iscrowd": 0},
            {"id": 2, "image_id": 5, "category_id": 3, "segmentation": {"size": [20, 30], "counts": runs}, "iscrowd": 0},
            {"id": 3, "image_id": 5, "category_id": 3, "segmentation": compressed, "iscrowd": 0},
            {"id": 4, "image_id": 5, "category_id": 3, "segmentation": compressed, "iscrowd": 1},
        ],
    }
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(document))
    return path, images, document, square, column


def test_synthetic_items_match_the_annotations(synthetic_set):
    path, images = synthetic_set
    dataset = CocoInstanceDataset(path, images)
    coco = COCO(str(path))
    assert len(dataset) == 3 and dataset.class_names == ["__background__", "item"]
    image, target = dataset[1]
    assert image.dtype == torch.float32 and image.shape == (3, 48, 64)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    stored = np.array(Image.open(images / coco.loadImgs(2)[0]["file_name"]))
    assert torch.equal((image * 255).round().to(torch.uint8).permute(1, 2, 0), torch.from_numpy(stored))
    annotations = coco.loadAnns(coco.getAnnIds(imgIds=2))
    assert target["masks"].dtype == torch.uint8 and target["masks"].shape == (len(annotations), 48, 64)
    for mask, annotation in zip(target["masks"], annotations):
        assert np.array_equal(mask.numpy(), coco.annToMask(annotation))
    assert int(target["image_id"]) == 2
    assert torch.equal(target["labels"], torch.ones(len(annotations), dtype=torch.int64))
    x, y, w, h = annotations[0]["bbox"]
    assert target["boxes"][0].tolist() == [x, y, x + w, y + h]


def test_polygons_rle_category_mapping_crowd_and_empty_images(handmade_set):
    path, images, _, square, column = handmade_set
    dataset = CocoInstanceDataset(path, images)
    assert dataset.class_names == ["__background__", "bag", "shirt"]
    assert dataset.category_to_label == {3: 1, 7: 2}
    assert dataset.skipped_crowd == 1
    _, target = dataset[0]
    assert target["labels"].tolist() == [2, 1, 1]
    masks = target["masks"].numpy().astype(bool)
    assert masks[0][10:15, 10:20].all() and masks[0].sum() < 100
    assert np.array_equal(masks[1], column.astype(bool))
    assert np.array_equal(masks[2], square.astype(bool))
    assert target["boxes"][2].tolist() == [3.0, 2.0, 9.0, 6.0]
    image, empty = dataset[1]
    assert image.shape == (3, 20, 30)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)
    assert empty["masks"].shape == (0, 20, 30) and empty["masks"].dtype == torch.uint8


def test_missing_annotation_file(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        CocoInstanceDataset(tmp_path / "nope.json", tmp_path)


def test_malformed_annotation_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match="not valid JSON"):
        CocoInstanceDataset(path, tmp_path)
    path.write_text('{"images": []}')
    with pytest.raises(DatasetError, match="'annotations' must be a list"):
        CocoInstanceDataset(path, tmp_path)


def test_annotations_pointing_nowhere_are_listed(handmade_set):
    path, images, document, _, _ = handmade_set
    document["annotations"][0]["image_id"] = 42
    document["annotations"][1]["category_id"] = 99
    document["annotations"][2]["segmentation"] = [[1, 2, 3]]
    path.write_text(json.dumps(document))
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(path, images)
    message = str(error.value)
    assert "image 42" in message and "category 99" in message and "polygon" in message


def test_missing_images_are_listed_before_training(handmade_set):
    path, images, document, _, _ = handmade_set
    document["images"] += [{"id": 100 + i, "file_name": f"gone{i}.png", "height": 20, "width": 30} for i in range(8)]
    path.write_text(json.dumps(document))
    with pytest.raises(DatasetError) as error:
        CocoInstanceDataset(path, images)
    message = str(error.value)
    assert "8 of 10 images" in message and "gone0.png" in message and "and 3 more" in message


def test_image_of_another_size_is_refused(handmade_set):
    path, images, _, _, _ = handmade_set
    _write_image(images / "b.jpg", 21, 30)
    with pytest.raises(DatasetError, match="21x30"):
        CocoInstanceDataset(path, images)


def _sample_target():
    masks = torch.zeros((2, 40, 60), dtype=torch.uint8)
    masks[0, 5:15, 3:20] = 1
    masks[1, 20:38, 40:58] = 1
    return torch.rand(3, 40, 60), {"boxes": masks_to_boxes(masks.bool()), "labels": torch.tensor([1, 2]), "masks": masks}


def test_flip_moves_boxes_with_masks():
    image, target = _sample_target()
    flip = RandomHorizontalFlip(1.0)
    flipped_image, flipped = flip(image, target, torch.Generator().manual_seed(0))
    assert torch.equal(flipped_image, image.flip(-1))
    assert torch.equal(flipped["boxes"], masks_to_boxes(flipped["masks"].bool()))
    back_image, back = flip(flipped_image, flipped, torch.Generator().manual_seed(0))
    assert torch.equal(back_image, image) and torch.equal(back["boxes"], target["boxes"])
    unchanged, _ = RandomHorizontalFlip(0.0)(image, target, torch.Generator().manual_seed(0))
    assert unchanged is image


@pytest.mark.parametrize("seed", range(8))
def test_scale_jitter_keeps_size_and_consistent_targets(seed):
    image, target = _sample_target()
    out_image, out = ScaleJitter(0.5, 2.0)(image, target, torch.Generator().manual_seed(seed))
    assert out_image.shape == image.shape
    assert out["masks"].shape[1:] == (40, 60) and len(out["masks"]) == len(out["labels"]) == len(out["boxes"])
    assert out["masks"].flatten(1).any(dim=1).all()
    assert torch.equal(out["boxes"], masks_to_boxes(out["masks"].bool()))


def test_colour_jitter_changes_colours_not_targets():
    image, target = _sample_target()
    out_image, out = ColorJitter(0.3, 0.3, 0.3, 0.05)(image, target, torch.Generator().manual_seed(1))
    assert out is target
    assert 0.0 <= float(out_image.min()) and float(out_image.max()) <= 1.0
    assert not torch.allclose(out_image, image)


def test_augmentation_depends_only_on_seed_epoch_and_index(synthetic_set):
    path, images = synthetic_set
    dataset = CocoInstanceDataset(path, images, transforms=build_augmentations(), augment_seed=4)
    first, again = dataset[(3, 1)], dataset[(3, 1)]
    assert torch.equal(first[0], again[0]) and torch.equal(first[1]["masks"], again[1]["masks"])
    assert not torch.equal(dataset[(4, 1)][0], first[0])
    dataset.set_epoch(3)
    assert torch.equal(dataset[1][0], first[0])
    assert augment_generator(4, 3, 1).initial_seed() != augment_generator(4, 3, 2).initial_seed()


def test_labellings_of_one_file_are_grouped_and_augmented_alike(handmade_set, tmp_path):
    """Two entries of one image file (two annotators): one group, the same augmented pixels,
    each with its own labels."""
    path, images, document, _, _ = handmade_set
    second = dict(document["images"][0], id=11)
    relabelled = dict(document["annotations"][0], id=9, image_id=11)
    doubled = dict(document, images=document["images"] + [second],
                   annotations=document["annotations"] + [relabelled])
    doubled_path = tmp_path / "two_annotators.json"
    doubled_path.write_text(json.dumps(doubled))
    dataset = CocoInstanceDataset(doubled_path, images, transforms=build_augmentations(hflip=1.0, scale_range=(0.8, 1.25)))
    first, other = dataset.image_ids.index(5), dataset.image_ids.index(11)
    assert sorted([first, other]) in [sorted(group) for group in dataset.file_groups]
    assert len(dataset.file_groups) == 2
    for epoch in (0, 1):
        (image_a, target_a), (image_b, target_b) = dataset[(epoch, first)], dataset[(epoch, other)]
        assert torch.equal(image_a, image_b)
        assert len(target_a["masks"]) == 3 and len(target_b["masks"]) == 1
        torch.testing.assert_close(target_b["masks"][0], target_a["masks"][0])


def test_collate_keeps_lists(synthetic_set):
    path, images = synthetic_set
    dataset = CocoInstanceDataset(path, images, transforms=Compose([]))
    batch_images, batch_targets = collate([dataset[0], dataset[1]])
    assert isinstance(batch_images, list) and len(batch_images) == 2
    assert isinstance(batch_targets, list) and "masks" in batch_targets[1]


def test_bad_augmentation_parameters():
    with pytest.raises(ValueError, match="probability"):
        RandomHorizontalFlip(1.5)
    with pytest.raises(ValueError, match="min_scale"):
        ScaleJitter(1.5, 1.0)
    with pytest.raises(ValueError, match="hue"):
        ColorJitter(hue=0.7)


def test_both_labellings_of_a_scene_load_as_two_items_of_one_image(tmp_path, caplog):
    caplog.set_level("INFO")
    path = make_dataset(tmp_path, images=3, seed=4, height=72, width=96, rates=AMBIGUITY_RATES,
                        labellings="both", progress=False)
    dataset = CocoInstanceDataset(path, tmp_path / "images")
    assert len(dataset) == 6 and "6 entries share 3 image files" in caplog.text
    groups = labelling_groups(dataset)
    assert groups == [[0, 1], [2, 3], [4, 5]]
    differ = 0
    for first, second in groups:
        (image_a, target_a), (image_b, target_b) = dataset[first], dataset[second]
        assert torch.equal(image_a, image_b)
        entries = [dataset.coco.imgs[dataset.image_ids[i]] for i in (first, second)]
        assert [entry["style"] for entry in entries] == ["merged", "split"]
        assert entries[0]["group_id"] == entries[1]["group_id"] and entries[0]["file_name"] == entries[1]["file_name"]
        differ += target_a["masks"].shape != target_b["masks"].shape or not torch.equal(target_a["masks"], target_b["masks"])
    assert differ == 3          # the ambiguity preset: every scene holds styled regions
    plain = make_dataset(tmp_path / "plain", images=2, seed=4, height=48, width=64, progress=False)
    assert labelling_groups(CocoInstanceDataset(plain, tmp_path / "plain" / "images")) == [[0], [1]]
