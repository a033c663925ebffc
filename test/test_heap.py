"""The fixed glibc mmap threshold of long evaluations: large buffers get their own mappings."""
import ctypes

import numpy as np
import pytest

from latent_segmentation_ros.heap import ENVIRONMENT_VARIABLE, fix_mmap_threshold, uses_glibc


class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def mapped_bytes() -> int:
    mallinfo2 = ctypes.CDLL(None).mallinfo2
    mallinfo2.restype = Mallinfo2
    return int(mallinfo2().hblkhd)


@pytest.mark.skipif(not uses_glibc(), reason="glibc malloc only")
def test_large_buffers_are_mapped_after_the_fix(monkeypatch):
    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc without mallinfo2 (before 2.33)")
    monkeypatch.delenv(ENVIRONMENT_VARIABLE, raising=False)
    # Freeing a large mapped block raises glibc's dynamic threshold above it ...
    np.ones(8 * 2**20, dtype=np.uint8)
    assert fix_mmap_threshold(256 * 2**10)
    before = mapped_bytes()
    buffer = np.ones(2**20, dtype=np.uint8)  # ... the fixed one maps a 1 MB buffer of its own
    assert mapped_bytes() - before >= 2**20
    del buffer
    assert mapped_bytes() - before < 2**20  # and gives it back when freed


def test_the_users_setting_wins(monkeypatch):
    monkeypatch.setenv(ENVIRONMENT_VARIABLE, "131072")
    assert fix_mmap_threshold() is False


@pytest.mark.parametrize("threshold", [0, -1, 64 * 2**20, 1.5, True])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(ValueError, match="mmap threshold"):
        fix_mmap_threshold(threshold)
