"""COCO-format instance segmentation data of any origin, augmentations and batching.

Everything that can be wrong with a data set (missing or malformed annotation file, images
that do not exist or have another size, annotations pointing nowhere) is found when the data
set is built, before a training run starts, and reported as one `DatasetError` that lists the
first few problems.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from torch import Tensor
from torchvision.transforms import functional as tvf

LOG = logging.getLogger(__name__)
MAX_LISTED = 5

Target = dict[str, Tensor]
Transform = Callable[[Tensor, Target, torch.Generator], tuple[Tensor, Target]]
"""An augmentation: (image float [3, H, W], target, random generator) -> (image, target)."""


class DatasetError(ValueError):
    """A data set that cannot be used; the message names the file and the first problems."""


def _listing(problems: Sequence[str]) -> str:
    shown = "; ".join(problems[:MAX_LISTED])
    more = len(problems) - MAX_LISTED
    return shown + (f"; ... and {more} more" if more > 0 else "")


def _load_json(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DatasetError(f"annotation file {path} does not exist")
    if not path.is_file():
        raise DatasetError(f"annotation file {path} is not a file")
    try:
        with open(path, encoding="utf-8") as handle:
            document = json.load(handle)
    except json.JSONDecodeError as error:
        raise DatasetError(f"annotation file {path} is not valid JSON: {error}") from error
    except UnicodeDecodeError as error:
        raise DatasetError(f"annotation file {path} is not UTF-8 text: {error}") from error
    if not isinstance(document, dict):
        raise DatasetError(f"annotation file {path} must hold a JSON object, got {type(document).__name__}")
    return document


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _segmentation_problem(segmentation: Any) -> str | None:
    if isinstance(segmentation, list):
        if not segmentation:
            return "empty polygon list"
        for polygon in segmentation:
            if not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2:
                return "a polygon needs an even number (>= 6) of coordinates"
            if not all(_is_number(v) for v in polygon):
                return "polygon coordinates must be finite numbers"
        return None
    if isinstance(segmentation, dict):
        if "size" not in segmentation or "counts" not in segmentation:
            return "an RLE needs 'size' and 'counts'"
        size = segmentation["size"]
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
            return "RLE 'size' must be [height, width]"
        if not isinstance(segmentation["counts"], (str, list)):
            return "RLE 'counts' must be a string or a list of run lengths"
        return None
    return f"segmentation must be a polygon list or an RLE dict, got {type(segmentation).__name__}"


def validate_coco(document: dict[str, Any], source: str) -> None:
    """Structural checks of a COCO instance-segmentation document (raises `DatasetError`)."""
    problems: list[str] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(document.get(key), list):
            problems.append(f"top-level '{key}' must be a list")
    if problems:
        raise DatasetError(f"{source} is not a COCO instance file: {_listing(problems)}")
    category_ids = set()
    for index, category in enumerate(document["categories"]):
        if not isinstance(category, dict) or not isinstance(category.get("id"), int) or not isinstance(category.get("name"), str):
            problems.append(f"categories[{index}] needs an integer 'id' and a string 'name'")
        elif category["id"] in category_ids:
            problems.append(f"category id {category['id']} appears twice")
        else:
            category_ids.add(category["id"])
    if not document["categories"]:
        problems.append("no categories")
    image_sizes: dict[int, tuple[int, int]] = {}
    for index, image in enumerate(document["images"]):
        if not isinstance(image, dict):
            problems.append(f"images[{index}] is not an object")
            continue
        missing = [key for key in ("id", "file_name", "height", "width") if key not in image]
        if missing:
            problems.append(f"images[{index}] lacks {missing}")
            continue
        if not isinstance(image["id"], int) or image["id"] in image_sizes:
            problems.append(f"images[{index}] has a missing, non-integer or repeated id {image['id']!r}")
            continue
        if not (isinstance(image["height"], int) and isinstance(image["width"], int) and image["height"] > 0 and image["width"] > 0):
            problems.append(f"image {image['id']} has an invalid size {image['height']!r} x {image['width']!r}")
            continue
        image_sizes[image["id"]] = (image["height"], image["width"])
    seen_annotations = set()
    for index, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict):
            problems.append(f"annotations[{index}] is not an object")
            continue
        missing = [key for key in ("id", "image_id", "category_id", "segmentation") if key not in annotation]
        if missing:
            problems.append(f"annotations[{index}] lacks {missing}")
            continue
        name = f"annotation {annotation['id']!r}"
        if annotation["id"] in seen_annotations:
            problems.append(f"{name} id appears twice")
        seen_annotations.add(annotation["id"])
        if annotation["image_id"] not in image_sizes:
            problems.append(f"{name} points to image {annotation['image_id']!r}, which is not listed")
            continue
        if annotation["category_id"] not in category_ids:
            problems.append(f"{name} has category {annotation['category_id']!r}, which is not listed")
        problem = _segmentation_problem(annotation["segmentation"])
        if problem:
            problems.append(f"{name}: {problem}")
        elif isinstance(annotation["segmentation"], dict):
            if tuple(annotation["segmentation"]["size"]) != image_sizes[annotation["image_id"]]:
                problems.append(
                    f"{name}: RLE size {annotation['segmentation']['size']} differs from its image "
                    f"{list(image_sizes[annotation['image_id']])}"
                )
    if problems:
        raise DatasetError(f"{source} has {len(problems)} problem(s): {_listing(problems)}")


def masks_to_boxes(masks: Tensor) -> Tensor:
    """Tight float boxes [G, 4] (x1, y1, x2, y2; x2 and y2 one past the last pixel)."""
    if masks.shape[0] == 0:
        return torch.zeros((0, 4), dtype=torch.float32)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    height, width = masks.shape[1:]
    y1 = rows.float().argmax(dim=1)
    y2 = height - rows.flip(1).float().argmax(dim=1)
    x1 = cols.float().argmax(dim=1)
    x2 = width - cols.flip(1).float().argmax(dim=1)
    return torch.stack([x1, y1, x2, y2], dim=1).to(torch.float32)


def keep_instances(target: Target, keep: Tensor) -> Target:
    """The target restricted to the instances in ``keep`` (bool [G])."""
    result = dict(target)
    for key in ("boxes", "labels", "masks", "area", "iscrowd"):
        if key in result:
            result[key] = result[key][keep]
    return result


def augment_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The random generator of one sample's augmentation: a function of (seed, epoch, index)
    only, so data are identical for any number of loader workers and after a resume."""
    state = np.random.SeedSequence([int(seed), int(epoch), int(index)]).generate_state(2, dtype=np.uint32)
    return torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))


