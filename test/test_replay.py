"""`latent-seg replay` / `score` on tiny bags with a tiny untrained model saved to tmp_path."""
import json
import shutil

import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from latent_segmentation_ros import cli
from latent_segmentation_ros.core.messages import (
    CONFIDENCE_MASK_ARRAY,
    GRASP_CANDIDATE_ARRAY,
    confidence_mask_array_to_result,
    get_typestore,
)
from latent_segmentation_ros.replay.bag_io import BagReader, BagWriter
from latent_segmentation_ros.replay.report import read_frames
from latent_segmentation_ros.replay.synthetic_bag import BagTiming, write_synthetic_bag
from tiny_models import save_tiny_checkpoint

TYPESTORE = get_typestore()
# The K-sample path at the binarisation it was written for (the node starts with the prior mean at 0.8).
PIPELINE_ARGS = ["--mode", "confidence_mask", "--mask-threshold", "0.5", "--samples", "2", "--p", "0.5",
                 "--score-threshold", "0.0", "--no-progress"]
CAMERAS = ("overhead_left", "overhead_right")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    path = tmp_path_factory.mktemp("bags") / "tiny"
    write_synthetic_bag(path, 3, seed=5, height=64, width=80, timing=BagTiming(drop_probability=0.0))
    return path


@pytest.fixture(scope="module")
def replayed(tiny_bag, checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("replay") / "out"
    code = cli.main(["replay", "--bag", str(tiny_bag), "--out", str(out), "--checkpoint", str(checkpoint)] + PIPELINE_ARGS)
    assert code == 0
    return out


def read_messages(bag, topics=None):
    with BagReader(bag) as reader:
        for raw in reader.messages(topics):
            yield raw, TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)


def stamp(header):
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def test_output_bag_has_one_array_per_camera_per_pair(replayed, tiny_bag):
    source = {camera: [stamp(m.header) for _, m in read_messages(tiny_bag, [f"/{camera}/image_raw"])] for camera in CAMERAS}
    output = replayed / "output"
    with Reader(output) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        definitions = {c.msgtype: c.msgdef.data for c in reader.connections}
    assert types == {
        "/overhead_left/confidence_masks": CONFIDENCE_MASK_ARRAY,
        "/overhead_right/confidence_masks": CONFIDENCE_MASK_ARRAY,
        "/grasp_candidates": GRASP_CANDIDATE_ARRAY,
    }
    assert "ConfidenceMask[] masks" in definitions[CONFIDENCE_MASK_ARRAY]
    for camera in CAMERAS:
        arrays = [m for _, m in read_messages(output, [f"/{camera}/confidence_masks"])]
        assert len(arrays) == 3  # three synchronised pairs
        assert [stamp(a.header) for a in arrays] == source[camera]
        assert all(a.camera == camera and a.header.frame_id == f"{camera}_optical_frame" for a in arrays)
        assert all(a.num_samples == 2 and abs(a.p - 0.5) < 1e-6 for a in arrays)
        decoded = [confidence_mask_array_to_result(a) for a in arrays]
        assert all(r.image_size == (64, 80) for r in decoded)
    grasps = [m for _, m in read_messages(output, ["/grasp_candidates"])]
    assert sorted(g.camera for g in grasps) == sorted(CAMERAS * 3)


