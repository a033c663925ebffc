"""The kinds of label ambiguity built into synthetic tote scenes, and how often each occurs.

Each kind copies a situation that makes Apparel-5k labels genuinely multimodal. The rates are
part of the data recipe (docs/synthetic_data.md), so they live in one frozen dataclass that is
written into every generated COCO file.

An image is labelled by one annotator whose *style* ('merged' or 'split') decides every
ambiguous region that follows the style (`AmbiguityRates.styled_kinds`): a seamless pair as one
item or two, a glare-striped item as one item or two halves, a clear bag as its whole extent or
as its garment only. One latent code can then explain many labels of an image, as one
annotator's habits do.
"""
from __future__ import annotations

import numbers
from dataclasses import asdict, dataclass, fields

PLAIN = "plain"
"""An ordinary opaque polybag; its outline is visible wherever it is not occluded."""
GLARE_STRIPE = "glare_stripe"
"""One item crossed by a bright specular fold stripe with a dark crease beside it: it looks like
a boundary between two items; labelled as one item (the merged style, and always when glare
stripes do not follow the style)."""
GLARE_HALF = "glare_half"
"""One of the two parts of a glare-striped item cut along the stripe's centre line, when the
split style labels it as two items."""
PAIR_MERGED = "pair_merged"
"""Two identical-look bags lying edge to edge with no visible seam, labelled as one item."""
PAIR_HALF = "pair_half"
"""One half of such a seamless pair, when the pair is labelled as two items."""
FILM_BAG = "film_bag"
"""A clear polybag whose film margin lies over another item; labelled as its whole bag extent
(the film included), on top of the stack (the merged style)."""
FILM_GARMENT = "film_garment"
"""A clear polybag labelled as its opaque garment only; its film margin is see-through (the
split style)."""
UNDER_FILM = "under_film"
"""An item partly under a clear bag; its label excludes the part seen through the film (the
merged style)."""
THROUGH_FILM = "through_film"
"""The item partly under a clear bag, labelled with its pixels seen through the film margin too
(the split style)."""

INSTANCE_KINDS = (PLAIN, GLARE_STRIPE, GLARE_HALF, PAIR_MERGED, PAIR_HALF, FILM_BAG, FILM_GARMENT, UNDER_FILM, THROUGH_FILM)

PAIR_LABELINGS = ("merged", "split")
"""How a seamless pair is labelled: one instance covering both bags, or one per bag."""
STYLES = PAIR_LABELINGS
"""An annotator's style: 'merged' labels every styled region as one item (a pair as one, a
glare-striped item as one, a clear bag with its film), 'split' as its parts."""

LABELLINGS = ("drawn", "both")
"""How many labellings a data set lists per image: ``drawn``, one, in the style its coin drew;
``both``, one entry per annotator style for every image (the same file), for a trainer that puts
both labellings of a scene in one batch."""

SEAMLESS_PAIR_REGION = "seamless_pair"
GLARE_STRIPE_REGION = "glare_stripe"
FILM_REGION = "transparent_film"
REGION_KINDS = (SEAMLESS_PAIR_REGION, GLARE_STRIPE_REGION, FILM_REGION)
"""The ambiguous regions whose labelling can follow the annotator style (`styled_kinds`)."""

MAX_PAIRS = 6
"""Most seamless pairs a scene can hold (`max_pairs`)."""
MAX_FILMS = 3
"""Most clear bags a scene can hold (`max_films`)."""

RATE_DESCRIPTIONS = {
    "seamless_pair": "probability of each of up to max_pairs seamless pairs in a scene",
    "pair_merged": "probability of the 'merged' annotator style (else 'split'); an unstyled pair draws its own coin with it",
    "glare_stripe": "probability, per ordinary item, of a boundary-like glare stripe",
    "transparent_film": "probability of each of up to max_films clear bags lying partly over another item",
    "max_pairs": f"most seamless pairs per scene (0 to {MAX_PAIRS})",
    "max_films": f"most clear bags per scene (0 to {MAX_FILMS})",
    "styled_kinds": f"ambiguous regions labelled by the image's annotator style (any of {', '.join(REGION_KINDS)})",
}
"""One line per field of `AmbiguityRates`, for command-line help and reports."""

