"""Approximate-time pairing: hand-made stamp sequences, invariants, and message_filters parity."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latent_segmentation_ros.core.camera_sync import ApproximateTimePairer, SyncPolicy

MS = 1_000_000


def feed(pairer, events):
    """events: (stream, stamp_ms); returns emitted pairs as tuples of (stream, stamp_ms) labels."""
    out = []
    for stream, stamp_ms in events:
        result = pairer.add(stream, int(stamp_ms * MS), (stream, stamp_ms))
        if result is not None:
            out.append(tuple(item[1] for item in result))
    return out


def test_equal_and_jittered_stamps_pair_in_order():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=5))
    events = [(0, 0), (1, 0), (0, 125), (1, 128), (1, 247), (0, 250)]
    assert feed(pairer, events) == [(0, 0), (125, 128), (250, 247)]
    assert pairer.pending() == [0, 0]


def test_delta_equal_to_slop_is_not_paired():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.01, queue_size=5))
    assert feed(pairer, [(0, 100), (1, 110)]) == []
    assert feed(pairer, [(1, 109.999)]) == [(100, 109.999)]


def test_nearest_candidate_wins():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.05, queue_size=5))
    # Two right frames queued, the left frame arrives last and takes the nearer one (103).
    assert feed(pairer, [(1, 60), (1, 103), (0, 100)]) == [(100, 103)]
    assert pairer.pending() == [0, 1]


def test_dropped_frame_leaves_partner_queued_and_later_frames_pair():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=3))
    # Right frame at 125 ms was dropped.
    events = [(0, 0), (1, 1), (0, 125), (0, 250), (1, 251)]
    assert feed(pairer, events) == [(0, 1), (250, 251)]
    summary = pairer.summary()
    assert summary["pending_at_end"] == [1, 0]
    assert summary["paired"] == [2, 2]


def test_late_message_pairs_with_older_queued_partner():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=5))
    # Left 0 and 125 arrive before right 0: message_filters keeps older ones queued.
    assert feed(pairer, [(0, 0), (0, 125), (1, 2)]) == [(0, 2)]
    assert feed(pairer, [(1, 126)]) == [(125, 126)]


def test_queue_size_evicts_oldest_and_counts_it():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=2))
    assert feed(pairer, [(0, 0), (0, 100), (0, 200), (1, 1)]) == []
    assert pairer.stats.evicted == [1, 0]
    assert feed(pairer, [(1, 101)]) == [(100, 101)]


def test_new_message_older_than_full_queue_is_evicted_at_once():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=1))
    assert feed(pairer, [(1, 50), (0, 100), (0, 49)]) == []
    assert pairer.stats.evicted == [1, 0]


def test_same_stamp_replaces_and_is_counted():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.02, queue_size=5))
    pairer.add(0, 5 * MS, "first")
    pairer.add(0, 5 * MS, "second")
    assert pairer.add(1, 5 * MS, "right") == ("second", "right")
    assert pairer.stats.replaced == [1, 0]


def test_three_streams():
    pairer = ApproximateTimePairer(SyncPolicy(slop=0.01, queue_size=5), num_streams=3)
    assert feed(pairer, [(0, 0), (1, 3), (2, 12)]) == []  # spread 12 ms > slop
    assert feed(pairer, [(2, 6)]) == [(0, 3, 6)]


@pytest.mark.parametrize(
    "slop, queue_size",
    [(0.0, 5), (-0.1, 5), (float("nan"), 5), (float("inf"), 5), (0.1, 0), (0.1, 2.5), ("0.1", 5)],
)
def test_invalid_policy_is_refused(slop, queue_size):
    with pytest.raises(ValueError, match="slop|queue_size"):
        SyncPolicy(slop=slop, queue_size=queue_size)


def test_out_of_range_stream_is_refused():
    with pytest.raises(ValueError, match="stream index"):
        ApproximateTimePairer(SyncPolicy()).add(2, 0, None)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 1), st.integers(0, 400)), max_size=40),
    st.integers(1, 6),
    st.sampled_from([0.003, 0.01, 0.05]),
)
def test_invariants_on_random_streams(events, queue_size, slop):
    policy = SyncPolicy(slop=slop, queue_size=queue_size)
    pairer = ApproximateTimePairer(policy)
    seen = set()
    for index, (stream, stamp_ms) in enumerate(events):
        result = pairer.add(stream, stamp_ms * MS, (stream, stamp_ms * MS, index))
        if result is None:
            continue
        assert [item[0] for item in result] == [0, 1]
        stamps = [item[1] for item in result]
        assert max(stamps) - min(stamps) < policy.slop_ns
        for item in result:
            assert item not in seen
            seen.add(item)
    stats = pairer.stats
    for stream in (0, 1):
        assert stats.offered[stream] == (
            stats.paired[stream] + stats.evicted[stream] + stats.replaced[stream] + pairer.pending()[stream]
        )


def test_matches_message_filters_on_random_streams():
    pytest.importorskip("rclpy")
    message_filters = pytest.importorskip("message_filters")
    from builtin_interfaces.msg import Time
    from std_msgs.msg import Header

    class Stamped:
        def __init__(self, stamp_ns, label):
            self.header = Header(stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9))
            self.label = label

    rng = random.Random(3)
    for trial in range(20):
        policy = SyncPolicy(slop=rng.choice([0.005, 0.02, 0.05]), queue_size=rng.randint(1, 6))
        inputs = [message_filters.SimpleFilter(), message_filters.SimpleFilter()]
        sync = message_filters.ApproximateTimeSynchronizer(inputs, policy.queue_size, policy.slop)
        reference = []
        sync.registerCallback(lambda a, b: reference.append((a.label, b.label)))
        pairer = ApproximateTimePairer(policy)
        ours = []
        for index in range(60):
            stream = rng.randint(0, 1)
            stamp_ns = 10**9 + (index // 2) * 125 * MS + rng.randint(-8, 8) * MS
            message = Stamped(stamp_ns, index)
            inputs[stream].signalMessage(message)
            result = pairer.add(stream, stamp_ns, message)
            if result is not None:
                ours.append((result[0].label, result[1].label))
        assert ours == reference, f"trial {trial}"
