"""The mirror view for point-estimate models: the baseline to hold the confidence masks' views against.

The confidence masks' K samples are decoded on the image and on its mirror image (the authors'
4 codes x 2 views), and part of what they trim is where the two views disagree. A user can give
MaskRCNN, or the latent model's prior mean, the same: decode the image and its mirror image once
each and keep the pixels both views agree on, i.e. the confidence masks of those two predictions
at p = 1 (`MIRROR_VIEW_P`, `threshold_curves.threshold_prediction`).
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from latent_maskrcnn.model.postprocess import MASK_THRESHOLD, mirror_prediction

MIRROR_VIEW_P = 1.0


def mirror_view_predictions(
    model: Any,
    images: Sequence[Tensor],
    mask_threshold: float = MASK_THRESHOLD,
    keep_mask_probabilities: bool = False,
) -> list[dict]:
    """Per image, the model's point estimate (its prior mean; MaskRCNN's one prediction) on the
    horizontally mirrored image, mapped back onto the image."""
    mirrored = model.sample([image.flip(-1) for image in images], num_samples=1, mode="prior_mean",
                            mask_threshold=mask_threshold, keep_mask_probabilities=keep_mask_probabilities)
    return [mirror_prediction(samples[0], int(image.shape[-1])) for image, samples in zip(images, mirrored)]