def test_report_metrics_equal_the_metrics_functions(replayed, tiny_bag):
    from latent_maskrcnn.evaluation import metrics

    from latent_segmentation_ros.core.image_conversion import message_to_numpy
    from latent_segmentation_ros.replay.scoring import image_id_of, prediction_dict, truth_dict
    from latent_segmentation_ros.replay.synthetic_bag import label_image_to_masks

    truth = {}
    for raw, message in read_messages(tiny_bag, [f"/{c}/ground_truth" for c in CAMERAS]):
        truth[(raw.topic.split("/")[1], stamp(message.header))] = label_image_to_masks(message_to_numpy(message))
    rows = {(row["camera"], row["stamp_ns"]): row for row in read_frames(replayed / "frames.jsonl")}
    assert len(rows) == 6
    gripper = metrics.GripperSimulation()  # the scorer's default gripper
    evaluations, picks = [], []
    for raw, message in read_messages(replayed / "output", [f"/{c}/confidence_masks" for c in CAMERAS]):
        key = (message.camera, stamp(message.header))
        prediction = prediction_dict(confidence_mask_array_to_result(message))
        evaluation = metrics.evaluate_image(prediction, truth_dict(truth[key]), image_id_of(key[1]), gripper)
        row = rows[key]
        assert row["num_predictions"] == len(prediction["scores"])
        assert row["num_ground_truth"] == len(truth[key])
        assert row["mr_at_hp"] == pytest.approx(metrics.mr_at_hp(evaluation))
        assert row["ar_iog"] == pytest.approx(metrics.average_recall(evaluation, "iog"))
        expected_map = metrics.average_precision(evaluation, "iou")
        assert row["map"] == (None if np.isnan(expected_map) else pytest.approx(expected_map))
        coco_map = metrics.mask_map(evaluation)["map"]  # pycocotools itself on the same masks
        assert row["map"] == (None if np.isnan(coco_map) else pytest.approx(coco_map, abs=1e-6))
        assert (row["picks"], row["double_picks"]) == (evaluation.picks.picks, evaluation.picks.double_picks)
        assert row["pickable_area"] == pytest.approx(metrics.pickable_area(evaluation.picks))
        evaluations.append(evaluation)
        picks.append(evaluation.picks)
    report = json.loads((replayed / "report.json").read_text())
    aggregate = report["aggregate"]
    assert aggregate["images_with_ground_truth"] == 6
    assert aggregate["mr_at_hp"] == pytest.approx(metrics.mr_at_hp(evaluations))
    assert aggregate["ar_iog"] == pytest.approx(metrics.average_recall(evaluations, "iog"))
    assert aggregate["map"] == pytest.approx(metrics.average_precision(evaluations, "iou"))
    expected_rate = metrics.double_pick_rate(picks)
    assert aggregate["double_pick_rate"] == (None if np.isnan(expected_rate) else pytest.approx(expected_rate))
    assert aggregate["pickable_area"] == pytest.approx(metrics.pickable_area(picks))
    assert report["counts"]["pairs"] == 3 and report["stopped"] is None
    assert (replayed / "report.md").read_text().startswith("# Replay report")
    assert len(report["worst_frames"]) == 4


def test_score_of_the_output_bag_reproduces_the_replay_report(replayed, tiny_bag, tmp_path):
    assert cli.main(["score", "--predictions", str(replayed / "output"), "--ground-truth", str(tiny_bag),
                     "--out", str(tmp_path / "score")]) == 0
    replay_rows = list(read_frames(replayed / "frames.jsonl"))
    score_rows = list(read_frames(tmp_path / "score" / "frames.jsonl"))
    assert score_rows == replay_rows
    replay_report = json.loads((replayed / "report.json").read_text())
    score_report = json.loads((tmp_path / "score" / "report.json").read_text())
    assert replay_report["aggregate"].pop("throughput")["pairs"] == 3  # replay's own: it ran the pairs
    assert score_report["aggregate"] == replay_report["aggregate"]


def test_missing_bag_storage_and_topic_are_clear_errors(tiny_bag, checkpoint, tmp_path, capsys):
    base = ["replay", "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint)] + PIPELINE_ARGS
    assert cli.main(base + ["--bag", str(tmp_path / "nowhere")]) == 2
    assert "bag path does not exist" in capsys.readouterr().err
    odd = tmp_path / "odd"
    shutil.copytree(tiny_bag, odd)
    meta = odd / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: mcap", "storage_identifier: rosbag_v9"))
    assert cli.main(base + ["--bag", str(odd)]) == 2
    assert "unknown storage 'rosbag_v9'" in capsys.readouterr().err
    assert cli.main(base + ["--bag", str(tiny_bag), "--topics", "/overhead_left/image_raw", "/top/image_raw"]) == 2
    err = capsys.readouterr().err
    assert "no topic /top/image_raw" in err and "/overhead_right/image_raw [sensor_msgs/msg/Image, 3 msgs]" in err


def test_missing_checkpoint_is_a_clear_error(tiny_bag, tmp_path, capsys):
    code = cli.main(["replay", "--bag", str(tiny_bag), "--out", str(tmp_path / "o"),
                     "--checkpoint", str(tmp_path / "absent.safetensors")])
    assert code == 2
    assert "absent.safetensors" in capsys.readouterr().err


def test_truncated_bag_keeps_the_frames_evaluated_before(checkpoint, tmp_path, capsys):
    # Large frames so that the MCAP file holds several chunks; the recording is cut at 60 %.
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, 8, seed=3, height=160, width=200, timing=BagTiming(drop_probability=0.0))
    data = next(bag.glob("*.mcap"))
    with data.open("r+b") as handle:
        handle.truncate(int(data.stat().st_size * 0.6))
    out = tmp_path / "out"
    code = cli.main(["replay", "--bag", str(bag), "--out", str(out), "--checkpoint", str(checkpoint)] + PIPELINE_ARGS)
    assert code == 3
    assert "stopped early at frame" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["stopped"]["frame"] < 8 and "truncated" in report["stopped"]["error"]
    assert len(report["frames"]) == 2 * report["stopped"]["frame"]


