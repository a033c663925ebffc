"""Approximate-time pairing of camera frames, ROS-free.

The segmentation node pairs its two cameras with ``message_filters.ApproximateTimeSynchronizer``;
offline replay must pair the frames of a bag exactly as the node would, or replay metrics would
describe a different stream than the robot sees. ``ApproximateTimePairer`` implements the policy
of the Python ``ApproximateTimeSynchronizer`` of ros2/message_filters, and ``SyncPolicy`` holds
the two values (slop, queue size) that both are configured with (defaults: the node's
``sync_slop`` and ``queue_size``).

The policy, per incoming message:

1. It is stored in its stream's queue keyed by header stamp (a second message with the same
   stamp replaces the first); while the queue holds more than ``queue_size`` stamps the oldest
   stamp is evicted.
2. In every other queue, the stamps within ``slop`` of the new stamp (``|delta| <= slop``) are
   candidates, ordered by ``|delta|`` (ties keep queue insertion order). If some queue has none,
   nothing is emitted.
3. Candidate combinations are tried in that order (cartesian product, nearest first); the first
   whose spread ``max - min`` is strictly below ``slop`` and whose messages are all still
   queued is emitted, and its messages leave their queues. Unmatched older messages stay
   queued until evicted (they may still pair later).
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Generic, Sequence, TypeVar

from latent_segmentation_ros.core.parameters import SEGMENTATION_PARAMETERS

T = TypeVar("T")

NANOSECONDS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class SyncPolicy:
    """Slop (seconds) and per-camera queue size of the approximate-time pairing.

    The node passes the same two values to ``message_filters.ApproximateTimeSynchronizer``.
    """

    slop: float = SEGMENTATION_PARAMETERS["sync_slop"].default
    queue_size: int = SEGMENTATION_PARAMETERS["queue_size"].default

    def __post_init__(self) -> None:
        if isinstance(self.slop, bool) or not isinstance(self.slop, (int, float)):
            raise ValueError(f"sync slop must be a number of seconds, got {self.slop!r}")
        if not math.isfinite(self.slop) or self.slop <= 0.0:
            raise ValueError(f"sync slop must be a finite number of seconds > 0, got {self.slop!r}")
        if isinstance(self.queue_size, bool) or not isinstance(self.queue_size, int):
            raise ValueError(f"sync queue_size must be an integer, got {self.queue_size!r}")
        if self.queue_size < 1:
            raise ValueError(f"sync queue_size must be >= 1, got {self.queue_size}")

    @property
    def slop_ns(self) -> int:
        """Slop in nanoseconds, truncated as ``rclpy.duration.Duration(seconds=slop)`` does."""
        return int(self.slop * NANOSECONDS_PER_SECOND)


@dataclass
class PairingStats:
    """What happened to the frames offered to the pairer (nothing is lost silently)."""

    offered: list[int]
    paired: list[int]
    evicted: list[int]
    replaced: list[int]

    def unpaired_pending(self, pending: Sequence[int]) -> dict[str, list[int]]:
        """Summary including the frames still queued when the stream ended."""
        return {
            "offered": list(self.offered),
            "paired": list(self.paired),
            "evicted_unpaired": list(self.evicted),
            "replaced_same_stamp": list(self.replaced),
            "pending_at_end": list(pending),
        }


@dataclass
class ApproximateTimePairer(Generic[T]):
    """Online approximate-time matcher of ``num_streams`` stamped streams.

    ``add(stream, stamp_ns, item)`` returns a tuple with one item per stream (in stream order)
    when the new item completes a set, else ``None``.
    """

    policy: SyncPolicy = field(default_factory=SyncPolicy)
    num_streams: int = 2

    def __post_init__(self) -> None:
        if self.num_streams < 2:
            raise ValueError(f"pairing needs at least 2 streams, got {self.num_streams}")
        # Python dicts keep insertion order, which decides ties between equally near stamps.
        self._queues: list[dict[int, T]] = [{} for _ in range(self.num_streams)]
        zeros = [0] * self.num_streams
        self.stats = PairingStats(list(zeros), list(zeros), list(zeros), list(zeros))

    def add(self, stream: int, stamp_ns: int, item: T) -> tuple[T, ...] | None:
        if not 0 <= stream < self.num_streams:
            raise ValueError(f"stream index {stream} out of range 0..{self.num_streams - 1}")
        stamp_ns = int(stamp_ns)
        queue = self._queues[stream]
        self.stats.offered[stream] += 1
        if stamp_ns in queue:
            self.stats.replaced[stream] += 1
        queue[stamp_ns] = item
        while len(queue) > self.policy.queue_size:
            del queue[min(queue)]
            self.stats.evicted[stream] += 1

        slop_ns = self.policy.slop_ns
        candidates: list[list[int]] = []
        for other, other_queue in enumerate(self._queues):
            if other == stream:
                continue
            near = [(abs(s - stamp_ns), s) for s in other_queue if abs(s - stamp_ns) <= slop_ns]
            if not near:
                return None
            near.sort(key=lambda pair: pair[0])  # stable: ties keep insertion order
            candidates.append([s for _, s in near])

        for combination in itertools.product(*candidates):
            stamps = list(combination)
            stamps.insert(stream, stamp_ns)
            if max(stamps) - min(stamps) >= slop_ns:
                continue
            if any(s not in q for s, q in zip(stamps, self._queues)):
                continue
            matched = tuple(q.pop(s) for s, q in zip(stamps, self._queues))
            for index in range(self.num_streams):
                self.stats.paired[index] += 1
            return matched
        return None

    def pending(self) -> list[int]:
        """How many items each stream still holds unpaired."""
        return [len(queue) for queue in self._queues]

    def summary(self) -> dict[str, list[int]]:
        return self.stats.unpaired_pending(self.pending())
