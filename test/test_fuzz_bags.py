"""Fuzzing the bag readers of replay, score and sweep-p: randomly truncated and byte-corrupted
MCAP and sqlite3 bags either are refused with a BagError naming the bag, or are read to where
their data stops (``stopped`` says where); a message whose bytes do not decode is a counted skip.
Never another exception, a hang or memory beyond a few times the bag's size."""
from __future__ import annotations

import functools
import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from fuzzing import MIB, bounded, fuzz
from latent_segmentation_ros import cli
from latent_segmentation_ros.core.camera_sync import SyncPolicy
from latent_segmentation_ros.core.messages import get_typestore
from latent_segmentation_ros.replay.bag_io import BagError, BagReader
from latent_segmentation_ros.replay.ground_truth import GroundTruthStream, ground_truth_topics
from latent_segmentation_ros.replay.runner import PairStream
from latent_segmentation_ros.replay.scoring import ScoringConfig, score_bag
from latent_segmentation_ros.replay.synthetic_bag import BagTiming, image_topic, write_synthetic_bag
from tiny_models import save_tiny_checkpoint

STORAGES = ("mcap", "sqlite3")
FRAMES, HEIGHT, WIDTH = 4, 32, 40
TOPICS = (image_topic("overhead_left"), image_topic("overhead_right"))
TYPESTORE = get_typestore()
PIPELINE_ARGS = ["--samples", "2", "--p", "0.5", "--score-threshold", "0.0", "--no-progress", "--worst-frames", "0",
                 "--circles", "20"]
# Far below the node's default, so that an image size a damaged header claims is refused long
# before decoding it could cost much: memory then stays within a few frames.
MAX_PIXELS = 16 * HEIGHT * WIDTH


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("model"), seed=0)


@pytest.fixture(scope="module")
def clean_bags(tmp_path_factory):
    root = tmp_path_factory.mktemp("clean_bags")
    bags = {}
    for storage in STORAGES:
        bag = root / storage
        write_synthetic_bag(bag, FRAMES, seed=1, height=HEIGHT, width=WIDTH, storage=storage,
                            timing=BagTiming(drop_probability=0.0))
        bags[storage] = bag
    return bags


@pytest.fixture(scope="module")
def predictions(clean_bags, checkpoint, tmp_path_factory):
    """The replay output bag (mask and grasp arrays) of the clean mcap bag."""
    out = tmp_path_factory.mktemp("predictions") / "replay"
    args = ["replay", "--bag", str(clean_bags["mcap"]), "--out", str(out), "--checkpoint", str(checkpoint)]
    assert cli.main(args + PIPELINE_ARGS) == 0
    return out / "output"


@st.composite
def damage(draw):
    """How to damage a storage file: cut it, overwrite random bytes or a run of bytes, or
    overwrite a few bytes at the start of one stored message (its header, encoding, sizes and
    array lengths: what the decoders trust). Positions are fractions, so one draw fits any file."""
    kind = draw(st.sampled_from(["truncate", "bytes", "run", "field"]))
    where = st.floats(0.0, 1.0, exclude_max=True)
    if kind == "truncate":
        return kind, draw(where)
    if kind == "bytes":
        return kind, draw(st.lists(st.tuples(where, st.integers(0, 255)), min_size=1, max_size=24))
    if kind == "run":
        return kind, (draw(where), draw(st.integers(1, 4096)), draw(st.integers(0, 255)))
    return kind, (draw(where), draw(st.integers(0, 120)), draw(st.binary(min_size=1, max_size=4)))


@functools.lru_cache(maxsize=None)
def stored_messages(bag: Path) -> tuple[tuple[int, str], ...]:
    """(where its bytes start in the storage file, topic) of each message (stored uncompressed)."""
    content = storage_file(bag).read_bytes()
    with BagReader(bag) as reader:
        return tuple((content.index(bytes(raw.data)), raw.topic) for raw in reader.messages())


def storage_file(bag: Path) -> Path:
    return next(p for p in bag.iterdir() if p.suffix in (".mcap", ".db3"))


def damaged_copy(bag: Path, where: Path, how) -> Path:
    """A copy of ``bag`` in ``where`` with its storage file damaged as ``how`` says."""
    copy = where / bag.name
    shutil.copytree(bag, copy)
    data_file = storage_file(copy)
    content = bytearray(data_file.read_bytes())
    kind, details = how
    if kind == "truncate":
        del content[int(details * len(content)):]
    elif kind == "bytes":
        for fraction, value in details:
            content[int(fraction * len(content))] = value
    elif kind == "run":
        fraction, length, value = details
        start = int(fraction * len(content))
        content[start : start + length] = bytes([value]) * len(content[start : start + length])
    else:
        fraction, offset, replacement = details
        stored = stored_messages(bag)
        start = stored[int(fraction * len(stored))][0] + offset
        content[start : start + len(replacement)] = replacement
    data_file.write_bytes(bytes(content))
    return copy


