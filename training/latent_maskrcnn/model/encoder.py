"""The posterior q(z|x,y), used in training only: a "reverse mask head" over the ground truth.

Per instance: RoI-aligned FPN features, the instance mask in its box and two coordinate
channels go through a small CNN to one vector (plus box geometry and class embeddings); a few
self-attention layers pass messages over the fully connected graph of the image's instances;
the node vectors are pooled and a linear layer gives mean and log-variance. An image without
instances uses a learned empty-set embedding instead of the pooled vector.

Pooling (``ModelConfig.encoder_pooling``): ``mean`` over the instances (the paper's), or
``attention``, a learned softmax weighting: with a mean, the one instance whose labelling is
ambiguous (a seamless pair among ten items) is a tenth of the pooled vector; attention can put
its weight there.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn, Tensor
from torchvision.ops import roi_align

from .config import ENCODER_POOLINGS
from .distributions import DiagonalGaussian
from .roi_align_gather import GatherMultiScaleRoIAlign


def _conv_block(in_channels: int, out_channels: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.GroupNorm(min(8, out_channels), out_channels),
        nn.LeakyReLU(0.1, inplace=True),
    )


class PosteriorEncoder(nn.Module):
    def __init__(
        self,
        in_channels: int,
        featmap_names: list[str],
        latent_dim: int,
        num_classes: int,
        roi_size: int = 14,
        channels: int = 128,
        hidden: int = 256,
        graph_layers: int = 3,
        heads: int = 4,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if pooling not in ENCODER_POOLINGS:
            raise ValueError(f"encoder pooling must be one of {list(ENCODER_POOLINGS)}, got {pooling!r}")
        self.pooling = pooling
        self.attention_score = nn.Linear(hidden, 1) if pooling == "attention" else None
        self.roi_size = roi_size
        self.roi_pool = GatherMultiScaleRoIAlign(featmap_names, roi_size, sampling_ratio=2)
        self.cnn = nn.Sequential(
            _conv_block(in_channels + 3, channels, 1),
            _conv_block(channels, channels, 2),
            _conv_block(channels, channels, 2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, hidden),
        )
        self.box_embedding = nn.Linear(4, hidden)
        self.class_embedding = nn.Embedding(num_classes, hidden)
        self.graph = nn.ModuleList(
            nn.TransformerEncoderLayer(
                hidden, heads, dim_feedforward=2 * hidden, dropout=0.0, batch_first=True, norm_first=True
            )
            for _ in range(graph_layers)
        )
        self.empty_set = nn.Parameter(torch.zeros(hidden))
        self.head = nn.Linear(hidden, 2 * latent_dim)
        coords = torch.linspace(-1.0, 1.0, roi_size)
        self.register_buffer(
            "coordinates", torch.stack(torch.meshgrid(coords, coords, indexing="ij"))[None], persistent=False
        )

    def _instance_vectors(
        self,
        features: "OrderedDict[str, Tensor]",
        targets: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
    ) -> Tensor:
        boxes = [t["boxes"].to(features["0"].dtype) for t in targets]
        pooled = self.roi_pool(features, boxes, image_sizes)
        masks = []
        for target, box in zip(targets, boxes):
            instance_masks = target["masks"][:, None].to(pooled.dtype)
            rois = torch.cat([torch.arange(len(box), device=box.device, dtype=box.dtype)[:, None], box], dim=1)
            masks.append(roi_align(instance_masks, rois, (self.roi_size, self.roi_size), 1.0))
        masks = torch.cat(masks, dim=0)
        coords = self.coordinates.to(pooled.dtype).expand(len(pooled), -1, -1, -1)
        vectors = self.cnn(torch.cat([pooled, masks, coords], dim=1))
        geometry = torch.cat(
            [
                box / torch.tensor([w, h, w, h], dtype=box.dtype, device=box.device)
                for box, (h, w) in zip(boxes, image_sizes)
            ],
            dim=0,
        )
        labels = torch.cat([t["labels"] for t in targets]).clamp(0, self.class_embedding.num_embeddings - 1)
        return vectors + self.box_embedding(geometry) + self.class_embedding(labels)

    def forward(
        self,
        features: "OrderedDict[str, Tensor]",
        targets: list[dict[str, Tensor]],
        image_sizes: list[tuple[int, int]],
    ) -> DiagonalGaussian:
        counts = [len(t["boxes"]) for t in targets]
        hidden = self.empty_set.shape[0]
        dtype, device = features["0"].dtype, features["0"].device
        batch, longest = len(targets), max(counts, default=0)
        pooled = self.empty_set.to(dtype)[None].repeat(batch, 1)
        if longest > 0:
            vectors = self._instance_vectors(features, targets, image_sizes)
            nodes = torch.zeros((batch, longest, hidden), dtype=dtype, device=device)
            padding = torch.ones((batch, longest), dtype=torch.bool, device=device)
            for index, chunk in enumerate(vectors.split(counts)):
                nodes[index, : len(chunk)] = chunk
                padding[index, : len(chunk)] = False
            # An image without instances keeps one unmasked dummy node so attention stays
            # finite; its pooled vector is replaced by the empty-set embedding below.
            padding[:, 0] = False
            for layer in self.graph:
                nodes = layer(nodes, src_key_padding_mask=padding)
            count = torch.tensor(counts, dtype=dtype, device=device)
            pooled = torch.where((count > 0)[:, None], self._pool(nodes, padding), pooled)
        return DiagonalGaussian.from_head(self.head(pooled))

    def _pool(self, nodes: Tensor, padding: Tensor) -> Tensor:
        """``[B, N, H]`` node vectors -> ``[B, H]``, padding excluded."""
        if self.attention_score is None:
            weights = (~padding).to(nodes.dtype)
            weights = weights / weights.sum(dim=1, keepdim=True)
        else:
            scores = self.attention_score(nodes)[..., 0].masked_fill(padding, float("-inf"))
            weights = scores.softmax(dim=1)
        return (nodes * weights[:, :, None]).sum(dim=1)
