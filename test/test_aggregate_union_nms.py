"""Union-NMS (Algorithm 2): a loop reference and the properties the paper's use relies on."""
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_maskrcnn.aggregation.aggregate import union_nms


def iou(a, b):
    union = int((a | b).sum())
    return int((a & b).sum()) / union if union else 0.0


def reference_union_nms(masks, scores, threshold, labels):
    """Algorithm 2 as printed: visit by score; a mask not suppressed yet leads; every later
    mask with IoU > threshold (same class) joins its group; union of each group."""
    pooled = [(g, j) for g in range(len(masks)) for j in range(masks[g].shape[0]) if bool(masks[g][j].any())]
    pooled.sort(key=lambda item: -float(scores[item[0]][item[1]]))  # stable: sample, mask order
    suppressed = set()
    groups = []
    for i, (g, j) in enumerate(pooled):
        if (g, j) in suppressed:
            continue
        members = []
        for g2, j2 in pooled[i + 1 :]:
            if int(labels[g2][j2]) == int(labels[g][j]) and iou(masks[g][j], masks[g2][j2]) > threshold:
                members.append((g2, j2))
                suppressed.add((g2, j2))
        groups.append([(g, j)] + members)
    return groups


@st.composite
def pooled_samples(draw):
    height, width = draw(st.integers(4, 12)), draw(st.integers(4, 12))
    k = draw(st.integers(1, 4))
    masks, scores, labels = [], [], []
    for _ in range(k):
        n = draw(st.integers(0, 4))
        sample = torch.zeros((n, height, width), dtype=torch.bool)
        for i in range(n):
            y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
            sample[i, y0 : draw(st.integers(y0 + 1, height)), x0 : draw(st.integers(x0 + 1, width))] = True
        masks.append(sample)
        scores.append(torch.tensor(draw(st.lists(st.sampled_from([0.2, 0.5, 0.9]), min_size=n, max_size=n))))
        labels.append(torch.tensor(draw(st.lists(st.sampled_from([1, 2]), min_size=n, max_size=n)), dtype=torch.int64))
    return masks, scores, labels, draw(st.sampled_from([0.0, 0.3, 0.5, 0.7]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pooled_samples())
def test_union_nms_matches_reference_and_covers_what_it_suppressed(case):
    masks, scores, labels, threshold = case
    result = union_nms(masks, scores, iou_threshold=threshold, labels=labels)
    assert result.support == reference_union_nms(masks, scores, threshold, labels)
    every_mask = {(g, j) for g in range(len(masks)) for j in range(masks[g].shape[0]) if bool(masks[g][j].any())}
    assert {pair for group in result.support for pair in group} == every_mask
    for i, group in enumerate(result.support):
        (lg, lj), members = group[0], group[1:]
        union = masks[lg][lj].clone()
        for g, j in members:
            assert not bool((masks[g][j] & ~result.masks[i]).any()), "a suppressed mask is not covered"
            assert iou(masks[lg][lj], masks[g][j]) > threshold, "a mask below the threshold was merged"
            assert int(labels[g][j]) == int(labels[lg][lj])
            union |= masks[g][j]
        assert torch.equal(result.masks[i], union)
        assert float(result.scores[i]) == pytest.approx(float(scores[lg][lj]))
        assert int(result.labels[i]) == int(labels[lg][lj])
    leaders = [group[0] for group in result.support]
    for a in range(len(leaders)):
        for b in range(a):
            same_class = int(labels[leaders[a][0]][leaders[a][1]]) == int(labels[leaders[b][0]][leaders[b][1]])
            if same_class:
                assert iou(masks[leaders[a][0]][leaders[a][1]], masks[leaders[b][0]][leaders[b][1]]) <= threshold


def rect(h, w, y0, x0, y1, x1):
    mask = torch.zeros((h, w), dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_vote_keeps_the_majority_pixels():
    h, w = 10, 20
    a, b, c = rect(h, w, 0, 0, 6, 10), rect(h, w, 0, 1, 6, 11), rect(h, w, 0, 2, 6, 12)
    masks = [a[None], b[None], c[None]]
    scores = [torch.tensor([0.9]), torch.tensor([0.8]), torch.tensor([0.7])]
    union = union_nms(masks, scores, iou_threshold=0.5)
    assert len(union) == 1 and torch.equal(union.masks[0], a | b | c)
    majority = union_nms(masks, scores, iou_threshold=0.5, vote=0.5)
    assert torch.equal(majority.masks[0], rect(h, w, 0, 1, 6, 11))  # covered by at least 2 of 3
    assert majority.support_counts.tolist() == [3]


def test_pooled_tensor_input_and_score_threshold():
    h, w = 10, 10
    masks = torch.stack([rect(h, w, 0, 0, 5, 5), rect(h, w, 0, 0, 5, 6), rect(h, w, 6, 6, 9, 9)])
    result = union_nms(masks, torch.tensor([0.9, 0.8, 0.05]), score_threshold=0.1)
    assert len(result) == 1 and result.support == [[(0, 0), (0, 1)]]
    assert result.boxes.tolist() == [[0.0, 0.0, 6.0, 5.0]]


def test_bad_thresholds_are_refused():
    masks = [rect(4, 4, 0, 0, 2, 2)[None]]
    with pytest.raises(ValueError, match="iou_threshold"):
        union_nms(masks, [torch.tensor([0.5])], iou_threshold=1.0)
    with pytest.raises(ValueError, match="vote"):
        union_nms(masks, [torch.tensor([0.5])], vote=-0.1)
    with pytest.raises(ValueError, match="boolean"):
        union_nms([masks[0].float()], [torch.tensor([0.5])])
