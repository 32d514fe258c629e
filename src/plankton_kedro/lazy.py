"""Import a heavy module on first use, so that the modules naming it stay cheap to import.

Every ``kedro`` command, ``kedro --help`` included, imports the project's settings, hooks and
(for ``kedro run``, ``kedro registry``, kedro-viz) every pipeline and node module; torch, timm
and scikit-learn together take seconds to import. Node modules therefore name the engine
modules they call with :func:`lazy_import`: the module is imported the first time one of its
attributes is used, in a node. The stand-in is never put in ``sys.modules`` (a lazy entry
there would be executed by whatever walks ``sys.modules``, such as ``inspect`` while torch is
half imported).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name`` and imports it on first attribute access."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<lazy module {self._name!r} ({state})>"


def lazy_import(name: str) -> LazyModule:
    """A stand-in for module ``name`` that imports it when first used."""
    return LazyModule(name)
