"""How torch uses the CPU in this package's processes (the segmentation node and the commands
that run the network).

Idle OpenMP threads sleep instead of spinning. torch's spinning worker threads made the
network more than ten times slower on a CPU that another process keeps busy (measured 4.8 s
against 0.35 s per pair of the demo model), and at the node's start they starve the thread
that loads the compiled aggregation kernel, so the first answer came seconds later (see
``latent-seg bench startup``). The setting takes effect only before torch is imported; a value
the user set is kept.
"""
from __future__ import annotations

import os
import sys

WAIT_POLICY = "OMP_WAIT_POLICY"


def passive_openmp_waits() -> bool:
    """Ask OpenMP's idle threads to sleep; returns whether it can still take effect (torch
    not imported yet)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules


def set_cpu_threads(threads: int | None) -> None:
    """torch's intra-op CPU threads: ``threads``, or torch's own choice (one per core) for None.
    Raises ValueError below 1."""
    if threads is None:
        return
    if threads < 1:
        raise ValueError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def configure_torch_cpu(threads: int | None) -> None:
    """What every command that runs the network does first (``--threads``): passive OpenMP
    waits, then the thread count. Raises ValueError for a count below 1."""
    passive_openmp_waits()
    set_cpu_threads(threads)
