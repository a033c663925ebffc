"""Double picks split by cause and false-positive picks, on hand-built masks whose answer is
known from the circle centres alone."""
import pytest
import torch

from latent_maskrcnn.evaluation.double_pick import CAUSES, GripperSimulation, PickCauses, circle_centres, classify_picks, simulate_picks

H, W, R = 40, 64, 3
SIM = GripperSimulation(radius=R, circles=2000, seed=4)


def block(y0, y1, x0, x1):
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def centres():
    c = circle_centres(H, W, SIM, image_id=0)
    return c[:, 0], c[:, 1]


def inside_block(ys, xs, y0, y1, x0, x1):
    """A disk of radius R lies inside a block when its centre is R pixels in (the disk's
    extreme pixels are the centre +- R along the axes)."""
    return (ys - R >= y0) & (ys + R < y1) & (xs - R >= x0) & (xs + R < x1)


def touches_columns(xs, x0, x1):
    return (xs + R >= x0) & (xs - R < x1)


def test_a_circle_straddling_the_seam_of_a_split_pair_counts_under_pair_seam():
    left, right = block(10, 30, 10, 32), block(10, 30, 32, 54)
    prediction = (left | right)[None]                     # the pair predicted as one item
    result = classify_picks(prediction, torch.stack([left, right]), ["pair_half", "pair_half"], SIM)
    ys, xs = centres()
    picks = inside_block(ys, xs, 10, 30, 10, 54)
    doubles = picks & touches_columns(xs, 10, 32) & touches_columns(xs, 32, 54)
    assert result.picks == int(picks.sum()) > 0
    assert result.double_picks == int(doubles.sum()) > 0
    assert result.causes["pair_seam"] == result.double_picks
    assert sum(result.causes.values()) == result.double_picks
    assert result.kinds["pair_half"] == result.double_picks
    assert result.combinations == {"pair_half+pair_half": result.double_picks}
    assert result.false_positives == 0
    # D and N are exactly the paper's simulation
    counts = simulate_picks(prediction, torch.stack([left, right]), SIM)
    assert (counts.picks, counts.double_picks) == (result.picks, result.double_picks)


def test_a_circle_on_empty_floor_is_a_false_positive_not_a_double_pick():
    item = block(5, 20, 5, 25)
    floor = block(24, 38, 35, 60)                          # a prediction where no item lies
    result = classify_picks(torch.stack([item, floor]), item[None], ["plain"], SIM)
    ys, xs = centres()
    on_floor = inside_block(ys, xs, 24, 38, 35, 60)
    on_item = inside_block(ys, xs, 5, 20, 5, 25)
    assert result.false_positives == int(on_floor.sum()) > 0
    assert result.picks == int((on_floor | on_item).sum())
    assert result.double_picks == 0
    summary = result.summary()
    assert summary["false_positive_rate"] == pytest.approx(result.false_positives / result.picks)
    assert summary["double_pick_rate"] == 0.0
    assert summary["double_pick_rate_on_items"] == 0.0


@pytest.mark.parametrize(
    "kinds, cause",
    [
        (["pair_merged", "plain"], "pair_other"),
        (["pair_half", "plain"], "pair_other"),
        (["film_bag", "under_film"], "film"),
        (["glare_stripe", "plain"], "glare_stripe"),
        (["film_bag", "glare_stripe"], "film"),            # first match wins
        (["plain", "plain"], "plain"),
        (["plain", "something_else"], "unknown"),
        (["glare_half", "glare_half"], "glare_split"),
        (["glare_half", "plain"], "glare_stripe"),
        (["film_garment", "through_film"], "film"),
        (["through_film", "plain"], "film"),
        (["pair_half", "glare_half"], "pair_other"),
    ],
)
def test_causes_follow_the_kinds_of_the_touched_items(kinds, cause):
    left, right = block(10, 30, 10, 32), block(10, 30, 32, 54)
    result = classify_picks((left | right)[None], torch.stack([left, right]), kinds, SIM)
    assert result.double_picks > 0
    assert result.causes[cause] == result.double_picks
    assert all(count == 0 for name, count in result.causes.items() if name != cause)