def read_like_replay(bag: Path) -> dict:
    """Everything replay and sweep-p read from a bag: the synchronised pairs, decoded, and the
    ground truth of each frame. Returns the counts; BagError when the bag cannot be used."""
    with BagReader(bag) as reader:
        stream = PairStream(reader, TYPESTORE, TOPICS, SyncPolicy(), max_image_pixels=MAX_PIXELS)
        truth_topics = ground_truth_topics(reader, dict(zip(stream.cameras, TOPICS)))
        with GroundTruthStream(bag, truth_topics, TYPESTORE, max_image_pixels=MAX_PIXELS) as truth:
            looked_up = 0
            for pair, _log_time in stream:
                for frame in pair:
                    # a damaged size field can leave a smaller valid image: whatever is decoded
                    # is an RGB image within the limit
                    height, width, channels = frame.rgb.shape
                    assert frame.rgb.dtype == np.uint8 and channels == 3 and height * width <= MAX_PIXELS
                    masks = truth.lookup(frame.camera, frame.stamp_ns)
                    assert masks is None or (masks.ndim == 3 and masks.shape[1] * masks.shape[2] <= MAX_PIXELS)
                    looked_up += 1
            return {"pairs": stream.pairs, "stopped": stream.stopped, "counts": stream.counts(),
                    "truth_error": truth.error, "looked_up": looked_up}


def bag_bytes(bag: Path) -> int:
    return sum(p.stat().st_size for p in bag.iterdir())


@pytest.mark.parametrize("storage", STORAGES)
def test_the_clean_bags_read_completely(clean_bags, storage):
    counts = read_like_replay(clean_bags[storage])
    assert counts["pairs"] == FRAMES and counts["stopped"] is None and counts["looked_up"] == 2 * FRAMES


@pytest.mark.parametrize("storage", STORAGES)
@fuzz(100)
@given(how=damage())
def test_damaged_bags_are_refused_or_read_up_to_the_damage(clean_bags, storage, how):
    bag = clean_bags[storage]
    with tempfile.TemporaryDirectory() as where:
        copy = damaged_copy(bag, Path(where), how)
        with bounded(seconds=30, max_bytes=64 * MIB, measure="resident"):
            try:
                counts = read_like_replay(copy)
            except BagError as error:
                event("refused at opening")
                assert str(copy) in str(error) or copy.name in str(error), error
                return
    event("stopped part-way" if counts["stopped"] else "read to the end")
    if counts["counts"]["skipped_frames"]:
        event("frames skipped: " + ", ".join(sorted({key.split(":")[1] for key in counts["counts"]["skipped_frames"]})))
    assert counts["pairs"] <= FRAMES
    if counts["stopped"] is not None:
        assert "truncated" in counts["stopped"]["error"] or "corrupt" in counts["stopped"]["error"]


@fuzz(40)
@given(how=damage())
def test_damaged_prediction_bags_are_scored_up_to_the_damage(predictions, clean_bags, how):
    with tempfile.TemporaryDirectory() as where:
        copy = damaged_copy(predictions, Path(where), how)
        out = Path(where) / "score"
        with bounded(seconds=60, max_bytes=64 * MIB, measure="resident"):
            try:
                report = score_bag(copy, clean_bags["mcap"], out, ScoringConfig(circles=20), progress=False,
                                   worst_frames=0, max_image_pixels=MAX_PIXELS)
            except BagError as error:
                event("refused at opening")
                assert copy.name in str(error), error
                return
        event("stopped part-way" if report["stopped"] else "read to the end")
        for key in ("undecodable_messages", "too_large_messages"):
            if report["counts"][key]:
                event(f"{key} counted")
        assert json.loads((out / "report.json").read_text())["counts"] == report["counts"]
    counts = report["counts"]
    arrays = sum(counts["arrays_per_camera"].values())
    assert arrays + counts["undecodable_messages"] + counts["too_large_messages"] <= 2 * FRAMES + FRAMES * 2


