"""The live analyses by name: built-ins, registered ones, and plug-ins of other packages.

A name maps to a :class:`~gptviz.analysis.live.LiveAnalysis` subclass (or any function
returning an instance), given as the object or as ``"module:attribute"``, imported on first
use. Adding a built-in analysis is one module plus one line in :data:`_BUILTIN`.

Another installed package adds analyses through the entry-point group ``gptviz.analyses``
(read lazily, the first time the names are asked for); the entry point's name is the
analysis name::

    [project.entry-points."gptviz.analyses"]
    mine = "mypackage.analysis:MyAnalysis"

A plug-in that fails to load, or whose name is taken, is skipped with a warning: the
built-ins always work.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from importlib.metadata import entry_points
from typing import Any

from gptviz.analysis.live import LiveAnalysis

__all__ = ["ENTRY_POINT_GROUP", "register_analysis", "unregister_analysis", "analysis_names",
           "analysis_factory", "create_analysis", "load_entry_points", "resolve"]

#: Entry-point group through which other packages add analyses.
ENTRY_POINT_GROUP = "gptviz.analyses"

Factory = Callable[[], LiveAnalysis]

_BUILTIN: dict[str, str] = {
    "heads": "gptviz.analysis.live_heads:HeadDiagnostics",
    "effect": "gptviz.analysis.live_effect:AblationEffectAtStep",
    "lens": "gptviz.analysis.live_lens:LogitLensAtQuery",
    "compare": "gptviz.analysis.live_compare:HeadComparison",
    "rollout": "gptviz.analysis.live_rollout:WindowRollout",
    "head_writes": "gptviz.analysis.live_head_writes:HeadWritesAtQuery",
    "neurons": "gptviz.analysis.live_neurons:NeuronsAtQuery",
    "saliency": "gptviz.analysis.live_saliency:SaliencyAtQuery",
    "inside_head": "gptviz.analysis.live_inside_head:InsideHeadAtQuery",
    "embedding": "gptviz.analysis.live_embedding:EmbeddingAtQuery",
    "attribution": "gptviz.analysis.live_attribution:LogitAttributionAtQuery",
    "architecture": "gptviz.analysis.live_architecture:ModelArchitecture",
    "timeline": "gptviz.analysis.live_timeline:TrainingTimeline",
}


def resolve(target: Any) -> Any:
    """``"module:attribute"`` imported (anything else is returned as it is)."""
    if not isinstance(target, str):
        return target
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def load_entry_points(group: str, add: Callable[[str, Any], None], kind: str) -> None:
    """Call ``add(name, loaded object)`` for every entry point of ``group``; one that fails
    to load (or that ``add`` refuses with an exception) warns and is skipped."""
    for ep in entry_points(group=group):
        try:
            add(ep.name, ep.load())
        except Exception as e:  # a broken plug-in must not stop the built-ins
            warnings.warn(f"{kind} plug-in {ep.name!r} ({ep.value}) not loaded: {e}",
                          RuntimeWarning, stacklevel=3)


class _Registry:
    def __init__(self) -> None:
        self.factories: dict[str, Any] = dict(_BUILTIN)
        self.plugins_loaded = False
        self.from_plugins: list[str] = []

    def add_plugin(self, name: str, obj: Any) -> None:
        if name in self.factories:
            raise ValueError(f"an analysis named {name!r} is already registered")
        if not callable(obj):
            raise TypeError(f"it gave {type(obj).__name__}, not an analysis class or factory")
        self.factories[name] = obj
        self.from_plugins.append(name)

    def load_plugins(self, again: bool = False) -> None:
        if self.plugins_loaded and not again:
            return
        self.plugins_loaded = True
        for name in self.from_plugins:
            self.factories.pop(name, None)
        self.from_plugins = []
        load_entry_points(ENTRY_POINT_GROUP, self.add_plugin, "analysis")


_REGISTRY = _Registry()


def register_analysis(name: str, factory: Factory | str, *, replace: bool = False) -> None:
    """Register ``factory`` (a :class:`LiveAnalysis` subclass, a function returning one, or
    ``"module:attribute"``) under ``name``.

    Raises
    ------
    ValueError
        ``name`` is taken and ``replace`` is false.
    """
    if name in _REGISTRY.factories and not replace:
        raise ValueError(f"an analysis named {name!r} is already registered")
    _REGISTRY.factories[name] = factory


def unregister_analysis(name: str) -> None:
    """Remove a registered analysis (a no-op when there is none of that name)."""
    _REGISTRY.factories.pop(name, None)


def analysis_names(rescan: bool = False) -> tuple[str, ...]:
    """Every analysis name: built-ins first, in registration order.

    The ``gptviz.analyses`` entry points are read on the first call; ``rescan`` reads them
    again (after a package was installed into the running interpreter).
    """
    _REGISTRY.load_plugins(again=rescan)
    return tuple(_REGISTRY.factories)


def analysis_factory(name: str) -> Factory:
    """The class or factory registered under ``name`` (imported if need be).

    Raises
    ------
    ValueError
        No analysis of that name.
    """
    if name not in _REGISTRY.factories:
        _REGISTRY.load_plugins()
    if name not in _REGISTRY.factories:
        raise ValueError(f"no analysis named {name!r} (known: {', '.join(analysis_names())})")
    factory = resolve(_REGISTRY.factories[name])
    _REGISTRY.factories[name] = factory
    return factory


def create_analysis(name: str) -> LiveAnalysis:
    """A new instance of the analysis ``name`` (with empty caches).

    Raises
    ------
    ValueError
        No analysis of that name.
    TypeError
        Its factory did not give a :class:`LiveAnalysis`.
    """
    obj = analysis_factory(name)()
    if not isinstance(obj, LiveAnalysis):
        raise TypeError(f"analysis {name!r} gave {type(obj).__name__}, not a LiveAnalysis")
    return obj
