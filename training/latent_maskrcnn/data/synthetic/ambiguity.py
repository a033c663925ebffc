"""The kinds of label ambiguity built into synthetic tote scenes, and how often each occurs.

Each kind copies a situation that makes Apparel-5k labels genuinely multimodal. The rates are
part of the data recipe (docs/synthetic_data.md), so they live in one frozen dataclass that is
written into every generated COCO file.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

PLAIN = "plain"
"""An ordinary opaque polybag; its outline is visible wherever it is not occluded."""
GLARE_STRIPE = "glare_stripe"
"""One item crossed by a bright specular fold stripe with a dark crease beside it: it looks like
a boundary between two items, but the label is always one item."""
PAIR_MERGED = "pair_merged"
"""Two identical-look bags lying edge to edge with no visible seam, labelled as one item."""
PAIR_HALF = "pair_half"
"""One half of such a seamless pair, when the pair is labelled as two items."""
FILM_BAG = "film_bag"
"""A clear polybag whose film margin lies over another item; labelled as its whole bag extent
(the film included), on top of the stack."""
UNDER_FILM = "under_film"
"""An item partly under a clear bag; its label excludes the part seen through the film."""

INSTANCE_KINDS = (PLAIN, GLARE_STRIPE, PAIR_MERGED, PAIR_HALF, FILM_BAG, UNDER_FILM)

PAIR_LABELINGS = ("merged", "split")
"""How a seamless pair is labelled: one instance covering both bags, or one per bag."""


RATE_DESCRIPTIONS = {
    "seamless_pair": "fraction of scenes that contain one seamless pair",
    "pair_merged": "probability that a seamless pair is labelled as one item (else two)",
    "glare_stripe": "probability, per ordinary item, of a boundary-like glare stripe",
    "transparent_film": "fraction of scenes with a clear bag lying partly over another item",
}
"""One line per rate of `AmbiguityRates`, for command-line help and reports."""


@dataclass(frozen=True)
class AmbiguityRates:
    """Probabilities of each ambiguity kind (scene-level or per item, as named; the lines of
    `RATE_DESCRIPTIONS`)."""

    seamless_pair: float = 0.5
    """Fraction of scenes that contain one seamless pair."""
    pair_merged: float = 0.5
    """Probability that a seamless pair is labelled as one item (else two); drawn independently
    of everything that affects the pixels."""
    glare_stripe: float = 0.2
    """Probability, per ordinary item, of a boundary-like glare stripe."""
    transparent_film: float = 0.4
    """Fraction of scenes with a clear bag lying partly over another item."""

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"ambiguity rate {name}={value} must lie in [0, 1]")

    def to_dict(self) -> dict[str, float]:
        return {name: float(value) for name, value in asdict(self).items()}


DEFAULT_RATES = AmbiguityRates()