class CocoInstanceDataset(torch.utils.data.Dataset):
    """Images and instance masks from a COCO-format annotation file (polygons or RLE).

    Category ids are mapped to contiguous labels 1..C in id order (``class_names[0]`` is the
    background). Crowd annotations are left out (counted in ``skipped_crowd``); images without
    instances are kept. Item ``i`` is ``(image float [3, H, W] in [0, 1], target)`` with
    ``boxes`` float [G, 4], ``labels`` int64 [G], ``masks`` uint8 [G, H, W], ``image_id``.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike,
        image_dir: str | os.PathLike,
        transforms: Transform | None = None,
        augment_seed: int = 0,
        check_image_sizes: bool = True,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        self.transforms = transforms
        self.augment_seed = int(augment_seed)
        self.epoch = 0
        document = _load_json(self.annotation_file)
        validate_coco(document, str(self.annotation_file))
        if not self.image_dir.is_dir():
            raise DatasetError(f"image folder {self.image_dir} does not exist")
        self.coco = COCO()
        self.coco.dataset = document
        with contextlib.redirect_stdout(io.StringIO()):  # createIndex prints progress
            self.coco.createIndex()
        categories = sorted(document["categories"], key=lambda category: category["id"])
        self.category_to_label = {category["id"]: label for label, category in enumerate(categories, start=1)}
        self.class_names = ["__background__"] + [category["name"] for category in categories]
        self.image_ids = sorted(self.coco.imgs)
        self.skipped_crowd = sum(1 for annotation in document["annotations"] if annotation.get("iscrowd", 0))
        if self.skipped_crowd:
            LOG.info("%s: %d crowd annotations are not used as instances", self.annotation_file, self.skipped_crowd)
        files = len({self.coco.imgs[image_id]["file_name"] for image_id in self.image_ids})
        if files < len(self.image_ids):
            LOG.info("%s: %d entries share %d image files (several labellings of one image); every entry is one "
                     "item", self.annotation_file, len(self.image_ids), files)
        self._check_images(check_image_sizes)
        self.file_groups = labelling_groups(self)
        # entries of one file are augmented alike: their labels differ, their pixels must not
        self._augment_index = {index: group[0] for group in self.file_groups for index in group}

    @property
    def num_classes(self) -> int:
        """Including the background."""
        return len(self.class_names)

    def _check_images(self, check_sizes: bool) -> None:
        missing: list[str] = []
        wrong: list[str] = []
        for image_id in self.image_ids:
            info = self.coco.imgs[image_id]
            path = self.image_dir / info["file_name"]
            if not path.is_file():
                missing.append(str(path))
                continue
            if check_sizes:
                try:
                    with Image.open(path) as image:
                        width, height = image.size
                except (UnidentifiedImageError, OSError) as error:
                    wrong.append(f"{path} is not a readable image ({error})")
                    continue
                if (height, width) != (info["height"], info["width"]):
                    wrong.append(f"{path} is {height}x{width}, the annotations say {info['height']}x{info['width']}")
        if missing:
            raise DatasetError(
                f"{len(missing)} of {len(self.image_ids)} images listed in {self.annotation_file} do not exist "
                f"under {self.image_dir}: {_listing(missing)}"
            )
        if wrong:
            raise DatasetError(f"{len(wrong)} images do not match {self.annotation_file}: {_listing(wrong)}")

    def set_epoch(self, epoch: int) -> None:
        """Augmentations differ per epoch; call before iterating an epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.image_ids)

    def load_image(self, index: int) -> Tensor:
        info = self.coco.imgs[self.image_ids[index]]
        with Image.open(self.image_dir / info["file_name"]) as image:
            array = np.asarray(image.convert("RGB"))
        return torch.from_numpy(array.copy()).permute(2, 0, 1).to(torch.float32).div_(255.0)

    def load_target(self, index: int) -> Target:
        image_id = self.image_ids[index]
        info = self.coco.imgs[image_id]
        height, width = info["height"], info["width"]
        masks, labels = [], []
        for annotation in self.coco.imgToAnns.get(image_id, []):
            if annotation.get("iscrowd", 0):
                continue
            segmentation = annotation["segmentation"]
            if isinstance(segmentation, list):
                rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
            elif isinstance(segmentation["counts"], list):
                rle = mask_utils.frPyObjects(segmentation, height, width)
            else:
                rle = segmentation
            mask = mask_utils.decode(rle)
            if not mask.any():
                LOG.warning("%s: annotation %s of image %s has an empty mask and is left out",
                            self.annotation_file, annotation["id"], image_id)
                continue
            masks.append(mask)
            labels.append(self.category_to_label[annotation["category_id"]])
        mask_tensor = (
            torch.from_numpy(np.stack(masks)) if masks else torch.zeros((0, height, width), dtype=torch.uint8)
        )
        return {
            "boxes": masks_to_boxes(mask_tensor.bool()),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "masks": mask_tensor,
            "image_id": torch.tensor(image_id, dtype=torch.int64),
        }

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Tensor, Target]:
        """``key`` is an index (augmented as in the epoch of `set_epoch`) or ``(epoch, index)``,
        which lets a sampler drive the augmentation epoch inside persistent loader workers."""
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        image = self.load_image(index)
        target = self.load_target(index)
        if self.transforms is not None:
            image, target = self.transforms(image, target, augment_generator(self.augment_seed, epoch,
                                                                             self._augment_index[index]))
        return image, target


