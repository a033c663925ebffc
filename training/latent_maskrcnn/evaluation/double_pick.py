"""Simulated double picks and pickable area (paper Section V-D).

A suction gripper is approximated by a circle of fixed radius in pixels. Circles are dropped at
random (seeded) centres where the whole circle lies inside the image. N counts the circles that
lie entirely inside exactly one predicted mask (a grasp the robot would take); D counts those
of them that touch more than one ground-truth mask (the grasp would lift two items). The rate is
D / N. The pickable area is the area covered by predicted masks over the area covered by
ground-truth masks (unions, so overlapping MaskRCNN masks are not counted twice).

`classify_picks` splits D by what the circles touch (the ambiguity kinds of the items) and
counts the circles of N that touch no item at all (false positives, which D / N does not see).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from latent_maskrcnn.evaluation.gripper_defaults import SIMULATED_GRIPPER_CIRCLES, SIMULATED_GRIPPER_RADIUS

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class GripperSimulation:
    """Circle radius in pixels, circles per image, and the seed (per image it is combined with
    the image id, so every method evaluated on an image sees the same circles)."""

    radius: int = SIMULATED_GRIPPER_RADIUS
    circles: int = SIMULATED_GRIPPER_CIRCLES
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.radius, bool) or not isinstance(self.radius, int) or self.radius < 0:
            raise ValueError(f"gripper radius must be a non-negative integer number of pixels, got {self.radius!r}")
        if isinstance(self.circles, bool) or not isinstance(self.circles, int) or self.circles < 1:
            raise ValueError(f"circles must be a positive integer, got {self.circles!r}")


@dataclass(frozen=True)
class PickCounts:
    """Per image: circles inside exactly one prediction, those of them on two or more items,
    the covered areas in pixels, and the circles of N that touch no item (false positives,
    counted from the same pass as `classify_picks` counts them)."""

    picks: int
    double_picks: int
    predicted_area: int
    ground_truth_area: int
    false_positives: int = 0


def disk_offsets(radius: int) -> torch.Tensor:
    """``[d, 2]`` (dy, dx) of the pixels whose centre lies within ``radius`` of the centre."""
    span = torch.arange(-radius, radius + 1)
    dy, dx = torch.meshgrid(span, span, indexing="ij")
    inside = dy * dy + dx * dx <= radius * radius
    return torch.stack([dy[inside], dx[inside]], dim=1)


def circle_centres(height: int, width: int, simulation: GripperSimulation, image_id: int) -> torch.Tensor:
    """``[circles, 2]`` (y, x) centres, uniform over positions keeping the circle in the image."""
    r = simulation.radius
    if height < 2 * r + 1 or width < 2 * r + 1:
        raise ValueError(f"a gripper circle of radius {r} does not fit into a {height}x{width} image")
    generator = torch.Generator().manual_seed(simulation.seed * 1_000_003 + int(image_id))
    ys = torch.randint(r, height - r, (simulation.circles,), generator=generator)
    xs = torch.randint(r, width - r, (simulation.circles,), generator=generator)
    return torch.stack([ys, xs], dim=1)


def _circle_hits(
    predicted_masks: torch.Tensor,
    ground_truth_masks: torch.Tensor,
    simulation: GripperSimulation,
    image_id: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(``single`` bool ``[circles]``: the circle lies inside exactly one predicted mask,
    ``touched`` bool ``[G, circles]``: ground-truth mask g has a pixel in the circle). The one
    definition behind `simulate_picks` and `classify_picks`."""
    predicted_masks = predicted_masks.detach().to("cpu").to(torch.bool)
    ground_truth_masks = ground_truth_masks.detach().to("cpu").to(torch.bool)
    height, width = predicted_masks.shape[-2:]
    radius = simulation.radius
    centres = circle_centres(height, width, simulation, image_id)
    offsets = disk_offsets(radius)
    pixels = (centres[:, None, 0] + offsets[None, :, 0]) * width + (centres[:, None, 1] + offsets[None, :, 1])  # [circles, d]
    # A disk lies inside a mask only if its centre lies in the mask's box shrunk by the radius
    # (the disk holds its four extreme pixels), and touches it only if its centre lies in the box
    # grown by the radius: only those circles are looked at, mask by mask.
    inside = _circle_test(predicted_masks, centres, pixels, -radius, all_pixels=True)    # [N, circles]
    single = inside.sum(dim=0) == 1
    touched = _circle_test(ground_truth_masks, centres, pixels, radius, all_pixels=False)  # [G, circles]
    return single, touched


