"""Heap trimming of long evaluations: free heap pages go back to the system."""
import pytest

from latent_segmentation_ros.core.heap import HeapTrimmer, release_free_heap, uses_glibc


def resident_mb() -> float:
    import resource

    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


@pytest.mark.skipif(not uses_glibc(), reason="glibc malloc only")
def test_free_pages_pinned_inside_the_heap_are_released():
    release_free_heap()
    # 40 MB of 4 kB blocks (malloc'ed, above Python's small-object allocator), every 64th kept:
    # the kept ones pin the heap, so freeing the rest leaves resident free pages inside it.
    blocks = [bytes(4000 + (index % 7)) for index in range(10_000)]
    pinned = blocks[::64]
    del blocks
    before = resident_mb()
    assert release_free_heap()
    assert before - resident_mb() > 20.0
    assert len(pinned) == 157


def test_trims_every_n_ticks():
    trimmer = HeapTrimmer(every=3)
    for _ in range(10):
        trimmer.tick()
    assert trimmer.ticks == 10
    assert trimmer.trims == (3 if uses_glibc() else 0)


@pytest.mark.parametrize("every", [0, -2, 2.5, True])
def test_bad_period_is_refused(every):
    with pytest.raises(ValueError, match="heap trimming period"):
        HeapTrimmer(every)
