"""The paper's metrics on hand-computed cases, and mAP/AR against pycocotools' COCOeval."""
import math

import numpy as np
import pytest
import torch

from latent_maskrcnn.evaluation.coco_map import coco_evaluation, encode_masks
from latent_maskrcnn.evaluation.double_pick import GripperSimulation, double_pick_rate, pickable_area, simulate_picks
from latent_maskrcnn.evaluation.metrics import (
    DatasetMetrics,
    average_precision,
    average_recall,
    evaluate_image,
    iop_fraction,
    mask_map,
    match_detections,
    max_recall_at_high_precision,
    mr_at_hp,
    overlap_matrices,
    roc_auc,
    score_roc_auc,
    summarize,
)


def rect(h, w, y0, x0, y1, x1):
    mask = torch.zeros((h, w), dtype=torch.bool)
    mask[y0:y1, x0:x1] = True
    return mask


def pred(masks, scores, labels=None):
    masks = torch.stack(masks) if masks else torch.zeros((0, 20, 20), dtype=torch.bool)
    n = masks.shape[0]
    return {"masks": masks, "scores": torch.tensor(scores, dtype=torch.float32), "labels": torch.ones(n, dtype=torch.int64) if labels is None else torch.tensor(labels)}


def truth(masks, labels=None):
    masks = torch.stack(masks)
    return {"masks": masks, "labels": torch.ones(masks.shape[0], dtype=torch.int64) if labels is None else torch.tensor(labels)}


def test_overlap_matrices_by_hand():
    h, w = 10, 10
    p = torch.stack([rect(h, w, 0, 0, 2, 5), rect(h, w, 0, 0, 4, 10)])     # areas 10, 40
    g = torch.stack([rect(h, w, 0, 0, 2, 10), rect(h, w, 5, 5, 10, 10)])   # areas 20, 25
    o = overlap_matrices(p, g)
    assert o["intersection"].tolist() == [[10, 0], [20, 0]]
    assert o["iou"].tolist() == [[0.5, 0.0], [0.5, 0.0]]
    assert o["iop"].tolist() == [[1.0, 0.0], [0.5, 0.0]]
    assert o["iog"].tolist() == [[0.5, 0.0], [1.0, 0.0]]


def test_matching_is_greedy_by_score_and_takes_the_best_free_truth():
    overlap = np.array([[0.6, 0.9], [0.0, 0.95], [0.7, 0.7]])
    matched = match_detections(overlap, [0.5, 0.8])
    # t = 0.5: d0 takes g1 (0.9), d1 finds g1 taken -> unmatched, d2 takes g0
    assert matched[0].tolist() == [True, False, True]
    # t = 0.8: d0 takes g1, d1 nothing, d2 nothing >= 0.8
    assert matched[1].tolist() == [True, False, False]
    assert match_detections(np.zeros((2, 0)), [0.5]).tolist() == [[False, False]]


def test_mr_at_hp_by_hand():
    h, w = 20, 20
    g1, g2 = rect(h, w, 0, 0, 10, 10), rect(h, w, 10, 10, 20, 20)
    inside1, inside2 = rect(h, w, 1, 1, 9, 9), rect(h, w, 11, 11, 19, 19)
    spanning = rect(h, w, 5, 5, 15, 15)            # IoP 0.25 with each ground truth
    gt = truth([g1, g2])
    # TP, FP, TP: recall 0.5 at precision 1, then precision drops to 2/3 < 0.75
    late = evaluate_image(pred([inside1, spanning, inside2], [0.9, 0.8, 0.7]), gt)
    assert mr_at_hp(late) == pytest.approx(0.5)
    # TP, TP, FP: recall 1.0 at precision 1
    early = evaluate_image(pred([inside1, inside2, spanning], [0.9, 0.8, 0.7]), gt)
    assert mr_at_hp(early) == pytest.approx(1.0)
    # a prediction with IoP 0.8 counts only for IoP thresholds 0.75 and 0.8
    partly = rect(h, w, 0, 0, 10, 10) | rect(h, w, 10, 0, 12, 10) | rect(h, w, 12, 0, 13, 5)  # 125 px, 100 inside g1
    table = max_recall_at_high_precision(evaluate_image(pred([partly], [0.9]), truth([g1])))["table"]
    assert [row[0] for row in table] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert mr_at_hp(evaluate_image(pred([partly], [0.9]), truth([g1]))) == pytest.approx(0.4)


def test_data_set_pools_matches_instead_of_averaging_images():
    h, w = 20, 20
    g = rect(h, w, 0, 0, 10, 10)
    image1 = evaluate_image(pred([rect(h, w, 12, 12, 18, 18), rect(h, w, 1, 1, 9, 9)], [0.9, 0.5]), truth([g]), image_id=1)
    image2 = evaluate_image(pred([rect(h, w, 2, 2, 8, 8)], [0.7]), truth([g]), image_id=2)
    assert mr_at_hp(image1) == 0.0 and mr_at_hp(image2) == 1.0
    # pooled by score: FP (0.9), TP (0.7), TP (0.5): precision never reaches 0.75 again
    assert mr_at_hp([image1, image2]) == 0.0