def labelling_groups(dataset: CocoInstanceDataset) -> list[list[int]]:
    """Item indices grouped by image file, in index order: the labellings of one image (the two
    annotator styles of a ``make-dataset --labellings both`` set, or several annotators of a
    real set), so a sampler can put them in one batch. One index per group where every image
    has one labelling."""
    groups: dict[str, list[int]] = {}
    for index, image_id in enumerate(dataset.image_ids):
        groups.setdefault(dataset.coco.imgs[image_id]["file_name"], []).append(index)
    return list(groups.values())


def collate(batch: Sequence[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Detection batches stay lists: images differ in size and instance count."""
    images = [image for image, _ in batch]
    targets = [target for _, target in batch]
    return images, targets


# ---------------------------------------------------------------------------- augmentations
def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


class Compose:
    """Apply augmentations in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target, generator)
        return image, target

    def __repr__(self) -> str:
        return f"Compose({self.transforms!r})"


class RandomHorizontalFlip:
    def __init__(self, probability: float = 0.5) -> None:
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {probability}")
        self.probability = probability

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        if float(torch.rand((), generator=generator)) >= self.probability:
            return image, target
        width = image.shape[-1]
        target = dict(target)
        target["masks"] = target["masks"].flip(-1)
        boxes = target["boxes"].clone()
        boxes[:, 0], boxes[:, 2] = width - target["boxes"][:, 2], width - target["boxes"][:, 0]
        target["boxes"] = boxes
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip({self.probability})"


class ScaleJitter:
    """Zoom in or out about a random point, keeping the image size: the model's own resize
    would undo a plain rescale. Zooming out pads with the image's mean colour; instances that
    leave the frame are dropped."""

    def __init__(self, min_scale: float = 0.8, max_scale: float = 1.25) -> None:
        if not 0 < min_scale <= max_scale:
            raise ValueError(f"need 0 < min_scale <= max_scale, got {min_scale}, {max_scale}")
        self.min_scale, self.max_scale = min_scale, max_scale

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        scale = math.exp(_uniform(generator, math.log(self.min_scale), math.log(self.max_scale)))
        _, height, width = image.shape
        new_h, new_w = max(1, round(height * scale)), max(1, round(width * scale))
        offset_y = _uniform(generator, 0.0, 1.0)
        offset_x = _uniform(generator, 0.0, 1.0)
        if (new_h, new_w) == (height, width):
            return image, target
        resized = torch.nn.functional.interpolate(image[None], size=(new_h, new_w), mode="bilinear", align_corners=False)[0]
        masks = target["masks"]
        if masks.shape[0]:
            masks = torch.nn.functional.interpolate(masks[None].float(), size=(new_h, new_w), mode="nearest")[0].to(torch.uint8)
        else:
            masks = masks.new_zeros((0, new_h, new_w))
        canvas = image.mean(dim=(1, 2), keepdim=True).expand(3, height, width).clone()
        canvas_masks = masks.new_zeros((masks.shape[0], height, width))
        # place the resized image at a random offset (crop when larger, pad when smaller)
        dy = round(offset_y * (new_h - height))
        dx = round(offset_x * (new_w - width))
        src_y0, dst_y0 = max(0, dy), max(0, -dy)
        src_x0, dst_x0 = max(0, dx), max(0, -dx)
        h = min(new_h - src_y0, height - dst_y0)
        w = min(new_w - src_x0, width - dst_x0)
        canvas[:, dst_y0:dst_y0 + h, dst_x0:dst_x0 + w] = resized[:, src_y0:src_y0 + h, src_x0:src_x0 + w]
        canvas_masks[:, dst_y0:dst_y0 + h, dst_x0:dst_x0 + w] = masks[:, src_y0:src_y0 + h, src_x0:src_x0 + w]
        target = dict(target)
        target["masks"] = canvas_masks
        target["boxes"] = masks_to_boxes(canvas_masks.bool())
        keep = canvas_masks.flatten(1).amax(dim=1) > 0
        return canvas, keep_instances(target, keep)

    def __repr__(self) -> str:
        return f"ScaleJitter({self.min_scale}, {self.max_scale})"


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def rotate_hue(image: Tensor, turns: float) -> Tensor:
    """Hue shift by ``turns`` of a full turn, as a rotation of the chroma plane in YIQ space: one
    3x3 matrix, far cheaper than an HSV round trip and visually equivalent for small shifts."""
    angle = 2 * math.pi * turns
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])
    matrix = (_YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ).to(image.dtype)
    return torch.einsum("ij,jhw->ihw", matrix, image)


