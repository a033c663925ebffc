"""Winograd F(2x2, 3x3) and F(4x4, 3x3) convolutions equal torch's direct convolution (the mask head path)."""
import pytest
import torch
import torch.nn.functional as F
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads

from latent_maskrcnn.model.winograd import CHUNK, conv3x3_nhwc, conv_relu_stack_nhwc, transform_weight


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("count, height, width", [(1, 14, 14), (CHUNK + 3, 14, 14), (2, 7, 9), (3, 1, 1), (2, 2, 5)])
def test_conv3x3_equals_direct_convolution(count, height, width, tile):
    generator = torch.Generator().manual_seed(count * 100 + height * 10 + width)
    x = torch.randn(count, 6, height, width, generator=generator)
    weight = torch.randn(5, 6, 3, 3, generator=generator)
    bias = torch.randn(5, generator=generator)
    out = conv3x3_nhwc(x.permute(0, 2, 3, 1).contiguous(), transform_weight(weight, tile), bias, relu=True, tile=tile)
    expected = F.conv2d(x, weight, bias, padding=1).relu()
    # Outputs are of order 5 here; F(4x4, 3x3) rounds a little more than F(2x2, 3x3).
    tolerance = 1e-5 if tile == 2 else 2e-4
    torch.testing.assert_close(out.permute(0, 3, 1, 2), expected, atol=tolerance, rtol=tolerance)


def test_mask_head_stack_equals_torchvision_module():
    torch.manual_seed(0)
    head = MaskRCNNHeads(8, [12, 12, 12, 12], 1)
    x = torch.randn(4, 8, 14, 14)
    with torch.no_grad():
        out = conv_relu_stack_nhwc(head, x.permute(0, 2, 3, 1).contiguous())
        torch.testing.assert_close(out.permute(0, 3, 1, 2), head(x), atol=1e-4, rtol=1e-4)


def test_other_layers_are_refused():
    dilated = MaskRCNNHeads(8, [8], 2)
    with pytest.raises(ValueError, match="3x3 stride-1 padding-1"):
        conv_relu_stack_nhwc(dilated, torch.zeros(1, 14, 14, 8))
