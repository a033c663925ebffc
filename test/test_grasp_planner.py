"""The suction grasp planner on hand-made masks: sealed cups lie inside one mask, no cup touches
another mask, small items seal fewer cups, ranking, rotations, and a brute-force cross-check on
random scenes (shapes, overlaps, cup layouts, rotations)."""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzzing import fuzz

from latent_segmentation_ros.core.grasp_planner import SuctionCupLayout, SuctionGraspPlanner, cup_disks
from latent_segmentation_ros.core.results import CameraResult

LAYOUT = SuctionCupLayout.grid(rows=3, cols=3, spacing=15.0, cup_radius=5.0)


def rect(shape, y0, y1, x0, x1):
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def assert_safe(candidate, masks, radius):
    """Sealed cups inside the candidate's mask and off every other mask; no cup touches another."""
    shape = masks.shape[1:]
    disks = cup_disks(candidate.cup_centers, radius, shape)
    own = masks[candidate.mask_id]
    others = np.delete(masks, candidate.mask_id, axis=0).any(axis=0)
    assert candidate.sealed_cups == int(candidate.cup_sealed.sum())
    for disk, sealed in zip(disks, candidate.cup_sealed):
        assert not (disk & others).any(), "a cup touches another mask"
        if sealed:
            assert disk.sum() == (disk & own).sum(), "a sealed cup leaves its mask"
            assert not (disk & others).any()
        else:
            assert (disk & ~own).any() or disk.sum() < np.pi * radius**2 * 0.5, "an unsealed cup fits the mask"


def test_large_item_seals_all_cups():
    masks = rect((80, 90), 10, 70, 15, 80)[None]
    candidates = SuctionGraspPlanner(LAYOUT).plan(masks, [0.9])
    assert len(candidates) == 1
    best = candidates[0]
    assert (best.sealed_cups, best.total_cups, best.mask_id) == (9, 9, 0)
    assert best.cup_sealed.all()
    assert_safe(best, masks, LAYOUT.cup_radius)
    # deepest placement: the gripper centre sits near the middle of the item
    assert abs(best.v - 39.5) <= 2 and abs(best.u - 47) <= 2


def test_small_item_seals_fewer_cups():
    # 26 px square: room for 2 x 2 cups 15 px apart with radius 5, not for 3 x 3
    masks = rect((60, 60), 17, 43, 17, 43)[None]
    (best,) = SuctionGraspPlanner(LAYOUT).plan(masks, [0.8])
    assert best.sealed_cups == 4
    assert_safe(best, masks, LAYOUT.cup_radius)
    tiny = rect((60, 60), 25, 32, 25, 32)[None]  # too small for even one cup rim
    assert SuctionGraspPlanner(LAYOUT).plan(tiny, [0.8]) == []


def test_two_touching_items_no_grasp_straddles_them():
    shape = (70, 110)
    left = rect(shape, 5, 65, 5, 55)
    right = rect(shape, 5, 65, 55, 105)  # shares the seam at column 55
    masks = np.stack([left, right])
    planner = SuctionGraspPlanner(LAYOUT, candidates_per_mask=4)
    candidates = planner.plan(masks, [0.6, 0.7])
    assert {c.mask_id for c in candidates} == {0, 1}
    for candidate in candidates:
        assert_safe(candidate, masks, LAYOUT.cup_radius)
    # the merged region would fit a grasp on the seam; a mask of both items proves it
    merged = SuctionGraspPlanner(LAYOUT, candidates_per_mask=40).plan((left | right)[None], [0.5])
    straddling = [
        c for c in merged if (cup_disks(c.cup_centers, 5.0, shape)[c.cup_sealed] & left).any()
        and (cup_disks(c.cup_centers, 5.0, shape)[c.cup_sealed] & right).any()
    ]
    assert straddling, "the test layout must be able to straddle a seam"


def test_overlapping_masks_do_not_share_pixels():
    shape = (60, 100)
    first = rect(shape, 5, 55, 5, 60)
    second = rect(shape, 5, 55, 40, 95)  # overlaps first on columns 40..59
    masks = np.stack([first, second])
    candidates = SuctionGraspPlanner(LAYOUT, candidates_per_mask=3).plan(masks, [0.9, 0.8])
    assert candidates
    for candidate in candidates:
        assert_safe(candidate, masks, LAYOUT.cup_radius)


def test_ranking_by_sealed_cups_then_score():
    shape = (80, 200)
    big_low_score = rect(shape, 5, 75, 5, 75)
    small_high_score = rect(shape, 27, 53, 100, 126)
    big_high_score = rect(shape, 5, 75, 130, 198)
    masks = np.stack([big_low_score, small_high_score, big_high_score])
    candidates = SuctionGraspPlanner(LAYOUT).plan(masks, [0.4, 0.99, 0.8], mask_ids=[10, 11, 12])
    assert [(c.mask_id, c.sealed_cups) for c in candidates] == [(12, 9), (10, 9), (11, 4)]
    assert [c.score for c in candidates] == pytest.approx([0.8, 0.4, 0.99])


