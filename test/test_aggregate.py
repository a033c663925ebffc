"""p-confidence masks (Algorithm 1): a plain-loop reference, invariants, the paper's cases,
the `aggregate` entry point and bad input."""
import math
from fractions import Fraction

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_maskrcnn.aggregation.aggregate import (
    MODES,
    aggregate,
    confidence_masks,
    prepare_prediction_samples,
    prepare_samples,
    support_size,
)
from latent_maskrcnn.aggregation.confidence_masks import KERNELS

# Both implementations of the greedy loop run every test below that takes ``kernel``: the
# compiled CPU kernel and the vectorised torch one (the one CUDA tensors use).
BOTH_KERNELS = pytest.mark.parametrize("kernel", ["compiled", "torch"])

# --------------------------------------------------------------------------------------------
# Reference: Algorithm 1 with plain loops over candidates, samples and masks, full resolution.
# Same documented choices as the fast version: detections with score <= threshold dropped
# first; support = the candidate's own sample plus the ceil(pK) - 1 other samples with the
# largest intersection (ties: lower sample, then lower mask index); chosen pixels excluded for
# every class; ties between candidates (scores within 1e-9) go to the first candidate.


def reference_support_size(p, k):
    """ceil(p K) in exact decimal arithmetic (the reference's own, independent of the code's)."""
    return max(1, math.ceil(Fraction(str(p)) * k))


def reference_confidence_masks(masks, scores, p, threshold, labels=None):
    k = len(masks)
    m = reference_support_size(p, k)
    height, width = masks[0].shape[1:]
    items = [
        (g, j)
        for g in range(k)
        for j in range(masks[g].shape[0])
        if float(scores[g][j]) > threshold and bool(masks[g][j].any())
    ]
    claimed = torch.zeros((height, width), dtype=torch.bool)
    out = []
    while True:
        best = None
        for g, j in items:
            free_h = masks[g][j] & ~claimed
            ranked = [(math.inf, g, j)]
            for other in range(k):
                if other == g:
                    continue
                best_value, best_index = None, None
                for g2, j2 in items:
                    if g2 != other:
                        continue
                    value = int((free_h & masks[g2][j2]).sum())
                    if best_value is None or value > best_value:
                        best_value, best_index = value, j2
                if best_index is not None:
                    ranked.append((best_value, other, best_index))
            ranked.sort(key=lambda entry: (-entry[0], entry[1]))
            if len(ranked) < m or ranked[m - 1][0] <= 0:
                continue
            chosen = ranked[:m]
            candidate = ~claimed
            for _, g2, j2 in chosen:
                candidate = candidate & masks[g2][j2]
            pixels = int(candidate.sum())
            if pixels == 0:
                continue
            score = sum(float(scores[g2][j2]) * pixels / int(masks[g2][j2].sum()) for _, g2, j2 in chosen) / m
            key = round(score * 1e9)
            if best is None or key > best[0]:
                best = (key, score, candidate, [(g2, j2) for _, g2, j2 in chosen])
        if best is None or best[1] <= threshold:
            return out
        _, score, candidate, support = best
        out.append((candidate, score, support))
        claimed |= candidate


