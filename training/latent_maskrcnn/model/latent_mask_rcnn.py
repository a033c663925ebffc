"""Latent-MaskRCNN (Liu et al., ICRA 2023, Section III-B): MaskRCNN whose FPN maps receive a
latent code before region proposal, a prior p(z|x) and a training-time encoder q(z|x,y).

Submodule names follow torchvision's MaskRCNN (``backbone``, ``rpn``, ``roi_heads``), so a
torchvision state dict maps onto the decoder key for key (see `checkpoint.py`).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
from torch import nn, Tensor
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from .backbone import FEATURE_NAMES, build_backbone
from .batched_decoding import StageTimer, detect_for_codes, detect_for_roi_codes, proposals_for_codes, untimed
from .config import ModelConfig
from .distributions import DiagonalGaussian, kl_divergence
from .encoder import PosteriorEncoder
from .injection import LatentInjection
from .postprocess import MASK_THRESHOLD, mirror_prediction, to_prediction, validate_mask_threshold
from .prior import LatentPrior
from .roi_align_gather import GatherMultiScaleRoIAlign
from .roi_conditioning import CODE_KEY, CodeConditionedBoxHead, RoIPoolWithCode

LEVEL_NAMES = FEATURE_NAMES + ["pool"]
SAMPLE_MODES = ("sample", "prior_mean")


def _check_images(images: Any) -> None:
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError("images must be a non-empty list of float tensors [3, H, W]")
    for index, image in enumerate(images):
        if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"image {index} must be a float tensor [3, H, W], got {shape}")
        if not image.is_floating_point():
            raise ValueError(f"image {index} must be floating point in [0, 1], got {image.dtype}")
        if image.shape[1] < 2 or image.shape[2] < 2:
            raise ValueError(f"image {index} is too small: {tuple(image.shape)}")
        if not bool(torch.isfinite(image).all()):
            raise ValueError(f"image {index} contains NaN or infinite values")


def _check_targets(images: list[Tensor], targets: Any, num_classes: int) -> list[dict[str, Tensor]]:
    if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
        raise ValueError(f"training needs one target dict per image ({len(images)})")
    checked = []
    for index, (image, target) in enumerate(zip(images, targets)):
        missing = [key for key in ("boxes", "labels", "masks") if key not in target]
        if missing:
            raise ValueError(f"target {index} lacks {missing}")
        boxes, labels, masks = target["boxes"], target["labels"], target["masks"]
        count = boxes.shape[0] if boxes.dim() == 2 else -1
        if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
            raise ValueError(f"target {index}: boxes must be float [G, 4], got {tuple(boxes.shape)} {boxes.dtype}")
        if labels.shape != (count,) or labels.is_floating_point():
            raise ValueError(f"target {index}: labels must be integer [{count}], got {tuple(labels.shape)}")
        if masks.shape != (count,) + tuple(image.shape[1:]):
            raise ValueError(
                f"target {index}: masks must be [{count}, {image.shape[1]}, {image.shape[2]}], got {tuple(masks.shape)}"
            )
        if count and (int(labels.min()) < 1 or int(labels.max()) >= num_classes):
            raise ValueError(f"target {index}: labels must be in [1, {num_classes - 1}], got {labels.tolist()}")
        if count and not bool(torch.isfinite(boxes).all()):
            raise ValueError(f"target {index}: boxes contain NaN or infinite values")
        degenerate = (boxes[:, 2:] <= boxes[:, :2]).any(dim=1)
        if bool(degenerate.any()):
            bad = int(torch.where(degenerate)[0][0])
            raise ValueError(f"target {index}: box {bad} has no area: {boxes[bad].tolist()}")
        checked.append({"boxes": boxes, "labels": labels.to(torch.int64), "masks": masks.to(torch.uint8)})
    return checked


class LatentMaskRCNN(nn.Module):
    """``model(images, targets)`` in training mode returns the losses (``loss_kl`` unweighted);
    ``model.sample(images, num_samples=K)`` returns K predictions per image."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        # The authors' trick: per image, a fair coin decodes the prior mean instead of a
        # posterior sample, so the prior-mean path is trained by the MaskRCNN losses too.
        self.posterior_or_prior_mean_coin = False
        # Optional ``name -> context manager`` wrapped around each inference stage (benchmarks).
        self.stage_timer: StageTimer | None = None
        # Post-NMS proposals per (image, code) of the last inference call, for benchmarks.
        self.last_proposal_counts: list[int] = []
        channels = config.fpn_channels
        self.transform = GeneralizedRCNNTransform(config.min_size, config.max_size, config.image_mean, config.image_std)
        self.backbone = build_backbone(config)
        anchors = AnchorGenerator(
            tuple((size,) for size in config.anchor_sizes), (tuple(config.aspect_ratios),) * len(config.anchor_sizes)
        )
        self.rpn = RegionProposalNetwork(
            anchors,
            RPNHead(channels, anchors.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=config.rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": config.rpn_pre_nms_top_n_train, "testing": config.rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": config.rpn_post_nms_top_n_train, "testing": config.rpn_post_nms_top_n_test},
            nms_thresh=config.rpn_nms_thresh,
        )
        mask_layers = [config.mask_head_channels] * 4
        self.roi_heads = RoIHeads(
            GatherMultiScaleRoIAlign(FEATURE_NAMES, 7, sampling_ratio=2, context=config.box_context),
            TwoMLPHead(channels * 7 * 7, config.box_head_dim),
            FastRCNNPredictor(config.box_head_dim, config.num_classes),
            fg_iou_thresh=config.box_fg_iou_thresh,
            bg_iou_thresh=config.box_bg_iou_thresh,
            batch_size_per_image=config.box_batch_size_per_image,
            positive_fraction=0.25,
            bbox_reg_weights=None,
            score_thresh=config.box_score_thresh,
            nms_thresh=config.box_nms_thresh,
            detections_per_img=config.box_detections_per_img,
            mask_roi_pool=GatherMultiScaleRoIAlign(FEATURE_NAMES, 14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(channels, mask_layers, 1),
            mask_predictor=MaskRCNNPredictor(mask_layers[-1], config.mask_head_channels, config.num_classes),
        )
        self.prior: LatentPrior | None = None
        self.encoder: PosteriorEncoder | None = None
        self.injection: LatentInjection | None = None
        if config.latent_dim > 0:
            self.prior = LatentPrior(channels, LEVEL_NAMES, config.latent_dim, config.prior_channels, config.prior_hidden)
            self.encoder = PosteriorEncoder(
                channels,
                FEATURE_NAMES,
                config.latent_dim,
                config.num_classes,
                roi_size=config.encoder_roi_size,
                channels=config.encoder_channels,
                hidden=config.encoder_hidden,
                graph_layers=config.encoder_graph_layers,
                heads=config.encoder_heads,
                pooling=config.encoder_pooling,
            )
            if self.injects_at_roi_heads:
                self.roi_heads.box_roi_pool = RoIPoolWithCode(FEATURE_NAMES, 7, sampling_ratio=2,
                                                              context=config.box_context)
                self.roi_heads.box_head = CodeConditionedBoxHead(channels * 7 * 7, config.box_head_dim,
                                                                 config.latent_dim)
            else:
                self.injection = LatentInjection(channels, config.latent_dim, LEVEL_NAMES,
                                                 scale=config.latent_injection == "film")

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def injects_at_roi_heads(self) -> bool:
        """The code reaches the box head per region (`roi_conditioning.py`), not the FPN maps."""
        return self.latent_dim > 0 and self.config.latent_injection == "roi"

    def _detect(
        self,
        image_list: ImageList,
        features: "OrderedDict[str, Tensor]",
        codes: Tensor | None,
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        """RPN and RoI heads by their definition, for one code per image (``codes [B, D]``, or
        None for plain MaskRCNN): the training path and the reference decoder."""
        roi_features = features
        if codes is not None and self.injects_at_roi_heads:
            roi_features = OrderedDict(features)
            roi_features[CODE_KEY] = codes
        elif codes is not None:
            features = roi_features = self.injection(features, codes)
        proposals, rpn_losses = self.rpn(image_list, features, targets)
        detections, detector_losses = self.roi_heads(roi_features, proposals, image_list.image_sizes, targets)
        return detections, {**rpn_losses, **detector_losses}

    def with_film_injection(self) -> "LatentMaskRCNN":
        """A copy with the FiLM injection (`ModelConfig.latent_injection`), computing the same
        function as this model until it is trained: the new scales start at zero."""
        if self.latent_dim == 0 or self.config.latent_injection == "film":
            raise ValueError("with_film_injection needs a latent model with the plain (bias) injection")
        config = ModelConfig.from_dict({**self.config.to_dict(), "latent_injection": "film"})
        model = LatentMaskRCNN(config).to(next(self.parameters()).device)
        missing, unexpected = model.load_state_dict(self.state_dict(), strict=False)
        if unexpected or any(not name.startswith("injection.code_scale_proj.") for name in missing):
            raise RuntimeError(f"unexpected weights moving to FiLM: missing {missing}, unexpected {unexpected}")
        return model.train(self.training)

    def set_box_iou_thresholds(self, fg: float, bg: float) -> None:
        """The box head's training targets (`ModelConfig.box_fg_iou_thresh`), for fine-tuning a
        loaded model under other thresholds; inference does not use them."""
        self.config = ModelConfig.from_dict({**self.config.to_dict(), "box_fg_iou_thresh": fg, "box_bg_iou_thresh": bg})
        self.roi_heads.proposal_matcher = Matcher(fg, bg, allow_low_quality_matches=False)

    # ------------------------------------------------------------------ shared pieces
    def preprocess(
        self, images: list[Tensor], targets: list[dict[str, Tensor]] | None = None
    ) -> tuple[ImageList, list[dict[str, Tensor]] | None, "OrderedDict[str, Tensor]"]:
        """Normalise, resize and batch the images; backbone + FPN once."""
        image_list, targets = self.transform(list(images), targets)
        features = self.backbone(image_list.tensors)
        return image_list, targets, features

    def prior_distribution(
        self, image_list: ImageList, features: "OrderedDict[str, Tensor]"
    ) -> DiagonalGaussian:
        if self.prior is None:
            raise ValueError("a model with latent_dim = 0 has no prior")
        return self.prior(features, image_list.image_sizes, tuple(image_list.tensors.shape[-2:]))

    def prior_for_images(self, images: list[Tensor]) -> DiagonalGaussian:
        """p(z|x) for each image (mean and log-variance ``[B, D]``), without decoding."""
        _check_images(images)
        image_list, _, features = self.preprocess(images)
        return self.prior_distribution(image_list, features)

    # ------------------------------------------------------------------ training
    def forward(
        self,
        images: list[Tensor],
        targets: list[dict[str, Tensor]] | None = None,
        posterior_or_prior_mean_coin: bool | None = None,
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training mode: the MaskRCNN losses plus ``loss_kl`` (closed-form KL(q || p), summed
        over latent dimensions, mean over images; 0 for ``latent_dim = 0``). Eval mode: one
        prior-mean prediction per image."""
        _check_images(images)
        if not self.training:
            return [samples[0] for samples in self.sample(images, mode="prior_mean")]
        targets = _check_targets(list(images), targets, self.config.num_classes)
        image_list, targets, features = self.preprocess(images, targets)
        losses: dict[str, Tensor] = {}
        if self.latent_dim > 0:
            prior = self.prior_distribution(image_list, features)
            posterior = self.encoder(features, targets, image_list.image_sizes)
            codes = posterior.rsample()
            coin = self.posterior_or_prior_mean_coin if posterior_or_prior_mean_coin is None else posterior_or_prior_mean_coin
            if coin:
                use_prior_mean = torch.rand(codes.shape[0], device=codes.device) < 0.5
                codes = torch.where(use_prior_mean[:, None], prior.mean, codes)
            losses["loss_kl"] = kl_divergence(posterior, prior).mean()
        else:
            codes = None
            losses["loss_kl"] = image_list.tensors.new_zeros(())
        _, detection_losses = self._detect(image_list, features, codes, targets)
        losses.update(detection_losses)
        return losses

    # ------------------------------------------------------------------ inference
    def sample(
        self,
        images: list[Tensor],
        num_samples: int = 8,
        seed: int | None = None,
        mode: str = "sample",
        flip: bool = False,
        mask_threshold: float = MASK_THRESHOLD,
        keep_mask_probabilities: bool = False,
    ) -> list[list[dict[str, Tensor]]]:
        """K segmentations per image (one for ``prior_mean`` or ``latent_dim = 0``).

        Backbone, FPN and prior run once per image; the codes are decoded together (see
        `batched_decoding.py`). ``seed`` fixes the codes through a local generator.

        ``flip`` (``sample`` mode only): the first ceil(K/2) codes are decoded on the image and
        the first floor(K/2) of them again on its mirror image, mapped back (the authors' K = 8
        as 4 codes x {original, flipped}). The samples then also differ where the network's
        answer depends on the view, such as an unsure boundary, which the confidence masks use.

        Masks are the pixels whose probability is at least ``mask_threshold`` (in (0, 1)); with
        ``keep_mask_probabilities`` each prediction also keeps its `MaskProbabilities`, so that
        `postprocess.with_mask_threshold` binarises it at another threshold without the network.
        """
        _check_images(images)
        if mode not in SAMPLE_MODES:
            raise ValueError(f"mode must be one of {list(SAMPLE_MODES)}, got {mode!r}")
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
            raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not isinstance(flip, bool):
            raise ValueError(f"flip must be true or false, got {flip!r}")
        mask_threshold = validate_mask_threshold(mask_threshold)
        generator = torch.Generator()
        if seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(seed))
        flipped = flip and mode == "sample" and self.latent_dim > 0 and num_samples > 1
        views = list(images) + ([image.flip(-1) for image in images] if flipped else [])
        stage = self.stage_timer or untimed
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                with stage("backbone"):
                    image_list, _, features = self.preprocess(views)
                if self.latent_dim == 0:
                    detections = self._decode_plain(image_list, features, stage)
                    codes_per_image = 1
                else:
                    with stage("prior"):
                        prior = self.prior_distribution(image_list, features)
                        if mode == "prior_mean":
                            codes = prior.mean[:, None]
                        elif flipped:
                            # the original's codes on both views: its prior, not the mirror's
                            original = prior.select(slice(0, len(images)))
                            codes = original.sample_codes((num_samples + 1) // 2, generator)
                            codes = torch.cat([codes, codes])
                        else:
                            codes = prior.sample_codes(num_samples, generator)
                    detections = self._decode_codes(image_list, features, codes, stage)
                    codes_per_image = codes.shape[1]
            with torch.no_grad(), stage("paste_masks"):
                predictions = self._to_predictions(detections, image_list, views, codes_per_image,
                                                   mask_threshold, keep_mask_probabilities)
                if flipped:
                    mirrored = predictions[len(images):]
                    predictions = [
                        own + [mirror_prediction(p, int(image.shape[-1])) for p in mirror[: num_samples // 2]]
                        for image, own, mirror in zip(images, predictions, mirrored)
                    ]
                return predictions
        finally:
            self.train(was_training)

    def _decode_plain(
        self, image_list: ImageList, features: "OrderedDict[str, Tensor]", stage: StageTimer = untimed
    ) -> list[dict[str, Tensor]]:
        with stage("rpn"):
            proposals, _ = self.rpn(image_list, features)
        self.last_proposal_counts = [len(p) for p in proposals]
        with stage("roi_heads"):
            detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        return detections

    def _decode_codes(
        self,
        image_list: ImageList,
        features: "OrderedDict[str, Tensor]",
        codes: Tensor,
        stage: StageTimer = untimed,
    ) -> list[dict[str, Tensor]]:
        """``codes [B, K, D]`` -> ``B*K`` detections (image-major), FPN work shared."""
        if self.injects_at_roi_heads:
            with stage("rpn"):
                proposals, _ = self.rpn(image_list, features)
            self.last_proposal_counts = [len(p) for p in proposals for _ in range(codes.shape[1])]
            return detect_for_roi_codes(self.roi_heads, features, codes, proposals, image_list.image_sizes, stage)
        with stage("rpn"):
            shared = self.injection.shared(features)
            biases = self.injection.code_bias(codes)
            scales = self.injection.code_scale(codes)
            proposals = proposals_for_codes(self.rpn, image_list, shared, biases, scales)
        self.last_proposal_counts = [len(p) for p in proposals]
        level_biases = OrderedDict(zip(LEVEL_NAMES, biases))
        level_scales = None if scales is None else OrderedDict(zip(LEVEL_NAMES, scales))
        return detect_for_codes(
            self.roi_heads, shared, level_biases, proposals, image_list.image_sizes, codes.shape[1], stage,
            level_scales,
        )

    def posterior_mean(self, images: list[Tensor], targets: list[dict[str, Tensor]]) -> Tensor:
        """Mean of q(z | x, y) per image, ``[B, D]``: the code the encoder gives one labelling of
        an image. Decoding it (`decode_reference`) shows whether the decoder uses the code."""
        _check_images(images)
        if self.latent_dim == 0:
            raise ValueError("a model with latent_dim = 0 has no posterior")
        targets = _check_targets(list(images), targets, self.config.num_classes)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                image_list, targets, features = self.preprocess(images, targets)
                return self.encoder(features, targets, image_list.image_sizes).mean
        finally:
            self.train(was_training)

    def decode(self, images: list[Tensor], codes: Tensor) -> list[list[dict[str, Tensor]]]:
        """Predictions for given codes ``[B, K, D]`` (e.g. the encoder's, or a fixed code), with
        the batched decoder of `sample`: K predictions per image."""
        _check_images(images)
        self._check_codes(images, codes)
        was_training = self.training
        self.eval()
        try:
            with torch.inference_mode():
                image_list, _, features = self.preprocess(images)
                detections = self._decode_codes(image_list, features, codes.to(image_list.tensors.dtype))
            with torch.no_grad():
                return self._to_predictions(detections, image_list, images, codes.shape[1])
        finally:
            self.train(was_training)

    def _check_codes(self, images: list[Tensor], codes: Tensor) -> None:
        if self.latent_dim == 0:
            raise ValueError("a model with latent_dim = 0 takes no codes")
        if codes.dim() != 3 or codes.shape[0] != len(images) or codes.shape[2] != self.latent_dim:
            raise ValueError(f"codes must be [{len(images)}, K, {self.latent_dim}], got {tuple(codes.shape)}")

    def decode_reference(self, images: list[Tensor], codes: Tensor) -> list[list[dict[str, Tensor]]]:
        """The model by definition, without the shared-computation identities: for each code,
        materialise ``F' = W_f F + b + W_z z`` and run torchvision's RPN and RoI heads on it.
        ``codes [B, K, D]``. Slow; for verifying `sample` and for debugging."""
        _check_images(images)
        self._check_codes(images, codes)
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                image_list, _, features = self.preprocess(images)
                per_code = [
                    self._detect(image_list, features, codes[:, k].to(image_list.tensors.dtype))[0]
                    for k in range(codes.shape[1])
                ]
                detections = [per_code[k][b] for b in range(len(images)) for k in range(codes.shape[1])]
                return self._to_predictions(detections, image_list, images, codes.shape[1])
        finally:
            self.train(was_training)

    def _to_predictions(
        self,
        detections: list[dict[str, Tensor]],
        image_list: ImageList,
        images: list[Tensor],
        codes_per_image: int,
        mask_threshold: float = MASK_THRESHOLD,
        keep_mask_probabilities: bool = False,
    ) -> list[list[dict[str, Tensor]]]:
        results = []
        for index, image in enumerate(images):
            original = (int(image.shape[1]), int(image.shape[2]))
            chunk = detections[index * codes_per_image:(index + 1) * codes_per_image]
            results.append([to_prediction(d, image_list.image_sizes[index], original, mask_threshold,
                                          keep_mask_probabilities) for d in chunk])
        return results
