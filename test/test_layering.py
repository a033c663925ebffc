"""The folders are the architecture (docs/architecture.md): each subpackage imports only the
layers below it, the ML module never imports ROS or the ROS package, and only ``ros/`` imports
the ROS client libraries and message packages. Every import counts, also one inside a function
(the lazy ones) and ``importlib.import_module("...")`` with a literal name."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"latent_maskrcnn": ROOT / "training" / "latent_maskrcnn", "latent_segmentation_ros": ROOT / "latent_segmentation_ros"}

# What needs a ROS 2 installation: client libraries, launch, and generated message packages
# (this package's own included).
ROS_MODULES = {
    "rclpy", "rcl_interfaces", "message_filters", "diagnostic_updater", "diagnostic_msgs", "launch",
    "launch_ros", "cv_bridge", "sensor_msgs", "std_msgs", "builtin_interfaces", "rosidl_runtime_py",
    "ros2cli", "rosbag2_py", "latent_segmentation_ros.msg",
}
ML = "latent_maskrcnn"
LSR = "latent_segmentation_ros"

# Layer -> the layers it may import (besides itself and its package's root, which holds the
# public API). A layer not listed here fails the test until it is given its place.
ALLOWED: dict[str, set[str]] = {
    f"{ML}.model": set(),
    f"{ML}.aggregation": set(),
    f"{ML}.data": {f"{ML}._exports"},  # synthetic/ exports its renderer lazily, as the root does
    f"{ML}.evaluation": {f"{ML}.model", f"{ML}.aggregation", f"{ML}.data"},
    f"{ML}.training": {f"{ML}.model", f"{ML}.aggregation", f"{ML}.data", f"{ML}.evaluation"},
    f"{ML}.bench": {f"{ML}.model", f"{ML}.aggregation", f"{ML}.data"},
    f"{ML}._exports": set(),
    f"{LSR}.core": {ML},
    f"{LSR}.replay": {ML, f"{LSR}.core"},
    f"{LSR}.ros": {ML, f"{LSR}.core", f"{LSR}.replay", "ROS"},
    f"{LSR}.bench": {ML, f"{LSR}.core", f"{LSR}.replay", f"{LSR}.ros"},
    f"{LSR}.cli": {ML, f"{LSR}.core", f"{LSR}.replay", f"{LSR}.ros", f"{LSR}.bench"},
}


def module_name(path: Path) -> str:
    for package, folder in SOURCES.items():
        if folder in path.parents:
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    raise ValueError(path)


def is_our_module(name: str) -> bool:
    parts = name.split(".")
    folder = SOURCES.get(parts[0])
    if folder is None:
        return False
    path = folder.joinpath(*parts[1:])
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module ``source`` (the text of ``module``) imports, absolute names."""
    found = set()
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.add(name)
            # from package import module
            found |= {f"{name}.{alias.name}" for alias in node.names if is_our_module(f"{name}.{alias.name}")}
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            found.add(node.args[0].value)
    return found


def layer_of(name: str) -> str | None:
    """The layer (subpackage) a module belongs to, its package root, or None (not ours)."""
    parts = name.split(".")
    if parts[0] not in (ML, LSR):
        return None
    return ".".join(parts[:2]) if len(parts) > 1 else parts[0]


def violations(source: str, module: str, is_package: bool = False) -> list[str]:
    """The imports of ``module`` that break the layering, each with the rule it breaks."""
    own = layer_of(module)
    if own in (ML, LSR):  # a package root: the ML root exports lazily, the ROS root is empty
        own_allowed = {ML, f"{ML}._exports"} if own == ML else set()
    else:
        own_allowed = ALLOWED.get(own)
        if own_allowed is None:
            return [f"{module}: the layer {own} has no place in test_layering.ALLOWED (and docs/architecture.md)"]
    problems: dict[str, str] = {}  # one per layer imported against the rules
    for name in sorted(imported_modules(source, module, is_package)):
        top = name.split(".")[0]
        if name in ROS_MODULES or top in ROS_MODULES or name.startswith(f"{LSR}.msg"):
            if "ROS" not in own_allowed:
                problems.setdefault("ROS", f"{module} imports {name}: only {LSR}.ros may import ROS")
            continue
        if module.startswith(ML) and top == LSR:
            problems.setdefault(LSR, f"{module} imports {name}: {ML} never imports {LSR}")
            continue
        target = layer_of(name)
        if target is None or target == own:
            continue
        root = name.split(".")[0]
        if target == root:  # the package root (the public API of latent_maskrcnn)
            if root == ML and (module.startswith(ML) or ML in own_allowed):
                continue
            if root == LSR and module.startswith(LSR):
                continue
        if target in own_allowed or (root == ML and ML in own_allowed):
            continue
        problems.setdefault(target, f"{module} imports {name}: {own} may import only {sorted(own_allowed) or 'itself'}")
    return list(problems.values())


def source_files() -> list[Path]:
    return sorted(p for folder in SOURCES.values() for p in folder.rglob("*.py"))


@pytest.mark.parametrize("path", source_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_layers(path: Path) -> None:
    assert violations(path.read_text(), module_name(path), path.name == "__init__.py") == []


def test_the_layers_are_the_folders() -> None:
    """Every subpackage has its rule; no module lies loose beside them (the roots hold only the
    public API), so a new module has to be put into a layer."""
    for package, folder in SOURCES.items():
        loose = sorted(p.name for p in folder.glob("*.py") if p.name not in ("__init__.py", "_exports.py"))
        assert loose == [], f"{package}: modules outside a layer: {loose}"
        for sub in sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file()):
            assert f"{package}.{sub.name}" in ALLOWED, f"{package}.{sub.name} has no rule"
            assert ast.get_docstring(ast.parse((sub / "__init__.py").read_text())), f"{sub} says nothing of itself"


@pytest.mark.parametrize(
    ("module", "source", "rule"),
    [
        (f"{LSR}.core.pipeline", "def f():\n    import rclpy\n", f"only {LSR}.ros may import ROS"),
        (f"{LSR}.core.pipeline", "from latent_segmentation_ros.msg import ConfidenceMaskArray\n", "only"),
        (f"{LSR}.replay.scoring", "from latent_segmentation_ros.ros.rig_node import Rig\n", "may import only"),
        (f"{LSR}.core.messages", "from latent_segmentation_ros.cli import main\n", "may import only"),
        (f"{LSR}.core.messages", "import importlib\nimportlib.import_module('latent_segmentation_ros.replay.report')\n",
         "may import only"),
        (f"{ML}.model.backbone", "from ..evaluation import metrics\n", "may import only"),
        (f"{ML}.aggregation.aggregate", "from latent_segmentation_ros.core.results import CameraResult\n", "never imports"),
        (f"{ML}.training.trainer", "import launch_ros\n", "only"),
    ],
)
def test_a_wrong_import_is_caught(module: str, source: str, rule: str) -> None:
    problems = violations(source, module)
    assert len(problems) == 1 and rule in problems[0], problems


def test_allowed_imports_pass() -> None:
    assert violations("from latent_maskrcnn.aggregation.aggregate import aggregate\nimport numpy\n",
                      f"{LSR}.core.pipeline") == []
    assert violations("from .config import ModelConfig\n", f"{ML}.model.backbone") == []
    assert violations("import rclpy\nfrom latent_segmentation_ros.msg import ConfidenceMaskArray\n",
                      f"{LSR}.ros.grasp_node") == []