def test_without_kinds_the_causes_degrade_to_unknown(caplog):
    left, right = block(10, 30, 10, 32), block(10, 30, 32, 54)
    prediction, truth = (left | right)[None], torch.stack([left, right])
    for kinds in (None, ["plain"]):                        # absent, or not one per mask
        result = classify_picks(prediction, truth, kinds, SIM)
        assert result.double_picks > 0 and result.causes["unknown"] == result.double_picks
        assert result.images_without_kinds == 1
    assert "ambiguity kinds for 2 ground-truth masks" in caplog.text


def test_counts_add_up_over_images_and_rates_partition_the_double_pick_rate():
    left, right = block(10, 30, 10, 32), block(10, 30, 32, 54)
    third = block(30, 38, 10, 54)
    truth = torch.stack([left, right, third])
    total = PickCauses()
    for image_id, kinds in enumerate((["pair_half", "pair_half", "plain"], ["plain", "glare_stripe", "film_bag"], None)):
        prediction = torch.stack([left | right | third, block(0, 9, 56, 64)])
        total.add(classify_picks(prediction, truth, kinds, SIM, image_id))
    summary = total.summary()
    assert summary["images"] == 3 and summary["images_without_kinds"] == 1
    assert set(summary["causes"]) == set(CAUSES)
    assert sum(c["count"] for c in summary["causes"].values()) == summary["double_picks"]
    assert sum(c["rate"] for c in summary["causes"].values()) == pytest.approx(summary["double_pick_rate"])
    assert summary["causes"]["pair_seam"]["count"] > 0 and summary["causes"]["unknown"]["count"] > 0
    # the block at rows 0-9, columns 56-64 lies on no item: its circles are in N, not on items
    assert 0 < summary["false_positives"] < summary["picks"]
    assert summary["double_pick_rate_on_items"] == pytest.approx(
        summary["double_picks"] / (summary["picks"] - summary["false_positives"]))
    assert summary["double_pick_rate_on_items"] > summary["double_pick_rate"]


def test_no_prediction_and_no_truth():
    empty = torch.zeros((0, H, W), dtype=torch.bool)
    result = classify_picks(empty, empty, [], SIM)
    assert (result.picks, result.double_picks, result.false_positives) == (0, 0, 0)
    assert result.summary()["double_pick_rate"] is None
    assert result.summary()["double_pick_rate_on_items"] is None
    only_prediction = classify_picks(block(5, 20, 5, 25)[None], empty, [], SIM)
    assert only_prediction.false_positives == only_prediction.picks > 0


@pytest.mark.parametrize("kinds, regions, cause", [
    (["pair_half", "pair_half"], [4, 4], "pair_seam"),
    (["pair_half", "pair_half"], [4, 7], "pair_other"),    # halves of two different pairs: two items
    (["pair_half", "pair_half"], None, "pair_seam"),       # data without region ids
    (["glare_half", "glare_half"], [2, 2], "glare_split"),
    (["glare_half", "glare_half"], [2, 3], "glare_stripe"),
])
def test_region_ids_tell_the_halves_of_different_items_apart(kinds, regions, cause):
    left, right = block(10, 30, 10, 32), block(10, 30, 32, 54)
    result = classify_picks((left | right)[None], torch.stack([left, right]), kinds, SIM, regions=regions)
    assert result.double_picks > 0 and result.causes[cause] == result.double_picks


def test_every_generated_kind_has_a_cause():
    from latent_maskrcnn.data.synthetic import INSTANCE_KINDS
    from latent_maskrcnn.evaluation.double_pick import AMBIGUITY_CAUSES, KINDS, cause_of, normal_kind

    assert set(INSTANCE_KINDS) <= set(KINDS) and set(AMBIGUITY_CAUSES) <= set(CAUSES)
    for first in INSTANCE_KINDS:
        for second in INSTANCE_KINDS:
            assert cause_of([normal_kind(first), normal_kind(second)]) not in ("unknown",)
