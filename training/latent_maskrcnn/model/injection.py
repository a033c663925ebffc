"""Injection of the latent code into the FPN maps, before region proposal.

The paper tiles z over the image, concatenates it to every FPN level and projects back with a
1x1 convolution. Split that convolution's weight into its feature part and its code part:
``F' = W_f F + b + W_z z``. The first two terms do not depend on z (computed once per image and
shared by all samples); the last is a per-level, per-sample channel bias.

Option ``scale`` (``ModelConfig.latent_injection = "film"``): the code also scales the channels,
``F' = (W_f F + b) * (1 + S_z z) + W_z z`` (FiLM). The scale starts at zero, so the model starts
as the plain injection; a per-channel scale still commutes with RoIAlign and folds into the
RPN's convolution weights, so the batched decoder stays exact.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn, Tensor


class LatentInjection(nn.Module):
    def __init__(self, channels: int, latent_dim: int, level_names: list[str], scale: bool = False) -> None:
        super().__init__()
        self.level_names = list(level_names)
        self.feature_proj = nn.ModuleDict({name: nn.Conv2d(channels, channels, 1) for name in self.level_names})
        self.code_proj = nn.ModuleDict(
            {name: nn.Linear(latent_dim, channels, bias=False) for name in self.level_names}
        )
        self.code_scale_proj: nn.ModuleDict | None = None
        if scale:
            self.code_scale_proj = nn.ModuleDict(
                {name: nn.Linear(latent_dim, channels, bias=False) for name in self.level_names}
            )
            for linear in self.code_scale_proj.values():
                nn.init.zeros_(linear.weight)
        # Start as the identity on the features, so weights of a plain MaskRCNN keep working.
        for conv in self.feature_proj.values():
            with torch.no_grad():
                conv.weight.zero_()
                conv.weight[:, :, 0, 0] = torch.eye(channels)
                conv.bias.zero_()

    def _check_levels(self, features: "OrderedDict[str, Tensor]") -> None:
        if list(features.keys()) != self.level_names:
            raise ValueError(f"expected FPN levels {self.level_names}, got {list(features.keys())}")

    def shared(self, features: "OrderedDict[str, Tensor]") -> "OrderedDict[str, Tensor]":
        """``W_f F + b`` per level: the code-independent part, computed once per image."""
        self._check_levels(features)
        return OrderedDict((name, self.feature_proj[name](x)) for name, x in features.items())

    def code_bias(self, codes: Tensor) -> list[Tensor]:
        """``W_z z`` per level: ``codes [..., D]`` -> list of ``[..., C]``."""
        return [self.code_proj[name](codes) for name in self.level_names]

    def code_scale(self, codes: Tensor) -> list[Tensor] | None:
        """``1 + S_z z`` per level (``[..., C]``), or None without the FiLM scale."""
        if self.code_scale_proj is None:
            return None
        return [1.0 + self.code_scale_proj[name](codes) for name in self.level_names]

    def forward(self, features: "OrderedDict[str, Tensor]", codes: Tensor) -> "OrderedDict[str, Tensor]":
        """F' for one code per image (``codes [B, D]``): what the training path and the
        reference decoder use."""
        shared = self.shared(features)
        biases = self.code_bias(codes)
        scales = self.code_scale(codes) or [None] * len(biases)
        return OrderedDict(
            (name, (x if scale is None else x * scale[:, :, None, None]) + bias[:, :, None, None])
            for (name, x), bias, scale in zip(shared.items(), biases, scales)
        )

    def concat_conv_weight(self, level: str) -> Tensor:
        """The equivalent weight ``[C, C + D, 1, 1]`` of the paper's concat-then-1x1-conv form."""
        return torch.cat([self.feature_proj[level].weight, self.code_proj[level].weight[:, :, None, None]], dim=1)