def rect(height, width, y0, x0, y1, x1):
    mask = torch.zeros((height, width), dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


@st.composite
def sample_sets(draw, max_samples=4, max_masks=3, max_side=10):
    height = draw(st.integers(4, max_side))
    width = draw(st.integers(4, max_side))
    k = draw(st.integers(1, max_samples))
    masks, scores = [], []
    for _ in range(k):
        n = draw(st.integers(0, max_masks))
        sample = torch.zeros((n, height, width), dtype=torch.bool)
        for i in range(n):
            y0 = draw(st.integers(0, height - 1))
            x0 = draw(st.integers(0, width - 1))
            y1 = draw(st.integers(y0 + 1, height))
            x1 = draw(st.integers(x0 + 1, width))
            sample[i, y0:y1, x0:x1] = True
            if draw(st.booleans()):  # carve a hole or notch so masks are not all rectangles
                hy, hx = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
                sample[i, hy : hy + 2, hx : hx + 2] = False
        masks.append(sample)
        scores.append(torch.tensor(draw(st.lists(st.sampled_from([0.05, 0.3, 0.5, 0.8, 1.0]), min_size=n, max_size=n)), dtype=torch.float32))
    p = draw(st.sampled_from([0.2, 0.5, 0.7, 0.9, 1.0]))
    return masks, scores, p


def check_invariants(result, masks, scores, p, threshold):
    k = len(masks)
    m = reference_support_size(p, k)
    if len(result):
        assert int(result.masks.sum(dim=0).max()) <= 1, "confidence masks overlap"
    assert len(result.support) == len(result) == result.scores.numel() == result.labels.numel()
    for i in range(len(result)):
        mask = result.masks[i]
        pixels = int(mask.sum())
        assert pixels > 0, "empty mask emitted"
        support = result.support[i]
        assert len(support) == m and len({g for g, _ in support}) == m, "support not from ceil(pK) distinct samples"
        expected = 0.0
        for g, j in support:
            assert not bool((mask & ~masks[g][j]).any()), "mask leaves a mask of its support"
            assert float(scores[g][j]) > threshold
            expected += float(scores[g][j]) * pixels / int(masks[g][j].sum())
        assert math.isclose(float(result.scores[i]), expected / m, rel_tol=1e-5), "score differs from the formula"
        assert float(result.scores[i]) > threshold
        ys, xs = torch.nonzero(mask, as_tuple=True)
        box = [int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1]
        assert result.boxes[i].tolist() == box


@BOTH_KERNELS
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample_sets())
def test_fast_equals_loop_reference(kernel, case):
    masks, scores, p = case
    threshold = 0.1
    fast = confidence_masks(masks, scores, p, score_threshold=threshold, pool=1, kernel=kernel)
    reference = reference_confidence_masks(masks, scores, p, threshold)
    assert len(fast) == len(reference)
    for i, (mask, score, support) in enumerate(reference):
        assert torch.equal(fast.masks[i], mask)
        assert math.isclose(float(fast.scores[i]), score, rel_tol=1e-6)
        assert fast.support[i] == support
    check_invariants(fast, masks, scores, p, threshold)


@BOTH_KERNELS
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sample_sets(max_samples=5, max_masks=4, max_side=24), st.sampled_from([2, 4, 8]))
def test_invariants_with_block_scoring(kernel, case, pool):
    masks, scores, p = case
    result = confidence_masks(masks, scores, p, score_threshold=0.1, pool=pool, kernel=kernel)
    check_invariants(result, masks, scores, p, 0.1)


@BOTH_KERNELS
def test_a_claim_can_raise_a_candidates_score_by_switching_its_support(kernel):
    # Algorithm 1 picks a candidate's support by intersection size, not by score, so the
    # emitted scores need not fall in selection order. K = 3, p = 0.5 (support 2):
    # b = {(1,4), (2,4)} ties between a (area 6) and c (area 5) and takes a, the lower
    # sample (the 0.05 detection is below the threshold): {(1,4)} scores (0.3/6 + 0.3/2) / 2 = 0.1. Once (1,4) is claimed, b's best
    # partner is c: {(2,4)} scores (0.3/5 + 0.3/2) / 2 = 0.105, higher than the first.
    h, w = 4, 5
    a = rect(h, w, 0, 2, 2, 5)
    b_left, b_right, b_dot = rect(h, w, 0, 0, 3, 1), rect(h, w, 1, 4, 3, 5), rect(h, w, 0, 0, 1, 1)
    c = rect(h, w, 2, 0, 3, 5)
    masks = [a.unsqueeze(0), torch.stack([b_left, b_right, b_dot]), c.unsqueeze(0)]
    scores = [torch.tensor([0.3]), torch.tensor([0.3, 0.3, 0.05]), torch.tensor([0.3])]
    result = confidence_masks(masks, scores, 0.5, score_threshold=0.05, pool=1, kernel=kernel)
    # then b's left bar with c: {(2,0)} scores (0.3/3 + 0.3/5) / 2 = 0.08
    assert [m.nonzero().tolist() for m in result.masks] == [[[1, 4]], [[2, 4]], [[2, 0]]]
    assert result.scores.tolist() == pytest.approx([0.1, 0.105, 0.08])
    assert [sorted(s) for s in result.support] == [[(0, 0), (1, 1)], [(1, 1), (2, 0)], [(1, 0), (2, 0)]]


