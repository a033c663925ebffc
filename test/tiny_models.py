"""An untrained tiny Latent-MaskRCNN saved as a checkpoint: what the replay, sweep and fuzz tests
feed the commands (seconds to build, masks everywhere, deterministic for a seed)."""
from __future__ import annotations

from pathlib import Path


def save_tiny_checkpoint(folder: Path, seed: int = 0) -> Path:
    import torch

    from latent_maskrcnn.model.checkpoint import save_model
    from latent_maskrcnn.model.config import tiny_config
    from latent_maskrcnn.model.latent_mask_rcnn import LatentMaskRCNN

    torch.manual_seed(seed)
    path = Path(folder) / "tiny.safetensors"
    save_model(LatentMaskRCNN(tiny_config()).eval(), path)
    return path
