"""Decoding K latent codes per image while computing every code-independent part once.

With ``F'_k = A + c_k`` (``A = W_f F + b`` shared, ``c_k = W_z z_k`` a per-level channel bias,
see `injection.py`) the following identities are exact, so K copies of the FPN maps are never
materialised:

* RPN: its 3x3 convolution is linear, ``conv(A + c_k) = conv(A) + conv_nobias(c_k * 1)``. The
  second term of a constant map differs only where the zero padding cuts the kernel: convolving
  a constant map of size ``min(h, 3) x min(w, 3)`` gives all its distinct values (top / inner /
  bottom rows times left / inner / right columns). Only the ReLU and the 1x1 objectness /
  box-delta convolutions run per code.
* RoIAlign: each output bin is a weighted sum of feature cells, so
  ``RoIAlign(A + c_k) = RoIAlign(A) + c_k * RoIAlign(1)``; ``RoIAlign(1)`` (one channel) is the
  exact weight, including bins that reach outside the feature map. The RoIs of all codes are
  pooled from ``A`` and the box and mask heads run on all of them together.

Three implementation choices compute the same functions in less time than torchvision's
modules on a CPU: RoIAlign runs as weighted gathers of whole channel vectors from channels-last
maps (`roi_align_gather.py`; torchvision's CPU kernel walks each channel on one thread), and the
pooled features stay channels-last; the mask head's 3x3 convolutions use Winograd's F(4x4, 3x3)
(`winograd.py`);
the mask predictor's 2x2 stride-2 transposed convolution runs as one matrix product whose 1x1
logits are computed for the predicted class only.
"""
from __future__ import annotations

import contextlib
from collections import OrderedDict
from typing import Callable, ContextManager

import torch
import torch.nn.functional as F
from torch import nn, Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign

from .roi_align_gather import expand_boxes, roi_align_nhwc
from .winograd import conv_relu_stack_nhwc

StageTimer = Callable[[str], ContextManager]
BOX_HEAD_CHUNK = 2048  # RoIs per box-head call: bounded memory, large enough for efficient GEMMs
MASK_HEAD_CHUNK = 64


def untimed(_: str) -> ContextManager:
    return contextlib.nullcontext()


def _border_index(size: int, device: torch.device) -> Tensor:
    """Maps each row (column) to the row (column) of the small constant-map convolution."""
    if size < 3:
        return torch.arange(size, device=device)
    index = torch.ones(size, dtype=torch.long, device=device)
    index[0] = 0
    index[-1] = 2
    return index


def constant_map_conv(conv: nn.Conv2d, values: Tensor, height: int, width: int) -> Tensor:
    """``conv`` without bias applied to maps that are constant per channel, ``values [N, C]``,
    of size ``height x width``: ``[N, C_out, height, width]`` (exact, zero padding included)."""
    small = _small_constant_map_conv(conv, values, height, width)
    rows = _border_index(height, values.device)
    cols = _border_index(width, values.device)
    return small[:, :, rows][:, :, :, cols]


def _small_constant_map_conv(conv: nn.Conv2d, values: Tensor, height: int, width: int) -> Tensor:
    small = values[:, :, None, None].expand(-1, -1, min(height, 3), min(width, 3))
    return F.conv2d(small, conv.weight, None, stride=1, padding=conv.padding, dilation=conv.dilation)


def _add_expanded(base: Tensor, small: Tensor) -> Tensor:
    """``base [C, h, w] (or [K, C, h, w]) + expand(small [K, C, h3, w3])`` -> ``[K, C, h, w]``,
    writing the inner value everywhere and then only the four border lines (no full-size index
    gather)."""
    height, width = base.shape[-2:]
    base = base if base.dim() == 4 else base[None]
    if height < 3 or width < 3:
        rows = _border_index(height, base.device)
        cols = _border_index(width, base.device)
        return small[:, :, rows][:, :, :, cols] + base
    rows = _border_index(height, base.device)
    cols = _border_index(width, base.device)
    out = base + small[:, :, 1:2, 1:2]
    out[:, :, 0, :] = base[:, :, 0, :] + small[:, :, 0, :][:, :, cols]
    out[:, :, -1, :] = base[:, :, -1, :] + small[:, :, 2, :][:, :, cols]
    out[:, :, :, 0] = base[:, :, :, 0] + small[:, :, :, 0][:, :, rows]
    out[:, :, :, -1] = base[:, :, :, -1] + small[:, :, :, 2][:, :, rows]
    return out


