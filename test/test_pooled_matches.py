"""Pooled per-image matches: the data-set metrics of the list of evaluations, in a fixed number
of arrays whatever the number of images (what keeps a long replay's memory flat)."""
import gc

import numpy as np
import pytest
import torch

from latent_maskrcnn.evaluation import metrics
from latent_segmentation_ros.replay.pooled_matches import PooledMatches
from latent_segmentation_ros.replay.report import FrameRecord, ReportAccumulator


def random_evaluation(generator: torch.Generator, image_id: int, h: int = 16, w: int = 20) -> metrics.ImageEvaluation:
    def box_mask():
        y0 = int(torch.randint(0, h - 4, (1,), generator=generator))
        x0 = int(torch.randint(0, w - 4, (1,), generator=generator))
        mask = torch.zeros((h, w), dtype=torch.bool)
        mask[y0 : y0 + int(torch.randint(2, 5, (1,), generator=generator)), x0 : x0 + 4] = True
        return mask

    truths = [box_mask() for _ in range(int(torch.randint(0, 4, (1,), generator=generator)))]
    predictions = [box_mask() for _ in range(int(torch.randint(0, 5, (1,), generator=generator)))]
    prediction = {
        "masks": torch.stack(predictions) if predictions else torch.zeros((0, h, w), dtype=torch.bool),
        # Two decimals: equal scores across images, where the pooling order decides.
        "scores": torch.round(torch.rand(len(predictions), generator=generator) * 100) / 100,
        "labels": torch.randint(1, 3, (len(predictions),), generator=generator),
    }
    truth = {
        "masks": torch.stack(truths) if truths else torch.zeros((0, h, w), dtype=torch.bool),
        "labels": torch.randint(1, 3, (len(truths),), generator=generator),
    }
    return metrics.evaluate_image(prediction, truth, image_id, gripper=None, keep_rles=False)


@pytest.mark.parametrize("seed", range(4))
def test_pooled_metrics_equal_those_of_the_per_image_list(seed):
    generator = torch.Generator().manual_seed(seed)
    evaluations = [random_evaluation(generator, index) for index in range(40)]
    pooled = PooledMatches()
    for evaluation in evaluations:
        pooled.add(evaluation)
    together = pooled.evaluation()
    assert pooled.images == 40
    assert pooled.detections == sum(e.scores.size for e in evaluations)
    assert metrics.mr_at_hp(together) == metrics.mr_at_hp(evaluations)
    for kind in ("iog", "iou"):
        assert metrics.average_recall(together, kind) == metrics.average_recall(evaluations, kind)
        assert metrics.average_precision(together, kind) == metrics.average_precision(evaluations, kind)


def test_capacity_stays_below_twice_what_is_held():
    generator = torch.Generator().manual_seed(7)
    pooled = PooledMatches()
    for index in range(300):
        pooled.add(random_evaluation(generator, index))
    capacities = pooled.capacities()
    assert set(capacities) == {"scores", "labels", "truth_labels", "matched_iou", "matched_iop", "matched_iog"}
    for name in ("scores", "labels", "matched_iou", "matched_iop", "matched_iog"):
        assert capacities[name] <= max(256, 2 * pooled.detections)
    assert capacities["truth_labels"] <= max(256, 2 * len(pooled.evaluation().truth_labels))


def reachable_objects(root: object) -> int:
    """Objects other than numbers and strings (containers, arrays) reachable from ``root``."""
    seen, todo = set(), [root]
    while todo:
        item = todo.pop()
        if id(item) in seen or isinstance(item, (type, int, float, str)):
            continue
        seen.add(id(item))
        todo.extend(gc.get_referents(item))
    return len(seen)


def scored_record(generator: torch.Generator, frame: int) -> FrameRecord:
    evaluation = random_evaluation(generator, frame)
    return FrameRecord(
        frame=frame, camera="overhead_left", stamp_ns=frame, num_predictions=int(evaluation.scores.size),
        latency_ms=float(frame), has_ground_truth=True, num_ground_truth=int(evaluation.truth_labels.size),
        evaluation=evaluation,
    )


def test_report_accumulator_keeps_no_object_per_image():
    generator = torch.Generator().manual_seed(3)
    accumulator = ReportAccumulator()
    for frame in range(20):
        accumulator.add(scored_record(generator, frame))
    after_few = reachable_objects(accumulator)
    for frame in range(20, 400):
        accumulator.add(scored_record(generator, frame))
    # Counters, the last few latencies and the pooled arrays: as many objects as after 20 images.
    assert reachable_objects(accumulator) == after_few
    assert accumulator.matches.images == 400 and len(accumulator.latencies) == 400


def test_mismatched_evaluation_is_refused():
    generator = torch.Generator().manual_seed(1)
    evaluation = random_evaluation(generator, 0)
    while evaluation.scores.size == 0:
        evaluation = random_evaluation(generator, 0)
    evaluation.labels = evaluation.labels[:-1]
    with pytest.raises(ValueError, match="labels"):
        PooledMatches().add(evaluation)
