"""Every public name of `latent_maskrcnn` (and of each of its packages) is the function or class its docs name, whatever was
imported before it: importing a submodule binds it as an attribute of its package, so a submodule
named like a public function would hide it (``aggregate``, ``confidence_masks`` and ``union_nms``
once did). Each order runs in a fresh interpreter, since the binding happens once per process."""
from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import latent_maskrcnn

PACKAGE_DIR = Path(latent_maskrcnn.__file__).parent

SUBMODULES = [info.name for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "latent_maskrcnn.")]
PACKAGES = ["latent_maskrcnn"] + [
    info.name for info in pkgutil.walk_packages([str(PACKAGE_DIR)], "latent_maskrcnn.") if info.ispkg
]


def _colliding() -> list[str]:
    """Public names of lazily exporting packages that are also names of their submodules."""
    import importlib

    found = []
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for name in getattr(package, "__all__", ()):
            if f"{package_name}.{name}" in SUBMODULES:
                found.append(f"{package_name}.{name}")
    return sorted(found)


# Public names that are also submodule names: importing the submodule would hide the name.
COLLIDING = _colliding()

# Runs in the child: ORDER is a list of steps, ("import", module) or ("check", None).
CHILD = textwrap.dedent(
    """
    import importlib, inspect, json, sys, types

    import torch

    torch.set_num_threads(1)
    order = json.loads(sys.argv[1])
    PACKAGES = json.loads(sys.argv[2])
    checked = 0

    def check_package(package_name):
        package = importlib.import_module(package_name)
        exports = getattr(package, "_LAZY_EXPORTS", None)
        for name in getattr(package, "__all__", ()):
            value = getattr(package, name)
            assert not isinstance(value, types.ModuleType), f"{package_name}.{name} is a module"
            if exports is not None:
                defining = importlib.import_module(f"{package_name}.{exports[name]}")
                assert value is getattr(defining, name), f"{package_name}.{name} is not {defining.__name__}.{name}"
            if inspect.isfunction(value) or inspect.isclass(value):
                assert value.__name__ == name, (package_name, name, value)
            assert getattr(package, name) is value
            namespace = {}
            exec(f"from {package_name} import {name} as imported", namespace)
            assert namespace["imported"] is value, (package_name, name)

    def check():
        global checked
        import latent_maskrcnn as lm

        for package_name in PACKAGES:
            check_package(package_name)
        # The three aggregation functions (once hidden by their modules), called for real.
        masks = [torch.zeros(1, 16, 16, dtype=torch.bool), torch.zeros(1, 16, 16, dtype=torch.bool)]
        masks[0][0, 2:10, 2:10] = True
        masks[1][0, 3:11, 3:11] = True
        scores = [torch.tensor([0.9]), torch.tensor([0.8])]
        labels = [torch.tensor([1]), torch.tensor([1])]
        confident = lm.confidence_masks(masks, scores, p=1.0, labels=labels)
        assert isinstance(confident, lm.ConfidenceMaskResult) and len(confident) == 1
        assert confident.masks[0, 5, 5] and not confident.masks[0, 2, 2]
        merged = lm.union_nms(masks, scores, iou_threshold=0.5, labels=labels)
        assert isinstance(merged, lm.UnionNMSResult)
        assert merged.masks.shape[0] == 1 and merged.masks[0, 2, 2] and merged.masks[0, 10, 10]
        samples = [{"masks": m, "scores": s, "labels": l} for m, s, l in zip(masks, scores, labels)]
        for mode in lm.MODES[:2]:
            assert lm.aggregate(samples, mode, p=1.0)["masks"].shape[0] == 1
        checked += 1

    for step, module in order:
        if step == "import":
            importlib.import_module(module)
        else:
            check()
    print("checked", checked)
    """
)


def _orders() -> dict[str, list[list]]:
    check = ["check", None]
    imports = [["import", name] for name in SUBMODULES]
    orders = {
        # Every name resolved first, then each submodule imported after it was cached.
        "exports_then_each_submodule": [check] + [step for item in imports for step in (item, check)],
        "exports_then_each_submodule_reversed": [check]
        + [step for item in reversed(imports) for step in (item, check)],
        # Every submodule imported before any name is resolved.
        "all_submodules_first": imports + [check],
        "all_submodules_first_reversed": list(reversed(imports)) + [check],
    }
    return orders


ORDERS = _orders()


def test_no_submodule_shares_a_public_name() -> None:
    # aggregate, confidence_masks and union_nms were once top-level modules beside the functions
    assert COLLIDING == [], f"rename these submodules or stop exporting the names: {COLLIDING}"
    assert "latent_maskrcnn.aggregation.aggregate" in SUBMODULES and "latent_maskrcnn.aggregation" in PACKAGES
    assert "latent_maskrcnn.data.synthetic.scene" in SUBMODULES and "latent_maskrcnn.data.synthetic" in PACKAGES


@pytest.mark.parametrize("order", sorted(ORDERS))
def test_public_names_are_their_objects_in_any_import_order(order: str) -> None:
    import json

    steps = ORDERS[order]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="error")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(steps), json.dumps(PACKAGES)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["checked", str(sum(step[0] == "check" for step in steps))]
