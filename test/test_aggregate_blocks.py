"""Block counts (the one pass over full-resolution masks), boxes of crops, and the benchmark."""
import argparse

import pytest
import torch
import torch.nn.functional as F

from latent_maskrcnn.aggregation.mask_blocks import block_counts, cell_areas, crop_box, occupied_cell_boxes, pixel_boxes
from latent_maskrcnn.bench import aggregate as bench_aggregate


@pytest.mark.parametrize(
    "shape, block",
    [((3, 16, 16), 8), ((5, 37, 45), 8), ((2, 48, 64), 8), ((2, 200, 336), 8), ((3, 130, 203), 8), ((2, 33, 64), 16), ((3, 20, 24), 4), ((2, 9, 7), 3), ((1, 8, 8), 1)],
)
def test_block_counts_equal_summed_pooling(shape, block):
    generator = torch.Generator().manual_seed(sum(shape) + block)
    masks = torch.rand(shape, generator=generator) > 0.4
    expected = F.avg_pool2d(masks.float(), block, ceil_mode=True, divisor_override=1).round().to(torch.int32)
    assert torch.equal(block_counts(masks, block).to(torch.int32), expected)
    assert int(cell_areas(shape[1], shape[2], block).sum()) == shape[1] * shape[2]


def test_block_counts_of_full_and_strided_masks():
    full = torch.ones((2, 24, 40), dtype=torch.bool)
    assert int(block_counts(full, 8).min()) == 64
    strided = full[:, :, ::2]  # not contiguous: still counted right
    assert torch.equal(block_counts(strided, 8), F.avg_pool2d(strided.float(), 8, ceil_mode=True, divisor_override=1).to(torch.int32))
    with pytest.raises(ValueError):
        block_counts(full.float(), 8)


def test_cell_boxes_and_pixel_boxes():
    masks = torch.zeros((2, 20, 30), dtype=torch.bool)
    masks[0, 3:9, 10:25] = True
    boxes = occupied_cell_boxes(block_counts(masks, 8))
    assert boxes.tolist() == [[0, 1, 2, 4], [0, 0, 0, 0]]
    assert pixel_boxes(masks).tolist() == [[10.0, 3.0, 25.0, 9.0], [0.0, 0.0, 0.0, 0.0]]
    assert crop_box(masks[0, 2:12, 8:28], 2, 8) == [10.0, 3.0, 25.0, 9.0]


def test_bench_reports_every_number():
    parser = argparse.ArgumentParser()
    bench_aggregate.add_arguments(parser)
    args = parser.parse_args(["--samples", "3", "--masks", "4", "--height", "48", "--width", "64", "--repeats", "2", "--threads", "1"])
    result = bench_aggregate.run(args)
    for key in ("confidence_masks_ms", "union_nms_ms", "reaggregate_ms", "prepare_ms"):
        assert result[key] > 0
    assert result["samples"] == 3 and result["confidence_masks_out"] > 0
    assert result["kernel"] == "compiled" and result["confidence_masks_torch_kernel_ms"] > 0


def test_random_samples_overlap_across_samples():
    masks, scores = bench_aggregate.random_samples(4, 6, 60, 80, seed=0, device="cpu")
    assert len(masks) == 4 and all(m.shape == (6, 60, 80) and m.dtype == torch.bool for m in masks)
    overlap = (masks[0][0] & masks[1][0]).sum() / masks[0][0].sum()
    assert overlap > 0.5  # the same item seen by two samples
    assert all(bool(s.gt(0).all()) for s in scores)
