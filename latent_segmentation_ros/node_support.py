"""Plumbing the nodes share, without ROS: the newest-pair hand-off between the synchroniser
callback and the worker thread, drop/health counters, and the diagnostics summary."""
from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable

# Why a frame was not processed; the keys of NodeStats.dropped.
DROP_BUSY = "superseded"  # a newer pair arrived while the worker was busy
DROP_STAMPS = "stamps_apart"  # the pair's stamps differ by more than the slop
DROP_IMAGE = "bad_image"  # unsupported encoding, short data, empty image
DROP_SIZE = "size_mismatch"  # the cameras' images differ in size
DROP_ERROR = "processing_error"  # anything else raised while processing (logged with the cause)
DROP_MESSAGE = "bad_message"  # an input message that cannot be read (grasp node)


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
    """Counters for diagnostics; every drop has a reason key (see the DROP_* names)."""

    window_s: float = 10.0
    clock: Callable[[], float] = time.monotonic
    processed: int = 0
    refreshed: int = 0
    dropped: Counter = field(default_factory=Counter)
    last_error: str = ""
    _done_at: deque = field(default_factory=deque)
    _latencies_ms: deque = field(default_factory=lambda: deque(maxlen=100))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def frame_done(self, latency_ms: float) -> None:
        with self._lock:
            now = self.clock()
            self.processed += 1
            self._done_at.append(now)
            self._latencies_ms.append(float(latency_ms))
            while self._done_at and now - self._done_at[0] > self.window_s:
                self._done_at.popleft()

    def refresh_done(self) -> None:
        with self._lock:
            self.refreshed += 1

    def drop(self, reason: str, detail: str = "", count: int = 1) -> None:
        with self._lock:
            self.dropped[reason] += count
            if detail:
                self.last_error = f"{reason}: {detail}"

    def snapshot(self) -> dict[str, Any]:
        """Counts, rate (frames/s over the window) and latency statistics, as plain values."""
        with self._lock:
            now = self.clock()
            recent = [t for t in self._done_at if now - t <= self.window_s]
            if len(recent) >= 2 and recent[-1] > recent[0]:
                rate = (len(recent) - 1) / (recent[-1] - recent[0])
            else:
                rate = 0.0
            latencies = list(self._latencies_ms)
            return {
                "processed": self.processed,
                "refreshed": self.refreshed,
                "dropped": dict(self.dropped),
                "dropped_total": sum(self.dropped.values()),
                "rate_hz": rate,
                "latency_ms_last": latencies[-1] if latencies else 0.0,
                "latency_ms_mean": sum(latencies) / len(latencies) if latencies else 0.0,
                "latency_ms_max": max(latencies) if latencies else 0.0,
                "last_error": self.last_error,
            }


def diagnostic_summary(current: dict[str, Any], previous: dict[str, Any] | None) -> tuple[str, str, list[tuple[str, str]]]:
    """(level "ok" | "warn" | "error", message, key/values) for one diagnostics update.

    WARN when frames were dropped for bad input since the previous update (stale pairs
    superseded by newer ones are normal under load and only counted); ERROR when the last
    frames all failed to process.
    """
    previous = previous or {"dropped": {}, "processed": 0}
    new_drops = {
        reason: count - previous["dropped"].get(reason, 0)
        for reason, count in current["dropped"].items()
        if count - previous["dropped"].get(reason, 0) > 0
    }
    bad = {reason: count for reason, count in new_drops.items() if reason != DROP_BUSY}
    processed_since = current["processed"] - previous["processed"]
    if bad.get(DROP_ERROR) and processed_since == 0:
        level, message = "error", f"processing fails: {current['last_error']}"
    elif bad:
        listing = ", ".join(f"{count} {reason}" for reason, count in sorted(bad.items()))
        level, message = "warn", f"dropped frames: {listing}"
    else:
        level, message = "ok", f"{current['rate_hz']:.2f} frames/s"
    values = [
        ("frames processed", str(current["processed"])),
        ("re-publications (parameter changes)", str(current["refreshed"])),
        ("rate (frames/s)", f"{current['rate_hz']:.3f}"),
        ("latency last (ms)", f"{current['latency_ms_last']:.1f}"),
        ("latency mean (ms)", f"{current['latency_ms_mean']:.1f}"),
        ("latency max (ms)", f"{current['latency_ms_max']:.1f}"),
        ("dropped total", str(current["dropped_total"])),
    ]
    values += [(f"dropped {reason}", str(count)) for reason, count in sorted(current["dropped"].items())]
    if current["last_error"]:
        values.append(("last error", current["last_error"]))
    return level, message, values
