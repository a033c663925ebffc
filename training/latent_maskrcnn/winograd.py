"""3x3 convolutions (stride 1, zero padding 1) by Winograd's minimal filtering F(2x2, 3x3), on
channels-last maps.

The same linear map as the direct convolution, evaluated with 2.25x fewer multiplications: each
2x2 output tile is ``A^T [(G g G^T) * (B^T d B)] A`` for its 4x4 input tile ``d``, and the
elementwise products over channels become 16 matrix products. It runs the mask head, whose
cost grows with the number of latent samples, in fewer floating-point operations than a CPU's
direct convolution; results equal the direct convolution to float rounding.
"""
from __future__ import annotations

import torch
from torch import nn, Tensor

# Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (2016), F(2x2, 3x3).
_G = ((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, -0.5, 0.5), (0.0, 0.0, 1.0))


def transform_weight(weight: Tensor) -> Tensor:
    """``G g G^T`` for every (out, in) filter: ``[Cout, Cin, 3, 3]`` -> ``[16, Cin, Cout]``."""
    g = torch.tensor(_G, dtype=weight.dtype, device=weight.device)
    out_channels, in_channels = weight.shape[:2]
    return torch.einsum("ak,oikl,bl->abio", g, weight, g).reshape(16, in_channels, out_channels)


_BT = ((1.0, 0.0, -1.0, 0.0), (0.0, 1.0, 1.0, 0.0), (0.0, -1.0, 1.0, 0.0), (0.0, 1.0, 0.0, -1.0))
_AT = ((1.0, 1.0, 1.0, 0.0), (0.0, 1.0, -1.0, -1.0))
# RoIs per step: the transformed tiles of a step stay in cache (memory traffic, not
# arithmetic, bounds the transforms), while the 16 matrix products stay large enough.
CHUNK = 32


def _pairs(x: Tensor, dim: int, tiles: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The four tile rows (or columns) ``d_0..d_3`` of every stride-2 tile along ``dim``."""
    return tuple(x.narrow(dim, i, 2 * tiles - 1)[(slice(None),) * dim + (slice(None, None, 2),)] for i in range(4))


def _input_transform(x: Tensor, tiles_h: int, tiles_w: int) -> Tensor:
    """``B^T d B`` for all tiles of a padded NHWC map: ``[16, N * tiles_h * tiles_w, C]``."""
    count, channels = x.shape[0], x.shape[-1]
    out = x.new_empty((4, 4, count, tiles_h, tiles_w, channels))
    d0, d1, d2, d3 = _pairs(x, 1, tiles_h)
    rows = (d0 - d2, d1 + d2, d2 - d1, d1 - d3)
    for xi, row in enumerate(rows):
        e0, e1, e2, e3 = _pairs(row, 2, tiles_w)
        torch.sub(e0, e2, out=out[xi, 0])
        torch.add(e1, e2, out=out[xi, 1])
        torch.sub(e2, e1, out=out[xi, 2])
        torch.sub(e1, e3, out=out[xi, 3])
    return out.view(16, -1, channels)


def conv3x3_nhwc(x: Tensor, transformed_weight: Tensor, bias: Tensor | None, relu: bool = False) -> Tensor:
    """3x3 convolution, stride 1, zero padding 1 (then optional ReLU) of an NHWC map
    ``[N, H, W, Cin]`` with a weight from `transform_weight`: ``[N, H, W, Cout]``."""
    count, height, width, _ = x.shape
    out_channels = transformed_weight.shape[-1]
    tiles_h, tiles_w = (height + 1) // 2, (width + 1) // 2
    padding = (0, 0, 1, 2 * tiles_w + 1 - width, 1, 2 * tiles_h + 1 - height)
    output_transform = torch.kron(*(torch.tensor(_AT, dtype=x.dtype, device=x.device),) * 2)  # [4, 16]
    out = x.new_empty((count, 2 * tiles_h, 2 * tiles_w, out_channels))
    for start in range(0, count, CHUNK):
        chunk = x[start:start + CHUNK]
        size = chunk.shape[0]
        tiles = _input_transform(torch.nn.functional.pad(chunk, padding), tiles_h, tiles_w)
        products = torch.bmm(tiles, transformed_weight)  # [16, size * T, Cout]
        outputs = (output_transform @ products.view(16, -1)).view(2, 2, size, tiles_h, tiles_w, out_channels)
        target = out[start:start + size]
        target.view(size, tiles_h, 2, tiles_w, 2, out_channels).copy_(outputs.permute(2, 3, 0, 4, 1, 5))
        if bias is not None:
            target += bias
        if relu:
            target.relu_()
    if 2 * tiles_h != height or 2 * tiles_w != width:
        out = out[:, :height, :width].contiguous()
    return out


def conv_relu_stack_nhwc(layers: nn.Sequential, x: Tensor) -> Tensor:
    """Run torchvision's ``MaskRCNNHeads`` (3x3 conv + ReLU blocks, no norm) on an NHWC map."""
    for block in layers:
        conv, activation = block[0], block[1]
        if (
            len(block) != 2
            or not isinstance(conv, nn.Conv2d)
            or not isinstance(activation, nn.ReLU)
            or conv.kernel_size != (3, 3)
            or conv.stride != (1, 1)
            or conv.padding != (1, 1)
            or conv.dilation != (1, 1)
            or conv.groups != 1
        ):
            raise ValueError("Winograd path needs blocks of a 3x3 stride-1 padding-1 conv followed by ReLU")
        x = conv3x3_nhwc(x, transform_weight(conv.weight), conv.bias, relu=True)
    return x
