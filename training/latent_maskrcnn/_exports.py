"""Public names of a package, imported on first use.

`export_lazily` gives the package a module ``__getattr__`` (PEP 562) that imports a public
name's module the first time the name is read and caches the value in the package, so that
``import latent_maskrcnn`` stays fast and ``from latent_maskrcnn import load_model`` imports
only what it needs. Importing a submodule binds it as an attribute of its package, which would
hide a public name of the same spelling; no subpackage of `latent_maskrcnn` shares a public
name (test/test_public_api.py keeps it so), so every public name stays its function or class.
"""
from __future__ import annotations

import importlib
import sys
from typing import Mapping


def export_lazily(package_name: str, exports: Mapping[str, str]) -> None:
    """Export ``name -> module`` (dotted, relative to the package) from the package
    ``package_name``: each name is imported from its module on first access and cached. Call
    it at the end of the package's ``__init__``; the package keeps ``exports`` as
    ``_LAZY_EXPORTS``."""
    namespace = sys.modules[package_name].__dict__
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
