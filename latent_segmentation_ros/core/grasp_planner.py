"""Suction grasp placements on confidence masks for the cell's multi-cup gripper.

A cup seals when its whole rim lies on one item, so a cup counts as *sealed* only when its disk
lies entirely inside one mask (pixels shared with another mask do not count). A cup that does not
seal is switched off, but it still must not touch another mask: a grasp never straddles two items.
For each mask the planner finds the placements sealing the most cups, with distance transforms
and shifted whole-array comparisons (no loop over pixels) in a window around the mask, and ranks
all placements by sealed cups, then by the mask's score (paper Section V-D: more sealed cups,
fewer double picks). Nothing is computed at the size of the image: a message's cost follows its
masks, not the image size it declares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from latent_segmentation_ros.core.parameters import GRASP_PARAMETERS
from latent_segmentation_ros.core.results import CameraResult, GraspCandidate, MaskRegions


@dataclass(frozen=True)
class SuctionCupLayout:
    """Cup centres relative to the gripper centre, (du, dv) in pixels, and the cup radius."""

    offsets: np.ndarray
    cup_radius: float

    def __post_init__(self) -> None:
        offsets = np.asarray(self.offsets, dtype=np.float64)
        if offsets.ndim != 2 or offsets.shape[1] != 2 or offsets.shape[0] == 0:
            raise ValueError(f"cup offsets must be a non-empty [C, 2] array, got shape {offsets.shape}")
        if not np.all(np.isfinite(offsets)):
            raise ValueError("cup offsets must be finite")
        if not (np.isfinite(self.cup_radius) and self.cup_radius > 0):
            raise ValueError(f"cup_radius must be a positive number of pixels, got {self.cup_radius}")
        if offsets.shape[0] > 1:
            gaps = np.linalg.norm(offsets[:, None, :] - offsets[None, :, :], axis=2)
            np.fill_diagonal(gaps, np.inf)
            if gaps.min() < 2 * self.cup_radius:
                raise ValueError(
                    f"cups overlap: two cup centres are {gaps.min():.1f} px apart, less than twice "
                    f"the cup radius ({2 * self.cup_radius:.1f} px)"
                )
        object.__setattr__(self, "offsets", offsets)

    @classmethod
    def grid(
        cls,
        rows: int = GRASP_PARAMETERS["cup_rows"].default,
        cols: int = GRASP_PARAMETERS["cup_cols"].default,
        spacing: float = GRASP_PARAMETERS["cup_spacing"].default,
        cup_radius: float = GRASP_PARAMETERS["cup_radius"].default,
    ) -> "SuctionCupLayout":
        """A rows x cols grid of cups ``spacing`` pixels apart, centred on the gripper centre
        (defaults: the grasp node's parameters)."""
        if rows < 1 or cols < 1:
            raise ValueError(f"a cup grid needs at least one row and column, got {rows}x{cols}")
        if not (np.isfinite(spacing) and spacing > 0):
            raise ValueError(f"cup spacing must be a positive number of pixels, got {spacing}")
        dv, du = np.meshgrid(
            (np.arange(rows) - (rows - 1) / 2) * spacing,
            (np.arange(cols) - (cols - 1) / 2) * spacing,
            indexing="ij",
        )
        return cls(np.stack([du.ravel(), dv.ravel()], axis=1), float(cup_radius))

    @property
    def num_cups(self) -> int:
        return int(self.offsets.shape[0])

    def pixel_offsets(self, angle: float) -> np.ndarray:
        """int [C, 2] (du, dv) of the layout rotated counter-clockwise by ``angle`` in the image."""
        cos, sin = np.cos(angle), np.sin(angle)
        du = cos * self.offsets[:, 0] + sin * self.offsets[:, 1]
        dv = -sin * self.offsets[:, 0] + cos * self.offsets[:, 1]
        return np.rint(np.stack([du, dv], axis=1)).astype(np.int64)

    @property
    def reach(self) -> int:
        """Largest distance of a cup centre from the gripper centre, rounded up, in pixels."""
        return int(np.ceil(np.linalg.norm(self.offsets, axis=1).max())) + 1


class SuctionGraspPlanner:
    """Grasp candidates on each mask of an image, best first.

    ``angles`` are the layout rotations tried (radians); ``candidates_per_mask`` placements are
    kept per mask, at least ``suppression_radius`` pixels apart (default: the cup spacing implied
    by the layout); placements sealing fewer than ``min_sealed_cups`` are not proposed.
    """

    def __init__(
        self,
        layout: SuctionCupLayout,
        angles: Sequence[float] = (0.0,),
        candidates_per_mask: int = 1,
        min_sealed_cups: int = 1,
        suppression_radius: float | None = None,
        max_candidates: int = 0,
    ) -> None:
        angles = [float(a) for a in angles]
        if not angles or not all(np.isfinite(angles)):
            raise ValueError(f"angles must be a non-empty list of finite radians, got {angles}")
        if candidates_per_mask < 1:
            raise ValueError(f"candidates_per_mask must be at least 1, got {candidates_per_mask}")
        if not 1 <= min_sealed_cups <= layout.num_cups:
            raise ValueError(
                f"min_sealed_cups must be between 1 and the {layout.num_cups} cups, got {min_sealed_cups}"
            )
        if max_candidates < 0:
            raise ValueError(f"max_candidates must be >= 0 (0: no limit), got {max_candidates}")
        self.layout = layout
        self.angles = angles
        self.candidates_per_mask = int(candidates_per_mask)
        self.min_sealed_cups = int(min_sealed_cups)
        self.max_candidates = int(max_candidates)
        if suppression_radius is None:
            suppression_radius = max(layout.reach / 2.0, 2.0 * layout.cup_radius)
        self.suppression_radius = float(suppression_radius)

    def plan_result(self, result: CameraResult) -> list[GraspCandidate]:
        """Candidates for one camera's result; mask ids are the indices (the message ids)."""
        return self.plan(result.masks, result.scores)

    def plan(
        self, masks: np.ndarray, scores: Sequence[float] | None = None, mask_ids: Sequence[int] | None = None
    ) -> list[GraspCandidate]:
        """Candidates for bool masks [N, H, W]; ranked by sealed cups, then score, then mask id."""
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be [N, H, W], got shape {tuple(masks.shape)}")
        return self.plan_regions(MaskRegions.from_masks(masks.astype(bool, copy=False)), scores, mask_ids)

    def plan_regions(
        self, regions: MaskRegions, scores: Sequence[float] | None = None, mask_ids: Sequence[int] | None = None
    ) -> list[GraspCandidate]:
        """Candidates for masks given as crops (what a ConfidenceMaskArray carries), as :meth:`plan`.

        Each mask is planned in a window around its box (grown by what the gripper can reach),
        with the other masks that reach into that window: time and memory grow with the masks
        and the gripper, not with the size of the image they lie in.
        """
        count = len(regions)
        scores = np.zeros(count) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        mask_ids = np.arange(count) if mask_ids is None else np.asarray(mask_ids, dtype=np.int64).reshape(-1)
        if len(scores) != count or len(mask_ids) != count:
            raise ValueError(f"{count} masks need {count} scores and ids, got {len(scores)} and {len(mask_ids)}")
        height, width = regions.image_size
        pieces = [_Piece.of(crop, int(x), int(y)) for (x, y), crop in zip(regions.offsets, regions.crops)]
        # contact zones: where a cup centre would touch the mask (a mask pixel within the cup
        # radius), per mask on its box grown by the radius; beyond the image border too, since a
        # cup whose centre lies outside the image still touches what lies inside it
        grow = int(np.ceil(self.layout.cup_radius)) + 1
        zones = [None if piece is None else self._contact_zone(piece, grow) for piece in pieces]
        zone_boxes = np.array([zone[0] if zone is not None else (0, 0, 0, 0) for zone in zones], dtype=np.int64)
        present = np.array([zone is not None for zone in zones], dtype=bool)
        # gripper centres within `reach` of the mask; their cups within 2 * reach; cup rims + r
        margin = 2 * self.layout.reach + int(np.ceil(self.layout.cup_radius)) + 2
        # how far a cup centre lies from the gripper centre, at most, in whole pixels per axis
        cup_reach = self.layout.reach + 1
        candidates: list[GraspCandidate] = []
        for index, piece in enumerate(pieces):
            if piece is None:
                continue
            window = (
                max(piece.y0 - margin, 0), min(piece.y1 + margin, height),
                max(piece.x0 - margin, 0), min(piece.x1 + margin, width),
            )
            y0, y1, x0, x1 = window
            # where the cups of gripper centres in the window can be: the window grown by cup_reach
            cups_box = (y0 - cup_reach, y1 + cup_reach, x0 - cup_reach, x1 + cup_reach)
            reaching = present & (zone_boxes[:, 0] < cups_box[1]) & (zone_boxes[:, 1] > cups_box[0]) \
                & (zone_boxes[:, 2] < cups_box[3]) & (zone_boxes[:, 3] > cups_box[2])
            reaching[index] = False
            shape = (y1 - y0, x1 - x0)
            own = np.zeros(shape, dtype=bool)
            _paste_or(own, window, piece.mask, piece.box)
            others = np.zeros(shape, dtype=bool)
            touched = np.zeros((shape[0] + 2 * cup_reach, shape[1] + 2 * cup_reach), dtype=bool)
            for other in np.nonzero(reaching)[0]:
                _paste_or(others, window, pieces[other].mask, pieces[other].box)
                _paste_or(touched, cups_box, zones[other][1], zones[other][0])
            candidates += self._plan_one(
                own & ~others, ~touched, cup_reach, window, piece.box, float(scores[index]), int(mask_ids[index])
            )
        candidates.sort(key=lambda c: (-c.sealed_cups, -c.score, c.mask_id))
        return candidates[: self.max_candidates] if self.max_candidates else candidates

    def _contact_zone(self, piece: "_Piece", grow: int) -> tuple[tuple[int, int, int, int], np.ndarray]:
        """(box y0, y1, x0, x1, bool crop): cup centres within the cup radius of a mask pixel (the
        box may reach past the image border)."""
        box = (piece.y0 - grow, piece.y1 + grow, piece.x0 - grow, piece.x1 + grow)
        local = np.zeros((box[1] - box[0], box[3] - box[2]), dtype=bool)
        _paste_or(local, box, piece.mask, piece.box)
        # every mask pixel lies inside the crop, so distances to the nearest one are exact there
        near = ndimage.distance_transform_edt(~local) <= self.layout.cup_radius
        return box, near

    def _plan_one(
        self,
        own: np.ndarray,
        clear: np.ndarray,
        cup_reach: int,
        window: tuple[int, int, int, int],
        box: tuple[int, int, int, int],
        score: float,
        mask_id: int,
    ) -> list[GraspCandidate]:
        """Placements for one mask in its window: ``own`` its pixels no other mask covers,
        ``clear`` where a cup centre touches no other mask, on the window grown by ``cup_reach``
        on every side; ``box`` the mask's box (y0, y1, x0, x1) in image pixels, ``window`` the
        window's."""
        y0, _, x0, _ = window
        radius = self.layout.cup_radius
        # a cup centred at c lies inside `own` iff every pixel within `radius` of c does, i.e. the
        # distance to the nearest pixel outside `own` exceeds the radius. `own` is empty outside
        # the mask's box, so the distances are exact when computed on the box padded by one
        # empty pixel (which also makes pixels outside the image count as outside the mask).
        depth = np.zeros(own.shape, dtype=np.float64)
        by0, by1, bx0, bx1 = box[0] - y0, box[1] - y0, box[2] - x0, box[3] - x0
        depth[by0:by1, bx0:bx1] = ndimage.distance_transform_edt(np.pad(own[by0:by1, bx0:bx1], 1))[1:-1, 1:-1]
        fits = depth > radius
        shape = own.shape
        # lexicographic key: sealed cups first, then how deep the sealed cups sit inside the mask
        depth_weight = 1.0 + self.layout.num_cups * float(depth.max())
        best_key = None
        per_angle = []
        for angle in self.angles:
            offsets = self.layout.pixel_offsets(angle)
            count = np.zeros(shape, dtype=np.int32)
            margin_sum = np.zeros(shape, dtype=np.float64)
            allowed = np.ones(shape, dtype=bool)
            for du, dv in offsets:
                sealed = _shifted(fits, dv, du, fill=False)
                count += sealed
                margin_sum += np.where(sealed, _shifted(depth, dv, du, fill=0.0), 0.0)
                allowed &= clear[cup_reach + dv : cup_reach + dv + shape[0], cup_reach + du : cup_reach + du + shape[1]]
            allowed &= count >= self.min_sealed_cups
            per_angle.append((angle, offsets, count, margin_sum, allowed))
            if allowed.any():
                key = count[allowed].max()
                best_key = key if best_key is None else max(best_key, key)
        if best_key is None:
            return []

        out: list[GraspCandidate] = []
        suppressed = np.zeros(shape, dtype=bool)
        yy, xx = np.ogrid[: shape[0], : shape[1]]
        for _ in range(self.candidates_per_mask):
            choice = None
            for angle, offsets, count, margin_sum, allowed in per_angle:
                usable = allowed & ~suppressed
                if not usable.any():
                    continue
                key_map = np.where(usable, count * depth_weight + margin_sum, -1.0)
                flat = int(np.argmax(key_map))
                key = key_map.flat[flat]
                if choice is None or key > choice[0]:
                    choice = (key, angle, offsets, count, flat)
            if choice is None:
                break
            _, angle, offsets, count, flat = choice
            v, u = np.unravel_index(flat, shape)
            cup_sealed = np.array([_value_at(fits, v + dv, u + du) for du, dv in offsets], dtype=bool)
            centres = np.stack([offsets[:, 0] + u + x0, offsets[:, 1] + v + y0], axis=1).astype(np.float32)
            out.append(
                GraspCandidate(
                    mask_id=mask_id,
                    u=float(u + x0),
                    v=float(v + y0),
                    angle=float(angle),
                    sealed_cups=int(count[v, u]),
                    total_cups=self.layout.num_cups,
                    score=score,
                    cup_centers=centres,
                    cup_sealed=cup_sealed,
                )
            )
            suppressed |= (yy - v) ** 2 + (xx - u) ** 2 <= self.suppression_radius**2
        return out


@dataclass(frozen=True)
class _Piece:
    """A non-empty mask cut to its tight box (y0, y1, x0, x1 in image pixels)."""

    mask: np.ndarray
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.y0, self.y1, self.x0, self.x1

    @classmethod
    def of(cls, crop: np.ndarray, x: int, y: int) -> "_Piece | None":
        rows, cols = np.nonzero(crop.any(axis=1))[0], np.nonzero(crop.any(axis=0))[0]
        if rows.size == 0:
            return None
        r0, r1, c0, c1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
        return cls(crop[r0:r1, c0:c1], y + r0, y + r1, x + c0, x + c1)


def _paste_or(target: np.ndarray, target_box: tuple[int, int, int, int], source: np.ndarray,
              source_box: tuple[int, int, int, int]) -> None:
    """target |= source where their boxes (y0, y1, x0, x1 in image pixels) overlap."""
    y0, y1 = max(target_box[0], source_box[0]), min(target_box[1], source_box[1])
    x0, x1 = max(target_box[2], source_box[2]), min(target_box[3], source_box[3])
    if y0 < y1 and x0 < x1:
        target[y0 - target_box[0] : y1 - target_box[0], x0 - target_box[2] : x1 - target_box[2]] |= source[
            y0 - source_box[0] : y1 - source_box[0], x0 - source_box[2] : x1 - source_box[2]
        ]


def _value_at(values: np.ndarray, v: int, u: int) -> bool:
    """values[v, u], False outside the array."""
    return bool(0 <= v < values.shape[0] and 0 <= u < values.shape[1] and values[v, u])


def _shifted(values: np.ndarray, dv: int, du: int, fill) -> np.ndarray:
    """out[y, x] = values[y + dv, x + du], ``fill`` where that lies outside ``values``."""
    out = np.full_like(values, fill)
    height, width = values.shape
    ys, ye = max(0, -dv), min(height, height - dv)
    xs, xe = max(0, -du), min(width, width - du)
    if ys < ye and xs < xe:
        out[ys:ye, xs:xe] = values[ys + dv : ye + dv, xs + du : xe + du]
    return out


def cup_disks(centres: np.ndarray, radius: float, shape: tuple[int, int]) -> np.ndarray:
    """bool [C, H, W] pixels covered by each cup (|p - c| <= radius), for checks and overlays."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    return (xx[None] - centres[:, 0, None, None]) ** 2 + (yy[None] - centres[:, 1, None, None]) ** 2 <= radius**2