def _rpn_head_parts(rpn: RegionProposalNetwork) -> tuple[nn.Conv2d, Tensor, Tensor, int]:
    head = rpn.head
    if len(head.conv) != 1 or not isinstance(head.conv[0][0], nn.Conv2d) or not isinstance(head.conv[0][1], nn.ReLU):
        raise ValueError("batched decoding needs torchvision's RPNHead with one conv + ReLU")
    conv = head.conv[0][0]
    if conv.kernel_size != (3, 3) or conv.stride != (1, 1) or conv.padding != (1, 1) or conv.groups != 1:
        raise ValueError("batched decoding needs the RPN conv to be 3x3, stride 1, padding 1")
    weight = torch.cat([head.cls_logits.weight, head.bbox_pred.weight], dim=0)
    bias = torch.cat([head.cls_logits.bias, head.bbox_pred.bias], dim=0)
    return conv, weight, bias, head.cls_logits.out_channels


def rpn_head_for_codes(
    rpn: RegionProposalNetwork, shared: list[Tensor], biases: list[Tensor], scales: list[Tensor] | None = None
) -> tuple[list[Tensor], list[Tensor]]:
    """RPN head outputs for every (image, code): ``shared[l] [B, C, h, w]``, ``biases[l] [B, K, C]``
    -> objectness ``[B*K, A, h, w]`` and deltas ``[B*K, 4A, h, w]`` per level (image-major).

    With FiLM ``scales[l] [B, K, C]``: ``conv3x3(A * g_k) = conv3x3 with weights W * g_k on A``,
    so the 3x3 convolution runs once per code (as one convolution with K times the outputs)."""
    conv, weight, bias, num_anchors = _rpn_head_parts(rpn)
    objectness, deltas = [], []
    for level, (x, code_bias) in enumerate(zip(shared, biases)):
        batch, codes, channels = code_bias.shape
        height, width = x.shape[-2:]
        base = conv(x) if scales is None else _scaled_conv(conv, x, scales[level])
        small = _small_constant_map_conv(conv, code_bias.reshape(batch * codes, channels), height, width)
        small = small.view(batch, codes, -1, small.shape[-2], small.shape[-1])
        head_weight, head_bias = weight[:, :, 0, 0], bias[:, None]
        out = base.new_empty((batch * codes, head_weight.shape[0], height, width))
        for index in range(batch):
            hidden = _add_expanded(base[index], small[index]).relu_()
            # The 1x1 objectness / box-delta convolutions as one matrix product per code.
            target = out[index * codes:(index + 1) * codes].view(codes, -1, height * width)
            torch.matmul(head_weight, hidden.view(codes, channels, -1), out=target)
            target += head_bias
        objectness.append(out[:, :num_anchors])
        deltas.append(out[:, num_anchors:])
    return objectness, deltas


def _scaled_conv(conv: nn.Conv2d, x: Tensor, scales: Tensor) -> Tensor:
    """``conv(x[b] * scales[b, k])`` for every image and code: ``[B, K, C_out, h, w]``."""
    batch, codes, channels = scales.shape
    out_channels = conv.out_channels
    outputs = []
    for index in range(batch):
        weight = (conv.weight[None] * scales[index][:, None, :, None, None]).reshape(codes * out_channels, channels, 3, 3)
        out = F.conv2d(x[index:index + 1], weight, conv.bias.repeat(codes), padding=conv.padding)
        outputs.append(out.view(codes, out_channels, *x.shape[-2:]))
    return torch.stack(outputs)


def proposals_for_codes(
    rpn: RegionProposalNetwork,
    images: ImageList,
    shared: "OrderedDict[str, Tensor]",
    biases: list[Tensor],
    scales: list[Tensor] | None = None,
) -> list[Tensor]:
    """Post-NMS proposals per (image, code), image-major: ``B*K`` tensors ``[n, 4]``."""
    if rpn.training:
        raise ValueError("batched decoding is inference only (call model.eval())")
    levels = list(shared.values())
    codes = biases[0].shape[1]
    objectness, deltas = rpn_head_for_codes(rpn, levels, biases, scales)
    anchors = rpn.anchor_generator(images, levels)
    anchors = [a for a in anchors for _ in range(codes)]
    num_anchors_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas, anchors).view(len(anchors), -1, 4)
    sizes = [s for s in images.image_sizes for _ in range(codes)]
    boxes, _ = rpn.filter_proposals(proposals, objectness, sizes, num_anchors_per_level)
    return boxes


