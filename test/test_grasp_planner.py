"""The suction grasp planner on hand-made masks: sealed cups lie inside one mask, no cup touches
another mask, small items seal fewer cups, ranking, rotations, and a brute-force cross-check."""
import numpy as np
import pytest

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


def test_matches_brute_force_on_random_masks():
    rng = np.random.default_rng(0)
    layout = SuctionCupLayout.grid(rows=2, cols=2, spacing=6.0, cup_radius=2.0)
    shape = (24, 24)
    for trial in range(3):
        labels = np.zeros(shape, dtype=int)
        for item in range(1, 4):
            y, x = rng.integers(0, 18, size=2)
            h, w = rng.integers(5, 14, size=2)
            labels[y : y + h, x : x + w] = item
        masks = np.stack([labels == item for item in range(1, 4) if (labels == item).any()])
        planner = SuctionGraspPlanner(layout, candidates_per_mask=1)
        planned = {c.mask_id: c for c in planner.plan(masks)}
        offsets = layout.pixel_offsets(0.0)
        for index, mask in enumerate(masks):
            others = np.delete(masks, index, axis=0).any(axis=0)
            own = mask & ~others
            best = 0
            for v in range(shape[0]):
                for u in range(shape[1]):
                    disks = cup_disks(offsets + [u, v], layout.cup_radius, shape)
                    centres = offsets + [u, v]
                    inside_image = (
                        (centres[:, 0] - layout.cup_radius >= 0)
                        & (centres[:, 1] - layout.cup_radius >= 0)
                        & (centres[:, 0] + layout.cup_radius <= shape[1] - 1)
                        & (centres[:, 1] + layout.cup_radius <= shape[0] - 1)
                    )
                    if (disks & others).any():
                        continue
                    sealed = inside_image & (disks & ~own).reshape(len(disks), -1).sum(axis=1).__eq__(0)
                    best = max(best, int(sealed.sum()))
            got = planned[index].sealed_cups if index in planned else 0
            assert got == best, f"trial {trial} mask {index}: planner {got}, brute force {best}"
            if index in planned:
                assert_safe(planned[index], masks, layout.cup_radius)


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