@BOTH_KERNELS
def test_invariants_on_realistic_samples_at_full_size_blocks(kernel):
    from latent_maskrcnn.bench.aggregate import random_samples

    masks, scores = random_samples(6, 12, 120, 160, seed=3, device="cpu")
    for p in (0.1, 0.5, 0.9, 1.0):
        result = confidence_masks(masks, scores, p, kernel=kernel)
        check_invariants(result, masks, scores, p, 0.1)
        assert len(result) > 0


@BOTH_KERNELS
def test_identical_samples_give_back_their_masks_and_scores(kernel):
    h, w = 20, 30
    sample = torch.stack([rect(h, w, 0, 0, 8, 10), rect(h, w, 10, 12, 18, 28), rect(h, w, 2, 14, 7, 20)])
    scores = torch.tensor([0.9, 0.7, 0.5])
    k = 5
    result = confidence_masks([sample.clone() for _ in range(k)], [scores.clone() for _ in range(k)], 0.9, pool=1, kernel=kernel)
    assert len(result) == 3
    for i, j in enumerate([0, 1, 2]):  # selection order follows the scores
        assert torch.equal(result.masks[i], sample[j])
        assert math.isclose(float(result.scores[i]), float(scores[j]), rel_tol=1e-6)
        assert sorted(g for g, _ in result.support[i]) == list(range(k))
        assert all(index == j for _, index in result.support[i])
    assert result.support_counts.tolist() == [k, k, k]


@BOTH_KERNELS
def test_figure_4_three_shifted_masks_intersect(kernel):
    h, w = 30, 30
    masks = [rect(h, w, 5, 5, 20, 20)[None], rect(h, w, 7, 7, 22, 22)[None], rect(h, w, 9, 9, 24, 24)[None]]
    scores = [torch.tensor([0.9]), torch.tensor([0.8]), torch.tensor([0.6])]
    for pool in (1, 8):
        result = confidence_masks(masks, scores, 1.0, pool=pool, kernel=kernel)
        assert len(result) == 1
        assert torch.equal(result.masks[0], rect(h, w, 9, 9, 20, 20))
        expected = (0.9 + 0.8 + 0.6) * 121 / 225 / 3  # mean score-weighted IoU, |c| = 11 * 11
        assert math.isclose(float(result.scores[0]), expected, rel_tol=1e-6)
        assert result.support[0] == [(0, 0), (1, 0), (2, 0)]


def split_merge_samples(merged_score):
    h, w = 20, 40
    left, right = rect(h, w, 4, 4, 16, 20), rect(h, w, 4, 20, 16, 36)
    split = torch.stack([left, right])
    merged = (left | right)[None]
    masks = [split.clone(), split.clone(), merged.clone(), merged.clone()]
    scores = [torch.tensor([0.9, 0.9]), torch.tensor([0.9, 0.9]), torch.tensor([merged_score]), torch.tensor([merged_score])]
    return masks, scores, left, right


@BOTH_KERNELS
def test_split_and_merge_at_high_p_never_emits_the_merged_mask(kernel):
    masks, scores, left, right = split_merge_samples(merged_score=1.0)
    for pool in (1, 4):
        result = confidence_masks(masks, scores, 0.9, pool=pool, kernel=kernel)
        assert len(result) == 2
        for mask in result.masks:
            assert not (bool((mask & left).any()) and bool((mask & right).any())), "a mask spans both items"
        assert {tuple(m.nonzero()[0].tolist()) for m in result.masks} == {(4, 4), (4, 20)}
        assert torch.equal(result.masks.any(dim=0), left | right)