class CodeRois:
    """The RoIs of all (image, code) pairs for one pooler: level, image index and code bias of
    each, so any slice of them can be pooled as ``RoIAlign(A + c_k) = RoIAlign(A) + c_k RoIAlign(1)``
    (with FiLM scales ``g_k``: ``RoIAlign(A * g_k + c_k) = RoIAlign(A) * g_k + c_k RoIAlign(1)``).
    Pooling uses `roi_align_gather` (channels-last, all channels of a cell at once) with the
    pooler's own scales and FPN level rule."""

    def __init__(
        self,
        pooler: MultiScaleRoIAlign,
        shared: "OrderedDict[str, Tensor]",
        level_biases: "OrderedDict[str, Tensor]",
        boxes: list[Tensor],
        image_sizes: list[tuple[int, int]],
        codes: int,
        tables: dict[str, Tensor] | None = None,
        level_scales: "OrderedDict[str, Tensor] | None" = None,
    ) -> None:
        self.pooler = pooler
        self.shared = shared
        batch = len(image_sizes)
        per_image = [torch.cat(boxes[i * codes:(i + 1) * codes]) for i in range(batch)]
        if pooler.scales is None or pooler.map_levels is None:
            # torchvision sets its scales up on the first call (its own forward, also for subclasses)
            MultiScaleRoIAlign.forward(pooler, shared, [b[:0] for b in per_image], image_sizes)
        first = shared[pooler.featmap_names[0]]
        device, dtype = first.device, first.dtype
        counts = torch.tensor([len(b) for b in boxes], device=device)
        virtual = torch.repeat_interleave(torch.arange(len(boxes), device=device), counts)
        self.count = int(virtual.numel())
        image_index = torch.div(virtual, codes, rounding_mode="floor").to(dtype)
        self.rois = torch.cat([image_index[:, None], torch.cat(per_image).to(dtype)], dim=1)
        self.levels = pooler.map_levels(per_image) if self.count else virtual
        stacked = torch.stack([level_biases[name].flatten(0, 1) for name in pooler.featmap_names])  # [L, B*K, C]
        self.bias_rows = stacked[self.levels, virtual]
        self.scale_rows = None
        if level_scales is not None:
            scales = torch.stack([level_scales[name].flatten(0, 1) for name in pooler.featmap_names])
            self.scale_rows = scales[self.levels, virtual]
        self._tables = {} if tables is None else tables  # channels-last maps, shareable between poolers

    def _table(self, name: str) -> Tensor:
        if name not in self._tables:
            x = self.shared[name]
            self._tables[name] = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        return self._tables[name]

    def pool(self, start: int = 0, stop: int | None = None) -> Tensor:
        """Channels-last pooled features ``[n, S, S, C]`` of RoIs ``start:stop``."""
        stop = self.count if stop is None else stop
        levels = self.levels[start:stop]
        first = self.shared[self.pooler.featmap_names[0]]
        size = tuple(self.pooler.output_size)
        out = first.new_empty((stop - start,) + size + (first.shape[1],))
        for level, name in enumerate(self.pooler.featmap_names):
            index = torch.where(levels == level)[0]
            if len(index) == 0:
                continue
            rows = index + start
            height, width = self.shared[name].shape[-2:]
            pooled, weight = roi_align_nhwc(
                self._table(name), height, width, self.rois[rows], size,
                self.pooler.scales[level], self.pooler.sampling_ratio,
            )
            if self.scale_rows is not None:
                pooled.mul_(self.scale_rows[rows][:, None, None, :])
            pooled.addcmul_(self.bias_rows[rows][:, None, None, :], weight[..., None])
            out[index] = pooled
        return out


def pool_for_codes(
    pooler: MultiScaleRoIAlign,
    shared: "OrderedDict[str, Tensor]",
    level_biases: "OrderedDict[str, Tensor]",
    boxes: list[Tensor],
    image_sizes: list[tuple[int, int]],
    codes: int,
) -> Tensor:
    """``RoIAlign(A + c_k)`` for the boxes of every (image, code) (``boxes``: ``B*K`` tensors,
    image-major), without materialising ``A + c_k``: ``[R, C, S, S]`` like torchvision's pooler."""
    return CodeRois(pooler, shared, level_biases, boxes, image_sizes, codes).pool().permute(0, 3, 1, 2)


