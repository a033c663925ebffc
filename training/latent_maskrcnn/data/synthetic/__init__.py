"""Synthetic tote scenes of polybagged apparel with ambiguity that is real in the labels.

See docs/synthetic_data.md for the scene recipe, the ambiguity kinds and their rates.
"""
from latent_maskrcnn.data.synthetic.ambiguity import (
    DEFAULT_RATES,
    FILM_BAG,
    GLARE_STRIPE,
    INSTANCE_KINDS,
    PAIR_HALF,
    PAIR_LABELINGS,
    PAIR_MERGED,
    PLAIN,
    UNDER_FILM,
    AmbiguityRates,
)
from latent_maskrcnn.data.synthetic.cameras import MAX_VIEWS, pixel_to_tote
from latent_maskrcnn.data.synthetic.coco import ANNOTATION_FILE, IMAGE_DIR, image_file_name, make_dataset
from latent_maskrcnn.data.synthetic.layout import InstanceRef, ToteLayout, sample_layout
from latent_maskrcnn.data.synthetic.scene import Scene, SceneView, generate_scene, render_layout

__all__ = [
    "ANNOTATION_FILE",
    "AmbiguityRates",
    "DEFAULT_RATES",
    "FILM_BAG",
    "GLARE_STRIPE",
    "IMAGE_DIR",
    "INSTANCE_KINDS",
    "InstanceRef",
    "MAX_VIEWS",
    "PAIR_HALF",
    "PAIR_LABELINGS",
    "PAIR_MERGED",
    "PLAIN",
    "Scene",
    "SceneView",
    "ToteLayout",
    "UNDER_FILM",
    "generate_scene",
    "image_file_name",
    "make_dataset",
    "pixel_to_tote",
    "render_layout",
    "sample_layout",
]
