"""The analysis panels by key: which widget shows which analyses (napari style).

:data:`PANELS` maps a panel key (its dock's key, in toolbar order) to an
:class:`AnalysisPanel` subclass, given as ``"module:Class"`` and imported when the window
installs the panels (:mod:`gptviz_app.panels.docks`). Adding a panel is one module with its
class plus one line here. Another installed package adds panels through the entry-point
group ``gptviz_app.panels`` (a broken one warns, never stops the built-ins)::

    [project.entry-points."gptviz_app.panels"]
    mine = "mypackage.panel:MyPanel"

A panel declares what it shows (:attr:`AnalysisPanel.analyses`: names in
:mod:`gptviz.analysis.registry`) and gets every snapshot's
:class:`~gptviz.analysis.runner.AnalysisResult` while it is on screen (a hidden one catches
up when shown, see :meth:`AnalysisPanel.apply_analysis`); it never talks to the worker
directly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QWidget

from gptviz.analysis.registry import load_entry_points, resolve

if TYPE_CHECKING:
    from gptviz.analysis.runner import AnalysisResult
    from gptviz_app.panels.docks import AnalysisUI
    from gptviz_app.runtime.snapshot import ModelInfo, Snapshot

__all__ = ["AnalysisPanel", "PANELS", "ENTRY_POINT_GROUP", "register_panel", "panel_classes"]

#: Entry-point group through which other packages add panels.
ENTRY_POINT_GROUP = "gptviz_app.panels"

#: Panel key -> class ("module:Class"), in toolbar order.
PANELS: dict[str, Any] = {
    "diagnostics": "gptviz_app.panels.diagnostics:DiagnosticsPanel",
    "ablation": "gptviz_app.panels.ablation:AblationPanel",
    "lens": "gptviz_app.panels.lens:LensPanel",
    "compare": "gptviz_app.panels.compare:ComparePanel",
    "rollout": "gptviz_app.panels.rollout:RolloutPanel",
    "inside_head": "gptviz_app.panels.inside_head:InsideHeadPanel",
    "embedding": "gptviz_app.panels.embedding:EmbeddingPanel",
    "head_writes": "gptviz_app.panels.head_writes:HeadWritesPanel",
    "neurons": "gptviz_app.panels.neurons:NeuronsPanel",
    "saliency": "gptviz_app.panels.saliency:SaliencyPanel",
    "block_diagram": "gptviz_app.panels.block_diagram:BlockDiagramPanel",
    "timeline": "gptviz_app.panels.timeline:TimelinePanel",
    "attribution": "gptviz_app.panels.attribution:AttributionPanel",
    "patching": "gptviz_app.panels.patching:PatchingPanel",
    "branches": "gptviz_app.panels.branches:BranchesPanel",
}


class AnalysisPanel(QWidget):
    """Base of the analysis panels: what :class:`~gptviz_app.panels.docks.AnalysisUI`
    uses of one.

    Class attributes
    ----------------
    title
        Dock title (and the toolbar button's text under "More ▾").
    button
        Toolbar button text when :attr:`in_toolbar` (default: the title).
    in_toolbar
        A button of its own on the Analysis toolbar (else in the "More ▾" menu).
    analyses
        Registry names of the analyses computed while the panel is visible.

    Signals
    -------
    headSelected(layer, head)
        Select that head everywhere.
    ablateToggled(layer, head)
        Ablate the head, or restore it.
    settingsChanged()
        What :meth:`requests` returns changed: ask the worker again.
    """

    title: ClassVar[str] = ""
    button: ClassVar[str] = ""
    in_toolbar: ClassVar[bool] = False
    analyses: ClassVar[tuple[str, ...]] = ()

    headSelected = Signal(int, int)
    ablateToggled = Signal(int, int)
    settingsChanged = Signal()

    #: The panel's key in :data:`PANELS` (set by the AnalysisUI before :meth:`install`).
    key: str = ""

    def requests(self, visible: bool) -> dict[str, Any]:
        """The analyses to compute now, name -> settings (``None``: defaults); by default
        :attr:`analyses` while the panel is visible."""
        return dict.fromkeys(self.analyses) if visible else {}

    def install(self, ui: AnalysisUI) -> None:
        """Add menu actions or connections to the window (called once, after the docks)."""

    def set_model(self, info: ModelInfo) -> None:
        """A new model (and session): forget what was shown."""

    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """Every snapshot, also while the panel is hidden (before :meth:`apply_analysis`):
        keep up what the panel shows outside itself (a menu's check marks, the token strip's
        shading) and what it must do at the step it happens (a table scrolled to a new
        selection). Cheap: it runs at every step. Default: nothing."""

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        """Show ``res``: every snapshot while the panel is on screen. A hidden panel (its
        dock closed, or its tab behind another) is not called; when it is shown it gets, at
        once, the last snapshot that held any of its :attr:`analyses` (if an older one), then
        the latest: what it would show had it been called all along, for a panel whose
        drawing depends on the latest data and result alone."""


def register_panel(key: str, panel: Any, *, replace: bool = False) -> None:
    """Add a panel class (or ``"module:Class"``) under ``key``, after the others.

    Raises
    ------
    ValueError
        ``key`` is taken and ``replace`` is false.
    """
    if key in PANELS and not replace:
        raise ValueError(f"a panel named {key!r} is already registered")
    PANELS[key] = panel


_from_plugins: list[str] = []  # keys the entry points added
_plugins_loaded = False


def _add_plugin(key: str, obj: Any) -> None:
    if not (isinstance(obj, type) and issubclass(obj, AnalysisPanel)):
        raise TypeError(f"it gave {obj!r}, not an AnalysisPanel subclass")
    register_panel(key, obj)
    _from_plugins.append(key)


def panel_classes(rescan: bool = False) -> dict[str, type[AnalysisPanel]]:
    """Every panel class by key, in toolbar order (imports them). The ``gptviz_app.panels``
    entry points are read the first time; ``rescan`` reads them again."""
    global _plugins_loaded
    if rescan or not _plugins_loaded:
        _plugins_loaded = True
        for key in _from_plugins:
            PANELS.pop(key, None)
        _from_plugins.clear()
        load_entry_points(ENTRY_POINT_GROUP, _add_plugin, "panel")
    return {key: resolve(target) for key, target in PANELS.items()}
