"""Decoding K latent codes per image while computing every code-independent part once.

With ``F'_k = A + c_k`` (``A = W_f F + b`` shared, ``c_k = W_z z_k`` a per-level channel bias,
see `injection.py`) the following identities are exact, so K copies of the FPN maps are never
materialised:

* RPN: its 3x3 convolution is linear, ``conv(A + c_k) = conv(A) + conv_nobias(c_k * 1)``. The
  second term of a constant map differs only where the zero padding cuts the kernel: convolving
  a constant map of size ``min(h, 3) x min(w, 3)`` gives all its distinct values (top / inner /
  bottom rows times left / inner / right columns), which are expanded by border index. Only the
  ReLU and the 1x1 objectness / box-delta convolutions run per code.
* RoIAlign: each output bin is a weighted sum of feature cells, so
  ``RoIAlign(A + c_k) = RoIAlign(A) + c_k * RoIAlign(1)``; ``RoIAlign(1)`` (one channel) is the
  exact weight, including bins that reach outside the feature map. RoIs of all codes are pooled
  from ``A`` in one call per head, and the box and mask heads run once on all of them.
"""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn, Tensor
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.ops import MultiScaleRoIAlign


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
    small = values[:, :, None, None].expand(-1, -1, min(height, 3), min(width, 3))
    out = F.conv2d(small, conv.weight, None, stride=1, padding=conv.padding, dilation=conv.dilation)
    rows = _border_index(height, values.device)
    cols = _border_index(width, values.device)
    return out[:, :, rows][:, :, :, cols]


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
    rpn: RegionProposalNetwork, shared: list[Tensor], biases: list[Tensor]
) -> tuple[list[Tensor], list[Tensor]]:
    """RPN head outputs for every (image, code): ``shared[l] [B, C, h, w]``, ``biases[l] [B, K, C]``
    -> objectness ``[B*K, A, h, w]`` and deltas ``[B*K, 4A, h, w]`` per level (image-major)."""
    conv, weight, bias, num_anchors = _rpn_head_parts(rpn)
    objectness, deltas = [], []
    for x, code_bias in zip(shared, biases):
        batch, codes, channels = code_bias.shape
        height, width = x.shape[-2:]
        base = conv(x)
        border = constant_map_conv(conv, code_bias.reshape(batch * codes, channels), height, width)
        border = border.view(batch, codes, -1, height, width)
        outputs = []
        for index in range(batch):
            hidden = border[index].add_(base[index]).relu_()
            outputs.append(F.conv2d(hidden, weight, bias))
        out = torch.cat(outputs, dim=0)
        objectness.append(out[:, :num_anchors])
        deltas.append(out[:, num_anchors:])
    return objectness, deltas


def proposals_for_codes(
    rpn: RegionProposalNetwork,
    images: ImageList,
    shared: "OrderedDict[str, Tensor]",
    biases: list[Tensor],
) -> list[Tensor]:
    """Post-NMS proposals per (image, code), image-major: ``B*K`` tensors ``[n, 4]``."""
    if rpn.training:
        raise ValueError("batched decoding is inference only (call model.eval())")
    levels = list(shared.values())
    codes = biases[0].shape[1]
    objectness, deltas = rpn_head_for_codes(rpn, levels, biases)
    anchors = rpn.anchor_generator(images, levels)
    anchors = [a for a in anchors for _ in range(codes)]
    num_anchors_per_level = [o[0].numel() for o in objectness]
    objectness, deltas = concat_box_prediction_layers(objectness, deltas)
    proposals = rpn.box_coder.decode(deltas, anchors).view(len(anchors), -1, 4)
    sizes = [s for s in images.image_sizes for _ in range(codes)]
    boxes, _ = rpn.filter_proposals(proposals, objectness, sizes, num_anchors_per_level)
    return boxes


def pool_for_codes(
    pooler: MultiScaleRoIAlign,
    shared: "OrderedDict[str, Tensor]",
    level_biases: "OrderedDict[str, Tensor]",
    boxes: list[Tensor],
    image_sizes: list[tuple[int, int]],
    codes: int,
) -> Tensor:
    """``RoIAlign(A + c_k)`` for the boxes of every (image, code) (``boxes``: ``B*K`` tensors,
    image-major), pooled from the shared maps plus ``c_k * RoIAlign(1)``: ``[R, C, S, S]``."""
    batch = len(image_sizes)
    per_image = [torch.cat(boxes[i * codes:(i + 1) * codes]) for i in range(batch)]
    pooled = pooler(shared, per_image, image_sizes)
    if pooled.shape[0] == 0:
        return pooled
    ones = OrderedDict(
        (name, x.new_ones((x.shape[0], 1) + x.shape[2:])) for name, x in shared.items() if name in pooler.featmap_names
    )
    weights = pooler(ones, per_image, image_sizes)
    levels = pooler.map_levels(per_image)
    stacked = torch.stack([level_biases[name].flatten(0, 1) for name in pooler.featmap_names])  # [L, B*K, C]
    counts = torch.tensor([len(b) for b in boxes], device=pooled.device)
    virtual = torch.repeat_interleave(torch.arange(len(boxes), device=pooled.device), counts)
    bias_rows = stacked[levels, virtual]
    return pooled.add_(bias_rows[:, :, None, None] * weights)


def detect_for_codes(
    roi_heads: RoIHeads,
    shared: "OrderedDict[str, Tensor]",
    level_biases: "OrderedDict[str, Tensor]",
    proposals: list[Tensor],
    image_sizes: list[tuple[int, int]],
    codes: int,
) -> list[dict[str, Tensor]]:
    """Box and mask heads for all codes at once; ``B*K`` detection dicts (image-major) in the
    resized frame, masks as ``[n, 1, M, M]`` probabilities like torchvision's RoIHeads."""
    if roi_heads.training:
        raise ValueError("batched decoding is inference only (call model.eval())")
    virtual_sizes = [s for s in image_sizes for _ in range(codes)]
    box_features = pool_for_codes(roi_heads.box_roi_pool, shared, level_biases, proposals, image_sizes, codes)
    box_features = roi_heads.box_head(box_features)
    class_logits, box_regression = roi_heads.box_predictor(box_features)
    boxes, scores, labels = roi_heads.postprocess_detections(class_logits, box_regression, proposals, virtual_sizes)
    mask_features = pool_for_codes(roi_heads.mask_roi_pool, shared, level_biases, boxes, image_sizes, codes)
    if mask_features.shape[0] > 0:
        mask_logits = roi_heads.mask_predictor(roi_heads.mask_head(mask_features))
        mask_probs = maskrcnn_inference(mask_logits, labels)
    else:
        size = roi_heads.mask_roi_pool.output_size[0] * 2
        mask_probs = [b.new_zeros((0, 1, size, size)) for b in boxes]
    return [
        {"boxes": b, "scores": s, "labels": l, "masks": m}
        for b, s, l, m in zip(boxes, scores, labels, mask_probs)
    ]