def corrupt_sqlite_page_of(bag, topic, index):
    """Break the database page holding part of the index-th message of topic (its overflow
    chain pointer), so reading stops there with a storage error."""
    data = [raw.data for raw in BagReader(bag).messages([topic])][index]
    database = next(bag.glob("*.db3"))
    content = database.read_bytes()
    page_size = int.from_bytes(content[16:18], "big")
    snippet = bytes(data[len(data) // 2 : len(data) // 2 + 64])
    offset = content.index(snippet)
    page_start = offset - offset % page_size
    with database.open("r+b") as handle:
        handle.seek(page_start)
        handle.write(b"\xff\xff\xff\x7f")


def test_corrupt_bag_keeps_the_frames_evaluated_before(checkpoint, tmp_path, capsys):
    bag = tmp_path / "bag"
    write_synthetic_bag(bag, 8, seed=1, height=64, width=80, storage="sqlite3", timing=BagTiming(drop_probability=0.0))
    corrupt_sqlite_page_of(bag, "/overhead_left/image_raw", 5)
    out = tmp_path / "out"
    code = cli.main(["replay", "--bag", str(bag), "--out", str(out), "--checkpoint", str(checkpoint)] + PIPELINE_ARGS)
    assert code == 3
    assert "stopped early at frame" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    stopped = report["stopped"]
    assert 0 < stopped["frame"] < 8 and "truncated or corrupt" in stopped["error"]
    assert len(report["frames"]) == 2 * stopped["frame"]
    assert "Stopped early at frame" in (out / "report.md").read_text()
    with BagReader(out / "output") as reader:  # the output bag is closed properly
        assert reader.topics["/overhead_left/confidence_masks"].message_count == stopped["frame"]


def test_unsupported_encodings_are_counted_and_skipped(tiny_bag, checkpoint, tmp_path):
    bag = tmp_path / "yuv"
    with BagWriter(bag, TYPESTORE, storage="sqlite3") as writer:
        for topic, summary in BagReader(tiny_bag).topics.items():
            writer.add_topic(topic, summary.msgtype)
        first_left = True
        for raw, message in read_messages(tiny_bag):
            if raw.topic == "/overhead_left/image_raw" and first_left:
                message.encoding = "yuv422"
                first_left = False
            writer.write(raw.topic, raw.log_time_ns, message)
    out = tmp_path / "out"
    assert cli.main(["replay", "--bag", str(bag), "--out", str(out), "--checkpoint", str(checkpoint)] + PIPELINE_ARGS) == 0
    report = json.loads((out / "report.json").read_text())
    # As in the node, the pair is formed first and dropped with its unusable frame.
    assert report["counts"]["skipped_frames"] == {"overhead_left:unsupported_encoding:yuv422": 1}
    assert report["counts"]["dropped_pairs"] == 1
    assert report["counts"]["pairs"] == 2
    assert report["counts"]["pairing"]["pending_at_end"] == [0, 0]


def test_chosen_grasps_are_scored_against_the_ground_truth(tiny_bag, checkpoint, tmp_path):
    from latent_segmentation_ros.core.image_conversion import message_to_numpy
    from latent_segmentation_ros.core.messages import grasp_candidate_array_to_list
    from latent_segmentation_ros.replay.runner import ReplayOptions, build_pair_processor, replay_bag
    from latent_segmentation_ros.replay.scoring import grasp_against_truth
    from latent_segmentation_ros.replay.synthetic_bag import label_image_to_masks

    # A one-cup gripper small enough for the speckled masks of an untrained model on 64x80 images.
    setup = build_pair_processor(checkpoint, mode="confidence_mask", mask_threshold=0.5, samples=2, p=0.5, score_threshold=0.0, min_mask_area=1,
                                 grasp_overrides={"cup_rows": 1, "cup_cols": 1, "cup_spacing": 3.0, "cup_radius": 1.0})
    out = tmp_path / "out"
    summary = replay_bag(ReplayOptions(bag=tiny_bag, out_dir=out, progress=False),
                         setup.process_pair, setup.cup_radius, setup.header_info)
    truth = {(raw.topic.split("/")[1], stamp(m.header)): label_image_to_masks(message_to_numpy(m))
             for raw, m in read_messages(tiny_bag, [f"/{c}/ground_truth" for c in CAMERAS])}
    rows = {(row["camera"], row["stamp_ns"]): row for row in read_frames(out / "frames.jsonl")}
    chosen = 0
    for _, message in read_messages(out / "output", ["/grasp_candidates"]):
        key = (message.camera, stamp(message.header))
        candidates = grasp_candidate_array_to_list(message)
        row = rows[key]
        assert row["grasp_found"] == bool(candidates)
        if candidates:
            chosen += 1
            assert row["grasp_sealed_cups"] == candidates[0].sealed_cups
            sealed, touched, double = grasp_against_truth(candidates[0], 1.0, truth[key])
            assert (row["grasp_sealed_cups_on_truth"], row["grasp_items_touched"], row["grasp_double_pick"]) == (
                sealed, touched, double)
    assert chosen > 0
    aggregate = summary.report["aggregate"]
    assert aggregate["grasps"] == chosen
    assert aggregate["grasp_double_picks"] == sum(bool(r["grasp_double_pick"]) for r in rows.values())


@pytest.fixture(scope="module")
def bag_without_truth(tiny_bag, tmp_path_factory):
    """tiny_bag's camera images only, as a real recording has them (the ground-truth topics dropped)."""
    path = tmp_path_factory.mktemp("bags") / "no_truth"
    with BagReader(tiny_bag) as reader, BagWriter(path, TYPESTORE) as writer:
        images = [t for t in reader.topics if not t.endswith("/ground_truth")]
        for topic in images:
            writer.add_topic(topic, reader.topics[topic].msgtype)
        for raw, message in read_messages(tiny_bag, images):
            writer.write(raw.topic, raw.log_time_ns, message)
    return path


def test_a_bag_without_ground_truth_reports_unknown_with_pictures_and_throughput(
        bag_without_truth, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["replay", "--bag", str(bag_without_truth), "--out", str(out), "--checkpoint", str(checkpoint)]
                    + PIPELINE_ARGS) == 0
    printed = capsys.readouterr().out
    assert "| images with ground truth | 0 |" in printed
    assert "| grasp double picks | unknown (no ground truth) |" in printed
    assert "0 (n/a)" not in printed
    report = json.loads((out / "report.json").read_text())
    aggregate = report["aggregate"]
    assert aggregate["images"] == 6 and aggregate["images_with_ground_truth"] == 0
    assert aggregate["picks"] is None and aggregate["grasp_double_picks"] is None and aggregate["mr_at_hp"] is None
    throughput = aggregate["throughput"]
    assert throughput["pairs"] == 3 and throughput["pairs_per_s"] == pytest.approx(3 / throughput["seconds"])
    assert "throughput [pairs/s]" in printed
    rows = list(read_frames(out / "frames.jsonl"))
    assert len(rows) == 6
    with BagReader(out / "output") as reader:
        arrays = {}
        for raw in reader.messages([f"/{camera}/confidence_masks" for camera in CAMERAS]):
            message = TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
            result = confidence_mask_array_to_result(message)
            arrays[(result.camera, stamp(message.header))] = int(result.masks.any(axis=0).sum()) if len(result.masks) else 0
    for row in rows:
        assert row["picks"] is None and row["ground_truth_area"] is None and row["double_pick_rate"] is None
        assert row["predicted_area"] == arrays[(row["camera"], row["stamp_ns"])]  # the masks' union, not 0
    assert any(row["predicted_area"] > 0 for row in rows)
    pictures = report["frame_pictures"]
    assert pictures and report["worst_frames"] == []
    assert all((out / p.split("/")[-1]).stat().st_size > 0 for p in pictures)
    assert "frame (no ground truth):" in printed
    assert "Frames without ground truth" in (out / "report.md").read_text()


def test_max_pairs_counts_every_pair_scored(tiny_bag, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    assert cli.main(["replay", "--bag", str(tiny_bag), "--out", str(out), "--checkpoint", str(checkpoint),
                     "--max-pairs", "2"] + PIPELINE_ARGS) == 0
    rows = list(read_frames(out / "frames.jsonl"))
    assert len({row["frame"] for row in rows}) == 2
    report = json.loads((out / "report.json").read_text())
    assert report["counts"]["pairs"] == 2 and report["aggregate"]["throughput"]["pairs"] == 2
    assert "pairs: 2 " in capsys.readouterr().out
