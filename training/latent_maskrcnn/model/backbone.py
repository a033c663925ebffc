"""Backbone + FPN, built without downloading weights; five levels ("0".."3", "pool") always.

The module layout (``body`` / ``fpn``) matches torchvision's detection backbones, so the state
dict keys of a torchvision MaskRCNN load into the ResNet-50 variant unchanged.
"""
from __future__ import annotations

import math
from typing import Callable

from torch import nn
from torchvision.models import mobilenet_v3_large, resnet18, resnet50
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.ops.misc import FrozenBatchNorm2d

from .config import ModelConfig

FEATURE_NAMES = ["0", "1", "2", "3"]  # P2..P5; the FPN adds "pool" (P6) for the RPN only.

# Last block of each stride-4/8/16/32 stage of mobilenet_v3_large.features.
_MOBILENET_STAGE_ENDS = (3, 6, 12, 16)


def _group_norm(num_channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(math.gcd(32, num_channels), num_channels)


def norm_layer_for(name: str) -> Callable[[int], nn.Module]:
    if name == "frozen_batch_norm":
        return FrozenBatchNorm2d
    if name == "batch_norm":
        return nn.BatchNorm2d
    if name == "group_norm":
        return _group_norm
    raise ValueError(f"unknown backbone norm {name!r}")


def _freeze_resnet_layers(body: nn.Module, trainable_layers: int) -> None:
    layers_to_train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        layers_to_train.append("bn1")
    for name, parameter in body.named_parameters():
        if not any(name.startswith(layer) for layer in layers_to_train):
            parameter.requires_grad_(False)


def _freeze_mobilenet_layers(features: nn.Sequential, trainable_layers: int) -> None:
    """Same counting as ResNet: 5 trains everything, 0 freezes the whole body."""
    if trainable_layers >= 5:
        return
    stage_starts = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)]
    freeze_before = len(features) if trainable_layers == 0 else stage_starts[len(stage_starts) - trainable_layers]
    for block in features[:freeze_before]:
        for parameter in block.parameters():
            parameter.requires_grad_(False)


def _small_cnn(norm: Callable[[int], nn.Module]) -> tuple[nn.Sequential, list[int]]:
    """Four stages of plain 3x3 convolutions at strides 4, 8, 16 and 32 (about 0.2 M parameters):
    enough for flat toy scenes, and fast enough to train a model inside a unit test."""
    def conv(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), norm(cout), nn.ReLU(inplace=True)]

    widths = [32, 48, 64, 64]
    stages = [nn.Sequential(*conv(3, 16, 2), *conv(16, widths[0], 2), *conv(widths[0], widths[0], 1))]
    for cin, cout in zip(widths, widths[1:]):
        stages.append(nn.Sequential(*conv(cin, cout, 2), *conv(cout, cout, 1)))
    body = nn.Sequential()
    for index, stage in enumerate(stages):
        body.add_module(f"layer{index + 1}", stage)
    return body, widths


def build_backbone(config: ModelConfig) -> BackboneWithFPN:
    """ResNet-50/18, MobileNetV3-Large or a small CNN with an FPN of ``config.fpn_channels``
    channels."""
    norm = norm_layer_for(config.resolved_backbone_norm)
    if config.backbone in ("resnet50_fpn", "resnet18_fpn"):
        factory = resnet50 if config.backbone == "resnet50_fpn" else resnet18
        body = factory(weights=None, norm_layer=norm)
        _freeze_resnet_layers(body, config.trainable_backbone_layers)
        stage2 = body.inplanes // 8
        in_channels = [stage2 * 2 ** i for i in range(4)]
        return_layers = {f"layer{k + 1}": name for k, name in enumerate(FEATURE_NAMES)}
        return BackboneWithFPN(body, return_layers, in_channels, config.fpn_channels)
    if config.backbone == "mobilenet_v3_fpn":
        features = mobilenet_v3_large(weights=None, norm_layer=norm).features
        _freeze_mobilenet_layers(features, config.trainable_backbone_layers)
        return_layers = {str(index): name for index, name in zip(_MOBILENET_STAGE_ENDS, FEATURE_NAMES)}
        in_channels = [features[index].out_channels for index in _MOBILENET_STAGE_ENDS]
        return BackboneWithFPN(features, return_layers, in_channels, config.fpn_channels)
    if config.backbone == "small_cnn_fpn":
        body, in_channels = _small_cnn(norm)
        return_layers = {f"layer{k + 1}": name for k, name in enumerate(FEATURE_NAMES)}
        return BackboneWithFPN(body, return_layers, in_channels, config.fpn_channels)
    raise ValueError(f"unknown backbone {config.backbone!r}")
