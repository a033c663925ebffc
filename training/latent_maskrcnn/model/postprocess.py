"""From detections in the network's resized frame to prediction dicts at the input size.

A mask is the set of pixels whose pasted probability is at least ``mask_threshold`` (0.5 by
default, torchvision's). To move that threshold without running the network again, a prediction
can keep the mask head's low-resolution probabilities (`MaskProbabilities`, a few kB per
detection): a new threshold then costs one paste (`with_mask_threshold`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from torchvision.models.detection.transform import resize_boxes

MASK_THRESHOLD = 0.5
MASK_PROBABILITIES = "mask_probabilities"
"""Key of a prediction's `MaskProbabilities` (present when the model was asked to keep them)."""


def validate_mask_threshold(value: float) -> float:
    """The probability at which masks are binarised, in the open interval (0, 1): at 0 every
    pixel of a detection's box would belong to its mask, at 1 (a sigmoid never reaches it) none."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise ValueError(f"mask_threshold must be a finite number in the open interval (0, 1), got {value!r}")
    if float(value) <= 0.0:
        raise ValueError(f"mask_threshold must be greater than 0 (the open interval (0, 1)), got {value:g}")
    if float(value) >= 1.0:
        raise ValueError(f"mask_threshold must be less than 1 (the open interval (0, 1)), got {value:g}")
    return float(value)


def paste_masks_binary(
    mask_probs: Tensor, boxes: Tensor, image_size: tuple[int, int], threshold: float = MASK_THRESHOLD
) -> Tensor:
    """Same arithmetic as torchvision's ``paste_masks_in_image`` followed by ``>= threshold``,
    but writes each mask's box region straight into a bool ``[N, H, W]`` tensor instead of
    allocating N full-size float images."""
    height, width = image_size
    out = torch.zeros((mask_probs.shape[0], height, width), dtype=torch.bool, device=mask_probs.device)
    if mask_probs.shape[0] == 0:
        return out
    padded, scale = expand_masks(mask_probs, padding=1)
    int_boxes = expand_boxes(boxes, scale).to(dtype=torch.int64).tolist()
    for index, (x0, y0, x1, y1) in enumerate(int_boxes):
        box_w, box_h = max(x1 - x0 + 1, 1), max(y1 - y0 + 1, 1)
        left, right = max(x0, 0), min(x1 + 1, width)
        top, bottom = max(y0, 0), min(y1 + 1, height)
        if right <= left or bottom <= top:
            continue
        resized = F.interpolate(padded[index : index + 1], size=(box_h, box_w), mode="bilinear", align_corners=False)
        region = resized[0, 0, top - y0 : bottom - y0, left - x0 : right - x0]
        torch.ge(region, threshold, out=out[index, top:bottom, left:right])
    return out


@dataclass(frozen=True)
class MaskProbabilities:
    """What binarising a prediction's masks at any threshold needs: the mask head's probabilities
    ``[N, 1, M, M]``, the boxes they are pasted into ``[N, 4]`` at ``image_size``, and whether the
    prediction was mapped back from the mirror image (pasting is not mirror-symmetric to the
    pixel, so the mirror is applied after pasting, exactly as the first time)."""

    probs: Tensor
    boxes: Tensor
    image_size: tuple[int, int]
    mirrored: bool = False

    def binarize(self, threshold: float) -> Tensor:
        """bool ``[N, H, W]``: the masks as the model pastes them at ``threshold``."""
        threshold = validate_mask_threshold(threshold)
        with torch.no_grad():
            masks = paste_masks_binary(self.probs, self.boxes, self.image_size, threshold)
        return masks.flip(-1) if self.mirrored else masks

    def mirror(self) -> "MaskProbabilities":
        return replace(self, mirrored=not self.mirrored)


def to_prediction(
    detection: dict[str, Tensor],
    resized_size: tuple[int, int],
    original_size: tuple[int, int],
    mask_threshold: float = MASK_THRESHOLD,
    keep_mask_probabilities: bool = False,
) -> dict:
    """One prediction dict (architecture.md conventions) at the original image size, masks
    binarised at ``mask_threshold``; with ``keep_mask_probabilities`` also the
    `MaskProbabilities` under ``MASK_PROBABILITIES``."""
    boxes = resize_boxes(detection["boxes"], list(resized_size), list(original_size))
    prediction = {
        "boxes": boxes.clone(),
        "labels": detection["labels"].to(torch.int64).clone(),
        "scores": detection["scores"].clone(),
        "masks": paste_masks_binary(detection["masks"], boxes, original_size, mask_threshold),
    }
    if keep_mask_probabilities:
        prediction[MASK_PROBABILITIES] = MaskProbabilities(detection["masks"], prediction["boxes"], tuple(original_size))
    return prediction


def with_mask_threshold(prediction: dict, threshold: float) -> dict:
    """The prediction with its masks binarised at ``threshold`` (everything else shared).
    Needs the `MaskProbabilities` the model keeps when asked (``keep_mask_probabilities``)."""
    probabilities = prediction.get(MASK_PROBABILITIES)
    if not isinstance(probabilities, MaskProbabilities):
        raise ValueError("this prediction holds no mask probabilities: sample with keep_mask_probabilities=True "
                         "to binarise its masks at another threshold")
    return {**prediction, "masks": probabilities.binarize(threshold)}


def mirror_prediction(prediction: dict, width: int) -> dict:
    """A prediction made on the horizontally mirrored image, mapped back onto the image."""
    boxes = prediction["boxes"]
    mirrored = {
        **prediction,
        "boxes": torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1),
        "masks": prediction["masks"].flip(-1),
    }
    if isinstance(prediction.get(MASK_PROBABILITIES), MaskProbabilities):
        mirrored[MASK_PROBABILITIES] = prediction[MASK_PROBABILITIES].mirror()
    return mirrored