def test_cups_past_the_image_border_do_not_seal():
    masks = rect((42, 60), 0, 42, 0, 60)[None]  # the item fills the view and beyond
    (best,) = SuctionGraspPlanner(LAYOUT).plan(masks, [1.0])
    assert best.sealed_cups == 9
    assert_safe(best, masks, LAYOUT.cup_radius)
    narrow = rect((22, 60), 0, 22, 0, 60)[None]  # only one cup row fits in 22 rows
    (best,) = SuctionGraspPlanner(LAYOUT).plan(narrow, [1.0])
    assert best.sealed_cups == 3


def test_rotation_fits_a_diagonal_item():
    yy, xx = np.mgrid[:120, :120]
    band = np.abs((yy - 60) - (xx - 60)) <= 9  # a diagonal strip 18 px wide
    masks = band[None]
    layout = SuctionCupLayout.grid(rows=1, cols=3, spacing=15.0, cup_radius=5.0)
    straight = SuctionGraspPlanner(layout, angles=[0.0]).plan(masks, [0.5])[0]
    rotated = SuctionGraspPlanner(layout, angles=[0.0, -np.pi / 4]).plan(masks, [0.5])[0]
    assert rotated.sealed_cups == 3 > straight.sealed_cups
    assert rotated.angle == pytest.approx(-np.pi / 4)
    assert_safe(rotated, masks, layout.cup_radius)


def test_candidates_per_mask_are_apart_and_limited():
    masks = rect((80, 160), 5, 75, 5, 155)[None]
    planner = SuctionGraspPlanner(LAYOUT, candidates_per_mask=3, max_candidates=2)
    candidates = planner.plan(masks, [0.5])
    assert len(candidates) == 2
    a, b = candidates
    assert np.hypot(a.u - b.u, a.v - b.v) > planner.suppression_radius
    assert a.sealed_cups == b.sealed_cups == 9


def brute_force(layout, angle, own, others, shape):
    """For every gripper centre (v, u) of the image: per cup whether it seals (every pixel of its
    disk lies in ``own``, hence in the image) and whether any cup touches ``others`` (a pixel of
    them within the cup radius), by enumerating the disks' pixels: [C, H, W] sealed, [H, W] touches.
    The cups sit where the layout rotated by ``angle`` (counter-clockwise in the image) and
    rounded to whole pixels puts them."""
    height, width = shape
    radius = layout.cup_radius
    reach = int(np.floor(radius))
    disk = [(ex, ey) for ey in range(-reach, reach + 1) for ex in range(-reach, reach + 1) if ex * ex + ey * ey <= radius**2]
    vv, uu = np.mgrid[:height, :width]
    sealed = np.ones((layout.num_cups, height, width), bool)
    touches = np.zeros((height, width), bool)
    for k, (ox, oy) in enumerate(layout.offsets):
        du = int(np.rint(np.cos(angle) * ox + np.sin(angle) * oy))
        dv = int(np.rint(-np.sin(angle) * ox + np.cos(angle) * oy))
        for ex, ey in disk:
            x, y = uu + du + ex, vv + dv + ey
            inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
            xc, yc = np.clip(x, 0, width - 1), np.clip(y, 0, height - 1)
            sealed[k] &= inside & own[yc, xc]
            touches |= inside & others[yc, xc]
    return sealed, touches


@st.composite
def scenes(draw):
    """Masks of random shapes (boxes, disks, bands at any angle, with holes), touching or
    overlapping, and a random cup layout, rotations and minimum of sealed cups."""
    height, width = draw(st.integers(12, 40)), draw(st.integers(12, 40))
    yy, xx = np.mgrid[:height, :width]
    masks = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["box", "disk", "band"]))
        cy, cx = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        if kind == "box":
            h, w = draw(st.integers(2, height)), draw(st.integers(2, width))
            mask = (abs(yy - cy) <= h / 2) & (abs(xx - cx) <= w / 2)
        elif kind == "disk":
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= draw(st.floats(2.0, 15.0)) ** 2
        else:
            theta = draw(st.floats(0.0, np.pi))
            mask = abs((yy - cy) * np.cos(theta) - (xx - cx) * np.sin(theta)) <= draw(st.floats(1.0, 8.0))
        if draw(st.booleans()):
            hy, hx = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            mask[hy : hy + draw(st.integers(1, 4)), hx : hx + draw(st.integers(1, 4))] = False
        if mask.any():
            masks.append(mask)
    if not masks:
        masks = [np.ones((height, width), bool)]
    radius = draw(st.floats(1.0, 4.0))
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    layout = SuctionCupLayout.grid(rows, cols, spacing=2 * radius + draw(st.floats(0.0, 5.0)), cup_radius=radius)
    angles = [0.0] + draw(st.lists(st.floats(-np.pi, np.pi), max_size=2))
    min_sealed = draw(st.integers(1, layout.num_cups))
    return np.stack(masks), layout, angles, min_sealed


