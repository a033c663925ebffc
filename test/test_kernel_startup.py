"""Start-up of the compiled aggregation kernel: compiled in the background while the torch kernel
serves ("auto"), never waited for; a failed compilation leaves the torch kernel in place."""
import threading

import pytest

from latent_maskrcnn.aggregation import confidence_kernel
from latent_maskrcnn.aggregation.confidence_masks import resolve_kernel, warm_up_compiled_kernel

pytestmark = pytest.mark.skipif(not confidence_kernel.AVAILABLE, reason="numba not installed")


def test_auto_uses_torch_while_compiling_in_the_background_then_the_compiled_kernel():
    release = threading.Event()
    finished = []

    def warm_up():
        assert release.wait(30)
        warm_up_compiled_kernel()

    thread = confidence_kernel.compile_in_background(warm_up, lambda seconds, error: finished.append((seconds, error)))
    try:
        assert not confidence_kernel.compiled_ready()
        assert resolve_kernel("auto", "cpu") == "torch"
        assert resolve_kernel("compiled", "cpu") == "compiled"  # an explicit choice is kept
    finally:
        release.set()
        thread.join(120)
    assert finished and finished[0][1] is None and finished[0][0] > 0.0
    assert confidence_kernel.compiled_ready()
    assert resolve_kernel("auto", "cpu") == "compiled"


def test_a_failed_background_compilation_keeps_the_torch_kernel():
    finished = []

    def broken():
        raise OSError("no space left on device")

    confidence_kernel.compile_in_background(broken, lambda seconds, error: finished.append(error)).join(30)
    try:
        assert isinstance(finished[0], OSError)
        assert not confidence_kernel.compiled_ready()
        assert resolve_kernel("auto", "cpu") == "torch"
    finally:  # leave the module as other tests expect it
        confidence_kernel.compile_in_background(warm_up_compiled_kernel).join(120)
    assert resolve_kernel("auto", "cpu") == "compiled"


def test_the_cache_location_is_known():
    # this checkout is writable: numba caches next to the module, or where NUMBA_CACHE_DIR says
    import os

    assert os.path.isabs(confidence_kernel.CACHE_PATH)
    if not os.environ.get("NUMBA_CACHE_DIR"):
        assert confidence_kernel.CACHE_PATH == os.path.join(os.path.dirname(confidence_kernel.__file__), "__pycache__")
