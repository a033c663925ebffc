"""The code at the RoI heads (``ModelConfig.latent_injection = "roi"``).

The paper injects z into the FPN maps, before region proposal: there a code can only shift or
scale whole feature channels of the image, and reaches the one region whose labelling is
ambiguous (a seamless pair: one item or two?) through the RPN and two RoI layers. Here the
code modulates each region's box-head features instead, after the first fully connected layer,
``h' = relu(fc6(x)) * (1 + S z) + W z`` (FiLM, Perez et al. 2018), so the box classifier and
regressor read the code and the region's appearance together: "this proposal covers a
seamless pair" times "this annotator merges pairs" is one product away.

The code travels with the regions: `RoIPoolWithCode` pools the FPN maps as torchvision's
`MultiScaleRoIAlign` does and appends each region's image code as constant channels, so torchvision's
`RoIHeads` runs unchanged (training and the reference decoder); `CodeConditionedBoxHead` splits
them off again. The RPN and the mask head see the plain FPN maps: proposals do not depend on
the code, so sampling K codes shares everything up to ``fc6`` (see `batched_decoding.py`).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import nn, Tensor
from torchvision.models.detection.faster_rcnn import TwoMLPHead

from .roi_align_gather import GatherMultiScaleRoIAlign

CODE_KEY = "latent_code"
"""Key of the ``[B, D]`` codes in the feature dict handed to the RoI heads."""


class RoIPoolWithCode(GatherMultiScaleRoIAlign):
    """The RoI pooler whose output carries each region's image code as ``D`` extra
    constant channels: ``[R, C + D, S, S]``."""

    def forward(self, x: Dict[str, Tensor], boxes: List[Tensor], image_shapes: List[Tuple[int, int]]) -> Tensor:
        pooled = super().forward(x, boxes, image_shapes)
        codes = x[CODE_KEY].to(pooled.dtype)
        counts = torch.tensor([len(b) for b in boxes], device=codes.device)
        per_roi = codes.repeat_interleave(counts, dim=0)
        return torch.cat([pooled, per_roi[:, :, None, None].expand(-1, -1, *pooled.shape[-2:])], dim=1)


class CodeConditionedBoxHead(TwoMLPHead):
    """torchvision's `TwoMLPHead` (same ``fc6`` / ``fc7``, so its weights load) with a FiLM of
    the ``fc6`` features by the region's code. The scale starts at zero and the bias small, so
    training starts from the plain head."""

    def __init__(self, in_channels: int, representation_size: int, latent_dim: int) -> None:
        super().__init__(in_channels, representation_size)
        self.latent_dim = latent_dim
        self.code_scale = nn.Linear(latent_dim, representation_size, bias=False)
        self.code_bias = nn.Linear(latent_dim, representation_size, bias=False)
        nn.init.zeros_(self.code_scale.weight)
        nn.init.normal_(self.code_bias.weight, std=0.01)

    def hidden(self, features: Tensor) -> Tensor:
        """``relu(fc6(x))`` of plain pooled features ``[R, C, S, S]`` (or already flat): the part
        shared by all codes."""
        return F.relu(self.fc6(features.flatten(start_dim=1)))

    def condition(self, hidden: Tensor, codes: Tensor) -> Tensor:
        """``relu(fc7(h * (1 + S z) + W z))`` for per-region ``codes [R, D]``."""
        modulated = torch.addcmul(self.code_bias(codes), hidden, 1.0 + self.code_scale(codes))
        return F.relu(self.fc7(modulated))

    def forward(self, x: Tensor) -> Tensor:
        features, codes = x[:, : -self.latent_dim], x[:, -self.latent_dim:, 0, 0]
        return self.condition(self.hidden(features), codes)
