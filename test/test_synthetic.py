"""Synthetic tote scenes: determinism, valid labels, label ambiguity that is real, camera views."""
from __future__ import annotations

import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from latent_maskrcnn.data.synthetic import (
    AMBIGUITY_RATES,
    FILM_BAG,
    FILM_GARMENT,
    GLARE_HALF,
    GLARE_STRIPE,
    PAIR_HALF,
    PAIR_MERGED,
    REGION_KINDS,
    STYLES,
    THROUGH_FILM,
    UNDER_FILM,
    AmbiguityRates,
    generate_scene,
    make_dataset,
    pixel_to_tote,
    preset_name,
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


# ---------------------------------------------------------------------------- annotator styles
ALL_STYLED = AmbiguityRates(seamless_pair=1.0, glare_stripe=0.6, transparent_film=1.0, max_pairs=2, max_films=2,
                            styled_kinds=REGION_KINDS)
MERGED_KINDS = {"plain", GLARE_STRIPE, PAIR_MERGED, FILM_BAG, UNDER_FILM}
SPLIT_KINDS = {"plain", GLARE_HALF, PAIR_HALF, FILM_GARMENT, THROUGH_FILM}


def _regions(view, kind):
    """region -> masks of that kind in one view."""
    found = {}
    for ref, mask in zip(view.instances, view.masks):
        if ref.kind == kind:
            found.setdefault(ref.region, []).append(mask)
    return found


@pytest.mark.parametrize("seed", range(4))
def test_the_style_labels_every_styled_region_and_keeps_the_pixels(seed):
    merged = generate_scene(seed, 120, 160, views=2, rates=ALL_STYLED, style="merged")
    split = generate_scene(seed, 120, 160, views=2, rates=ALL_STYLED, style="split")
    drawn = generate_scene(seed, 120, 160, views=2, rates=ALL_STYLED)
    assert merged.layout.style == "merged" and split.layout.style == "split"
    assert drawn.layout.style in STYLES
    for view_merged, view_split, view_drawn in zip(merged.views, split.views, drawn.views):
        assert np.array_equal(view_merged.image, view_split.image)
        assert np.array_equal(view_merged.image, view_drawn.image)
        assert set(view_merged.kinds) <= MERGED_KINDS and set(view_split.kinds) <= SPLIT_KINDS
        assert view_drawn.kinds == (view_merged if drawn.layout.style == "merged" else view_split).kinds
        assert {PAIR_MERGED, FILM_BAG, UNDER_FILM} <= set(view_merged.kinds)
        assert {PAIR_HALF, FILM_GARMENT, THROUGH_FILM} <= set(view_split.kinds)
        for view in (view_merged, view_split):
            assert view.masks.reshape(len(view.masks), -1).any(axis=1).all(), "empty mask"
            assert view.masks.sum(axis=0).max() <= 1, "masks overlap"
        # a pair and a striped item labelled as two: two parts whose union is the merged mask,
        # plus what the split style sees of it through a clear bag's film
        film = view_merged.masks[[kind == FILM_BAG for kind in view_merged.kinds]].any(axis=0)
        for whole_kind, part_kind in ((PAIR_MERGED, PAIR_HALF), (GLARE_STRIPE, GLARE_HALF)):
            wholes, parts = _regions(view_merged, whole_kind), _regions(view_split, part_kind)
            for region, (whole,) in wholes.items():
                if len(parts.get(region, [])) == 2:
                    first, second = parts[region]
                    assert not (first & second).any()
                    assert not (whole & ~(first | second)).any()
                    assert not ((first | second) & ~whole & ~film).any()
        # a clear bag labelled as its garment: less than the bag; the item under it gains the film area
        bags, garments = _regions(view_merged, FILM_BAG), _regions(view_split, FILM_GARMENT)
        unders, throughs = _regions(view_merged, UNDER_FILM), _regions(view_split, THROUGH_FILM)
        for region, (bag,) in bags.items():
            (garment,) = garments[region]
            assert (garment & ~bag).sum() == 0 and garment.sum() < bag.sum()
            if region in unders and region in throughs:
                (under,), (through,) = unders[region], throughs[region]
                assert (under & ~through).sum() == 0
                gained = through & ~under
                assert gained.any() and not (gained & ~film).any()


def test_split_glare_parts_follow_the_stripe():
    rates = AmbiguityRates(seamless_pair=0.0, glare_stripe=1.0, transparent_film=0.0, styled_kinds=("glare_stripe",))
    halves = 0
    for seed in range(3):
        merged = generate_scene(seed, H, W, rates=rates, style="merged").views[0]
        split = generate_scene(seed, H, W, rates=rates, style="split").views[0]
        assert set(merged.kinds) == {GLARE_STRIPE} and set(split.kinds) <= {GLARE_HALF}
        for region, parts in _regions(split, GLARE_HALF).items():
            if len(parts) == 2:
                halves += 1
                whole = _regions(merged, GLARE_STRIPE)[region][0]
                assert min(parts[0].sum(), parts[1].sum()) > 0.1 * whole.sum()
    assert halves >= 8


def test_without_a_style_glare_and_film_keep_their_labelling():
    """The default recipe: only seamless pairs follow the style."""
    rates = AmbiguityRates(seamless_pair=1.0, glare_stripe=0.8, transparent_film=1.0)
    seen = set()
    for seed in range(4):
        split = generate_scene(seed, H, W, rates=rates, style="split").views[0]
        seen |= set(split.kinds)
    assert {PAIR_HALF, GLARE_STRIPE, FILM_BAG, UNDER_FILM} <= seen
    assert not {GLARE_HALF, FILM_GARMENT, THROUGH_FILM, PAIR_MERGED} & seen


def test_relabelling_a_scene_equals_rendering_it_in_that_style():
    drawn = generate_scene(8, H, W, views=2, rates=ALL_STYLED)
    for style in STYLES:
        forced = generate_scene(8, H, W, views=2, rates=ALL_STYLED, style=style)
        relabelled = drawn.with_style(style)
        assert relabelled.layout.style == style
        for a, b in zip(forced.views, relabelled.views):
            assert a.image is not None and np.array_equal(a.image, b.image)
            assert np.array_equal(a.masks, b.masks) and a.instances == b.instances


@pytest.mark.parametrize("style", STYLES)
def test_both_views_agree_in_either_style(style):
    scene = generate_scene(23, 120, 160, views=2, rates=AMBIGUITY_RATES, style=style)
    u, v = np.meshgrid(np.arange(160) + 0.5, np.arange(120) + 0.5)
    tx, ty = apply_homography(pixel_to_tote(1, 120, 160), u, v)
    x0, y0 = apply_homography(np.linalg.inv(pixel_to_tote(0, 120, 160)), tx, ty)
    inside = (x0 >= 0) & (x0 < 160) & (y0 >= 0) & (y0 < 120)
    cols, rows = np.clip(np.floor(x0).astype(int), 0, 159), np.clip(np.floor(y0).astype(int), 0, 119)
    view0, view1 = scene.views
    by_track0 = {ref.track_id: mask for ref, mask in zip(view0.instances, view0.masks)}
    compared = 0
    for ref, mask1 in zip(view1.instances, view1.masks):
        if ref.track_id not in by_track0 or mask1.sum() < 200:
            continue
        warped = by_track0[ref.track_id][rows, cols] & inside
        target = mask1 & inside
        assert (warped & target).sum() / (warped | target).sum() > 0.8, ref
        compared += 1
    assert compared >= 5


def test_several_pairs_and_films_per_scene():
    rates = AmbiguityRates(seamless_pair=1.0, transparent_film=1.0, max_pairs=3, max_films=2)
    pairs, films, mixed = [], [], 0
    for index in range(40):
        geometry, labels = np.random.default_rng([31, index]).spawn(2)
        layout = sample_layout(geometry, labels, W / H, rates)
        pairs.append(layout.pair_count)
        films.append(sum(item.kind == FILM_BAG for item in layout.items))
        mixed += layout.pair_labeling == "mixed"
        assert layout.style is not None  # the pairs follow the style
        assert layout.pair_labeling in STYLES
    assert max(pairs) == 3 and np.mean(pairs) > 2.0
    assert max(films) == 2 and np.mean(films) > 1.2
    # pairs outside the style draw a coin each: one image may hold both labellings
    unstyled = AmbiguityRates(seamless_pair=1.0, max_pairs=3, styled_kinds=())
    for index in range(40):
        geometry, labels = np.random.default_rng([31, index]).spawn(2)
        layout = sample_layout(geometry, labels, W / H, unstyled)
        assert layout.style is None
        mixed += layout.pair_labeling == "mixed"
    assert mixed >= 10


def test_the_ambiguity_preset_rates():
    counts = {"scenes": 0, "pairs": 0, "films": 0, "single": 0, "glare": 0, "merged": 0}
    scenes = 150
    for index in range(scenes):
        geometry, labels = np.random.default_rng([78, index]).spawn(2)
        layout = sample_layout(geometry, labels, 320 / 240, AMBIGUITY_RATES)
        kinds = [item.kind for item in layout.items]
        counts["pairs"] += layout.pair_count
        counts["films"] += kinds.count(FILM_BAG)
        counts["single"] += sum(kind in ("plain", GLARE_STRIPE, UNDER_FILM) for kind in kinds)
        counts["glare"] += kinds.count(GLARE_STRIPE)
        counts["merged"] += layout.style == "merged"
        assert kinds.count(UNDER_FILM) == kinds.count(FILM_BAG)
    assert AMBIGUITY_RATES.styled_kinds == REGION_KINDS
    # drawn counts: 3 x 0.7 pairs and 2 x 0.7 films; a few are dropped by the visibility rule
    assert 1.6 < counts["pairs"] / scenes < 2.4
    assert 1.0 < counts["films"] / scenes <= 1.4
    assert abs(counts["glare"] / counts["single"] - 0.4) < 0.07
    assert abs(counts["merged"] / scenes - 0.5) < 0.13


def test_rates_are_checked_and_survive_json():
    with pytest.raises(ValueError, match="max_pairs"):
        AmbiguityRates(max_pairs=7)
    with pytest.raises(ValueError, match="max_films"):
        AmbiguityRates(max_films=-1)
    with pytest.raises(ValueError, match="max_pairs"):
        AmbiguityRates(max_pairs=1.5)
    with pytest.raises(ValueError, match="unknown region"):
        AmbiguityRates(styled_kinds=("seamless_pair", "fog"))
    with pytest.raises(ValueError, match="styled_kinds"):
        AmbiguityRates(styled_kinds="seamless_pair")
    with pytest.raises(ValueError, match="style"):
        generate_scene(0, H, W, style="both")
    rates = AmbiguityRates(**json.loads(json.dumps(AMBIGUITY_RATES.to_dict())))
    assert rates == AMBIGUITY_RATES and preset_name(rates) == "ambiguity"
    assert AmbiguityRates(styled_kinds=["transparent_film", "seamless_pair"]).styled_kinds == ("seamless_pair", "transparent_film")
    assert preset_name(AmbiguityRates()) == "plain" and preset_name(AmbiguityRates(max_pairs=2)) is None


def test_both_labellings_list_every_image_once_per_style(tmp_path):
    path = make_dataset(tmp_path, images=3, seed=6, height=H, width=W, views=2, rates=ALL_STYLED,
                        labellings="both", progress=False)
    document = json.loads(path.read_text())
    assert document["info"]["labellings"] == "both" and document["info"]["preset"] is None
    assert document["info"]["ambiguity_rates"]["styled_kinds"] == list(REGION_KINDS)
    assert len(list((tmp_path / "images").glob("*.png"))) == 6 and len(document["images"]) == 12
    coco = COCO(str(path))
    by_file = {}
    for entry in document["images"]:
        by_file.setdefault(entry["file_name"], []).append(entry)
    for file_name, entries in by_file.items():
        assert [entry["style"] for entry in entries] == list(STYLES)
        assert len({entry["group_id"] for entry in entries}) == 1
        first, second = entries
        scene = generate_scene([6, first["scene_id"]], H, W, views=2, rates=ALL_STYLED)
        for entry in entries:
            view = scene.with_style(entry["style"]).views[entry["view"]]
            annotations = coco.loadAnns(coco.getAnnIds(imgIds=entry["id"]))
            assert [a["ambiguity"] for a in annotations] == view.kinds
            assert [a["region_id"] for a in annotations] == [ref.region for ref in view.instances]
            for annotation, mask in zip(annotations, view.masks):
                assert np.array_equal(coco.annToMask(annotation).astype(bool), mask)
        assert len(coco.getAnnIds(imgIds=second["id"])) > len(coco.getAnnIds(imgIds=first["id"]))
    with pytest.raises(ValueError, match="labellings"):
        make_dataset(tmp_path / "x", images=1, seed=0, labellings="three")


def test_make_dataset_command_presets_and_labellings(tmp_path, capsys):
    out = tmp_path / "benchmark"
    code = cli.main(["make-dataset", "--out", str(out), "--images", "2", "--seed", "5", "--height", "48", "--width", "64",
                     "--preset", "ambiguity", "--labellings", "both", "--no-progress"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == 4 and summary["image_files"] == 2
    assert summary["preset"] == "ambiguity" and summary["labellings"] == "both"
    info = json.loads((out / "annotations.json").read_text())["info"]
    assert info["ambiguity_rates"] == AMBIGUITY_RATES.to_dict()

    out = tmp_path / "override"
    code = cli.main(["make-dataset", "--out", str(out), "--images", "1", "--seed", "5", "--height", "48", "--width", "64",
                     "--preset", "ambiguity", "--max-pairs", "5", "--styled-kinds", "glare_stripe,seamless_pair",
                     "--glare-stripe", "0", "--no-progress"])
    assert code == 0
    capsys.readouterr()
    info = json.loads((out / "annotations.json").read_text())["info"]
    assert info["preset"] is None
    assert info["ambiguity_rates"]["max_pairs"] == 5 and info["ambiguity_rates"]["glare_stripe"] == 0.0
    assert info["ambiguity_rates"]["styled_kinds"] == ["seamless_pair", "glare_stripe"]
    assert info["ambiguity_rates"]["transparent_film"] == AMBIGUITY_RATES.transparent_film

    for options, message in ((["--max-pairs", "7"], "max_pairs=7"), (["--max-films", "-1"], "max_films=-1"),
                             (["--styled-kinds", "fog"], "unknown region"), (["--pair-merged", "2"], "pair_merged=2")):
        code = cli.main(["make-dataset", "--out", str(tmp_path / "bad"), "--images", "1", "--seed", "1", *options,
                         "--no-progress"])
        assert code == 2
        assert message in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
    with pytest.raises(SystemExit):
        cli.main(["make-dataset", "--out", str(tmp_path / "bad"), "--images", "1", "--seed", "1", "--labellings", "all"])
    capsys.readouterr()


def test_bench_synthetic_times_both_presets():
    import argparse

    from latent_maskrcnn.bench import synthetic as bench_synthetic

    parser = argparse.ArgumentParser()
    bench_synthetic.add_arguments(parser)
    result = bench_synthetic.run(parser.parse_args(["--scenes", "2", "--height", "48", "--width", "64"]))
    assert result["scenes"] == 2 and (result["height"], result["width"]) == (48, 64)
    for preset in ("plain", "ambiguity"):
        for step in ("view", "view_cpu", "relabel", "png"):
            assert result[f"{preset}_{step}_ms"] > 0
    assert result["ratio_ambiguity_over_plain_view"] == pytest.approx(
        result["ambiguity_view_ms"] / result["plain_view_ms"], rel=0.01)
    with pytest.raises(ValueError, match="scenes"):
        bench_synthetic.run(parser.parse_args(["--scenes", "0"]))