@BOTH_KERNELS
def test_split_and_merge_at_low_p_can_merge(kernel):
    masks, scores, left, right = split_merge_samples(merged_score=1.0)
    result = confidence_masks(masks, scores, 0.5, pool=1, kernel=kernel)
    assert torch.equal(result.masks[0], left | right)  # two confident samples suffice at p = 0.5


@BOTH_KERNELS
def test_p_one_with_one_disagreeing_sample(kernel):
    h, w = 20, 30
    agree = rect(h, w, 2, 2, 12, 12)
    shifted = rect(h, w, 2, 7, 12, 17)
    masks = [agree[None], agree[None].clone(), agree[None].clone(), shifted[None]]
    scores = [torch.tensor([0.8])] * 4
    at_one = confidence_masks(masks, scores, 1.0, pool=1, kernel=kernel)
    assert len(at_one) == 1 and torch.equal(at_one.masks[0], agree & shifted)
    at_three_quarters = confidence_masks(masks, scores, 0.75, pool=1, kernel=kernel)
    assert torch.equal(at_three_quarters.masks[0], agree)
    # a sample that sees nothing at all: no pixel lies in every sample
    nothing = torch.zeros((0, h, w), dtype=torch.bool)
    empty = confidence_masks(masks[:3] + [nothing], scores[:3] + [torch.zeros(0)], 1.0, kernel=kernel)
    assert len(empty) == 0 and empty.masks.shape == (0, h, w)


@BOTH_KERNELS
def test_low_scores_are_dropped_and_threshold_stops(kernel):
    h, w = 10, 10
    masks = [rect(h, w, 0, 0, 5, 5)[None], rect(h, w, 0, 0, 5, 5)[None]]
    assert len(confidence_masks(masks, [torch.tensor([0.05])] * 2, 0.5, kernel=kernel)) == 0
    result = confidence_masks(masks, [torch.tensor([0.5])] * 2, 1.0, score_threshold=0.6, kernel=kernel)
    assert len(result) == 0


@BOTH_KERNELS
def test_labels_follow_the_summed_score_of_the_support(kernel):
    h, w = 10, 10
    masks = [rect(h, w, 0, 0, 5, 5)[None] for _ in range(3)]
    scores = [torch.tensor([0.9]), torch.tensor([0.4]), torch.tensor([0.4])]
    labels = [torch.tensor([2]), torch.tensor([3]), torch.tensor([3])]
    result = confidence_masks(masks, scores, 1.0, labels=labels, kernel=kernel)
    assert result.labels.tolist() == [2]  # 0.9 for class 2 beats 0.8 for class 3


def test_support_size_is_ceil_p_k():
    assert support_size(0.9, 8) == 8
    assert support_size(0.7, 10) == 7  # not 8 from 7.000000000000001
    assert support_size(0.5, 8) == 4
    assert support_size(0.01, 8) == 1
    assert support_size(1.0, 3) == 3


@BOTH_KERNELS
def test_prepared_samples_reaggregate_like_raw_input(kernel):
    from latent_maskrcnn.bench.aggregate import random_samples

    masks, scores = random_samples(5, 10, 96, 128, seed=1, device="cpu")
    prepared = prepare_samples(masks, scores)
    for p in (0.3, 0.9, 0.6):
        again = confidence_masks(prepared, None, p, kernel=kernel)
        raw = confidence_masks(masks, scores, p, kernel=kernel)
        assert torch.equal(again.masks, raw.masks) and again.support == raw.support