@pytest.mark.parametrize("storage", STORAGES)
@fuzz(5)
@given(how=damage())
def test_replay_of_a_damaged_bag_ends_with_a_report_and_one_error_line(clean_bags, checkpoint, storage, how, capsys):
    with tempfile.TemporaryDirectory() as where:
        copy = damaged_copy(clean_bags[storage], Path(where), how)
        out = Path(where) / "out"
        capsys.readouterr()
        with bounded(seconds=120, max_bytes=256 * MIB, measure="resident"):
            code = cli.main(["replay", "--bag", str(copy), "--out", str(out), "--checkpoint", str(checkpoint),
                             "--max-image-pixels", str(MAX_PIXELS)] + PIPELINE_ARGS)
        err = capsys.readouterr().err
        assert "Traceback" not in err
        errors = [line for line in err.splitlines() if line.startswith("replay: ")]
        assert code in (0, 2, 3), err
        event(f"exit code {code}")
        if code == 2:  # refused at once: the bag cannot be opened
            assert len(errors) == 1 and copy.name in errors[0]
            return
        report = json.loads((out / "report.json").read_text())
        if code == 3:
            assert len(errors) == 1 and "stopped early at frame" in errors[0]
            assert report["stopped"]["frame"] == report["counts"]["pairs"] < FRAMES + 1
        else:
            assert errors == [] and report["stopped"] is None
        assert len(report["frames"]) == 2 * report["counts"]["pairs"]


def first_message_of(bag: Path, topic: str) -> float:
    """The ``field`` damage position (a fraction of the stored messages) of ``topic``'s first."""
    stored = stored_messages(bag)
    return next(index for index, (_, name) in enumerate(stored) if name == topic) / len(stored)


# Found by fuzzing: rosbags raises SerdeError (an Exception, not a ValueError) for bytes that are
# not CDR; it escaped the readers of replay and sweep-p (a camera image or a ground-truth
# image) and of score (a mask array) and ended the command with a traceback.
NOT_CDR = b"\xff\xff\xff\x7f"  # an encapsulation header no CDR message has


@pytest.mark.parametrize("storage", STORAGES)
def test_regression_an_image_that_is_not_cdr_is_skipped_and_counted(clean_bags, storage, tmp_path):
    bag = clean_bags[storage]
    copy = damaged_copy(bag, tmp_path, ("field", (first_message_of(bag, TOPICS[0]), 0, NOT_CDR)))
    counts = read_like_replay(copy)
    assert counts["counts"]["skipped_frames"] == {"overhead_left:undecodable": 1}
    assert counts["pairs"] == FRAMES - 1 and counts["stopped"] is None


@pytest.mark.parametrize("storage", STORAGES)
def test_regression_ground_truth_that_is_not_cdr_is_skipped_and_counted(clean_bags, storage, tmp_path):
    bag = clean_bags[storage]
    copy = damaged_copy(bag, tmp_path, ("field", (first_message_of(bag, "/overhead_left/ground_truth"), 0, NOT_CDR)))
    with BagReader(copy) as reader:
        truth_topics = ground_truth_topics(reader, {"overhead_left": TOPICS[0]})
    with GroundTruthStream(copy, truth_topics, TYPESTORE) as truth:
        with BagReader(copy) as reader:
            stamps = [TYPESTORE.deserialize_cdr(raw.data, raw.msgtype).header.stamp for raw in reader.messages([TOPICS[0]])]
        found = [truth.lookup("overhead_left", stamp.sec * 10**9 + stamp.nanosec) is not None for stamp in stamps]
    assert found == [False] + [True] * (FRAMES - 1) and truth.unreadable == 1


def test_regression_a_mask_array_that_is_not_cdr_is_skipped_and_counted(predictions, clean_bags, tmp_path):
    copy = damaged_copy(predictions, tmp_path, ("field", (first_message_of(predictions, "/overhead_left/confidence_masks"),
                                                          0, NOT_CDR)))
    report = score_bag(copy, clean_bags["mcap"], tmp_path / "score", ScoringConfig(circles=20), progress=False,
                       worst_frames=0)
    assert report["counts"]["undecodable_messages"] == 1
    assert report["counts"]["arrays_per_camera"] == {"overhead_left": FRAMES - 1, "overhead_right": FRAMES}


def test_regression_a_sqlite3_row_without_log_time_stops_the_reading(clean_bags, tmp_path):
    # Found by fuzzing: one zero byte in the sqlite3 file read back a message whose log time is
    # NULL (None); the ground-truth reader compared it with a stamp and raised TypeError.
    copy = damaged_copy(clean_bags["sqlite3"], tmp_path, ("run", (0.30300266539851606, 1, 0)))
    counts = read_like_replay(copy)
    errors = [counts["truth_error"], (counts["stopped"] or {}).get("error")]
    assert any(error and "corrupt" in error for error in errors), counts
    assert counts["pairs"] <= FRAMES
