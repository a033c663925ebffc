"""RoIAlign as weighted gathers equals torchvision's roi_align, including the weight of a
constant map, for boxes inside, across and outside the feature map."""
import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign, roi_align

from latent_maskrcnn.model.roi_align_gather import GatherMultiScaleRoIAlign, roi_align_bags, roi_align_nhwc


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


def test_multiscale_gather_pooler_equals_torchvision_forward_and_backward():
    """The training poolers (`GatherMultiScaleRoIAlign`): the same values as torchvision's
    `MultiScaleRoIAlign` and the same gradients with respect to every FPN level."""
    generator = torch.Generator().manual_seed(3)
    names = ["0", "1", "2", "3"]
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5)]
    maps = {name: torch.randn(2, 6, h, w, generator=generator, dtype=torch.float64, requires_grad=True)
            for name, (h, w) in zip(names, sizes)}
    boxes = []
    for _ in range(2):
        corners = torch.rand(40, 2, generator=generator, dtype=torch.float64) * torch.tensor([140.0, 110.0])
        scale = 2 ** (2 + 7 * torch.rand(40, 1, generator=generator, dtype=torch.float64))  # all four levels
        extent = scale * (0.7 + 0.6 * torch.rand(40, 2, generator=generator, dtype=torch.float64))
        boxes.append(torch.cat([corners, corners + extent], dim=1))
    image_shapes = [(128, 160), (120, 150)]
    outputs = []
    for pooler in (MultiScaleRoIAlign(names, 7, 2), GatherMultiScaleRoIAlign(names, 7, 2)):
        pooled = pooler({**maps, "pool": torch.zeros(2, 6, 2, 3)}, boxes, image_shapes)
        weights = torch.randn(pooled.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
        grads = torch.autograd.grad((pooled * weights).sum(), list(maps.values()))
        outputs.append((pooled, grads))
    (expected, expected_grads), (pooled, grads) = outputs
    assert len(set(pooler.map_levels(boxes).tolist())) == 4  # every level is used
    torch.testing.assert_close(pooled, expected)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got, want)
