"""`latent-seg make-bag`: the bag read back with rosbags (topics, types, counts, stamps, truth)."""
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import Reader

from latent_segmentation_ros import cli
from latent_segmentation_ros.core.image_conversion import message_to_numpy
from latent_segmentation_ros.core.messages import get_typestore
from latent_segmentation_ros.replay.synthetic_bag import (
    BagTiming,
    label_image_to_masks,
    masks_to_label_image,
    render_synthetic_views,
    write_synthetic_bag,
)

TYPESTORE = get_typestore()
TOPICS = [
    "/overhead_left/image_raw",
    "/overhead_left/ground_truth",
    "/overhead_right/image_raw",
    "/overhead_right/ground_truth",
]


def read_all(path):
    out = {topic: [] for topic in TOPICS}
    with Reader(path) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        log_times = []
        for connection, log_time, raw in reader.messages():
            message = TYPESTORE.deserialize_cdr(raw, connection.msgtype)
            stamp = message.header.stamp.sec * 10**9 + message.header.stamp.nanosec
            out[connection.topic].append((stamp, log_time, message))
            log_times.append(log_time)
    return types, out, log_times


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_make_bag_round_trip(tmp_path, storage):
    bag = tmp_path / "bag"
    code = cli.main(["make-bag", "--out", str(bag), "--frames", "6", "--seed", "4", "--storage", storage,
                     "--height", "48", "--width", "64", "--drop-probability", "0"])
    assert code == 0
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == storage and metadata["message_count"] == 24
    for topic in metadata["topics_with_message_count"]:
        assert "reliability" in topic["topic_metadata"]["offered_qos_profiles"]

    types, messages, log_times = read_all(bag)
    assert types == {topic: "sensor_msgs/msg/Image" for topic in TOPICS}
    assert log_times == sorted(log_times)
    for camera in ("overhead_left", "overhead_right"):
        images = messages[f"/{camera}/image_raw"]
        truths = messages[f"/{camera}/ground_truth"]
        assert len(images) == len(truths) == 6
        for (stamp, log_time, image), (truth_stamp, _, truth) in zip(images, truths):
            assert truth_stamp == stamp and log_time > stamp
            assert image.header.frame_id == truth.header.frame_id == f"{camera}_optical_frame"
            assert (image.encoding, image.height, image.width, image.step) == ("rgb8", 48, 64, 192)
            assert (truth.encoding, truth.step) == ("mono16", 128)
    left = np.array([s for s, _, _ in messages["/overhead_left/image_raw"]])
    right = np.array([s for s, _, _ in messages["/overhead_right/image_raw"]])
    assert np.all(np.abs(right - left) <= 4.1e6)  # a few ms between the cameras
    assert np.allclose(np.diff(left), 125e6, atol=6e6)  # 8 Hz


def test_ground_truth_is_the_generator_scene(tmp_path):
    bag = write_synthetic_bag(tmp_path / "bag", 2, seed=9, height=48, width=64,
                              timing=BagTiming(drop_probability=0.0)).path
    _, messages, _ = read_all(bag)
    views = render_synthetic_views(np.random.default_rng([9, 1, 1]), 48, 64, 2)
    for index, camera in enumerate(("overhead_left", "overhead_right")):
        image = message_to_numpy(messages[f"/{camera}/image_raw"][1][2])
        labels = message_to_numpy(messages[f"/{camera}/ground_truth"][1][2])
        rgb, masks = views[index]
        assert np.array_equal(image, rgb)
        expected = masks[masks.any(axis=(1, 2))]
        assert np.array_equal(label_image_to_masks(labels), expected)


def test_dropped_frames_are_missing_from_the_bag(tmp_path):
    summary = write_synthetic_bag(tmp_path / "bag", 20, seed=2, height=32, width=32, storage="sqlite3",
                                  timing=BagTiming(drop_probability=0.3))
    assert sum(summary.dropped.values()) > 0
    _, messages, _ = read_all(summary.path)
    for camera, count in summary.image_counts.items():
        assert count == 20 - summary.dropped[camera]
        assert len(messages[f"/{camera}/image_raw"]) == len(messages[f"/{camera}/ground_truth"]) == count


def test_label_image_round_trip():
    masks = np.zeros((3, 5, 6), dtype=bool)
    masks[0, :2, :3] = True
    masks[2, 3:, 4:] = True  # mask 1 is empty (fully occluded)
    labels = masks_to_label_image(masks)
    assert labels.dtype == np.uint16 and labels[0, 0] == 1 and labels[4, 5] == 3
    assert np.array_equal(label_image_to_masks(labels), masks[[0, 2]])


def test_bad_arguments_are_clear_errors(tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:  # argparse refuses it, as every --storage
        cli.main(["make-bag", "--out", str(tmp_path / "a"), "--frames", "2", "--storage", "zip"])
    assert refused.value.code == 2
    assert "invalid choice: 'zip' (choose from 'mcap', 'sqlite3')" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert cli.main(["make-bag", "--out", str(tmp_path / "taken"), "--frames", "2"]) == 2
    assert "exists already" in capsys.readouterr().err
    assert cli.main(["make-bag", "--out", str(tmp_path / "b"), "--frames", "0"]) == 2
    assert "at least 1 frame" in capsys.readouterr().err
