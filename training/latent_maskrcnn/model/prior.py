"""The prior p(z|x): a small conv tower per FPN level, masked spatial mean, an MLP."""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn, Tensor

from .distributions import DiagonalGaussian


def valid_region_masks(
    features: "OrderedDict[str, Tensor]", image_sizes: list[tuple[int, int]], padded_size: tuple[int, int]
) -> list[Tensor]:
    """Per level ``[B, 1, h, w]`` masks of the cells that cover the image, not the batch padding,
    so an image's code does not depend on which images share its batch."""
    masks = []
    for x in features.values():
        batch, _, height, width = x.shape
        mask = torch.zeros((batch, 1, height, width), dtype=x.dtype, device=x.device)
        for index, (img_h, img_w) in enumerate(image_sizes):
            rows = max(1, min(height, -(-img_h * height // padded_size[0])))
            cols = max(1, min(width, -(-img_w * width // padded_size[1])))
            mask[index, :, :rows, :cols] = 1.0
        masks.append(mask)
    return masks


class LatentPrior(nn.Module):
    def __init__(self, in_channels: int, level_names: list[str], latent_dim: int, channels: int, hidden: int) -> None:
        super().__init__()
        self.level_names = list(level_names)
        self.towers = nn.ModuleDict(
            {
                name: nn.Sequential(
                    nn.Conv2d(in_channels, channels, 3, stride=2, padding=1),
                    nn.ReLU(inplace=True),
                    nn.Conv2d(channels, channels, 3, padding=1),
                    nn.ReLU(inplace=True),
                )
                for name in self.level_names
            }
        )
        self.mlp = nn.Sequential(
            nn.Linear(channels * len(self.level_names), hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, 2 * latent_dim),
        )

    def forward(
        self,
        features: "OrderedDict[str, Tensor]",
        image_sizes: list[tuple[int, int]],
        padded_size: tuple[int, int],
    ) -> DiagonalGaussian:
        if list(features.keys()) != self.level_names:
            raise ValueError(f"expected FPN levels {self.level_names}, got {list(features.keys())}")
        pooled = []
        for (name, x), mask in zip(features.items(), valid_region_masks(features, image_sizes, padded_size)):
            y = self.towers[name](x)
            mask = mask[:, :, ::2, ::2]  # the stride-2 first conv keeps every other cell
            pooled.append((y * mask).sum(dim=(2, 3)) / mask.sum(dim=(2, 3)))
        return DiagonalGaussian.from_head(self.mlp(torch.cat(pooled, dim=1)))
