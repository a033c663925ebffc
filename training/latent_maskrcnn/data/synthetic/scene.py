"""`generate_scene`: one synthetic tote scene, seen by one or more overhead cameras."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from latent_maskrcnn.data.synthetic.ambiguity import DEFAULT_RATES, AmbiguityRates
from latent_maskrcnn.data.synthetic.cameras import MAX_VIEWS, pixel_to_tote
from latent_maskrcnn.data.synthetic.layout import InstanceRef, ToteLayout, sample_layout
from latent_maskrcnn.data.synthetic.render import ViewGeometry, label_masks, render_image

MIN_SIDE = 16


@dataclass(frozen=True, eq=False)
class SceneView:
    """What one camera sees, with its ground truth."""

    view: int
    image: np.ndarray
    """uint8 [H, W, 3], RGB."""
    masks: np.ndarray
    """bool [G, H, W]: visible pixels of each instance (no overlaps; G may be 0)."""
    instances: tuple[InstanceRef, ...]
    """Per mask: ambiguity kind and track id (the same instance in every view)."""
    homography: np.ndarray
    """3x3, pixel -> tote frame."""
    geometry: ViewGeometry | None = None
    """Where every item lies in this view: lets `Scene.with_style` relabel without rendering."""

    @property
    def kinds(self) -> list[str]:
        return [ref.kind for ref in self.instances]

    @property
    def boxes(self) -> np.ndarray:
        """float32 [G, 4], x1, y1, x2, y2 in pixels (x2, y2 exclusive)."""
        boxes = np.zeros((len(self.masks), 4), dtype=np.float32)
        for index, mask in enumerate(self.masks):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            boxes[index] = (cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
        return boxes

    def target(self) -> dict[str, np.ndarray]:
        """Ground truth in the project convention (boxes, labels (all 1 = item), masks)."""
        return {
            "boxes": self.boxes,
            "labels": np.ones(len(self.masks), dtype=np.int64),
            "masks": self.masks,
        }


@dataclass(frozen=True, eq=False)
class Scene:
    layout: ToteLayout
    views: tuple[SceneView, ...]

    @property
    def image(self) -> np.ndarray:
        """The reference camera's image (view 0)."""
        return self.views[0].image

    @property
    def masks(self) -> np.ndarray:
        """The reference camera's instance masks (view 0)."""
        return self.views[0].masks

    def relabelled(self, layout: ToteLayout) -> "Scene":
        """The same images with the labels of ``layout``, a relabelling of this scene's layout
        (`ToteLayout.with_style`, `ToteLayout.with_pair_labeling`): no pixel is rendered again."""
        if layout.items is not self.layout.items:
            raise ValueError("relabelled needs a relabelling of this scene's own layout")
        views = []
        for view in self.views:
            if view.geometry is None:
                raise ValueError("this scene was built without its view geometry; render it again")
            masks, refs = label_masks(layout, view.geometry)
            views.append(replace(view, masks=masks, instances=tuple(refs)))
        return Scene(layout, tuple(views))

    def with_style(self, style: str) -> "Scene":
        """The same images labelled by an annotator of ``style`` ('merged' or 'split')."""
        return self.relabelled(self.layout.with_style(style))


def _check_size(height: int, width: int, views: int) -> None:
    for name, value in (("height", height), ("width", width)):
        if int(value) != value or value < MIN_SIDE:
            raise ValueError(f"{name} must be an integer >= {MIN_SIDE}, got {value!r}")
    if int(views) != views or not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be an integer in [1, {MAX_VIEWS}], got {views!r}")


def render_layout(layout: ToteLayout, height: int, width: int, views: int = 1) -> Scene:
    """Render a given layout from the first ``views`` cameras of the rig."""
    _check_size(height, width, views)
    rendered = []
    for view in range(views):
        image, geometry = render_image(layout, view, height, width)
        masks, refs = label_masks(layout, geometry)
        rendered.append(SceneView(view, image, masks, tuple(refs), pixel_to_tote(view, height, width), geometry))
    return Scene(layout, tuple(rendered))


def generate_scene(
    seed_or_rng: int | np.random.Generator | np.random.SeedSequence | list[int],
    height: int = 240,
    width: int = 320,
    views: int = 1,
    rates: AmbiguityRates = DEFAULT_RATES,
    pair_labeling: str | None = None,
    style: str | None = None,
) -> Scene:
    """A random tote scene. The same seed gives the same scene (bit for bit on one platform).

    ``style`` ('merged' or 'split') forces the annotator style, which labels every region of
    ``rates.styled_kinds``; ``pair_labeling`` forces the labelling of every seamless pair. By
    default the style is drawn with probability ``rates.pair_merged``. Neither changes a
    single pixel.
    """
    _check_size(height, width, views)
    root = seed_or_rng if isinstance(seed_or_rng, np.random.Generator) else np.random.default_rng(seed_or_rng)
    geometry_rng, label_rng = root.spawn(2)
    layout = sample_layout(geometry_rng, label_rng, width / height, rates, pair_labeling, style)
    return render_layout(layout, height, width, views)
