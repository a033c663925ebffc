"""The newest-pair hand-off (drops counted), node counters and the diagnostics summary."""
import threading

from latent_segmentation_ros.node_support import (
    DROP_BUSY,
    DROP_ERROR,
    DROP_IMAGE,
    LatestPairSlot,
    NodeStats,
    diagnostic_summary,
)


def test_only_the_newest_pair_is_kept_and_older_ones_are_counted():
    slot = LatestPairSlot()
    assert slot.put(("a1", "b1")) is False
    assert slot.put(("a2", "b2")) is True
    assert slot.put(("a3", "b3")) is True
    work = slot.take(timeout=0)
    assert (work.kind, work.messages) == ("pair", ("a3", "b3"))
    assert (slot.received, slot.dropped) == (3, 2)
    assert slot.take(timeout=0.01) is None


def test_a_new_pair_supersedes_a_refresh_request():
    slot = LatestPairSlot()
    slot.request_refresh()
    assert slot.take(timeout=0).kind == "refresh"
    slot.request_refresh()
    slot.put(("a", "b"))
    assert slot.take(timeout=0).kind == "pair"
    assert slot.take(timeout=0) is None  # the refresh was served by the new pair


def test_take_wakes_up_on_put_and_on_close():
    slot = LatestPairSlot()
    got = []
    taker = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    taker.start()
    slot.put(("x", "y"))
    taker.join(5)
    assert got[0].messages == ("x", "y")
    closer = threading.Thread(target=lambda: got.append(slot.take(timeout=5)))
    closer.start()
    slot.close()
    closer.join(5)
    assert got[1] is None and slot.closed


def test_stats_rate_latency_and_drops():
    now = [100.0]
    stats = NodeStats(window_s=10.0, clock=lambda: now[0])
    for latency in (100.0, 200.0, 300.0):
        stats.frame_done(latency)
        now[0] += 0.5
    stats.drop(DROP_IMAGE, "left: unsupported image encoding 'yuv422'")
    stats.drop(DROP_BUSY)
    snapshot = stats.snapshot()
    assert snapshot["processed"] == 3
    assert abs(snapshot["rate_hz"] - 2.0) < 1e-9
    assert snapshot["latency_ms_mean"] == 200.0 and snapshot["latency_ms_max"] == 300.0
    assert snapshot["dropped"] == {DROP_IMAGE: 1, DROP_BUSY: 1} and snapshot["dropped_total"] == 2
    assert "yuv422" in snapshot["last_error"]
    now[0] += 60.0
    assert stats.snapshot()["rate_hz"] == 0.0  # nothing in the window any more


def test_diagnostic_levels():
    stats = NodeStats(clock=lambda: 0.0)
    stats.frame_done(10.0)
    first = stats.snapshot()
    level, message, values = diagnostic_summary(first, None)
    assert level == "ok"
    assert ("frames processed", "1") in values
    stats.drop(DROP_BUSY)
    level, _, _ = diagnostic_summary(stats.snapshot(), first)
    assert level == "ok"  # superseded pairs are normal under load
    second = stats.snapshot()
    stats.drop(DROP_IMAGE, "bad")
    level, message, values = diagnostic_summary(stats.snapshot(), second)
    assert level == "warn" and "1 bad_image" in message
    assert ("dropped bad_image", "1") in values
    third = stats.snapshot()
    stats.drop(DROP_ERROR, "RuntimeError: CUDA out of memory")
    level, message, _ = diagnostic_summary(stats.snapshot(), third)
    assert level == "error" and "CUDA out of memory" in message
