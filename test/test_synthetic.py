"""Synthetic tote scenes: determinism, valid labels, label ambiguity that is real, camera views."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from latent_maskrcnn.data.synthetic import (
    FILM_BAG,
    GLARE_STRIPE,
    PAIR_HALF,
    PAIR_MERGED,
    UNDER_FILM,
    AmbiguityRates,
    generate_scene,
    make_dataset,
    pixel_to_tote,
    render_layout,
    sample_layout,
)
from latent_maskrcnn.data.synthetic.cameras import apply_homography
from latent_segmentation_ros import cli

H, W = 72, 96


def test_same_seed_same_scene_and_other_seed_differs():
    first = generate_scene(11, H, W, views=2)
    again = generate_scene(11, H, W, views=2)
    other = generate_scene(12, H, W, views=2)
    for a, b in zip(first.views, again.views):
        assert np.array_equal(a.image, b.image)
        assert np.array_equal(a.masks, b.masks)
        assert a.kinds == b.kinds
    assert not np.array_equal(first.image, other.image)


def test_generator_argument_advances_between_scenes():
    rng = np.random.default_rng(3)
    a, b = generate_scene(rng, H, W), generate_scene(rng, H, W)
    assert not np.array_equal(a.image, b.image)
    rng_again = np.random.default_rng(3)
    assert np.array_equal(generate_scene(rng_again, H, W).image, a.image)


@pytest.mark.parametrize("seed", range(6))
def test_labels_are_valid_visible_masks(seed):
    scene = generate_scene(seed, H, W, views=2)
    for view in scene.views:
        assert view.image.dtype == np.uint8 and view.image.shape == (H, W, 3)
        assert view.masks.dtype == bool and view.masks.shape[1:] == (H, W)
        assert len(view.masks) == len(view.instances) >= 1
        assert view.masks.reshape(len(view.masks), -1).any(axis=1).all(), "empty mask"
        assert view.masks.sum(axis=0).max() <= 1, "visible masks overlap"
        boxes = view.boxes
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= W).all()
        assert (boxes[:, 1] >= 0).all() and (boxes[:, 3] <= H).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        track_ids = [ref.track_id for ref in view.instances]
        assert len(set(track_ids)) == len(track_ids)


def _pair_layout(seed: int):
    rates = AmbiguityRates(seamless_pair=1.0)
    geometry, labels = np.random.default_rng(seed).spawn(2)
    return sample_layout(geometry, labels, W / H, rates)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_seamless_pair_same_pixels_different_labels(seed):
    rates = AmbiguityRates(seamless_pair=1.0)
    merged = generate_scene(seed, H, W, views=2, rates=rates, pair_labeling="merged")
    split = generate_scene(seed, H, W, views=2, rates=rates, pair_labeling="split")
    drawn = generate_scene(seed, H, W, views=2, rates=rates)
    assert merged.layout.pair_labeling == "merged" and split.layout.pair_labeling == "split"
    for view_merged, view_split, view_drawn in zip(merged.views, split.views, drawn.views):
        assert np.array_equal(view_merged.image, view_split.image)
        assert np.array_equal(view_merged.image, view_drawn.image)
        merged_kinds, split_kinds = view_merged.kinds, view_split.kinds
        assert merged_kinds.count(PAIR_MERGED) == 1 and PAIR_HALF not in merged_kinds
        assert split_kinds.count(PAIR_HALF) == 2 and PAIR_MERGED not in split_kinds
        assert len(view_split.masks) == len(view_merged.masks) + 1
        union = view_merged.masks[merged_kinds.index(PAIR_MERGED)]
        halves = view_split.masks[[k == PAIR_HALF for k in split_kinds]]
        assert np.array_equal(halves[0] | halves[1], union)
        assert not (halves[0] & halves[1]).any()
        assert min(halves[0].sum(), halves[1].sum()) > 0.2 * union.sum()
        others_merged = view_merged.masks[[k != PAIR_MERGED for k in merged_kinds]]
        others_split = view_split.masks[[k != PAIR_HALF for k in split_kinds]]
        assert np.array_equal(others_merged, others_split)


def test_relabelling_a_layout_keeps_pixels():
    layout = _pair_layout(5)
    a = render_layout(layout.with_pair_labeling("merged"), H, W)
    b = render_layout(layout.with_pair_labeling("split"), H, W)
    assert np.array_equal(a.image, b.image)
    assert len(b.masks) == len(a.masks) + 1


def test_ambiguity_rates_are_what_the_docs_say():
    counts = {"pair": 0, "merged": 0, "film": 0, "single": 0, "glare": 0}
    scenes = 300
    for index in range(scenes):
        geometry, labels = np.random.default_rng([77, index]).spawn(2)
        layout = sample_layout(geometry, labels, W / H)
        kinds = [item.kind for item in layout.items]
        counts["pair"] += layout.has_pair
        counts["merged"] += layout.pair_labeling == "merged"
        counts["film"] += FILM_BAG in kinds
        counts["single"] += sum(kind in ("plain", GLARE_STRIPE, UNDER_FILM) for kind in kinds)
        counts["glare"] += kinds.count(GLARE_STRIPE)
        if FILM_BAG in kinds:
            assert kinds[-1] == FILM_BAG and kinds.count(UNDER_FILM) == 1
    assert abs(counts["pair"] / scenes - 0.5) < 0.1
    assert abs(counts["merged"] / counts["pair"] - 0.5) < 0.13
    assert 0.28 < counts["film"] / scenes < 0.5
    assert abs(counts["glare"] / counts["single"] - 0.2) < 0.05


def test_film_bag_lies_over_the_item_it_marks():
    rates = AmbiguityRates(transparent_film=1.0)
    scene = generate_scene(4, 120, 160, rates=rates)
    kinds = scene.views[0].kinds
    assert FILM_BAG in kinds and UNDER_FILM in kinds
    film_item = scene.layout.items[-1]
    under_item = next(item for item in scene.layout.items if item.kind == UNDER_FILM)
    x, y = np.meshgrid(np.linspace(0, 160 / 120, 200), np.linspace(0, 1, 150))
    overlap = (film_item.shape.sdf(x, y) < 0) & (under_item.shape.sdf(x, y) < 0)
    assert overlap.sum() > 0.1 * (under_item.shape.sdf(x, y) < 0).sum()


def test_two_views_see_the_same_instances():
    scene = generate_scene(21, 120, 160, views=2)
    view0, view1 = scene.views
    assert not np.array_equal(view0.image, view1.image)
    # map every view-1 pixel through the tote frame into view 0 (nearest pixel)
    u, v = np.meshgrid(np.arange(160) + 0.5, np.arange(120) + 0.5)
    tx, ty = apply_homography(pixel_to_tote(1, 120, 160), u, v)
    x0, y0 = apply_homography(np.linalg.inv(pixel_to_tote(0, 120, 160)), tx, ty)
    inside = (x0 >= 0) & (x0 < 160) & (y0 >= 0) & (y0 < 120)
    cols = np.clip(np.floor(x0).astype(int), 0, 159)
    rows = np.clip(np.floor(y0).astype(int), 0, 119)
    by_track0 = {ref.track_id: mask for ref, mask in zip(view0.instances, view0.masks)}
    compared = 0
    for ref, mask1 in zip(view1.instances, view1.masks):
        if ref.track_id not in by_track0 or mask1.sum() < 300:
            continue
        warped = by_track0[ref.track_id][rows, cols] & inside
        target = mask1 & inside
        iou = (warped & target).sum() / (warped | target).sum()
        assert iou > 0.85, (ref, iou)
        compared += 1
    assert compared >= 3


def test_bad_sizes_are_refused():
    with pytest.raises(ValueError, match="height"):
        generate_scene(0, 4, 64)
    with pytest.raises(ValueError, match="views"):
        generate_scene(0, 64, 64, views=9)
    with pytest.raises(ValueError, match="pair_labeling"):
        generate_scene(0, 64, 64, pair_labeling="both")
    with pytest.raises(ValueError, match="ambiguity rate"):
        AmbiguityRates(glare_stripe=1.5)


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_make_dataset_is_bit_identical_and_prefix_stable(tmp_path):
    make_dataset(tmp_path / "a", images=3, seed=9, height=48, width=64, views=2, progress=False)
    make_dataset(tmp_path / "b", images=3, seed=9, height=48, width=64, views=2, progress=False)
    make_dataset(tmp_path / "c", images=2, seed=9, height=48, width=64, views=2, progress=False)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert len(a) == 1 + 6
    for name, content in c.items():
        if name.endswith(".png"):
            assert a[name] == content


def test_coco_file_loads_and_decodes_to_the_scene_masks(tmp_path):
    path = make_dataset(tmp_path, images=3, seed=4, height=H, width=W, views=2, progress=False)
    coco = COCO(str(path))
    assert sorted(coco.getCatIds()) == [1]
    assert len(coco.getImgIds()) == 6
    for image_id in coco.getImgIds():
        info = coco.loadImgs(image_id)[0]
        assert (tmp_path / "images" / info["file_name"]).is_file()
        scene = generate_scene([4, info["scene_id"]], H, W, views=2)
        view = scene.views[info["view"]]
        annotations = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        assert len(annotations) == len(view.masks)
        for annotation, mask, ref in zip(annotations, view.masks, view.instances):
            assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
            assert annotation["area"] == mask.sum() and annotation["ambiguity"] == ref.kind
            assert annotation["track_id"] == ref.track_id
    from PIL import Image

    first = coco.loadImgs(1)[0]
    stored = np.asarray(Image.open(tmp_path / "images" / first["file_name"]))
    assert np.array_equal(stored, generate_scene([4, 0], H, W, views=2).views[0].image)
    info = json.loads(path.read_text())["info"]
    assert info["seed"] == 4 and info["ambiguity_rates"]["pair_merged"] == 0.5


def test_make_dataset_refuses_to_mix_with_an_existing_set(tmp_path):
    make_dataset(tmp_path, images=1, seed=0, height=32, width=32, progress=False)
    with pytest.raises(ValueError, match="already holds"):
        make_dataset(tmp_path, images=1, seed=1, height=32, width=32, progress=False)
    make_dataset(tmp_path, images=1, seed=1, height=32, width=32, overwrite=True, progress=False)
    with pytest.raises(ValueError, match="images"):
        make_dataset(tmp_path / "x", images=0, seed=1)


def test_make_dataset_command(tmp_path, capsys):
    out = tmp_path / "set"
    code = cli.main(["make-dataset", "--out", str(out), "--images", "2", "--seed", "1", "--height", "40", "--width", "56", "--views", "2", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and summary["instances"] > 0
    assert len(list((out / "images").glob("*.png"))) == 4
    assert cli.main(["make-dataset", "--out", str(out), "--images", "2", "--seed", "1"]) == 2


def test_make_dataset_command_sets_the_ambiguity_rates(tmp_path, capsys):
    """A curriculum over the ambiguity: every scene with a seamless pair, every pair split."""
    out = tmp_path / "pairs"
    code = cli.main(["make-dataset", "--out", str(out), "--images", "4", "--seed", "3", "--height", "48",
                     "--width", "64", "--seamless-pair", "1", "--pair-merged", "0", "--no-progress"])
    assert code == 0
    capsys.readouterr()
    document = json.loads((out / "annotations.json").read_text())
    assert document["info"]["ambiguity_rates"]["seamless_pair"] == 1.0
    kinds_by_image = {}
    for annotation in document["annotations"]:
        kinds_by_image.setdefault(annotation["image_id"], set()).add(annotation["ambiguity"])
    assert len(kinds_by_image) == 4
    assert all("pair_half" in kinds and "pair_merged" not in kinds for kinds in kinds_by_image.values())

    code = cli.main(["make-dataset", "--out", str(tmp_path / "bad"), "--images", "1", "--seed", "3",
                     "--seamless-pair", "1.5", "--no-progress"])
    assert code == 2
    assert "seamless_pair=1.5" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
