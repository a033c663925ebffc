"""Operating curves, their interpolation, the paired bootstrap and the matched comparison, on
hand-made counts whose answers are known."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_maskrcnn.evaluation.bootstrap import (
    BootstrapEstimate,
    bootstrap_weights,
    paired_bootstrap,
    percentile_interval,
)
from latent_maskrcnn.evaluation.double_pick import PickCounts
from latent_maskrcnn.evaluation.matched import (
    matched_margin,
    BETTER,
    NO_DIFFERENCE,
    NOT_REACHED,
    WORSE,
    comparison_from_dict,
    comparison_markdown,
    comparison_text,
    linear_margin,
    matched_comparison,
    point_table,
    verdict,
)
from latent_maskrcnn.evaluation.operating_curves import (
    CurveRecorder,
    GraspOutcome,
    OperatingCurve,
    crossing,
    interpolate_at,
    read_at,
)


# ---------------------------------------------------------------------------- interpolation
def test_interpolation_along_a_falling_curve():
    areas, rates = [1.2, 1.1, 1.0, 0.9], [0.06, 0.05, 0.03, 0.02]
    assert interpolate_at(areas, rates, 1.05) == pytest.approx(0.04)
    assert interpolate_at(areas, rates, 1.075) == pytest.approx(0.045)
    assert interpolate_at(areas, rates, 1.2) == pytest.approx(0.06)   # the ends are points of the curve
    assert interpolate_at(areas, rates, 0.9) == pytest.approx(0.02)
    assert interpolate_at(areas, rates, 1.1) == pytest.approx(0.05)   # a point exactly
    assert interpolate_at(areas, rates, 1.3) is None                  # no extrapolation
    assert interpolate_at(areas, rates, 0.85) is None
    assert interpolate_at(list(reversed(areas)), list(reversed(rates)), 1.05) == pytest.approx(0.04)  # rising too


def test_interpolation_reads_the_first_crossing_and_skips_undefined_points():
    # N need not be monotone in the threshold: the first crossing in knob order is read
    assert interpolate_at([10, 20, 10, 20], [1.0, 2.0, 3.0, 4.0], 15) == pytest.approx(1.5)
    assert interpolate_at([10, math.nan, 30], [1.0, 2.0, 3.0], 20) is None  # NaN breaks the segments
    assert interpolate_at([5.0], [7.0], 5.0) == pytest.approx(7.0)
    assert interpolate_at([5.0], [7.0], 5.1) is None
    assert interpolate_at([3.0, 3.0], [1.0, 2.0], 3.0) == pytest.approx(1.0)  # a flat segment: its first end


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-5, 5), min_size=1, max_size=6), st.lists(st.floats(-5, 5), min_size=1, max_size=5))
def test_vectorised_crossing_equals_the_scalar_one(xs, targets):
    x = np.asarray(xs)
    y = np.arange(len(xs), dtype=float) ** 2
    columns = np.repeat(x[:, None], len(targets), axis=1)
    segment, weight = crossing(columns, np.asarray(targets))
    values = read_at(np.repeat(y[:, None], len(targets), axis=1), segment, weight)
    for column, target in enumerate(targets):
        expected = interpolate_at(xs, y, target)
        if expected is None:
            assert np.isnan(values[column])
        else:
            assert values[column] == pytest.approx(expected)
            assert min(y) - 1e-9 <= expected <= max(y) + 1e-9


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_draws_are_seeded_and_complete():
    weights = bootstrap_weights(7, resamples=50, seed=3)
    assert weights.shape == (50, 7) and (weights.sum(axis=1) == 7).all() and (weights >= 0).all()
    assert np.array_equal(weights, bootstrap_weights(7, resamples=50, seed=3))
    assert not np.array_equal(weights, bootstrap_weights(7, resamples=50, seed=4))
    for bad in (0, -1, True):
        with pytest.raises(ValueError):
            bootstrap_weights(bad)
    with pytest.raises(ValueError):
        bootstrap_weights(3, resamples=0)


def test_percentile_interval_of_known_values():
    assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))
    assert percentile_interval(np.array([2.0, np.nan, 2.0])) == (2.0, 2.0)
    with pytest.raises(ValueError):
        percentile_interval(np.array([np.nan]))
    with pytest.raises(ValueError):
        percentile_interval(np.arange(3.0), 1.0)


def mean_of(values):
    values = np.asarray(values, dtype=float)
    return lambda w: (w * values).sum(axis=1) / w.sum(axis=1)


def test_bootstrap_of_known_small_cases():
    same = paired_bootstrap(mean_of([3.0] * 5), 5, resamples=300, seed=0)
    assert (same.estimate, same.low, same.high) == (3.0, 3.0, 3.0) and same.excludes_zero
    zero = paired_bootstrap(mean_of([0.0] * 5), 5, resamples=300, seed=0)
    assert (zero.low, zero.high) == (0.0, 0.0) and not zero.excludes_zero
    # two images, 0 and 1: a draw's mean is 0 (1/4), 0.5 (1/2) or 1 (1/4)
    two = paired_bootstrap(mean_of([0.0, 1.0]), 2, resamples=4000, seed=1)
    assert two.estimate == 0.5 and (two.low, two.high) == (0.0, 1.0)
    draws = mean_of([0.0, 1.0])(bootstrap_weights(2, 4000, 1))
    assert np.mean(draws == 0.5) == pytest.approx(0.5, abs=0.03)
    # a large sample: the interval of the mean is the normal one, +-1.96 standard errors
    values = np.random.default_rng(5).normal(size=400)
    wide = paired_bootstrap(mean_of(values), 400, resamples=2000, seed=2)
    half = 1.96 * values.std() / math.sqrt(400)
    assert wide.low == pytest.approx(values.mean() - half, abs=0.02)
    assert wide.high == pytest.approx(values.mean() + half, abs=0.02)
    assert paired_bootstrap(mean_of(values), 400, resamples=2000, seed=2) == wide  # reproducible


def test_bootstrap_without_enough_defined_draws_gives_no_interval():
    undefined = paired_bootstrap(lambda w: np.full(w.shape[0], np.nan), 4, resamples=100)
    assert undefined.estimate is None and undefined.low is None
    # defined on the data, undefined where image 0 is not drawn (about a third of the draws)
    partial = paired_bootstrap(lambda w: np.where(w[:, 0] > 0, 1.0, np.nan), 3, resamples=200, seed=0)
    assert partial.estimate == 1.0 and partial.low is None and partial.undefined > 20
    with pytest.raises(ValueError, match="one value per draw"):
        paired_bootstrap(lambda w: np.zeros(3), 4, resamples=10)


# ---------------------------------------------------------------------------- curves
def counts_curve(method, knob, values, double_picks, picks, predicted_area, truth_area=100.0, grasps=None,
                 grasp_double_picks=None, sealed_cups=None, label=""):
    """A curve from per-point, per-image arrays [P, I] (scalars broadcast)."""
    picks = np.asarray(picks, dtype=float)
    shape = picks.shape
    counts = {
        "double_picks": np.broadcast_to(np.asarray(double_picks, dtype=float), shape).copy(),
        "picks": picks,
        "picks_on_items": picks.copy(),
        "predicted_area": np.broadcast_to(np.asarray(predicted_area, dtype=float), shape).copy(),
        "truth_area": np.full(shape, truth_area),
    }
    if grasps is not None:
        counts["grasps"] = np.broadcast_to(np.asarray(grasps, dtype=float), shape).copy()
        counts["grasp_double_picks"] = np.broadcast_to(np.asarray(grasp_double_picks, dtype=float), shape).copy()
        counts["sealed_cups"] = np.broadcast_to(np.asarray(sealed_cups, dtype=float), shape).copy()
    return OperatingCurve(method, knob, tuple(values), counts, label or method)


def test_curve_numbers_are_ratios_of_sums_and_reweight_by_draw():
    curve = counts_curve("m", "mask_threshold", [0.5, 0.7], double_picks=[[1, 3], [0, 1]], picks=[[10, 30], [10, 10]],
                         predicted_area=[[120, 100], [90, 90]])
    assert curve.metric("double_pick_rate") == pytest.approx([4 / 40, 1 / 20])
    assert curve.metric("pickable_area") == pytest.approx([1.1, 0.9])
    assert curve.metric("picks") == pytest.approx([40, 20])
    only_second = np.array([[0, 2]])
    assert curve.metric("double_pick_rate", only_second)[:, 0] == pytest.approx([0.1, 0.1])
    assert curve.index(0.7) == 1
    with pytest.raises(ValueError, match="not on the curve"):
        curve.index(0.6)
    again = OperatingCurve.from_dict(curve.to_dict())
    assert again.values == curve.values and again.metric("double_pick_rate") == pytest.approx(curve.metric("double_pick_rate"))
    with pytest.raises(ValueError, match="counts must be"):
        OperatingCurve("bad", "p", (0.5,), {"picks": np.zeros((2, 3))})


def test_recorder_builds_paired_curves_and_refuses_gaps():
    recorder = CurveRecorder(knobs={"a": "p"}, labels={"a": "method a"})
    for image in range(3):
        for value in (0.9, 0.5):
            recorder.add("a", value, image, PickCounts(10, image, 50 + image, 100, 1), GraspOutcome(True, image == 2, 5))
    curves = recorder.curves()
    curve = curves["a"]
    assert curve.values == (0.5, 0.9) and curve.knob == "p" and curve.label == "method a" and curve.images == 3
    assert curve.total("picks_on_items") == pytest.approx([27, 27])
    assert curve.metric("grasp_double_pick_rate") == pytest.approx([1 / 3, 1 / 3])
    assert curve.metric("mean_sealed_cups") == pytest.approx([5, 5])
    recorder.add("b", 0.5, 0, PickCounts(1, 0, 1, 1))  # image 1 and 2 missing
    with pytest.raises(ValueError, match="lacks images"):
        recorder.curves()


# ---------------------------------------------------------------------------- matched comparison
IMAGES = 40


def reference_curve(rate_per_image=2, area=100.0, grasp_doubles=None):
    grasp_doubles = np.zeros((1, IMAGES)) if grasp_doubles is None else grasp_doubles
    return counts_curve("cm", "p", [0.9], double_picks=np.full((1, IMAGES), rate_per_image),
                        picks=np.full((1, IMAGES), 100.0), predicted_area=area, grasps=1.0,
                        grasp_double_picks=grasp_doubles, sealed_cups=8.0, label="confidence masks")


def baseline_curve(rates, areas, name="mrcnn", sealed=(9.0, 7.0, 5.0)):
    """Three thresholds; every image has ``rates[k]`` double picks of 100 circles and area ``areas[k]``."""
    points = len(rates)
    return counts_curve(name, "mask_threshold", [0.5, 0.7, 0.9][:points],
                        double_picks=np.repeat(np.asarray(rates, float)[:, None], IMAGES, axis=1),
                        picks=np.full((points, IMAGES), 100.0),
                        predicted_area=np.repeat(np.asarray(areas, float)[:, None], IMAGES, axis=1),
                        grasps=1.0, grasp_double_picks=0.0,
                        sealed_cups=np.repeat(np.asarray(sealed[:points], float)[:, None], IMAGES, axis=1))


def test_a_baseline_is_read_at_the_references_area():
    # the baseline's area passes 100 halfway between 0.7 and 0.9: its D / N there is 3 %
    comparison = matched_comparison(reference_curve(), 0.9, [baseline_curve([6, 4, 2], [140, 120, 80])],
                                    resamples=300, seed=0)
    row = comparison.row("mrcnn", "pickable_area", "double_pick_rate")
    assert row.baseline_knob == pytest.approx(0.8) and row.baseline_value == pytest.approx(0.03)
    assert row.reference_value == pytest.approx(0.02)
    # every image is the same: the interval is the difference itself, and it excludes zero
    assert (row.difference.estimate, row.difference.low, row.difference.high) == pytest.approx((-0.01, -0.01, -0.01))
    assert row.verdict == BETTER and "better in D / N: confidence masks" in row.sentence
    sealed = comparison.row("mrcnn", "pickable_area", "mean_sealed_cups")
    assert sealed.baseline_value == pytest.approx(6.0) and sealed.verdict == BETTER  # 8 cups against 6: more is better
    # every point has N = 100 per image, the reference's N: the first point in knob order is read
    at_n = comparison.row("mrcnn", "picks", "double_pick_rate")
    assert at_n.baseline_knob == pytest.approx(0.5) and at_n.baseline_value == pytest.approx(0.06)
    assert comparison.row("mrcnn", "picks", "mean_sealed_cups") is None  # at equal N only D / N is compared
    assert comparison.best_baseline == "mrcnn" and comparison.images == IMAGES and comparison.grasps == IMAGES
    # Table II layout: every method at the reference's area, each number with its own interval
    header, mine, theirs = point_table(comparison)
    assert header[:3] == ("method", "p / mask threshold", "D / N")
    assert mine[:3] == ("confidence masks", "0.9", "2.00 % (2.00 % to 2.00 %)")
    assert theirs[:3] == ("mrcnn", "0.800", "3.00 % (3.00 % to 3.00 %)") and theirs[-1] == "6.000 (6.000 to 6.000)"


def test_identical_methods_show_no_difference_and_unreached_areas_no_comparison():
    reference = reference_curve()
    same = counts_curve("same", "mask_threshold", [0.5, 0.9], double_picks=reference.counts["double_picks"].repeat(2, 0),
                        picks=reference.counts["picks"].repeat(2, 0), predicted_area=np.full((2, IMAGES), 100.0))
    comparison = matched_comparison(reference, 0.9, [same, baseline_curve([6, 4, 2], [140, 130, 120], name="big")],
                                    resamples=200)
    row = comparison.row("same", "pickable_area", "double_pick_rate")
    assert row.difference.estimate == pytest.approx(0.0) and row.verdict == NO_DIFFERENCE
    assert "no difference measured" in row.sentence and f"{IMAGES} scenes" in row.sentence
    unreached = comparison.row("big", "pickable_area", "double_pick_rate")
    assert unreached.verdict == NOT_REACHED and unreached.baseline_value is None and unreached.baseline_knob is None
    assert "does not reach" in unreached.sentence
    assert comparison.best_baseline == "same"  # the only baseline that reaches the reference's area


def test_noisy_images_give_an_interval_around_the_difference():
    rng = np.random.default_rng(0)
    noisy = rng.binomial(100, 0.02, size=(1, IMAGES)).astype(float)
    reference = counts_curve("cm", "p", [0.9], double_picks=noisy, picks=np.full((1, IMAGES), 100.0),
                             predicted_area=100.0)
    worse = counts_curve("b", "mask_threshold", [0.5, 0.9], double_picks=np.vstack([noisy + 3, noisy + 3]),
                         picks=np.full((2, IMAGES), 100.0), predicted_area=np.array([[110.0] * IMAGES, [90.0] * IMAGES]))
    close = counts_curve("c", "mask_threshold", [0.5, 0.9], double_picks=np.vstack([noisy, noisy]) + (np.arange(IMAGES) % 2),
                         picks=np.full((2, IMAGES), 100.0), predicted_area=np.array([[110.0] * IMAGES, [90.0] * IMAGES]))
    comparison = matched_comparison(reference, 0.9, [worse, close], axes=("pickable_area",),
                                    metrics=("double_pick_rate",), resamples=500, seed=4)
    row = comparison.row("b", "pickable_area", "double_pick_rate")
    assert row.difference.estimate == pytest.approx(-0.03)
    assert row.difference.low <= -0.03 <= row.difference.high and row.verdict == BETTER
    near = comparison.row("c", "pickable_area", "double_pick_rate")
    assert near.difference.estimate == pytest.approx(-0.005)
    assert near.difference.low < -0.005 < near.difference.high
    assert comparison.best_baseline == "c"  # the lower D / N at the reference's area
    again = matched_comparison(reference, 0.9, [worse, close], axes=("pickable_area",),
                               metrics=("double_pick_rate",), resamples=500, seed=4)
    assert again.to_dict() == comparison.to_dict()


def test_verdict_follows_the_interval_only():
    def estimate(low, high):
        return BootstrapEstimate((low + high) / 2, low, high, 100, 0)

    assert verdict(estimate(-0.02, -0.01), lower_is_better=True) == BETTER
    assert verdict(estimate(0.01, 0.02), lower_is_better=True) == WORSE
    assert verdict(estimate(0.01, 0.02), lower_is_better=False) == BETTER
    assert verdict(estimate(-0.01, 0.02), lower_is_better=True) == NO_DIFFERENCE
    assert verdict(estimate(0.0, 0.02), lower_is_better=True) == NO_DIFFERENCE  # touching zero is not excluding it
    assert verdict(BootstrapEstimate(0.1, None, None, 100, 50), True) == NOT_REACHED


def test_comparison_round_trips_and_renders():
    comparison = matched_comparison(reference_curve(), 0.9, [baseline_curve([6, 4, 2], [140, 120, 80])], resamples=100)
    again = comparison_from_dict(comparison.to_dict())
    assert again.to_dict() == comparison.to_dict()
    markdown = "\n".join(comparison_markdown(again))
    assert "| mrcnn | pickable area fraction | 0.800 | D / N | 2.00 % | 3.00 % |" in markdown
    assert "over ground-truth area" in markdown and "Best baseline" in markdown
    text = comparison_text(again)
    assert text[2].startswith("method ") and text[3].startswith("confidence masks ") and text[4].startswith("mrcnn ")
    assert text[6].startswith("baseline ") and "reference better" in "\n".join(text)


def test_the_comparison_refuses_unpaired_curves_and_unknown_metrics():
    with pytest.raises(ValueError, match="same images"):
        matched_comparison(reference_curve(), 0.9, [counts_curve("x", "t", [0.5], 1.0, np.full((1, 3), 10.0), 100.0)])
    with pytest.raises(ValueError, match="unknown metric"):
        matched_comparison(reference_curve(), 0.9, [baseline_curve([6, 4], [140, 80])], metrics=("speed",))
    with pytest.raises(ValueError, match="not on the curve"):
        matched_comparison(reference_curve(), 0.5, [baseline_curve([6, 4], [140, 80])])


def test_linear_margin_of_a_target():
    reference, baseline = reference_curve(rate_per_image=2), baseline_curve([6, 4, 2], [140, 120, 80])
    margin = linear_margin([(1.0, reference, 0.9, "double_pick_rate"), (-0.5, baseline, 0.5, "double_pick_rate")],
                           resamples=100)
    assert margin.estimate == pytest.approx(0.02 - 0.5 * 0.06) and margin.high < 0  # 2 % <= half of 6 %: met
    with pytest.raises(ValueError):
        linear_margin([])


def test_matched_margin_reads_the_baseline_at_the_references_area():
    # the baseline's D / N at the reference's area (100) is 3 %: 2 % - 0.6 x 3 % = +0.2 points
    reference, baseline = reference_curve(rate_per_image=2), baseline_curve([6, 4, 2], [140, 120, 80])
    margin = matched_margin(reference, 0.9, baseline, 0.6, resamples=200, seed=1)
    assert (margin.estimate, margin.low, margin.high) == pytest.approx((0.002, 0.002, 0.002))
    half = matched_margin(reference, 0.9, baseline, 0.5, resamples=200, seed=1)
    assert half.estimate == pytest.approx(0.02 - 0.015)
    cups = matched_margin(reference, 0.9, baseline, 1.0, "mean_sealed_cups", resamples=200, seed=1)
    assert cups.estimate == pytest.approx(8.0 - 6.0)
    with pytest.raises(ValueError, match="images"):
        matched_margin(reference, 0.9, counts_curve("x", "t", [0.5], 1, np.full((1, 3), 10.0), 100), 0.6)


def test_matched_targets_decide_on_their_intervals():
    from latent_maskrcnn.evaluation.bootstrap import BootstrapEstimate
    from latent_maskrcnn.evaluation.targets import MET, NO_BASELINE, NOT_MET, matched_targets

    def estimate(low, high):
        return BootstrapEstimate((low + high) / 2, low, high, 100, 0)

    values = {"confidence_mask": 0.02, "best_baseline": 0.04}
    met = {line["key"]: line["status"] for line in matched_targets(
        "prior_mean", {"m1": estimate(-0.01, -0.001), "m2": estimate(-0.03, -0.01), "m3": estimate(-0.2, -0.05),
                       "m3_cups": estimate(-0.1, 0.3)}, values, "250 scenes", "250 grasps")}
    assert met == {"m1": MET, "m2": MET, "m3": MET}
    failed = {line["key"]: line["status"] for line in matched_targets(
        "prior_mean", {"m1": estimate(-0.01, 0.002), "m2": estimate(0.001, 0.01), "m3": estimate(-0.2, -0.05),
                       "m3_cups": estimate(-0.5, -0.1)}, values, "250 scenes", "250 grasps")}
    assert failed["m1"].startswith("no difference measured") and "250 scenes" in failed["m1"]
    assert failed["m2"] == NOT_MET and failed["m3"] == NOT_MET  # measurably fewer sealed cups
    nothing = {line["key"]: line["status"] for line in matched_targets(None, {}, {})}
    assert nothing == {"m1": NO_BASELINE, "m2": NO_BASELINE, "m3": NO_BASELINE}
