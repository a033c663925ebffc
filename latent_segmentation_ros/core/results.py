"""Plain result records shared by the pipeline, the grasp planner, the message builders and the
replay tool: numpy only, so every consumer can use them without torch or ROS."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class CameraResult:
    """The masks found in one camera image, in decreasing score order.

    ``masks`` is bool [N, H, W] at the source image size; ``boxes`` float32 [N, 4] (x1, y1, x2,
    y2 in pixels, x2/y2 exclusive: the tight box of each mask); ``labels`` int64 [N] 1-based;
    ``support_counts`` int64 [N] how many of the ``num_samples`` samples support each mask.
    """

    camera: str
    masks: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    boxes: np.ndarray
    support_counts: np.ndarray
    mode: str
    p: float
    num_samples: int
    model_id: str = ""
    inference_time_ms: float = 0.0
    class_names: list[str] = field(default_factory=list)  # names of classes 1..C (no background)

    def __post_init__(self) -> None:
        if self.masks.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {tuple(self.masks.shape)}")
        count = self.masks.shape[0]
        for name in ("scores", "labels", "support_counts"):
            if len(getattr(self, name)) != count:
                raise ValueError(f"{name} has {len(getattr(self, name))} entries for {count} masks")
        if tuple(self.boxes.shape) != (count, 4):
            raise ValueError(f"boxes must be [{count}, 4], got {tuple(self.boxes.shape)}")

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width) of the source image."""
        return int(self.masks.shape[1]), int(self.masks.shape[2])

    @property
    def areas(self) -> np.ndarray:
        """Pixels per mask, int64 [N]."""
        return self.masks.sum(axis=(1, 2), dtype=np.int64)

    def class_name(self, label: int) -> str:
        """Name of a 1-based class id, or "" when the model has no name for it."""
        index = int(label) - 1
        return self.class_names[index] if 0 <= index < len(self.class_names) else ""


@dataclass
class MaskRegions:
    """Masks of one image kept as crops at their offsets, as a ConfidenceMaskArray carries them.

    Memory grows with the crops, not with ``image_size`` (height, width), so a message that
    declares a huge image but carries small masks stays cheap. ``offsets`` is int64 [N, 2] (x, y)
    of each crop's top-left pixel; ``crops`` holds bool [h, w] arrays that lie inside the image.
    """

    image_size: tuple[int, int]
    offsets: np.ndarray
    crops: list[np.ndarray]

    def __post_init__(self) -> None:
        height, width = (int(v) for v in self.image_size)
        self.image_size = (height, width)
        self.offsets = np.asarray(self.offsets, dtype=np.int64).reshape(-1, 2)
        if len(self.crops) != len(self.offsets):
            raise ValueError(f"{len(self.crops)} crops for {len(self.offsets)} offsets")
        for index, ((x, y), crop) in enumerate(zip(self.offsets, self.crops)):
            if crop.ndim != 2 or crop.dtype != bool:
                raise ValueError(f"crop {index} must be a bool [h, w] array, got {crop.dtype} {crop.shape}")
            if x < 0 or y < 0 or x + crop.shape[1] > width or y + crop.shape[0] > height:
                raise ValueError(
                    f"crop {index} ({x}, {y}, {crop.shape[1]}x{crop.shape[0]}) leaves the {width}x{height} image"
                )

    def __len__(self) -> int:
        return len(self.crops)

    @classmethod
    def from_masks(cls, masks: np.ndarray) -> "MaskRegions":
        """Full-frame bool masks [N, H, W] cut to their tight boxes (1 x 1 at the origin if empty)."""
        masks = np.asarray(masks, dtype=bool)
        if masks.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
        boxes = tight_boxes(masks).astype(np.int64)
        crops = []
        for mask, (x1, y1, x2, y2) in zip(masks, boxes):
            crops.append(mask[y1:y2, x1:x2].copy() if x2 > x1 else np.zeros((min(1, mask.shape[0]), min(1, mask.shape[1])), bool))
        return cls((masks.shape[1], masks.shape[2]), boxes[:, :2], crops)

    def to_masks(self) -> np.ndarray:
        """The full-frame bool masks [N, H, W] (memory: N x the declared image)."""
        masks = np.zeros((len(self.crops),) + self.image_size, dtype=bool)
        for index, ((x, y), crop) in enumerate(zip(self.offsets, self.crops)):
            masks[index, y : y + crop.shape[0], x : x + crop.shape[1]] = crop
        return masks


@dataclass
class GraspCandidate:
    """One placement of the suction gripper on one mask.

    ``cup_centers`` float32 [C, 2] holds (u, v) per cup; ``cup_sealed`` bool [C] says which cups lie
    entirely inside the mask (the others are to be switched off).
    """

    mask_id: int
    u: float
    v: float
    angle: float
    sealed_cups: int
    total_cups: int
    score: float
    cup_centers: np.ndarray
    cup_sealed: np.ndarray


def tight_boxes(masks: np.ndarray) -> np.ndarray:
    """float32 [N, 4] (x1, y1, x2, y2) with exclusive x2/y2 around each mask; zeros if empty."""
    masks = np.asarray(masks, dtype=bool)
    boxes = np.zeros((masks.shape[0], 4), dtype=np.float32)
    if masks.shape[0] == 0:
        return boxes
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    nonempty = rows.any(axis=1)
    height, width = masks.shape[1], masks.shape[2]
    boxes[:, 0] = np.where(nonempty, cols.argmax(axis=1), 0)
    boxes[:, 1] = np.where(nonempty, rows.argmax(axis=1), 0)
    boxes[:, 2] = np.where(nonempty, width - cols[:, ::-1].argmax(axis=1), 0)
    boxes[:, 3] = np.where(nonempty, height - rows[:, ::-1].argmax(axis=1), 0)
    return boxes
