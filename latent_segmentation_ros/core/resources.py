"""Where the package's data files live in a source checkout, a pip install and a colcon install.

The source tree keeps them at the repository root (``msg/``, ``models/``); ROS installs put
them under ``<prefix>/share/latent_segmentation_ros/`` (rosidl for ``msg/``, CMake's
``install(DIRECTORY ...)`` for the rest) and so does setup.py's ``data_files`` for pip.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGE = "latent_segmentation_ros"
DEMO_CHECKPOINT = "models/demo/latent_maskrcnn_demo.safetensors"
# The plain MaskRCNN (latent_dim = 0) trained with the demo model's recipe, for the comparison.
DEMO_BASELINE = "models/demo/maskrcnn_baseline.safetensors"


def candidate_paths(relative: str) -> list[Path]:
    """Every place ``relative`` (e.g. "msg" or "models/demo/x") may be, most specific first."""
    package_dir = Path(__file__).parent.parent  # this module lives in <package>/core/
    candidates = [package_dir.resolve().parent / relative, package_dir.parent / relative]
    share = Path("share") / PACKAGE / relative
    for base in (package_dir, package_dir.resolve()):
        # <prefix>/lib/pythonX.Y/site-packages/latent_segmentation_ros
        if len(base.parents) > 3:
            candidates.append(base.parents[3] / share)
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    candidates += [Path(prefix) / share for prefix in prefixes]
    candidates += [Path(sys.prefix) / share, Path(sys.base_prefix) / share]
    return list(dict.fromkeys(candidates))


def find_resource(relative: str) -> Path:
    """The first existing location of ``relative``; FileNotFoundError listing where it looked."""
    candidates = candidate_paths(relative)
    for candidate in candidates:
        if candidate.exists():
            return candidate
    searched = ", ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{relative} of {PACKAGE} was not found; searched: {searched}")


def default_checkpoint() -> Path:
    """The bundled demo model (``models/demo/latent_maskrcnn_demo.safetensors``)."""
    return find_resource(DEMO_CHECKPOINT)


def default_baseline() -> Path:
    """The bundled MaskRCNN baseline (``models/demo/maskrcnn_baseline.safetensors``), found like
    the demo model; FileNotFoundError listing where it looked when it is not bundled."""
    return find_resource(DEMO_BASELINE)
