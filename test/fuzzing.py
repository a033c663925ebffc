"""What every fuzz target asserts besides its own invariant: no hang and bounded memory.

``bounded(seconds, max_bytes)`` fails the example when the code inside runs longer than
``seconds`` (SIGALRM, so a loop that never ends becomes a failure instead of a stuck test run)
or when the memory Python and NumPy allocate inside it peaks above ``max_bytes`` (tracemalloc:
NumPy reports its array buffers to it, so an array sized by a message's claims shows up here;
``measure="resident"`` instead bounds the growth of the process's peak resident memory, cheap
enough for bodies that parse bag files with third-party readers).
``fuzz(max_examples)`` is the settings every fuzz target runs with: no per-example deadline
(the machine may be loaded; ``bounded`` catches real hangs) and no health check that only says
the data generation is slow.
"""
from __future__ import annotations

import os
import signal
import threading
import tracemalloc
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from hypothesis import HealthCheck, settings

MIB = 1 << 20


def fuzz(max_examples: int) -> settings:
    """Settings of a fuzz target generating ``max_examples`` cases (times LATENT_SEG_FUZZ_SCALE)."""
    return settings(
        max_examples=max_examples * max(1, int(os.environ.get("LATENT_SEG_FUZZ_SCALE", "1"))),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.data_too_large],
    )


class Hang(AssertionError):
    """The code under test ran past its time limit."""


@contextmanager
def bounded(seconds: float, max_bytes: int, measure: str = "allocations") -> Iterator[None]:
    """Fail when the body runs longer than ``seconds`` or uses more than ``max_bytes`` of memory.

    ``measure="allocations"``: what Python and NumPy allocate inside the body at its peak
    (tracemalloc; an array sized by a message's claims counts even if never touched).
    ``measure="resident"``: the growth of the process's peak resident memory (Linux VmHWM,
    reset on entry), cheap enough for bodies that parse files with third-party readers.
    """
    if measure not in ("allocations", "resident"):
        raise ValueError(f"measure must be allocations or resident, got {measure!r}")
    alarm = threading.current_thread() is threading.main_thread()
    if alarm:
        def expire(signum, frame):  # noqa: ARG001
            raise Hang(f"still running after {seconds:g} s")

        previous = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    started_here = measure == "allocations" and not tracemalloc.is_tracing()
    if started_here:
        tracemalloc.start()
    if measure == "allocations":
        tracemalloc.reset_peak()
        baseline, _ = tracemalloc.get_traced_memory()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
        baseline = _status_kib("VmRSS") * 1024
    try:
        yield
        peak = tracemalloc.get_traced_memory()[1] if measure == "allocations" else _status_kib("VmHWM") * 1024
    finally:
        if alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        if started_here:
            tracemalloc.stop()
    used = peak - baseline
    assert used <= max_bytes, f"memory ({measure}) peaked {used / MIB:.1f} MiB above the start, more than {max_bytes / MIB:.1f} MiB"


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)
