"""Synthetic tote scenes of polybagged apparel with ambiguity that is real in the labels.

See docs/synthetic_data.md for the scene recipe, the ambiguity kinds and their rates.
"""
from latent_maskrcnn._exports import export_lazily

# Each name loads its module on first use: the ambiguity kinds and rates stay cheap to read (the
# command line reads them for its options) without the renderer (numpy, Pillow, scipy).
export_lazily(__name__, {
    **{name: "ambiguity" for name in (
        "AMBIGUITY_RATES", "DEFAULT_RATES", "FILM_BAG", "FILM_GARMENT", "GLARE_HALF", "GLARE_STRIPE", "INSTANCE_KINDS", "LABELLINGS",
        "PAIR_HALF", "PAIR_LABELINGS", "PAIR_MERGED", "PLAIN", "PRESETS", "RATE_DESCRIPTIONS", "REGION_KINDS",
        "STYLES", "THROUGH_FILM", "UNDER_FILM", "AmbiguityRates", "preset_name",
    )},
    "MAX_VIEWS": "cameras",
    "pixel_to_tote": "cameras",
    "ANNOTATION_FILE": "coco",
    "IMAGE_DIR": "coco",
    "image_file_name": "coco",
    "make_dataset": "coco",
    "InstanceRef": "layout",
    "ToteLayout": "layout",
    "sample_layout": "layout",
    "Scene": "scene",
    "SceneView": "scene",
    "generate_scene": "scene",
    "render_layout": "scene",
})

__all__ = [
    "AMBIGUITY_RATES",
    "ANNOTATION_FILE",
    "AmbiguityRates",
    "DEFAULT_RATES",
    "FILM_BAG",
    "FILM_GARMENT",
    "GLARE_HALF",
    "GLARE_STRIPE",
    "IMAGE_DIR",
    "INSTANCE_KINDS",
    "InstanceRef",
    "LABELLINGS",
    "MAX_VIEWS",
    "PAIR_HALF",
    "PAIR_LABELINGS",
    "PAIR_MERGED",
    "PLAIN",
    "PRESETS",
    "RATE_DESCRIPTIONS",
    "REGION_KINDS",
    "STYLES",
    "Scene",
    "SceneView",
    "THROUGH_FILM",
    "ToteLayout",
    "UNDER_FILM",
    "generate_scene",
    "image_file_name",
    "make_dataset",
    "pixel_to_tote",
    "preset_name",
    "render_layout",
    "sample_layout",
]
