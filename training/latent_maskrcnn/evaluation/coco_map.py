"""Standard COCO mask AP through pycocotools itself (RLE masks, COCOeval 'segm')."""
from __future__ import annotations

import contextlib
import io
from typing import Sequence

import numpy as np
import torch


def encode_masks(masks: torch.Tensor) -> list[dict]:
    """Bool ``[N, H, W]`` masks as COCO RLEs (``counts`` as str, JSON-ready)."""
    from pycocotools import mask as mask_utils

    if masks.shape[0] == 0:
        return []
    array = np.asfortranarray(masks.detach().to("cpu").numpy().astype(np.uint8).transpose(1, 2, 0))
    encoded = mask_utils.encode(array)
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("ascii")
    return encoded


def coco_evaluation(
    images: Sequence[tuple[int, int, int]],
    ground_truth: Sequence[dict],
    detections: Sequence[dict],
    iou_type: str = "segm",
):
    """Run COCOeval on in-memory annotations; returns the evaluated `COCOeval` (its ``stats``:
    AP, AP50, AP75, ..., AR100 at index 8) or None when there is no ground truth at all.

    ``images``: ``(image_id, height, width)``; ``ground_truth``: ``{"image_id", "category_id",
    "segmentation" (RLE)}``; ``detections``: the same plus ``"score"``."""
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not ground_truth:
        return None
    categories = sorted({int(a["category_id"]) for a in ground_truth} | {int(d["category_id"]) for d in detections})
    annotations = []
    for index, annotation in enumerate(ground_truth, start=1):
        rle = annotation["segmentation"]
        annotations.append(
            {
                "id": index,
                "image_id": int(annotation["image_id"]),
                "category_id": int(annotation["category_id"]),
                "segmentation": rle,
                "area": float(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
            }
        )
    gt = COCO()
    gt.dataset = {
        "images": [{"id": int(i), "height": int(h), "width": int(w)} for i, h, w in images],
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in categories],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        if detections:
            dt = gt.loadRes([dict(d) for d in detections])
        else:
            dt = COCO()
            dt.dataset = {"images": gt.dataset["images"], "annotations": [], "categories": gt.dataset["categories"]}
            dt.createIndex()
        evaluation = COCOeval(gt, dt, iou_type)
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation


def mask_average_precision(
    images: Sequence[tuple[int, int, int]], ground_truth: Sequence[dict], detections: Sequence[dict]
) -> dict[str, float]:
    """COCO mask AP (0.5:0.95), AP50 and AP75 as pycocotools computes them (NaN without
    ground truth)."""
    evaluation = coco_evaluation(images, ground_truth, detections)
    if evaluation is None:
        return {"map": float("nan"), "map50": float("nan"), "map75": float("nan")}
    stats = [float(v) if v >= 0 else float("nan") for v in evaluation.stats]
    return {"map": stats[0], "map50": stats[1], "map75": stats[2]}
