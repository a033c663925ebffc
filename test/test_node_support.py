"""The newest-pair hand-off (drops counted), node counters and the diagnostics summary."""
import threading

from latent_segmentation_ros.core.node_support import (
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
        stats.input_arrived()
        stats.frame_done(latency)
        now[0] += 0.5
    stats.drop(DROP_IMAGE, "left: unsupported image encoding 'yuv422'")
    stats.drop(DROP_BUSY)
    snapshot = stats.snapshot()
    assert snapshot["processed"] == 3 and snapshot["received"] == 3
    assert abs(snapshot["rate_hz"] - 2.0) < 1e-9
    assert snapshot["latency_ms_mean"] == 200.0 and snapshot["latency_ms_max"] == 300.0
    assert snapshot["dropped"] == {DROP_IMAGE: 1, DROP_BUSY: 1} and snapshot["dropped_total"] == 2
    assert snapshot["recent_drops"] == {DROP_IMAGE: 1, DROP_BUSY: 1}
    assert "yuv422" in snapshot["last_error"]
    assert snapshot["seconds_since_input"] == 0.5
    now[0] += 60.0
    later = stats.snapshot()
    assert later["rate_hz"] == 0.0 and later["recent_drops"] == {}  # nothing in the window any more
    assert later["dropped_total"] == 2  # totals stay


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_ok_while_frames_flow_and_superseded_pairs_are_only_counted():
    clock = Clock()
    stats = NodeStats(clock=clock)
    for _ in range(5):
        stats.input_arrived()
        stats.frame_done(10.0)
        stats.drop(DROP_BUSY)
        clock.now += 0.5
    level, message, values = diagnostic_summary(stats.snapshot(), input_timeout=5.0, input_name="image pair")
    assert level == "ok" and "frames/s" in message
    assert ("frames processed", "5") in values and ("dropped superseded", "5") in values
    assert ("image pairs received", "5") in values


def test_warn_while_bad_input_is_dropped_then_ok_once_it_stops():
    # 8 of 10 pairs dropped as bad input, as seen live: WARN at every update while it goes on
    clock = Clock()
    stats = NodeStats(window_s=10.0, clock=clock)
    for index in range(10):
        stats.input_arrived()
        if index % 5 == 0:
            stats.frame_done(50.0)
        else:
            stats.drop(DROP_IMAGE, "overhead_left: unsupported image encoding '32FC1'")
        clock.now += 1.0
        level, message, values = diagnostic_summary(stats.snapshot(), input_timeout=5.0)
        if index >= 1:
            assert level == "warn", (index, message)
            assert "bad_image" in message and "in the last 10 s" in message
    assert ("dropped bad_image", "8") in values
    assert ("last error", "bad_image: overhead_left: unsupported image encoding '32FC1'") in values
    for _ in range(11):  # good pairs again for longer than the window
        stats.input_arrived()
        stats.frame_done(50.0)
        clock.now += 1.0
    level, message, _ = diagnostic_summary(stats.snapshot(), input_timeout=5.0)
    assert level == "ok", message


def test_error_while_processing_fails_and_warn_after_it_recovers():
    clock = Clock()
    stats = NodeStats(clock=clock)
    stats.input_arrived()
    stats.frame_done(10.0)
    clock.now += 1.0
    stats.input_arrived()
    stats.drop(DROP_ERROR, "RuntimeError: CUDA out of memory")
    level, message, _ = diagnostic_summary(stats.snapshot())
    assert level == "error" and message == "processing fails: processing_error: RuntimeError: CUDA out of memory"
    clock.now += 1.0
    stats.input_arrived()
    stats.frame_done(10.0)  # the next frame works: no longer failing, but errors are recent
    level, message, _ = diagnostic_summary(stats.snapshot())
    assert level == "warn" and "1 processing_error" in message
    clock.now += 11.0
    assert diagnostic_summary(stats.snapshot())[0] == "ok"


def test_warn_when_no_input_within_the_timeout():
    clock = Clock()
    stats = NodeStats(clock=clock)
    clock.now += 4.0
    assert diagnostic_summary(stats.snapshot(), input_timeout=5.0)[0] == "ok"  # still starting
    clock.now += 2.0
    level, message, values = diagnostic_summary(stats.snapshot(), input_timeout=5.0, input_name="image pair")
    assert level == "warn" and message == "no image pair received since start (6.0 s)"
    assert ("seconds since last input", "never") in values
    assert not any(key.startswith("latency") for key, _ in values)  # nothing measured yet
    stats.source_message("/overhead_left/image_raw")
    stats.input_arrived()
    stats.frame_done(20.0)
    assert diagnostic_summary(stats.snapshot(), input_timeout=5.0)[0] == "ok"
    clock.now += 7.5
    level, message, values = diagnostic_summary(stats.snapshot(), input_timeout=5.0, input_name="image pair")
    assert level == "warn" and message == "no image pair for 7.5 s (input_timeout 5 s)"
    assert ("messages from /overhead_left/image_raw", "1") in values
    assert diagnostic_summary(stats.snapshot(), input_timeout=0.0)[0] == "ok"  # 0 disables the check


def test_several_reasons_are_all_given_at_the_highest_level():
    clock = Clock()
    stats = NodeStats(clock=clock)
    stats.drop(DROP_IMAGE, "right: truncated data")
    stats.drop(DROP_ERROR, "ValueError: boom")
    clock.now += 6.0
    level, message, _ = diagnostic_summary(stats.snapshot(), input_timeout=5.0, input_name="image pair")
    assert level == "error"
    assert "processing fails" in message and "1 bad_image" in message and "no image pair received" in message


def test_seconds_since_process_start_is_plausible():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", "import time; time.sleep(0.5); from latent_segmentation_ros.core.node_support import "
         "seconds_since_process_start as s; print(s())"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert 0.4 <= float(out) < 30.0
