"""The model configuration: one dataclass that travels with every checkpoint as JSON."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

BACKBONES = ("resnet50_fpn", "resnet18_fpn", "mobilenet_v3_fpn", "small_cnn_fpn")
BACKBONE_NORMS = ("frozen_batch_norm", "batch_norm", "group_norm")
LATENT_INJECTIONS = ("bias", "film", "roi")
ENCODER_POOLINGS = ("mean", "attention")


@dataclass
class ModelConfig:
    """Everything needed to rebuild a `LatentMaskRCNN` with the same tensor shapes and budgets.

    ``latent_dim = 0`` gives the plain MaskRCNN baseline (no prior, encoder or injection).
    ``backbone_norm = None`` picks frozen batch norm for ``resnet50_fpn`` (the layout of
    torchvision's COCO checkpoints) and trainable batch norm for the small CPU backbones.
    """

    backbone: str = "resnet50_fpn"
    num_classes: int = 2
    class_names: list[str] | None = None
    latent_dim: int = 64
    # GeneralizedRCNNTransform: shorter side resized to min_size, longer side at most max_size.
    min_size: int = 800
    max_size: int = 1333
    image_mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    image_std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    # Backbone and FPN.
    backbone_norm: str | None = None
    trainable_backbone_layers: int = 5
    fpn_channels: int = 256
    anchor_sizes: list[int] = field(default_factory=lambda: [32, 64, 128, 256, 512])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    # RPN budgets.
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_nms_thresh: float = 0.7
    rpn_batch_size_per_image: int = 256
    # RoI heads budgets.
    box_batch_size_per_image: int = 512
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    # Training only: proposals with IoU >= fg with an item are positives, below bg negatives,
    # between them ignored. A seamless pair's merged box and either half meet at IoU 0.5 exactly,
    # so at torchvision's 0.5 / 0.5 a pair's labelling hardly changes the box head's targets.
    box_fg_iou_thresh: float = 0.5
    box_bg_iou_thresh: float = 0.5
    box_head_dim: int = 1024
    # Where the code enters: the FPN maps, as "bias" (the paper's concat + 1x1 conv: a channel
    # bias) or "film" (a channel scale as well, starting at 1); or "roi": each region's box-head
    # features, after fc6 (FiLM; the RPN and the mask head see the plain maps).
    latent_injection: str = "bias"
    # The box head pools a window this many times a proposal's width and height (1: the box
    # itself, torchvision's), so it sees what lies around it. Not with the FPN injections.
    box_context: float = 1.0
    mask_head_channels: int = 256
    # Prior p(z|x) and encoder q(z|x,y).
    prior_channels: int = 128
    prior_hidden: int = 256
    encoder_roi_size: int = 14
    encoder_channels: int = 128
    encoder_hidden: int = 256
    encoder_graph_layers: int = 3
    encoder_heads: int = 4
    # How the encoder pools its instance vectors: "mean" (the paper's) or "attention".
    encoder_pooling: str = "mean"

    def __post_init__(self) -> None:
        if self.class_names is None:
            self.class_names = ["__background__"] + [f"class_{i}" for i in range(1, self.num_classes)]
        self.class_names = list(self.class_names)
        self.anchor_sizes = [int(s) for s in self.anchor_sizes]
        self.aspect_ratios = [float(r) for r in self.aspect_ratios]
        self.image_mean = [float(v) for v in self.image_mean]
        self.image_std = [float(v) for v in self.image_std]
        self._validate()

    def _validate(self) -> None:
        problems = []
        if self.backbone not in BACKBONES:
            problems.append(f"backbone {self.backbone!r} is not one of {list(BACKBONES)}")
        if self.backbone_norm is not None and self.backbone_norm not in BACKBONE_NORMS:
            problems.append(f"backbone_norm {self.backbone_norm!r} is not one of {list(BACKBONE_NORMS)} or None")
        if self.num_classes < 2:
            problems.append(f"num_classes must count the background and at least one class, got {self.num_classes}")
        if len(self.class_names) != self.num_classes:
            problems.append(f"class_names has {len(self.class_names)} names but num_classes is {self.num_classes}")
        elif self.class_names[0] != "__background__":
            problems.append(f"class_names[0] must be '__background__', got {self.class_names[0]!r}")
        if self.latent_injection not in LATENT_INJECTIONS:
            problems.append(f"latent_injection {self.latent_injection!r} is not one of {list(LATENT_INJECTIONS)}")
        if self.encoder_pooling not in ENCODER_POOLINGS:
            problems.append(f"encoder_pooling {self.encoder_pooling!r} is not one of {list(ENCODER_POOLINGS)}")
        if not 1.0 <= self.box_context <= 4.0:
            problems.append(f"box_context must be in [1, 4], got {self.box_context}")
        if self.box_context != 1.0 and self.latent_dim > 0 and self.latent_injection != "roi":
            problems.append("box_context needs latent_injection 'roi' (or latent_dim 0)")
        if self.latent_dim < 0:
            problems.append(f"latent_dim must be >= 0 (0 = plain MaskRCNN), got {self.latent_dim}")
        if not 0 < self.min_size <= self.max_size:
            problems.append(f"need 0 < min_size <= max_size, got {self.min_size}, {self.max_size}")
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            problems.append("image_mean and image_std need 3 values each, std positive")
        if not 0 <= self.trainable_backbone_layers <= 5:
            problems.append(f"trainable_backbone_layers must be in [0, 5], got {self.trainable_backbone_layers}")
        if len(self.anchor_sizes) != 5:
            problems.append(f"anchor_sizes needs one size per FPN level (5), got {len(self.anchor_sizes)}")
        for name in ("fpn_channels", "box_head_dim", "mask_head_channels", "prior_channels", "prior_hidden",
                     "encoder_roi_size", "encoder_channels", "encoder_hidden", "encoder_heads",
                     "rpn_pre_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_train",
                     "rpn_post_nms_top_n_test", "rpn_batch_size_per_image", "box_batch_size_per_image",
                     "box_detections_per_img"):
            if getattr(self, name) <= 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)}")
        if self.encoder_graph_layers < 0:
            problems.append(f"encoder_graph_layers must be >= 0, got {self.encoder_graph_layers}")
        if self.encoder_heads > 0 and self.encoder_hidden % self.encoder_heads:
            problems.append(f"encoder_hidden ({self.encoder_hidden}) must be divisible by encoder_heads "
                            f"({self.encoder_heads})")
        for name in ("rpn_nms_thresh", "box_score_thresh", "box_nms_thresh", "box_fg_iou_thresh", "box_bg_iou_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.box_bg_iou_thresh > self.box_fg_iou_thresh:
            problems.append(f"box_bg_iou_thresh ({self.box_bg_iou_thresh}) must not exceed box_fg_iou_thresh "
                            f"({self.box_fg_iou_thresh})")
        if problems:
            raise ValueError("invalid ModelConfig: " + "; ".join(problems))

    @property
    def resolved_backbone_norm(self) -> str:
        if self.backbone_norm is not None:
            return self.backbone_norm
        return "frozen_batch_norm" if self.backbone == "resnet50_fpn" else "batch_norm"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        if not isinstance(data, dict):
            raise ValueError(f"a model config must be a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown ModelConfig keys: {unknown}")
        return cls(**data)


def tiny_config(**overrides: Any) -> ModelConfig:
    """A small ResNet-18-FPN config for CPU tests and demos on images of about 64x80 pixels:
    narrow FPN and heads, small budgets, every detection kept (``box_score_thresh = 0``)."""
    values: dict[str, Any] = dict(
        backbone="resnet18_fpn",
        min_size=64,
        max_size=80,
        fpn_channels=32,
        box_head_dim=64,
        mask_head_channels=16,
        anchor_sizes=[8, 16, 32, 64, 128],
        rpn_pre_nms_top_n_train=300,
        rpn_post_nms_top_n_train=100,
        rpn_pre_nms_top_n_test=200,
        rpn_post_nms_top_n_test=50,
        box_batch_size_per_image=64,
        box_detections_per_img=10,
        box_score_thresh=0.0,
        latent_dim=16,
        prior_channels=16,
        prior_hidden=32,
        encoder_roi_size=14,
        encoder_channels=16,
        encoder_hidden=32,
        encoder_graph_layers=2,
        encoder_heads=2,
    )
    values.update(overrides)
    return ModelConfig.from_dict(values)