def _circle_test(masks: torch.Tensor, centres: torch.Tensor, pixels: torch.Tensor, grow: int,
                 all_pixels: bool) -> torch.Tensor:
    """bool ``[M, circles]``: every (``all_pixels``) or any disk pixel ``pixels [circles, d]``
    lies in mask m, checked only for the circles whose centre lies in m's box grown by ``grow``."""
    result = torch.zeros((masks.shape[0], centres.shape[0]), dtype=torch.bool)
    flat = masks.flatten(1)
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    for index in range(masks.shape[0]):
        ys, xs = torch.nonzero(rows[index]).flatten(), torch.nonzero(cols[index]).flatten()
        if ys.numel() == 0:
            continue
        near = ((centres[:, 0] >= ys[0] - grow) & (centres[:, 0] <= ys[-1] + grow)
                & (centres[:, 1] >= xs[0] - grow) & (centres[:, 1] <= xs[-1] + grow))
        chosen = torch.nonzero(near).flatten()
        if chosen.numel() == 0:
            continue
        hits = flat[index][pixels[chosen]]
        result[index, chosen] = hits.all(dim=1) if all_pixels else hits.any(dim=1)
    return result


def simulate_picks(
    predicted_masks: torch.Tensor,
    ground_truth_masks: torch.Tensor,
    simulation: GripperSimulation = GripperSimulation(),
    image_id: int = 0,
) -> PickCounts:
    """Drop the circles on one image; ``predicted_masks`` ``[N, H, W]`` and
    ``ground_truth_masks`` ``[G, H, W]`` are bool (on any device; counted on the CPU)."""
    single, touched = _circle_hits(predicted_masks, ground_truth_masks, simulation, image_id)
    touched = touched.sum(dim=0)
    return PickCounts(
        picks=int(single.sum()),
        double_picks=int((single & (touched > 1)).sum()),
        predicted_area=int(predicted_masks.any(dim=0).sum()) if predicted_masks.shape[0] else 0,
        ground_truth_area=int(ground_truth_masks.any(dim=0).sum()) if ground_truth_masks.shape[0] else 0,
        false_positives=int((single & (touched == 0)).sum()),
    )


def double_pick_rate(counts: PickCounts | list[PickCounts]) -> float:
    """D / N over one image or a data set (NaN when no circle lies inside one prediction)."""
    counts = [counts] if isinstance(counts, PickCounts) else counts
    picks = sum(c.picks for c in counts)
    return sum(c.double_picks for c in counts) / picks if picks else float("nan")


def pickable_area(counts: PickCounts | list[PickCounts]) -> float:
    """Predicted area over ground-truth area (NaN without ground truth)."""
    counts = [counts] if isinstance(counts, PickCounts) else counts
    truth = sum(c.ground_truth_area for c in counts)
    return sum(c.predicted_area for c in counts) / truth if truth else float("nan")


