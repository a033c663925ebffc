"""Plumbing the nodes share, without ROS: the newest-pair hand-off between the synchroniser
callback and the worker thread, drop/health counters, and the diagnostics summary."""
from __future__ import annotations

import os
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

def seconds_since_process_start() -> float | None:
    """Wall time since this process started (Linux /proc), for the "ready after" log line; None
    where that cannot be read."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat, open("/proc/uptime", encoding="ascii") as uptime:
            start_ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
            now = float(uptime.read().split()[0])
        return now - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# Why a frame was not processed; the keys of NodeStats.dropped.
DROP_BUSY = "superseded"  # a newer pair arrived while the worker was busy
DROP_STAMPS = "stamps_apart"  # the pair's stamps differ by more than the slop
DROP_IMAGE = "bad_image"  # unsupported encoding, short data, empty image
DROP_SIZE = "size_mismatch"  # the cameras' images differ in size
DROP_ERROR = "processing_error"  # anything else raised while processing (logged with the cause)
DROP_MESSAGE = "bad_message"  # an input message that cannot be read (grasp node)
DROP_TOO_LARGE = "too_large"  # declares a larger image than max_image_pixels (refused unread)


@dataclass
class Work:
    """One item for the worker: a new pair of messages, or a refresh of the last frame."""

    kind: str  # "pair" | "refresh"
    messages: tuple = ()


class LatestPairSlot:
    """Holds only the newest pair; an older unprocessed pair is replaced and counted as dropped.

    The synchroniser callback calls :meth:`put` (never blocks); the worker calls :meth:`take`.
    A refresh request (new p) is served only when no new pair is waiting, since a new pair is
    processed with the new settings anyway.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pair: tuple | None = None
        self._refresh = False
        self._closed = False
        self.dropped = 0
        self.received = 0

    def put(self, messages: tuple) -> bool:
        """Store the newest pair; True when it replaced one the worker had not taken."""
        with self._condition:
            replaced = self._pair is not None
            if replaced:
                self.dropped += 1
            self._pair = tuple(messages)
            self.received += 1
            self._condition.notify()
            return replaced

    def request_refresh(self) -> None:
        with self._condition:
            self._refresh = True
            self._condition.notify()

    def take(self, timeout: float | None = None) -> Work | None:
        """The next work item, or None after ``timeout`` seconds or once closed."""
        with self._condition:
            ready = self._condition.wait_for(
                lambda: self._closed or self._pair is not None or self._refresh, timeout
            )
            if not ready or (self._closed and self._pair is None and not self._refresh):
                return None
            if self._pair is not None:
                pair, self._pair, self._refresh = self._pair, None, False
                return Work("pair", pair)
            self._refresh = False
            return Work("refresh")

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


@dataclass
class NodeStats:
    """Counters for diagnostics; every drop has a reason key (see the DROP_* names).

    Rates and the "recent" drop counts cover the last ``window_s`` seconds, so /diagnostics
    reports what is happening now, not once per update.
    """

    window_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    processed: int = 0
    refreshed: int = 0
    received: int = 0
    dropped: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    last_error: str = ""
    _started_at: float | None = None
    _last_input_at: float | None = None
    _last_done_at: float | None = None
    _last_failure_at: float | None = None
    _done_at: deque = field(default_factory=deque)
    _drops_at: deque = field(default_factory=deque)
    _latencies_ms: deque = field(default_factory=lambda: deque(maxlen=100))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if self._started_at is None:
            self._started_at = self.clock()

    def _forget_old(self, now: float) -> None:
        while self._done_at and now - self._done_at[0] > self.window_s:
            self._done_at.popleft()
        while self._drops_at and now - self._drops_at[0][0] > self.window_s:
            self._drops_at.popleft()

    def input_arrived(self) -> None:
        """A unit of input (an image pair, a mask array) reached the node."""
        with self._lock:
            self.received += 1
            self._last_input_at = self.clock()

    def source_message(self, source: str) -> None:
        """One raw message from ``source`` (a camera topic), counted before any pairing."""
        with self._lock:
            self.sources[source] += 1

    def frame_done(self, latency_ms: float) -> None:
        """One input fully handled; ``latency_ms`` is measured by the caller."""
        with self._lock:
            now = self.clock()
            self.processed += 1
            self._last_done_at = now
            self._done_at.append(now)
            self._latencies_ms.append(float(latency_ms))
            self._forget_old(now)

    def refresh_done(self) -> None:
        with self._lock:
            self.refreshed += 1

    def drop(self, reason: str, detail: str = "", count: int = 1) -> None:
        with self._lock:
            now = self.clock()
            self.dropped[reason] += count
            self._drops_at.extend([(now, reason)] * count)
            if reason == DROP_ERROR:
                self._last_failure_at = now
            if detail:
                self.last_error = f"{reason}: {detail}"
            self._forget_old(now)

    def snapshot(self) -> dict[str, Any]:
        """Counts, rate (frames/s over the window), recent drops and latency statistics."""
        with self._lock:
            now = self.clock()
            self._forget_old(now)
            recent = list(self._done_at)
            if len(recent) >= 2 and recent[-1] > recent[0]:
                rate = (len(recent) - 1) / (recent[-1] - recent[0])
            else:
                rate = 0.0
            latencies = list(self._latencies_ms)
            failing = self._last_failure_at is not None and (
                self._last_done_at is None or self._last_done_at < self._last_failure_at
            ) and now - self._last_failure_at <= self.window_s
            return {
                "processed": self.processed,
                "refreshed": self.refreshed,
                "received": self.received,
                "sources": dict(self.sources),
                "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()),
                "recent_drops": dict(Counter(reason for _, reason in self._drops_at)),
                "failing": failing,
                "window_s": self.window_s,
                "uptime_s": now - self._started_at,
                "seconds_since_input": None if self._last_input_at is None else now - self._last_input_at,
                "rate_hz": rate,
                "latency_ms_last": latencies[-1] if latencies else None,
                "latency_ms_mean": sum(latencies) / len(latencies) if latencies else None,
                "latency_ms_max": max(latencies) if latencies else None,
                "last_error": self.last_error,
            }


LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = "ok", "warn", "error"


def diagnostic_summary(
    current: dict[str, Any], input_timeout: float = 0.0, input_name: str = "input"
) -> tuple[str, str, list[tuple[str, str]]]:
    """(level "ok" | "warn" | "error", message, key/values) for one diagnostics update.

    diagnostic_updater's conventions: ERROR while processing fails (the last frames raised and
    none succeeded since); WARN while inputs are being dropped as bad (any drop in the last
    ``window_s`` other than pairs superseded by newer ones, which is normal under load and only
    counted), or when no ``input_name`` arrived for more than ``input_timeout`` seconds (since
    start when none ever did; 0 disables the check); OK otherwise. The message says why, all
    reasons joined when several hold.
    """
    reasons: list[tuple[str, str]] = []
    if current["failing"]:
        reasons.append((LEVEL_ERROR, f"processing fails: {current['last_error']}"))
    bad = {reason: count for reason, count in current["recent_drops"].items() if reason != DROP_BUSY}
    if bad and not (current["failing"] and set(bad) == {DROP_ERROR}):
        listing = ", ".join(f"{count} {reason}" for reason, count in sorted(bad.items()))
        reasons.append((LEVEL_WARN, f"dropping frames: {listing} in the last {current['window_s']:g} s"))
    idle = current["seconds_since_input"]
    if input_timeout > 0:
        if idle is None and current["uptime_s"] > input_timeout:
            reasons.append((LEVEL_WARN, f"no {input_name} received since start ({current['uptime_s']:.1f} s)"))
        elif idle is not None and idle > input_timeout:
            reasons.append((LEVEL_WARN, f"no {input_name} for {idle:.1f} s (input_timeout {input_timeout:g} s)"))
    if reasons:
        level = LEVEL_ERROR if any(level == LEVEL_ERROR for level, _ in reasons) else LEVEL_WARN
        message = "; ".join(text for _, text in reasons)
    else:
        level, message = LEVEL_OK, f"{current['rate_hz']:.2f} frames/s"
    values = [
        ("frames processed", str(current["processed"])),
        (f"{input_name}s received", str(current["received"])),
        ("re-publications (parameter changes)", str(current["refreshed"])),
        ("rate (frames/s)", f"{current['rate_hz']:.3f}"),
        ("seconds since last input", "never" if idle is None else f"{idle:.1f}"),
    ]
    for label, key in (("latency last (ms)", "latency_ms_last"), ("latency mean (ms)", "latency_ms_mean"),
                       ("latency max (ms)", "latency_ms_max")):
        if current[key] is not None:  # not reported before anything was measured
            values.append((label, f"{current[key]:.1f}"))
    values += [(f"messages from {source}", str(count)) for source, count in sorted(current["sources"].items())]
    values.append(("dropped total", str(current["dropped_total"])))
    values += [(f"dropped {reason}", str(count)) for reason, count in sorted(current["dropped"].items())]
    if current["last_error"]:
        values.append(("last error", current["last_error"]))
    return level, message, values
