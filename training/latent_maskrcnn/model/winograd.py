"""3x3 convolutions (stride 1, zero padding 1) by Winograd's minimal filtering on channels-last
maps (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016).

The same linear map as the direct convolution, with fewer multiplications: each m x m output
tile is ``A^T [(G g G^T) * (B^T d B)] A`` for its (m+2) x (m+2) input tile ``d``, and the
elementwise products summed over input channels become (m+2)^2 matrix products. F(4x4, 3x3)
needs 36 products per 16 outputs instead of 144 (F(2x2, 3x3): 16 per 4). It runs the mask head,
whose cost grows with the number of latent samples; results equal the direct convolution to
float rounding (about 1e-5 relative in float32 for F(4x4, 3x3)).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn, Tensor

# Transform matrices per output tile size m: B^T (input), G (filter), A^T (output).
TRANSFORMS = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        ((1, 1, 1, 1, 1, 0), (0, 1, -1, 2, -2, 0), (0, 1, 1, 4, 4, 0), (0, 1, -1, 8, -8, 1)),
    ),
}
TILE = 4
# RoIs per step: bounds the memory of the transformed tiles (36 per 16 outputs) while every
# step stays a handful of large operations (a few small ones per tile element would be slower
# on a busy CPU).
CHUNK = 64


def transform_weight(weight: Tensor, tile: int = TILE) -> Tensor:
    """``G g G^T`` for every (out, in) filter: ``[Cout, Cin, 3, 3]`` -> ``[(m+2)^2, Cin, Cout]``."""
    g = torch.tensor(TRANSFORMS[tile][1], dtype=weight.dtype, device=weight.device)
    size = g.shape[0]
    return torch.einsum("ak,oikl,bl->abio", g, weight, g).reshape(size * size, weight.shape[1], weight.shape[0])


def conv3x3_nhwc(
    x: Tensor, transformed_weight: Tensor, bias: Tensor | None, relu: bool = False, tile: int = TILE
) -> Tensor:
    """3x3 convolution, stride 1, zero padding 1 (then optional ReLU) of an NHWC map
    ``[N, H, W, Cin]`` with a weight from `transform_weight` (same ``tile``): ``[N, H, W, Cout]``.

    Per step: gather the overlapping input tiles, ``B^T d B`` as one matrix product with
    ``B^T (x) B^T``, the (m+2)^2 channel products as one batched matrix product, and
    ``A^T M A`` as one matrix product with ``A^T (x) A^T``."""
    input_rows, _, output_rows = TRANSFORMS[tile]
    size = tile + 2
    count, height, width, channels = x.shape
    out_channels = transformed_weight.shape[-1]
    tiles_h, tiles_w = -(-height // tile), -(-width // tile)
    padding = (0, 0, 1, tile * tiles_w + 1 - width, 1, tile * tiles_h + 1 - height)
    b_t = torch.tensor(input_rows, dtype=x.dtype, device=x.device)
    a_t = torch.tensor(output_rows, dtype=x.dtype, device=x.device)
    input_transform, output_transform = torch.kron(b_t, b_t), torch.kron(a_t, a_t)
    out = x.new_empty((count, tile * tiles_h, tile * tiles_w, out_channels))
    for start in range(0, count, CHUNK):
        padded = F.pad(x[start:start + CHUNK], padding)
        step = padded.shape[0]
        tiles = padded.unfold(1, size, tile).unfold(2, size, tile)  # [n, th, tw, C, size, size]
        tiles = tiles.permute(4, 5, 0, 1, 2, 3).reshape(size * size, -1)
        transformed = (input_transform @ tiles).view(size * size, -1, channels)
        products = torch.bmm(transformed, transformed_weight)  # [size^2, n * th * tw, Cout]
        outputs = (output_transform @ products.view(size * size, -1)).view(
            tile, tile, step, tiles_h, tiles_w, out_channels
        )
        target = out[start:start + step]
        target.view(step, tiles_h, tile, tiles_w, tile, out_channels).copy_(outputs.permute(2, 3, 0, 4, 1, 5))
        if bias is not None:
            target += bias
        if relu:
            target.relu_()
    if tile * tiles_h != height or tile * tiles_w != width:
        out = out[:, :height, :width].contiguous()
    return out


def conv_relu_stack_nhwc(layers: nn.Sequential, x: Tensor, tile: int = TILE) -> Tensor:
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
        x = conv3x3_nhwc(x, transform_weight(conv.weight, tile), conv.bias, relu=True, tile=tile)
    return x