# ---------------------------------------------------------------------------- causes
UNKNOWN = "unknown"
PAIR_KINDS = ("pair_merged", "pair_half")
GLARE_KINDS = ("glare_stripe", "glare_half")
FILM_KINDS = ("film_bag", "film_garment", "under_film", "through_film")
CAUSES = ("pair_seam", "glare_split", "pair_other", "film", "glare_stripe", "plain", UNKNOWN)
"""Exclusive causes of a double pick, first match wins: ``pair_seam`` (the circle touches both
halves of a seamless pair labelled as two items: the ambiguity of the paper's experiment),
``glare_split`` (both parts of a glare-striped item labelled as two along its stripe),
``pair_other`` (it touches a seamless-pair item and another item), ``film`` (a clear bag or the
item under it, in either labelling), ``glare_stripe`` (an item with a boundary-like glare
stripe and another item), ``plain`` (only ordinary items), ``unknown`` (an item of unknown kind,
or no kinds at all). ``pair_seam``, ``glare_split`` and ``film`` are the labelling ambiguity
(`AMBIGUITY_CAUSES`)."""
AMBIGUITY_CAUSES = ("pair_seam", "glare_split", "film")
"""The causes that come from how an annotator labels an ambiguous region."""
KINDS = ("pair_merged", "pair_half", "glare_half", "film_bag", "film_garment", "under_film", "through_film",
         "glare_stripe", "plain", UNKNOWN)


@dataclass
class PickCauses:
    """Double picks split by cause, and false positives, accumulated over images.

    ``picks`` (N) and ``double_picks`` (D) are exactly `simulate_picks`' counts. ``false_positives``
    counts the circles of N that touch no ground-truth pixel at all (a grasp on empty floor).
    ``causes`` partitions D (`CAUSES`); ``kinds`` counts, per item kind, the double picks touching
    at least one item of that kind (a circle can count under several kinds); ``combinations``
    counts the sorted kinds of the touched items joined by ``+``."""

    picks: int = 0
    double_picks: int = 0
    false_positives: int = 0
    causes: dict[str, int] = field(default_factory=lambda: {cause: 0 for cause in CAUSES})
    kinds: dict[str, int] = field(default_factory=lambda: {kind: 0 for kind in KINDS})
    combinations: dict[str, int] = field(default_factory=dict)
    images: int = 0
    images_without_kinds: int = 0

    def add(self, other: "PickCauses") -> None:
        """Add another image's (or data set's) counts."""
        self.picks += other.picks
        self.double_picks += other.double_picks
        self.false_positives += other.false_positives
        self.images += other.images
        self.images_without_kinds += other.images_without_kinds
        for mine, theirs in ((self.causes, other.causes), (self.kinds, other.kinds), (self.combinations, other.combinations)):
            for key, value in theirs.items():
                mine[key] = mine.get(key, 0) + value

    def summary(self) -> dict:
        """JSON-ready counts and rates (over N, so the cause rates sum to the double-pick rate).

        ``double_pick_rate_on_items`` is D over the circles of N that touch an item: the paper's
        rate counts circles on empty floor in N, so more false positives lower it."""
        def rate(count: int) -> float | None:
            return count / self.picks if self.picks else None

        return {
            "picks": self.picks,
            "double_picks": self.double_picks,
            "double_pick_rate": rate(self.double_picks),
            "double_pick_rate_on_items": double_pick_rate_on_items(self.double_picks, self.picks, self.false_positives),
            "false_positives": self.false_positives,
            "false_positive_rate": rate(self.false_positives),
            "causes": {cause: {"count": count, "rate": rate(count)} for cause, count in self.causes.items()},
            "kinds": {kind: {"count": count, "rate": rate(count)} for kind, count in self.kinds.items()},
            "combinations": dict(sorted(self.combinations.items(), key=lambda item: (-item[1], item[0]))),
            "images": self.images,
            "images_without_kinds": self.images_without_kinds,
        }


def double_pick_rate_on_items(double_picks: int, picks: int, false_positives: int) -> float | None:
    """D over the circles of N that touch an item (None when none does): the paper's D / N counts
    circles on empty floor in N, so a model that adds predictions there lowers D / N, not this."""
    on_items = picks - false_positives
    return double_picks / on_items if on_items > 0 else None


