"""RoIAlign as weighted gathers equals torchvision's roi_align, including the weight of a
constant map, for boxes inside, across and outside the feature map."""
import pytest
import torch
from torchvision.ops import roi_align

from latent_maskrcnn.model.roi_align_gather import roi_align_bags, roi_align_nhwc


def random_rois(generator, count, batch, height, width, scale):
    corners = torch.rand(count, 2, generator=generator, dtype=torch.float64)
    corners = corners * torch.tensor([width / scale * 1.4, height / scale * 1.4], dtype=torch.float64) - 10
    sizes = torch.rand(count, 2, generator=generator, dtype=torch.float64) * 40 / scale
    sizes[: count // 10] *= 0.01  # boxes smaller than one cell
    index = torch.randint(0, batch, (count, 1), generator=generator).double()
    return torch.cat([index, corners, corners + sizes], dim=1)


@pytest.mark.parametrize(
    "batch, channels, height, width, scale, output, ratio",
    [(2, 5, 12, 17, 0.25, (7, 7), 2), (1, 3, 1, 1, 1.0, (7, 7), 2), (2, 4, 2, 3, 0.5, (14, 14), 2),
     (1, 2, 9, 6, 0.125, (3, 5), 3)],
)
def test_equals_torchvision_roi_align(batch, channels, height, width, scale, output, ratio):
    generator = torch.Generator().manual_seed(height * width)
    features = torch.randn(batch, channels, height, width, generator=generator, dtype=torch.float64)
    rois = random_rois(generator, 200, batch, height, width, scale)
    table = features.permute(0, 2, 3, 1).reshape(-1, channels)
    pooled, weight = roi_align_nhwc(table, height, width, rois, output, scale, ratio)
    torch.testing.assert_close(pooled.permute(0, 3, 1, 2), roi_align(features, rois, output, scale, ratio))
    ones = roi_align(torch.ones(batch, 1, height, width, dtype=torch.float64), rois, output, scale, ratio)[:, 0]
    torch.testing.assert_close(weight, ones)
    assert ones.min() == 0 and ones.max() == 1  # the cases outside the map are really covered


def test_no_rois_and_adaptive_sampling():
    table = torch.zeros(6, 4)
    pooled, weight = roi_align_nhwc(table, 2, 3, torch.zeros((0, 5)), (7, 7), 1.0, 2)
    assert pooled.shape == (0, 7, 7, 4) and weight.shape == (0, 7, 7)
    with pytest.raises(ValueError, match="sampling_ratio > 0"):
        roi_align_bags(torch.zeros((1, 5)), 2, 3, (7, 7), 1.0, 0)