def test_compiled_and_torch_kernels_agree_on_realistic_samples():
    from latent_maskrcnn.bench.aggregate import random_samples

    masks, scores = random_samples(8, 12, 120, 160, seed=4, device="cpu")
    for p in (0.5, 0.9):
        compiled = confidence_masks(masks, scores, p, kernel="compiled")
        vectorised = confidence_masks(masks, scores, p, kernel="torch")
        assert len(compiled) == len(vectorised) > 0
        # The torch kernel emits independent candidates in batches, so compare as sets.
        by_support = {tuple(s): i for i, s in enumerate(vectorised.support)}
        for i, support in enumerate(compiled.support):
            j = by_support[tuple(support)]
            assert torch.equal(compiled.masks[i], vectorised.masks[j])
            assert math.isclose(float(compiled.scores[i]), float(vectorised.scores[j]), rel_tol=1e-6)
            assert torch.equal(compiled.boxes[i], vectorised.boxes[j])
            assert int(compiled.labels[i]) == int(vectorised.labels[j])


def test_unknown_kernel_is_refused():
    masks, scores = good_input()
    with pytest.raises(ValueError, match="kernel"):
        confidence_masks(masks, scores, 0.9, kernel="fortran")
    assert "auto" in KERNELS


def test_works_on_cuda_like_on_cpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from latent_maskrcnn.bench.aggregate import random_samples

    masks, scores = random_samples(4, 8, 64, 96, seed=2, device="cpu")
    cpu = confidence_masks(masks, scores, 0.75, kernel="torch")
    gpu = confidence_masks([m.cuda() for m in masks], [s.cuda() for s in scores], 0.75)
    assert gpu.masks.is_cuda
    assert torch.equal(gpu.masks.cpu(), cpu.masks) and gpu.support == cpu.support


# --- aggregate ------------------------------------------------------------------------------


def prediction(masks, scores, labels=None):
    n = masks.shape[0]
    return {
        "boxes": torch.zeros((n, 4)),
        "labels": torch.ones(n, dtype=torch.int64) if labels is None else labels,
        "scores": scores,
        "masks": masks,
    }


def test_aggregate_every_mode_returns_a_prediction_dict():
    h, w = 16, 24
    a, b = rect(h, w, 1, 1, 8, 10), rect(h, w, 9, 12, 15, 22)
    samples = [prediction(torch.stack([a, b]), torch.tensor([0.9, 0.8])) for _ in range(3)]
    samples.append(prediction(torch.stack([a]), torch.tensor([0.7])))
    for mode in ("confidence_mask", "union_nms"):
        out = aggregate(samples, mode, p=0.9)
        assert set(out) == {"boxes", "labels", "scores", "masks", "support_counts"}
        assert out["masks"].dtype == torch.bool and out["masks"].shape[1:] == (h, w)
        assert out["boxes"].shape == (out["masks"].shape[0], 4)
        assert out["labels"].dtype == torch.int64 and out["support_counts"].dtype == torch.int64
    confidence = aggregate(samples, "confidence_mask", p=0.9)
    assert confidence["masks"].shape[0] == 1 and torch.equal(confidence["masks"][0], a)
    assert confidence["support_counts"].tolist() == [4]
    assert confidence["boxes"].tolist() == [[1.0, 1.0, 10.0, 8.0]]
    union = aggregate(samples, "union_nms")
    assert union["support_counts"].tolist() == [4, 3]


def test_aggregate_prior_mean_filters_by_score():
    h, w = 12, 12
    masks = torch.stack([rect(h, w, 0, 0, 4, 4), rect(h, w, 5, 5, 9, 11), rect(h, w, 0, 6, 3, 9)])
    out = aggregate([prediction(masks, torch.tensor([0.9, 0.05, 0.5]))], "prior_mean", score_threshold=0.1)
    assert out["scores"].tolist() == pytest.approx([0.9, 0.5])
    assert torch.equal(out["masks"], masks[[0, 2]])
    assert out["boxes"].tolist() == [[0.0, 0.0, 4.0, 4.0], [6.0, 0.0, 9.0, 3.0]]
    assert out["support_counts"].tolist() == [1, 1]
    with pytest.raises(ValueError, match="prior mean"):
        aggregate([prediction(masks, torch.ones(3))] * 2, "prior_mean")


