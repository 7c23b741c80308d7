"""Import paths from before the layer folders, kept working.

``gptviz.sampling``, ``gptviz.checkpoint``, ``gptviz.loaders`` and the other flat modules of
earlier releases moved into ``gptviz/{model, engine, analysis, io, families, train, cli}``.
A finder at the end of :data:`sys.meta_path` answers the old names with a module that reads
each attribute from where it lives now, and says once where that is
(:class:`DeprecationWarning`). The old modules whose names are now packages (``gptviz.model``,
``gptviz.engine``, ``gptviz.analysis``, ``gptviz.train``, ``gptviz.bench``) re-export or
look up their old names themselves. Nothing inside gptviz imports the old names.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
import warnings
from typing import Any

#: old module -> the modules its names live in now (asked in this order).
MOVED: dict[str, tuple[str, ...]] = {
    "gptviz.config": ("gptviz.model.config",),
    "gptviz.sampling": ("gptviz.engine.sampling",),
    "gptviz.heads": ("gptviz.analysis.heads",),
    "gptviz.lens": ("gptviz.analysis.lens",),
    "gptviz.rollout": ("gptviz.analysis.rollout",),
    "gptviz.ablation": ("gptviz.analysis.ablation",),
    "gptviz.compare": ("gptviz.analysis.compare",),
    "gptviz.checkpoint": ("gptviz.io.checkpoint", "gptviz.families"),
    "gptviz.loaders": ("gptviz.families", "gptviz.families.gpt2", "gptviz.families.openai_gpt",
                       "gptviz.families.nanogpt", "gptviz.families.hf_common",
                       "gptviz.io.tensor_files", "gptviz.io.tokenizer_files"),
    "gptviz.tokenizer": ("gptviz.io.tokenizer",),
    "gptviz.session_file": ("gptviz.io.session_file",),
    "gptviz.export": ("gptviz.io.export",),
    "gptviz.prompts": ("gptviz.io.prompts",),
    "gptviz.data": ("gptviz.train.data",),
    "gptviz.evaluate": ("gptviz.train.evaluate",),
    "gptviz.commands": ("gptviz.cli",),
}
MOVED.update({f"gptviz.commands.{name}": (f"gptviz.cli.{name}",) for name in (
    "info", "trace", "generate", "bench", "train", "evaluate", "heads", "lens")})


class _MovedModule(types.ModuleType):
    """Stands in for an old module: attributes come from its new homes."""

    def __init__(self, name: str, targets: tuple[str, ...]) -> None:
        super().__init__(name, f"Moved to {', '.join(targets)}.")
        self._targets = targets
        self._warned = False
        if any(other.startswith(name + ".") for other in MOVED):
            self.__path__: list[str] = []  # a package: its old submodules are moved too

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        for target in self._targets:
            module = importlib.import_module(target)
            if hasattr(module, attr):
                if not self._warned:
                    self._warned = True
                    warnings.warn(f"{self.__name__} moved to {target}", DeprecationWarning,
                                  stacklevel=2)
                return getattr(module, attr)
        raise AttributeError(f"module {self.__name__!r} has no attribute {attr!r} "
                             f"(it moved to {', '.join(self._targets)})")


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Any = None, target: Any = None
                  ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MOVED:
            return importlib.machinery.ModuleSpec(fullname, self)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _MovedModule(spec.name, MOVED[spec.name])

    def exec_module(self, module: types.ModuleType) -> None:
        return None


def install() -> None:
    """Put the finder at the end of ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
