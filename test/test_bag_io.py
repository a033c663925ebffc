"""bag_io: round trips through both storages and a clear error for each bad bag."""
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.typesys import Stores, get_typestore

from latent_segmentation_ros.replay.bag_io import (
    BagError,
    BagReadError,
    BagReader,
    BagWriter,
    check_storage,
    list_topics,
    make_qos,
)

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
IMAGE = "sensor_msgs/msg/Image"


def image_message(index: int, size: int = 48):
    Image = TYPESTORE.types[IMAGE]
    Header = TYPESTORE.types["std_msgs/msg/Header"]
    Time = TYPESTORE.types["builtin_interfaces/msg/Time"]
    data = np.full(size * size * 3, index % 256, dtype=np.uint8)
    return Image(
        header=Header(stamp=Time(sec=index, nanosec=7), frame_id="cam"),
        height=size, width=size, encoding="rgb8", is_bigendian=0, step=size * 3, data=data,
    )


def write_bag(path: Path, storage: str, count: int = 30, size: int = 48) -> Path:
    with BagWriter(path, TYPESTORE, storage=storage) as writer:
        writer.add_topic("/a/image_raw", IMAGE)
        writer.add_topic("/b/image_raw", IMAGE, make_qos(reliable=False, depth=5))
        writer.set_custom_data("seed", "3")
        for index in range(count):
            writer.write("/a/image_raw", index * 10**9, image_message(index, size))
            writer.write("/b/image_raw", index * 10**9 + 5, image_message(index, size))
    return path


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_round_trip_streams_in_log_time_order(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", storage)
    metadata = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert metadata["storage_identifier"] == storage
    assert metadata["custom_data"] == {"seed": "3"}
    qos_text = {t["topic_metadata"]["name"]: t["topic_metadata"]["offered_qos_profiles"]
                for t in metadata["topics_with_message_count"]}
    assert "reliability: 1" in qos_text["/a/image_raw"] and "reliability: 2" in qos_text["/b/image_raw"]

    topics = list_topics(bag)
    assert {name: (t.msgtype, t.message_count) for name, t in topics.items()} == {
        "/a/image_raw": (IMAGE, 30), "/b/image_raw": (IMAGE, 30)}
    with BagReader(bag) as reader:
        assert reader.storage == storage and reader.message_count == 60
        times = []
        for raw in reader.messages(["/b/image_raw"]):
            message = TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
            assert raw.topic == "/b/image_raw"
            assert message.header.stamp.sec * 10**9 + 5 == raw.log_time_ns
            assert int(message.data[0]) == message.header.stamp.sec
            times.append(raw.log_time_ns)
        assert times == sorted(times) and len(times) == 30
        assert len(list(reader.messages())) == 60


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_single_storage_file_is_readable(tmp_path, storage):
    bag = write_bag(tmp_path / "bag", storage, count=3)
    with BagReader(storage_file(bag)) as reader:
        assert sorted(reader.topics) == ["/a/image_raw", "/b/image_raw"]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match="does not exist"):
        BagReader(tmp_path / "nope")


def test_unknown_storage_is_a_clear_error(tmp_path):
    with pytest.raises(BagError, match="unknown storage 'rosbag_v3'"):
        check_storage("rosbag_v3")
    bag = write_bag(tmp_path / "bag", "mcap", count=2)
    meta = bag / "metadata.yaml"
    meta.write_text(meta.read_text().replace("storage_identifier: mcap", "storage_identifier: parquet"))
    with pytest.raises(BagError, match="unknown storage 'parquet'.*mcap, sqlite3"):
        BagReader(bag)
    odd = tmp_path / "recording.bag"
    odd.write_bytes(b"#ROSBAG V2.0\n")
    with pytest.raises(BagError, match="unknown storage suffix '.bag'"):
        BagReader(odd)


def test_directory_without_metadata_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BagError, match="metadata.yaml is missing"):
        BagReader(tmp_path / "empty")


def test_missing_topic_lists_the_topics_present(tmp_path):
    bag = write_bag(tmp_path / "bag", "sqlite3", count=2)
    with BagReader(bag) as reader:
        with pytest.raises(BagError, match=r"no topic /c/image_raw; topics in the bag: /a/image_raw \[sensor_msgs/msg/Image, 2 msgs\], /b/image_raw"):
            reader.require_topics(["/a/image_raw", "/c/image_raw"])
        with pytest.raises(BagError, match="are not std_msgs/msg/String"):
            reader.require_topics(["/a/image_raw"], msgtype="std_msgs/msg/String")


def test_truncated_sqlite3_bag_is_refused_clearly(tmp_path):
    bag = write_bag(tmp_path / "bag", "sqlite3")
    data = storage_file(bag)
    with data.open("r+b") as handle:
        handle.truncate(data.stat().st_size // 2)
    with pytest.raises(BagError, match="cannot be opened, it is truncated or corrupt"):
        BagReader(bag)


@pytest.mark.parametrize("single_file", [False, True])
def test_truncated_mcap_bag_yields_its_intact_chunks_then_stops(tmp_path, single_file):
    # 120 frames of 96x96 RGB per topic: several 1 MiB chunks, then cut the file at 60 %.
    bag = write_bag(tmp_path / "bag", "mcap", count=120, size=96)
    data = storage_file(bag)
    with data.open("r+b") as handle:
        handle.truncate(int(data.stat().st_size * 0.6))
    with BagReader(data if single_file else bag) as reader:
        assert reader.truncated
        assert sorted(reader.topics) == ["/a/image_raw", "/b/image_raw"]
        read = []
        with pytest.raises(BagReadError, match="truncated") as info:
            for raw in reader.messages(["/a/image_raw"]):
                message = TYPESTORE.deserialize_cdr(raw.data, raw.msgtype)
                read.append(message.header.stamp.sec)
    assert 0 < len(read) < 120 and read == list(range(len(read)))
    assert info.value.messages_read == len(read)
    assert info.value.last_log_time_ns == (len(read) - 1) * 10**9


def test_corruption_part_way_stops_with_the_count_read(tmp_path):
    bag = write_bag(tmp_path / "bag", "sqlite3", count=120, size=64)
    data = storage_file(bag)
    with data.open("r+b") as handle:
        handle.seek(int(data.stat().st_size * 0.6))
        handle.write(b"\xde\xad" * 2000)
    read = 0
    with BagReader(bag) as reader:
        with pytest.raises(BagReadError, match="truncated or corrupt: reading stopped after log time") as info:
            for _ in reader.messages():
                read += 1
    assert 0 < read < 240
    assert info.value.messages_read == read


def test_writer_refuses_existing_path_and_unknown_type(tmp_path):
    (tmp_path / "taken").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "taken", TYPESTORE)
    with BagWriter(tmp_path / "out", TYPESTORE) as writer:
        with pytest.raises(BagError, match="not registered"):
            writer.add_topic("/x", "my_pkg/msg/Unknown")
        with pytest.raises(BagError, match="was not added"):
            writer.write("/x", 0, image_message(0))


def test_writer_leaves_a_readable_bag_after_an_error(tmp_path):
    with pytest.raises(RuntimeError):
        with BagWriter(tmp_path / "out", TYPESTORE, storage="sqlite3") as writer:
            writer.add_topic("/a/image_raw", IMAGE)
            writer.write("/a/image_raw", 1, image_message(1))
            raise RuntimeError("processing failed")
    assert list_topics(tmp_path / "out")["/a/image_raw"].message_count == 1