def test_aggregate_accepts_prepared_samples():
    h, w = 16, 24
    samples = [prediction(torch.stack([rect(h, w, 1, 1, 8, 10 + k)]), torch.tensor([0.9])) for k in range(4)]
    prepared = prepare_prediction_samples(samples)
    for p in (1.0, 0.5):
        assert torch.equal(aggregate(prepared, "confidence_mask", p=p)["masks"], aggregate(samples, "confidence_mask", p=p)["masks"])
    assert torch.equal(aggregate(prepared, "union_nms")["masks"], aggregate(samples, "union_nms")["masks"])


def test_unknown_mode_lists_the_valid_ones():
    with pytest.raises(ValueError) as error:
        aggregate([prediction(torch.zeros((0, 4, 4), dtype=torch.bool), torch.zeros(0))], "mean")
    for mode in MODES:
        assert mode in str(error.value)


# --- bad input ------------------------------------------------------------------------------


def good_input():
    h, w = 8, 8
    return [rect(h, w, 0, 0, 4, 4)[None], rect(h, w, 1, 1, 5, 5)[None]], [torch.tensor([0.9]), torch.tensor([0.8])]


@pytest.mark.parametrize("p", [0.0, -0.1, 1.5, float("nan"), float("inf"), True, "0.9"])
def test_p_outside_the_unit_interval_is_refused(p):
    masks, scores = good_input()
    with pytest.raises(ValueError, match="p must"):
        confidence_masks(masks, scores, p)
    with pytest.raises(ValueError, match="p must"):
        aggregate([prediction(m, s) for m, s in zip(masks, scores)], "confidence_mask", p=p)


def test_masks_of_different_sizes_are_refused():
    masks, scores = good_input()
    masks[1] = torch.zeros((1, 8, 9), dtype=torch.bool)
    with pytest.raises(ValueError, match="different sizes"):
        confidence_masks(masks, scores, 0.9)


def test_scores_not_matching_masks_are_refused():
    masks, scores = good_input()
    with pytest.raises(ValueError, match=r"scores\[1\]"):
        confidence_masks(masks, [scores[0], torch.tensor([0.8, 0.7])], 0.9)
    with pytest.raises(ValueError, match="scores has 1 entries"):
        confidence_masks(masks, scores[:1], 0.9)
    with pytest.raises(ValueError, match="NaN"):
        confidence_masks(masks, [scores[0], torch.tensor([float("nan")])], 0.9)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32, torch.int64])
def test_non_boolean_masks_are_refused(dtype):
    masks, scores = good_input()
    masks[0] = masks[0].to(dtype)
    with pytest.raises(ValueError, match="boolean"):
        confidence_masks(masks, scores, 0.9)


def test_other_bad_shapes_are_refused():
    masks, scores = good_input()
    with pytest.raises(ValueError, match=r"\[N, H, W\]"):
        confidence_masks([masks[0][0], masks[1]], scores, 0.9)
    with pytest.raises(ValueError, match="list"):
        confidence_masks(torch.cat(masks), scores, 0.9)
    with pytest.raises(ValueError, match="empty"):
        confidence_masks([], [], 0.9)
    with pytest.raises(ValueError, match="labels"):
        confidence_masks(masks, scores, 0.9, labels=[torch.tensor([1.5]), torch.tensor([1])])
    with pytest.raises(ValueError, match="pool"):
        confidence_masks(masks, scores, 0.9, pool=0)
    with pytest.raises(ValueError, match="samples"):
        aggregate({"masks": masks[0]}, "union_nms")
    with pytest.raises(ValueError, match="lacks"):
        aggregate([{"masks": masks[0], "scores": scores[0]}], "union_nms")


def test_warm_up_compiles_the_cpu_kernel():
    from latent_maskrcnn.aggregation.confidence_masks import warm_up_compiled_kernel

    assert warm_up_compiled_kernel() is True
