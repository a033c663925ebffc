"""From detections in the network's resized frame to prediction dicts at the input size."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import expand_boxes, expand_masks
from torchvision.models.detection.transform import resize_boxes

MASK_THRESHOLD = 0.5


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


def to_prediction(
    detection: dict[str, Tensor], resized_size: tuple[int, int], original_size: tuple[int, int]
) -> dict[str, Tensor]:
    """One prediction dict (architecture.md conventions) at the original image size."""
    boxes = resize_boxes(detection["boxes"], list(resized_size), list(original_size))
    return {
        "boxes": boxes.clone(),
        "labels": detection["labels"].to(torch.int64).clone(),
        "scores": detection["scores"].clone(),
        "masks": paste_masks_binary(detection["masks"], boxes, original_size),
    }


def mirror_prediction(prediction: dict[str, Tensor], width: int) -> dict[str, Tensor]:
    """A prediction made on the horizontally mirrored image, mapped back onto the image."""
    boxes = prediction["boxes"]
    return {
        **prediction,
        "boxes": torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1),
        "masks": prediction["masks"].flip(-1),
    }
