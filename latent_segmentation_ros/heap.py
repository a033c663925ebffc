"""Keep a long offline evaluation's resident memory flat under glibc's malloc.

Each replayed pair allocates and frees large buffers of varying size (decoded images, ground
truth masks, CDR messages, decompressed bag chunks, the network's tensors). glibc serves
blocks above its mmap threshold with their own mappings, which go back to the system when
freed, but it raises that threshold to the size of every mapped block freed (up to 32 MB).
After the first frames the large buffers therefore come from the main heap, where the few
allocations that outlive a frame end up between them; the freed space is then too fragmented
to serve the next frame's buffers and the heap keeps growing. Measured over 600 pairs of
``latent-seg bench replay --mode prior_mean``: about 39 kB per pair of growth with the dynamic
threshold, under 5 kB per pair with a fixed 256 kB threshold, at the same pairs per second.

A fixed threshold set with ``mallopt`` turns the dynamic adjustment off (glibc's documented
behaviour); a threshold the user set in ``MALLOC_MMAP_THRESHOLD_`` is left alone.
"""
from __future__ import annotations

import ctypes
import logging
import os
import platform
import sys

LOGGER = logging.getLogger(__name__)

# glibc malloc.h
M_MMAP_THRESHOLD = -3
# glibc refuses thresholds above HEAP_MAX_SIZE / 2 (32 MB on 64-bit systems).
MAX_MMAP_THRESHOLD = 32 * 2**20
DEFAULT_MMAP_THRESHOLD = 256 * 2**10
ENVIRONMENT_VARIABLE = "MALLOC_MMAP_THRESHOLD_"


def uses_glibc() -> bool:
    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def fix_mmap_threshold(threshold_bytes: int = DEFAULT_MMAP_THRESHOLD) -> bool:
    """Serve blocks of ``threshold_bytes`` or more from their own mappings for the rest of the
    process, so frees of large buffers return memory instead of fragmenting the heap.

    Returns whether the setting was applied: False off glibc, or when the environment sets
    ``MALLOC_MMAP_THRESHOLD_`` (the user's choice wins).
    """
    if isinstance(threshold_bytes, bool) or not isinstance(threshold_bytes, int):
        raise ValueError(f"mmap threshold must be an integer number of bytes, got {threshold_bytes!r}")
    if not 0 < threshold_bytes <= MAX_MMAP_THRESHOLD:
        raise ValueError(f"mmap threshold must be within 1..{MAX_MMAP_THRESHOLD} bytes, got {threshold_bytes}")
    if ENVIRONMENT_VARIABLE in os.environ or not uses_glibc():
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, threshold_bytes))
    if not applied:
        LOGGER.warning("glibc refused mmap threshold %d; long replays may grow in memory", threshold_bytes)
    return applied