def test_average_recall_with_iog_by_hand():
    h, w = 20, 20
    g1, g2 = rect(h, w, 0, 0, 10, 10), rect(h, w, 10, 0, 20, 10)
    big = rect(h, w, 0, 0, 10, 20)                   # covers g1 entirely (IoG 1)
    half = rect(h, w, 10, 0, 15, 10)                 # covers half of g2 (IoG 0.5)
    e = evaluate_image(pred([big, half], [0.9, 0.8]), truth([g1, g2]))
    assert average_recall(e, "iog") == pytest.approx((1.0 + 9 * 0.5) / 10)


def test_roc_auc_and_iop_fraction_by_hand():
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), np.array([True, False, True, False])) == pytest.approx(0.75)
    assert roc_auc(np.array([0.5, 0.5]), np.array([True, False])) == pytest.approx(0.5)
    assert math.isnan(roc_auc(np.array([0.5]), np.array([True])))
    h, w = 20, 20
    g = rect(h, w, 0, 0, 10, 10)
    e = evaluate_image(pred([rect(h, w, 0, 0, 10, 10), rect(h, w, 0, 0, 20, 20)], [0.9, 0.2]), truth([g]))
    assert iop_fraction(e) == pytest.approx(0.5)
    assert score_roc_auc(e) == pytest.approx(1.0)  # the good mask has the higher score


def random_case(seed, images=3, h=24, w=32):
    generator = torch.Generator().manual_seed(seed)
    preds, gts = [], []
    for _ in range(images):
        g_masks, g_labels, p_masks, p_scores, p_labels = [], [], [], [], []
        for _ in range(int(torch.randint(0, 5, (1,), generator=generator))):
            y0, x0 = int(torch.randint(0, h - 4, (1,), generator=generator)), int(torch.randint(0, w - 4, (1,), generator=generator))
            y1 = y0 + int(torch.randint(3, h - y0 + 1, (1,), generator=generator))
            x1 = x0 + int(torch.randint(3, w - x0 + 1, (1,), generator=generator))
            label = int(torch.randint(1, 3, (1,), generator=generator))
            g_masks.append(rect(h, w, y0, x0, y1, x1))
            g_labels.append(label)
            for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):  # noisy copies
                dy, dx = torch.randint(-2, 3, (2,), generator=generator).tolist()
                p_masks.append(rect(h, w, max(0, y0 + dy), max(0, x0 + dx), max(1, y1 + dy), max(1, x1 + dx)))
                p_labels.append(label if float(torch.rand(1, generator=generator)) > 0.2 else 3 - label)
                p_scores.append(round(float(torch.rand(1, generator=generator)), 2))   # ties happen
        for _ in range(int(torch.randint(0, 3, (1,), generator=generator))):          # pure false positives
            y0, x0 = int(torch.randint(0, h - 2, (1,), generator=generator)), int(torch.randint(0, w - 2, (1,), generator=generator))
            p_masks.append(rect(h, w, y0, x0, y0 + 2, x0 + 2))
            p_labels.append(int(torch.randint(1, 3, (1,), generator=generator)))
            p_scores.append(round(float(torch.rand(1, generator=generator)), 2))
        preds.append({
            "masks": torch.stack(p_masks) if p_masks else torch.zeros((0, h, w), dtype=torch.bool),
            "scores": torch.tensor(p_scores, dtype=torch.float32),
            "labels": torch.tensor(p_labels, dtype=torch.int64),
        })
        gts.append({
            "masks": torch.stack(g_masks) if g_masks else torch.zeros((0, h, w), dtype=torch.bool),
            "labels": torch.tensor(g_labels, dtype=torch.int64),
        })
    return preds, gts


@pytest.mark.parametrize("seed", range(8))
def test_map_and_ar_equal_pycocotools(seed):
    preds, gts = random_case(seed)
    evaluations = [evaluate_image(p, g, image_id=i + 1, gripper=None) for i, (p, g) in enumerate(zip(preds, gts))]
    if not any(e.truth_labels.size for e in evaluations):
        pytest.skip("no ground truth drawn")
    # pycocotools on its own, from the masks
    images, annotations, detections = [], [], []
    for i, (p, g) in enumerate(zip(preds, gts), start=1):
        images.append((i, 24, 32))
        annotations += [{"image_id": i, "category_id": int(c), "segmentation": r} for c, r in zip(g["labels"], encode_masks(g["masks"]))]
        detections += [
            {"image_id": i, "category_id": int(c), "segmentation": r, "score": float(s)}
            for c, r, s in zip(p["labels"], encode_masks(p["masks"]), p["scores"])
        ]
    coco = coco_evaluation(images, annotations, detections)
    assert average_precision(evaluations, "iou") == pytest.approx(coco.stats[0], abs=1e-12)
    assert average_recall(evaluations, "iou") == pytest.approx(coco.stats[8], abs=1e-12)
    assert mask_map(evaluations)["map"] == pytest.approx(coco.stats[0], abs=1e-12)


