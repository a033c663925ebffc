"""Public names of a package, imported on first use, that no submodule import can hide.

Importing a submodule makes the import system bind it as an attribute of its package
(``setattr(package, "union_nms", <module>)``). Where a submodule shares its name with a public
function, that binding would hide the function, whether the function had been resolved before
or not. `export_lazily` gives the package a `__getattr__` that imports a public name's module
on first use, and a module type that skips that binding for public names, so the public name
always stays the function or class; the submodule itself stays in ``sys.modules`` and is
reached with ``from package.module import name`` or ``importlib.import_module`` (``import
package.module as m`` reads the package attribute, so it gives the public function).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import Mapping


class _LazyPackage(types.ModuleType):
    """A package whose public names (``_LAZY_EXPORTS``) never become submodules."""

    def __setattr__(self, name: str, value: object) -> None:
        exports = self.__dict__.get("_LAZY_EXPORTS", {})
        if name in exports and isinstance(value, types.ModuleType) and value.__name__ == f"{self.__name__}.{name}":
            return
        super().__setattr__(name, value)


def export_lazily(package_name: str, exports: Mapping[str, str]) -> None:
    """Export ``name -> submodule`` (relative to the package) from the package ``package_name``:
    each name is imported from its submodule on first access and cached. Call it at the end of
    the package's ``__init__``; the package keeps ``exports`` as ``_LAZY_EXPORTS``."""
    package = sys.modules[package_name]
    namespace = package.__dict__
    namespace["_LAZY_EXPORTS"] = dict(exports)

    def __getattr__(name: str) -> object:
        module = namespace["_LAZY_EXPORTS"].get(name)
        if module is None:
            raise AttributeError(f"module {package_name!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package_name}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(namespace["_LAZY_EXPORTS"]))

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
    package.__class__ = _LazyPackage