@fuzz(400)
@given(scene=scenes(), candidates_per_mask=st.integers(1, 3))
def test_matches_brute_force_on_random_scenes(scene, candidates_per_mask):
    """Per mask the planner's best grasp seals as many cups as the best placement found by trying
    every centre and rotation, and every grasp it proposes is one that enumeration allows."""
    masks, layout, angles, min_sealed = scene
    planner = SuctionGraspPlanner(layout, angles=angles, candidates_per_mask=candidates_per_mask,
                                  min_sealed_cups=min_sealed)
    planned = planner.plan(masks, np.linspace(0.9, 0.1, len(masks)))
    shape = masks.shape[1:]
    for index, mask in enumerate(masks):
        others = np.delete(masks, index, axis=0).any(axis=0)
        own = mask & ~others
        best = 0
        found = {}
        for angle in angles:
            sealed, touches = brute_force(layout, angle, own, others, shape)
            count = sealed.sum(axis=0)
            allowed = ~touches & (count >= min_sealed)
            best = max(best, int(count[allowed].max(initial=0)))
            found[angle] = (sealed, allowed)
        mine = [c for c in planned if c.mask_id == index]
        assert (mine[0].sealed_cups if mine else 0) == best, f"mask {index}: planner {[c.sealed_cups for c in mine]}, brute force {best}"
        assert len(mine) <= candidates_per_mask
        for candidate in mine:
            sealed, allowed = found[candidate.angle]
            v, u = int(candidate.v), int(candidate.u)
            assert allowed[v, u], f"mask {index}: grasp at ({u}, {v}) touches another mask or seals too few cups"
            np.testing.assert_array_equal(candidate.cup_sealed, sealed[:, v, u])
            assert candidate.sealed_cups == int(sealed[:, v, u].sum())
        for a, b in zip(mine, mine[1:]):
            assert np.hypot(a.u - b.u, a.v - b.v) > planner.suppression_radius
    assert [c.sealed_cups for c in planned] == sorted((c.sealed_cups for c in planned), reverse=True)


def test_regression_a_cup_centred_past_the_border_must_not_touch_another_mask():
    """Found by the brute-force property test: contact zones stopped at the image border, so a
    switched-off cup centred just outside the image could rest on another item along the edge."""
    shape = (14, 20)
    strip = rect(shape, 0, 1, 0, 20)  # another item along the top edge
    item = rect(shape, 4, 9, 4, 16)  # room for one sealed cup of radius 2, centred on row 6
    masks = np.stack([item, strip])
    layout = SuctionCupLayout.grid(rows=2, cols=1, spacing=8.0, cup_radius=2.0)
    (best,) = [c for c in SuctionGraspPlanner(layout).plan(masks) if c.mask_id == 0]
    sealed, touches = brute_force(layout, 0.0, item, strip, shape)
    assert best.sealed_cups == 1 and not touches[int(best.v), int(best.u)]
    # the free cup hangs past the bottom edge (row 14), not past the top one (row -2, 2 px from the strip)
    assert sorted(best.cup_centers[:, 1].tolist()) == [6.0, 14.0]


def test_plan_result_uses_message_ids():
    masks = np.stack([rect((60, 60), 0, 8, 0, 8), rect((60, 60), 10, 55, 10, 55)])
    result = CameraResult(
        camera="c",
        masks=masks,
        scores=np.array([0.9, 0.5], np.float32),
        labels=np.array([1, 1]),
        boxes=np.zeros((2, 4), np.float32),
        support_counts=np.array([8, 8]),
        mode="confidence_mask",
        p=0.9,
        num_samples=8,
    )
    candidates = SuctionGraspPlanner(LAYOUT).plan_result(result)
    assert [c.mask_id for c in candidates] == [1]


def test_bad_layouts_and_inputs_are_refused():
    with pytest.raises(ValueError, match="cups overlap"):
        SuctionCupLayout.grid(spacing=8.0, cup_radius=5.0)
    with pytest.raises(ValueError, match="cup_radius"):
        SuctionCupLayout.grid(cup_radius=0.0)
    with pytest.raises(ValueError, match="spacing"):
        SuctionCupLayout.grid(spacing=float("nan"))
    with pytest.raises(ValueError, match=r"\[C, 2\]"):
        SuctionCupLayout(np.zeros((0, 2)), 3.0)
    with pytest.raises(ValueError, match="min_sealed_cups"):
        SuctionGraspPlanner(LAYOUT, min_sealed_cups=10)
    with pytest.raises(ValueError, match="angles"):
        SuctionGraspPlanner(LAYOUT, angles=[])
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        SuctionGraspPlanner(LAYOUT).plan(np.zeros((5, 5), bool))
    with pytest.raises(ValueError, match="2 scores"):
        SuctionGraspPlanner(LAYOUT).plan(np.zeros((2, 5, 5), bool), [0.1])
