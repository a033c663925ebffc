"""Write synthetic scenes as a COCO instance-segmentation data set (RLE masks, PNG images).

Layout of the output folder::

    DIR/annotations.json      every view of every scene
    DIR/images/scene000000_view0.png, scene000000_view1.png, ...

Scene ``i`` is generated from the seed sequence ``[seed, i]``, so a data set is bit-identical
for a seed, and the first N scenes do not depend on how many are made. With ``labellings="both"``
every image file is listed twice, once labelled by each annotator style (multi-annotator data).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from tqdm import tqdm

from latent_maskrcnn.data.synthetic.ambiguity import DEFAULT_RATES, LABELLINGS, STYLES, AmbiguityRates, preset_name
from latent_maskrcnn.data.synthetic.scene import Scene, SceneView, generate_scene

ANNOTATION_FILE = "annotations.json"
IMAGE_DIR = "images"
CATEGORIES = [{"id": 1, "name": "item", "supercategory": "apparel"}]
PNG_COMPRESS_LEVEL = 3


def image_file_name(scene_index: int, view: int) -> str:
    return f"scene{scene_index:06d}_view{view}.png"


def scene_seed(seed: int, scene_index: int) -> list[int]:
    """The seed sequence entropy of one scene of a data set."""
    return [int(seed), int(scene_index)]


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLE (counts as text) of bool masks [G, H, W]."""
    if len(masks) == 0:
        return []
    encoded = mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0).astype(np.uint8)))
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("ascii")
    return encoded


def view_annotations(view: SceneView, image_id: int, first_annotation_id: int) -> list[dict]:
    annotations = []
    for offset, (rle, ref) in enumerate(zip(encode_masks(view.masks), view.instances)):
        annotations.append(
            {
                "id": first_annotation_id + offset,
                "image_id": image_id,
                "category_id": 1,
                "segmentation": rle,
                "area": int(mask_utils.area(rle)),
                "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                "iscrowd": 0,
                "ambiguity": ref.kind,
                "track_id": ref.track_id,
                "region_id": ref.region,
            }
        )
    return annotations


def _prepare_output(out_dir: Path, overwrite: bool) -> None:
    image_dir = out_dir / IMAGE_DIR
    existing = [out_dir / ANNOTATION_FILE] if (out_dir / ANNOTATION_FILE).exists() else []
    if image_dir.is_dir():
        existing += sorted(image_dir.glob("scene*_view*.png"))
    if existing and not overwrite:
        raise ValueError(f"{out_dir} already holds a data set ({existing[0].name}, ...); choose an empty folder or overwrite")
    for path in existing:
        path.unlink()
    image_dir.mkdir(parents=True, exist_ok=True)


def image_id_of(scene_index: int, view: int, views: int, labelling: int = 0, labellings: int = 1) -> int:
    """The COCO image id of an entry: ``scene * views + view + 1`` for one labelling per image
    (``group_id`` is that number in every set); with both labellings the two entries of one
    file follow each other."""
    group = scene_index * views + view
    return group * labellings + labelling + 1


def _labelled_scenes(scene: Scene, labellings: str) -> list[Scene]:
    if labellings == "drawn":
        return [scene]
    return [scene.with_style(style) for style in STYLES]


def make_dataset(
    out_dir: str | os.PathLike,
    images: int,
    seed: int,
    height: int = 240,
    width: int = 320,
    views: int = 1,
    rates: AmbiguityRates = DEFAULT_RATES,
    overwrite: bool = False,
    progress: bool = True,
    labellings: str = "drawn",
) -> Path:
    """Generate ``images`` scenes (each seen by ``views`` cameras) and write them as COCO.
    ``labellings`` is ``"drawn"`` (one labelling per image) or ``"both"`` (one entry per
    annotator style, pointing at the same image file). Returns the path of the annotation
    file."""
    if int(images) != images or images < 1:
        raise ValueError(f"images must be a positive integer, got {images!r}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if labellings not in LABELLINGS:
        raise ValueError(f"labellings must be one of {LABELLINGS}, got {labellings!r}")
    out = Path(out_dir)
    _prepare_output(out, overwrite)
    per_image = 1 if labellings == "drawn" else len(STYLES)
    image_entries: list[dict] = []
    annotations: list[dict] = []
    for index in tqdm(range(images), desc="scenes", unit="scene", disable=not progress):
        scene = generate_scene(scene_seed(seed, index), height, width, views, rates)
        labelled = _labelled_scenes(scene, labellings)
        for view in scene.views:
            name = image_file_name(index, view.view)
            Image.fromarray(view.image).save(out / IMAGE_DIR / name, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
            for number, version in enumerate(labelled):
                image_id = image_id_of(index, view.view, views, number, per_image)
                image_entries.append(
                    {
                        "id": image_id,
                        "file_name": name,
                        "height": height,
                        "width": width,
                        "scene_id": index,
                        "view": view.view,
                        "group_id": image_id_of(index, view.view, views),
                        "style": version.layout.style,
                        "pair_labeling": version.layout.pair_labeling,
                    }
                )
                annotations.extend(view_annotations(version.views[view.view], image_id, len(annotations) + 1))
    document = {
        "info": {
            "description": "Synthetic tote scenes of polybagged apparel with label ambiguity",
            "generator": "latent_maskrcnn.synthetic",
            "seed": int(seed),
            "images": int(images),
            "views": int(views),
            "height": int(height),
            "width": int(width),
            "ambiguity_rates": rates.to_dict(),
            "preset": preset_name(rates),
            "labellings": labellings,
        },
        "licenses": [],
        "categories": CATEGORIES,
        "images": image_entries,
        "annotations": annotations,
    }
    path = out / ANNOTATION_FILE
    temporary = path.with_suffix(".json.partial")
    temporary.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")))
    temporary.replace(path)
    return path