def test_map_of_perfect_and_empty_predictions():
    h, w = 20, 20
    gt = truth([rect(h, w, 0, 0, 10, 10), rect(h, w, 10, 10, 20, 20)])
    assert mask_map(evaluate_image(pred(list(gt["masks"]), [0.9, 0.8]), gt))["map"] == pytest.approx(1.0)
    assert mask_map(evaluate_image(pred([], []), gt))["map"] == 0.0


def test_double_pick_rate_is_zero_for_predictions_equal_to_ground_truth():
    h, w = 60, 80
    items = [rect(h, w, 0, 0, 30, 40), rect(h, w, 0, 40, 30, 80), rect(h, w, 30, 0, 60, 80)]  # touching
    simulation = GripperSimulation(radius=4, circles=500, seed=1)
    counts = simulate_picks(torch.stack(items), torch.stack(items), simulation)
    assert counts.picks > 100 and counts.double_picks == 0
    assert double_pick_rate(counts) == 0.0 and pickable_area(counts) == 1.0


def test_double_pick_rate_is_one_when_a_prediction_covers_two_touching_items_everywhere():
    h, w = 40, 60
    columns = torch.arange(w)
    stripes_a = rect(h, w, 5, 5, 35, 55) & ((columns // 2) % 2 == 0)[None, :]   # interleaved 2-px stripes
    stripes_b = rect(h, w, 5, 5, 35, 55) & ~stripes_a
    both = stripes_a | stripes_b
    counts = simulate_picks(both[None], torch.stack([stripes_a, stripes_b]), GripperSimulation(radius=3, circles=400, seed=2))
    assert counts.picks > 50
    assert double_pick_rate(counts) == 1.0
    assert pickable_area(counts) == 1.0


def test_double_pick_counts_circles_inside_exactly_one_prediction():
    h, w = 40, 40
    gt = torch.stack([rect(h, w, 0, 0, 40, 20), rect(h, w, 0, 20, 40, 40)])
    overlapping = torch.stack([rect(h, w, 0, 0, 40, 40), rect(h, w, 0, 0, 40, 40)])
    counts = simulate_picks(overlapping, gt, GripperSimulation(radius=2, circles=200, seed=0))
    assert counts.picks == 0  # every circle lies in two predictions at once
    half = simulate_picks(gt[:1], gt, GripperSimulation(radius=2, circles=200, seed=0))
    assert pickable_area(half) == pytest.approx(0.5) and half.double_picks == 0
    same_again = simulate_picks(gt[:1], gt, GripperSimulation(radius=2, circles=200, seed=0))
    assert same_again == half  # seeded


def test_dataset_metrics_summary_is_json_ready():
    preds, gts = random_case(3, images=2, h=40, w=48)
    metrics = DatasetMetrics(GripperSimulation(radius=2, circles=100))
    for p, g in zip(preds, gts):
        metrics.add(p, g)
    summary = metrics.summary()
    assert summary == summarize(metrics.images)
    for key in ("mr_at_hp", "ar_iog", "map", "map50", "roc_auc", "iop95_fraction", "double_pick_rate", "pickable_area"):
        assert key in summary
        assert summary[key] is None or (isinstance(summary[key], float) and math.isfinite(summary[key]))
    import json

    json.dumps(summary, allow_nan=False)


def test_bad_metric_input_is_refused():
    h, w = 10, 10
    gt = truth([rect(h, w, 0, 0, 5, 5)])
    with pytest.raises(ValueError, match="ground-truth masks are"):
        evaluate_image(pred([rect(h, w + 1, 0, 0, 5, 5)], [0.5]), gt)
    with pytest.raises(ValueError, match="bool"):
        evaluate_image({"masks": torch.zeros((1, h, w)), "scores": torch.ones(1), "labels": torch.ones(1)}, gt)
    with pytest.raises(ValueError, match="scores"):
        evaluate_image({"masks": torch.zeros((1, h, w), dtype=torch.bool), "scores": torch.ones(2), "labels": torch.ones(1)}, gt)
    with pytest.raises(ValueError, match="does not fit"):
        simulate_picks(gt["masks"], gt["masks"], GripperSimulation(radius=8))
    with pytest.raises(ValueError, match="radius"):
        GripperSimulation(radius=-1)
    with pytest.raises(ValueError, match="kind"):
        average_recall([], "iop")