def _box_head_nhwc(box_head: nn.Module) -> Callable[[Tensor], Tensor]:
    """The box head on channels-last pooled features: for torchvision's TwoMLPHead, fc6's
    weight columns are reordered once instead of transposing every RoI's features."""
    if not isinstance(box_head, TwoMLPHead):
        return lambda pooled: box_head(pooled.permute(0, 3, 1, 2))
    fc6, fc7 = box_head.fc6, box_head.fc7
    reordered: list[Tensor] = []

    def run(pooled: Tensor) -> Tensor:
        count, height, width, channels = pooled.shape
        if not reordered:
            weight = fc6.weight.view(fc6.out_features, channels, height, width).permute(0, 2, 3, 1)
            reordered.append(weight.reshape(fc6.out_features, -1))
        hidden = F.linear(pooled.reshape(count, -1), reordered[0], fc6.bias).relu_()
        return F.linear(hidden, fc7.weight, fc7.bias).relu_()

    return run


def mask_probs_for_labels(predictor: MaskRCNNPredictor, features: Tensor, labels: Tensor) -> Tensor:
    """``sigmoid(predictor(features))`` at each RoI's label, ``[N, 1, 2S, 2S]``, from NHWC
    ``features [N, S, S, C]``. The 2x2 stride-2 transposed convolution has no overlapping
    outputs, so it is one matrix product producing the four sub-pixels; the 1x1 logits run for
    the selected class only."""
    deconv, logits = predictor.conv5_mask, predictor.mask_fcn_logits
    if deconv.kernel_size != (2, 2) or deconv.stride != (2, 2) or deconv.padding != (0, 0) or deconv.groups != 1:
        raise ValueError("mask predictor must use a 2x2 stride-2 transposed convolution")
    count, height, width, channels = features.shape
    out_channels = deconv.out_channels
    weight = deconv.weight.permute(0, 2, 3, 1).reshape(channels, 4 * out_channels)  # [Cin, (a, b, Cout)]
    hidden = torch.addmm(deconv.bias.repeat(4), features.reshape(-1, channels), weight)
    hidden = hidden.relu_().view(count, height * width * 4, out_channels)
    class_weight = logits.weight[labels, :, 0, 0]  # [N, Cout]
    out = torch.bmm(hidden, class_weight[:, :, None]).view(count, height, width, 2, 2)
    out = out + logits.bias[labels].view(count, 1, 1, 1, 1)
    return out.permute(0, 1, 3, 2, 4).reshape(count, 1, 2 * height, 2 * width).sigmoid()


def detect_for_codes(
    roi_heads: RoIHeads,
    shared: "OrderedDict[str, Tensor]",
    level_biases: "OrderedDict[str, Tensor]",
    proposals: list[Tensor],
    image_sizes: list[tuple[int, int]],
    codes: int,
    stage: StageTimer = untimed,
    level_scales: "OrderedDict[str, Tensor] | None" = None,
) -> list[dict[str, Tensor]]:
    """Box and mask heads for all codes at once; ``B*K`` detection dicts (image-major) in the
    resized frame, masks as ``[n, 1, M, M]`` probabilities like torchvision's RoIHeads."""
    if roi_heads.training:
        raise ValueError("batched decoding is inference only (call model.eval())")
    virtual_sizes = [s for s in image_sizes for _ in range(codes)]
    tables: dict[str, Tensor] = {}
    with stage("box_head"):
        box_rois = CodeRois(roi_heads.box_roi_pool, shared, level_biases, proposals, image_sizes, codes, tables,
                            level_scales)
        box_head = _box_head_nhwc(roi_heads.box_head)
        class_logits, box_regression = [], []
        for start in range(0, max(box_rois.count, 1), BOX_HEAD_CHUNK):
            stop = min(start + BOX_HEAD_CHUNK, box_rois.count)
            scores, deltas = roi_heads.box_predictor(box_head(box_rois.pool(start, stop)))
            class_logits.append(scores)
            box_regression.append(deltas)
        class_logits, box_regression = torch.cat(class_logits), torch.cat(box_regression)
    with stage("box_postprocess"):
        boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, proposals, virtual_sizes)
    mask_probs = _mask_probs_for_codes(roi_heads, shared, level_biases, boxes, labels, image_sizes, codes, stage,
                                       tables, level_scales)
    return [
        {"boxes": b, "scores": s, "labels": l, "masks": m}
        for b, s, l, m in zip(boxes, scores, labels, mask_probs)
    ]


