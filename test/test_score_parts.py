"""Scoring pieces that need no model: grasp vs. ground truth, matching arrays, report files."""
import json

import numpy as np

from latent_segmentation_ros.core.results import CameraResult, GraspCandidate, tight_boxes
from latent_segmentation_ros.replay.report import FrameRecord, ReportWriter, read_frames
from latent_segmentation_ros.replay.scoring import PredictionMatcher, grasp_against_truth


def grasp(centres, sealed):
    centres = np.asarray(centres, dtype=np.float32)
    return GraspCandidate(0, float(centres[:, 0].mean()), float(centres[:, 1].mean()), 0.0,
                          int(np.sum(sealed)), len(sealed), 1.0, centres, np.asarray(sealed, dtype=bool))


def test_grasp_on_one_item_seals_and_is_no_double_pick():
    truth = np.zeros((2, 40, 60), dtype=bool)
    truth[0, :, :30] = True
    truth[1, :, 30:] = True
    chosen = grasp([[10, 10], [20, 10], [28, 30]], [True, True, False])  # the third cup is off
    assert grasp_against_truth(chosen, 4.0, truth) == (2, 1, False)


def test_grasp_across_two_items_is_a_double_pick():
    truth = np.zeros((2, 40, 60), dtype=bool)
    truth[0, :, :30] = True
    truth[1, :, 30:] = True
    chosen = grasp([[10, 10], [29, 20], [45, 10]], [True, True, True])
    sealed, touched, double = grasp_against_truth(chosen, 4.0, truth)
    assert (sealed, touched, double) == (2, 2, True)  # the cup on the seam seals on neither


def test_grasp_without_active_cups_or_truth():
    truth = np.zeros((0, 10, 10), dtype=bool)
    assert grasp_against_truth(grasp([[5, 5]], [True]), 2.0, truth) == (0, 0, False)


def result(camera, count=1):
    masks = np.zeros((count, 8, 8), dtype=bool)
    masks[:, 2:5, 2:5] = True
    return CameraResult(camera, masks, np.ones(count, np.float32), np.ones(count, np.int64),
                        tight_boxes(masks), np.ones(count, np.int64), "confidence_mask", 0.9, 8)


def test_matcher_pairs_grasps_with_masks_in_any_order_and_releases_stale():
    matcher = PredictionMatcher(horizon_s=1.0)
    assert list(matcher.add_masks(0, 100, result("left"))) == []
    ready = list(matcher.add_grasps(10, "left", 100, [], 6.0))
    assert len(ready) == 1 and ready[0].grasps == [] and ready[0].cup_radius == 6.0
    # Grasps before masks (both logged at once by another recorder).
    assert list(matcher.add_grasps(20, "right", 105, [], 5.0)) == []
    ready = list(matcher.add_masks(21, 105, result("right")))
    assert [r.result.camera for r in ready] == ["right"] and ready[0].cup_radius == 5.0
    # Masks whose grasps never come are released after the horizon, or at the end.
    assert list(matcher.add_masks(100, 200, result("left"))) == []
    released = list(matcher.add_masks(2 * 10**9, 300, result("left")))
    assert [r.stamp_ns for r in released] == [200]
    assert [r.stamp_ns for r in matcher.flush()] == [300]


def test_report_writer_streams_rows_and_keeps_the_worst(tmp_path):
    writer = ReportWriter(tmp_path, worst_limit=2)
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    for index, rate in enumerate([0.0, 0.5, 0.1, 0.3]):
        record = FrameRecord(frame=index, camera="left", stamp_ns=index, num_predictions=1, latency_ms=10.0 + index,
                             has_ground_truth=True, num_ground_truth=1, picks=10,
                             double_picks=int(rate * 10), double_pick_rate=rate,
                             predicted_area=5, ground_truth_area=10, pickable_area=0.5)
        picture = {"rgb": rgb, "pred_masks": np.zeros((0, 8, 8), bool), "truth_masks": np.ones((1, 8, 8), bool)}
        writer.add(record, picture if writer.wants_picture(record) else None)
    report = writer.finish({"title": "t", "stopped": None})
    on_disk = json.loads((tmp_path / "report.json").read_text())
    assert [row["frame"] for row in on_disk["frames"]] == [0, 1, 2, 3]
    assert on_disk["aggregate"] == report["aggregate"]
    assert report["aggregate"]["double_pick_rate"] == 9 / 40
    assert report["aggregate"]["pickable_area"] == 0.5
    assert report["aggregate"]["latency_ms"]["max"] == 13.0
    assert [p.split("frame")[-1] for p in report["worst_frames"]] == ["00001.png", "00003.png"]
    assert all((tmp_path / p.split("/")[-1]).stat().st_size > 0 for p in report["worst_frames"])
    assert len(list(read_frames(tmp_path / "frames.jsonl"))) == 4
    assert "simulated double-pick rate | 22.50 %" in (tmp_path / "report.md").read_text()


def test_ground_truth_of_another_size_is_a_counted_frame_without_truth(caplog):
    # Found by fuzzing a damaged predictions bag: a mask array whose corrupted width decoded as 1
    # against 40-pixel-wide ground truth raised and ended `score` with a traceback.
    from latent_segmentation_ros.replay.scoring import Scorer, ScoringConfig

    scorer = Scorer(ScoringConfig(gripper_radius=1, circles=20))
    truth = np.zeros((1, 8, 9), dtype=bool)
    truth[0, 2:5, 2:5] = True
    with caplog.at_level("WARNING"):
        record = scorer.score(frame=0, stamp_ns=7, result=result("left"), truth_masks=truth)
    assert scorer.truth_size_mismatches == 1
    assert not record.has_ground_truth and record.double_pick_rate is None
    assert record.predicted_area == 9
    assert "ground truth is (8, 9)" in caplog.text
    matching = scorer.score(frame=1, stamp_ns=8, result=result("left"), truth_masks=truth[:, :, :8])
    assert matching.has_ground_truth and scorer.truth_size_mismatches == 1