class ColorJitter:
    """Random brightness, contrast, saturation (factors in [1 - s, 1 + s]) and hue shift
    (in turns, within [-hue, hue])."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2, hue: float = 0.02) -> None:
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
            if not 0 <= value < 1:
                raise ValueError(f"{name} jitter must be in [0, 1), got {value}")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue jitter must be in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def __call__(self, image: Tensor, target: Target, generator: torch.Generator) -> tuple[Tensor, Target]:
        image = tvf.adjust_brightness(image, _uniform(generator, 1 - self.brightness, 1 + self.brightness))
        image = tvf.adjust_contrast(image, _uniform(generator, 1 - self.contrast, 1 + self.contrast))
        image = tvf.adjust_saturation(image, _uniform(generator, 1 - self.saturation, 1 + self.saturation))
        if self.hue > 0:
            image = rotate_hue(image, _uniform(generator, -self.hue, self.hue))
        return image.clamp_(0.0, 1.0), target

    def __repr__(self) -> str:
        return f"ColorJitter({self.brightness}, {self.contrast}, {self.saturation}, {self.hue})"


def build_augmentations(
    hflip: float = 0.5,
    scale_range: tuple[float, float] | None = (0.8, 1.25),
    color: tuple[float, float, float, float] | None = (0.2, 0.2, 0.2, 0.02),
) -> Compose:
    """The training augmentations: flip, scale jitter, colour jitter (None or 0 switches off)."""
    transforms: list[Transform] = []
    if hflip > 0:
        transforms.append(RandomHorizontalFlip(hflip))
    if scale_range is not None and tuple(scale_range) != (1.0, 1.0):
        transforms.append(ScaleJitter(*scale_range))
    if color is not None and any(color):
        transforms.append(ColorJitter(*color))
    return Compose(transforms)