PROBABILITIES = ("seamless_pair", "pair_merged", "glare_stripe", "transparent_film")
COUNTS = {"max_pairs": MAX_PAIRS, "max_films": MAX_FILMS}


@dataclass(frozen=True)
class AmbiguityRates:
    """Probabilities of each ambiguity kind (scene-level or per item, as named; the lines of
    `RATE_DESCRIPTIONS`), how many ambiguous regions a scene can hold, and which of them follow
    the annotator style."""

    seamless_pair: float = 0.5
    """Probability of each of up to ``max_pairs`` seamless pairs (with one: the fraction of
    scenes that contain a pair)."""
    pair_merged: float = 0.5
    """Probability of the 'merged' annotator style (else 'split'), drawn independently of
    everything that affects the pixels. A seamless pair that does not follow the style draws
    its own coin with this probability."""
    glare_stripe: float = 0.2
    """Probability, per ordinary item, of a boundary-like glare stripe."""
    transparent_film: float = 0.4
    """Probability of each of up to ``max_films`` clear bags lying partly over another item."""
    max_pairs: int = 1
    """Most seamless pairs per scene."""
    max_films: int = 1
    """Most clear bags per scene."""
    styled_kinds: tuple[str, ...] = (SEAMLESS_PAIR_REGION,)
    """Regions labelled by the annotator style (`REGION_KINDS`); the others keep a fixed
    labelling: a glare-striped item one item, a clear bag its whole extent, a seamless pair its
    own coin."""

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ambiguity rate {name}={value!r} must lie in [0, 1]")
        for name, most in COUNTS.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or not 0 <= value <= most:
                raise ValueError(f"ambiguity count {name}={value!r} must be an integer in [0, {most}]")
            object.__setattr__(self, name, int(value))
        kinds = self.styled_kinds
        if isinstance(kinds, str) or not all(isinstance(kind, str) for kind in kinds):
            raise ValueError(f"styled_kinds must be a sequence of region names, got {kinds!r}")
        unknown = [kind for kind in kinds if kind not in REGION_KINDS]
        if unknown:
            raise ValueError(f"styled_kinds: unknown region(s) {unknown}; choose from {list(REGION_KINDS)}")
        # a canonical tuple (JSON gives a list; order and repeats carry no meaning)
        object.__setattr__(self, "styled_kinds", tuple(kind for kind in REGION_KINDS if kind in kinds))

    def styled(self, region: str) -> bool:
        """Whether regions of this kind (`REGION_KINDS`) follow the annotator style."""
        return region in self.styled_kinds

    def to_dict(self) -> dict:
        values = asdict(self)
        return {
            field.name: (float(values[field.name]) if field.name in PROBABILITIES
                         else int(values[field.name]) if field.name in COUNTS
                         else list(values[field.name]))
            for field in fields(self)
        }


DEFAULT_RATES = AmbiguityRates()

AMBIGUITY_RATES = AmbiguityRates(
    seamless_pair=0.7,
    pair_merged=0.5,
    glare_stripe=0.4,
    transparent_film=0.7,
    max_pairs=3,
    max_films=2,
    styled_kinds=REGION_KINDS,
)
"""The ambiguity benchmark: several pairs, more glare stripes and clear bags, every region
labelled by the annotator style (docs/synthetic_data.md has the measured double-pick causes)."""

PRESETS = {"plain": DEFAULT_RATES, "ambiguity": AMBIGUITY_RATES}
"""Named recipes of `make-dataset --preset`: the plain held-out split and the ambiguity benchmark."""


def preset_name(rates: AmbiguityRates) -> str | None:
    """The name of the preset these rates are, or None."""
    return next((name for name, preset in PRESETS.items() if preset == rates), None)