def normal_kind(kind: object) -> str:
    """A data set's ``ambiguity`` field as one of `KINDS` (anything else is ``unknown``)."""
    return kind if isinstance(kind, str) and kind in KINDS else UNKNOWN


def _two_parts(touched_kinds: list[str], kind: str, touched_regions: list | None) -> bool:
    """Whether the circle touches two parts of one item labelled as two: two of ``kind``, of one
    region where the regions are known (two halves of different pairs are two items)."""
    regions = [None] * len(touched_kinds) if touched_regions is None else list(touched_regions)
    parts = [region for name, region in zip(touched_kinds, regions) if name == kind]
    known = [region for region in parts if region is not None]
    return len(known) != len(set(known)) or (len(parts) >= 2 and len(known) < len(parts))


def cause_of(touched_kinds: list[str], touched_regions: list | None = None) -> str:
    """The `CAUSES` entry of a double pick from the (normal) kinds of the items it touches and,
    where the data carry them, their ``region_id``s (aligned with the kinds)."""
    if _two_parts(touched_kinds, "pair_half", touched_regions):
        return "pair_seam"
    if _two_parts(touched_kinds, "glare_half", touched_regions):
        return "glare_split"
    present = set(touched_kinds)
    if present & set(PAIR_KINDS):
        return "pair_other"
    if present & set(FILM_KINDS):
        return "film"
    if present & set(GLARE_KINDS):
        return "glare_stripe"
    if UNKNOWN in present:
        return UNKNOWN
    return "plain"


def classify_picks(
    predicted_masks: torch.Tensor,
    ground_truth_masks: torch.Tensor,
    kinds: list[str | None] | None,
    simulation: GripperSimulation = GripperSimulation(),
    image_id: int = 0,
    regions: list[int | None] | None = None,
) -> PickCauses:
    """The circles of `simulate_picks` on one image, the double picks split by the ambiguity
    kinds (``kinds[g]`` of ground-truth mask g, the ``ambiguity`` field of synthetic COCO data)
    of the items they touch. ``kinds`` None (data without that field) or of the wrong length
    makes every double pick ``unknown`` (the length mismatch is logged). ``regions`` (the
    ``region_id`` field, aligned with ``kinds``) tells the halves of different seamless pairs
    apart; without it any two halves touched count as a seam."""
    single, touched = _circle_hits(predicted_masks, ground_truth_masks, simulation, image_id)
    count = touched.sum(dim=0)
    result = PickCauses(images=1)
    result.picks = int(single.sum())
    result.double_picks = int((single & (count > 1)).sum())
    result.false_positives = int((single & (count == 0)).sum())
    if kinds is not None and len(kinds) != ground_truth_masks.shape[0]:
        LOG.warning("image %s: %d ambiguity kinds for %d ground-truth masks; its double picks count as unknown",
                    image_id, len(kinds), ground_truth_masks.shape[0])
        kinds = None
    if kinds is None:
        result.images_without_kinds = 1
    names = [UNKNOWN] * ground_truth_masks.shape[0] if kinds is None else [normal_kind(k) for k in kinds]
    if regions is not None and len(regions) != len(names):
        LOG.warning("image %s: %d region ids for %d ground-truth masks; they are not used", image_id, len(regions), len(names))
        regions = None
    doubles = torch.nonzero(single & (count > 1)).flatten()
    if doubles.numel():
        # group identical touched sets: a few distinct sets per image
        patterns, frequency = torch.unique(touched[:, doubles].T, dim=0, return_counts=True)
        for pattern, times in zip(patterns, frequency.tolist()):
            touched = torch.nonzero(pattern).flatten().tolist()
            touched_kinds = sorted(names[g] for g in touched)
            result.causes[cause_of([names[g] for g in touched],
                                   None if regions is None else [regions[g] for g in touched])] += times
            for kind in set(touched_kinds):
                result.kinds[kind] += times
            key = "+".join(touched_kinds)
            result.combinations[key] = result.combinations.get(key, 0) + times
    return result