def _mask_probs_for_codes(
    roi_heads: RoIHeads,
    shared: "OrderedDict[str, Tensor]",
    level_biases: "OrderedDict[str, Tensor]",
    boxes: list[Tensor],
    labels: list[Tensor],
    image_sizes: list[tuple[int, int]],
    codes: int,
    stage: StageTimer = untimed,
    tables: dict[str, Tensor] | None = None,
    level_scales: "OrderedDict[str, Tensor] | None" = None,
) -> tuple[Tensor, ...]:
    """The mask head on the detections of every (image, code): per detection list ``[n, 1, M, M]``
    probabilities at its label."""
    with stage("mask_head"):
        mask_rois = CodeRois(roi_heads.mask_roi_pool, shared, level_biases, boxes, image_sizes, codes, tables,
                             level_scales)
        all_labels = torch.cat(labels)
        probs = []
        for start in range(0, mask_rois.count, MASK_HEAD_CHUNK):
            stop = min(start + MASK_HEAD_CHUNK, mask_rois.count)
            pooled = mask_rois.pool(start, stop)
            if pooled.device.type == "cpu":
                hidden = conv_relu_stack_nhwc(roi_heads.mask_head, pooled)
            else:  # GPU libraries choose their own fast convolution algorithms
                hidden = roi_heads.mask_head(pooled.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
            probs.append(mask_probs_for_labels(roi_heads.mask_predictor, hidden, all_labels[start:stop]))
        size = roi_heads.mask_roi_pool.output_size[0] * 2
        probs = torch.cat(probs) if probs else shared["0"].new_zeros((0, 1, size, size))
        return probs.split([len(b) for b in boxes])


def detect_for_roi_codes(
    roi_heads: RoIHeads,
    features: "OrderedDict[str, Tensor]",
    codes: Tensor,
    proposals: list[Tensor],
    image_sizes: list[tuple[int, int]],
    stage: StageTimer = untimed,
) -> list[dict[str, Tensor]]:
    """Box and mask heads for ``codes [B, K, D]`` entering at the box head
    (`roi_conditioning.py`): the proposals (one list per image, shared by its codes), their
    pooling and ``fc6`` run once; only the code's FiLM, ``fc7``, the predictor and the masks of
    each code's detections run per code. ``B*K`` detection dicts, image-major."""
    if roi_heads.training:
        raise ValueError("batched decoding is inference only (call model.eval())")
    batch, count = codes.shape[:2]
    box_head = roi_heads.box_head
    channels = features["0"].shape[1]
    no_bias = OrderedDict((name, codes.new_zeros((batch, 1, channels))) for name in features)
    tables: dict[str, Tensor] = {}
    with stage("box_head"):
        windows = [expand_boxes(p, roi_heads.box_roi_pool.context) for p in proposals]
        box_rois = CodeRois(roi_heads.box_roi_pool, features, no_bias, windows, image_sizes, 1, tables)
        pooled = box_rois.pool().permute(0, 3, 1, 2)
        hidden = box_head.hidden(pooled).split([len(p) for p in proposals])
        class_logits, box_regression = [], []
        for index in range(batch):
            rois = hidden[index].shape[0]
            repeated = hidden[index].repeat(count, 1)
            per_roi_codes = codes[index].to(repeated.dtype).repeat_interleave(rois, dim=0)
            scores, deltas = roi_heads.box_predictor(box_head.condition(repeated, per_roi_codes))
            class_logits.append(scores)
            box_regression.append(deltas)
        class_logits, box_regression = torch.cat(class_logits), torch.cat(box_regression)
    virtual_proposals = [p for p in proposals for _ in range(count)]
    virtual_sizes = [s for s in image_sizes for _ in range(count)]
    with stage("box_postprocess"):
        boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, virtual_proposals,
                                                                 virtual_sizes)
    no_bias = OrderedDict((name, codes.new_zeros((batch, count, channels))) for name in features)
    mask_probs = _mask_probs_for_codes(roi_heads, features, no_bias, boxes, labels, image_sizes, count, stage, tables)
    return [
        {"boxes": b, "scores": s, "labels": l, "masks": m}
        for b, s, l, m in zip(boxes, scores, labels, mask_probs)
    ]
