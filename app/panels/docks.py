"""The analysis panels in the main window: docks, the Analysis menu and toolbar, ablation
from the head grid.

:func:`install` (called once by :class:`gptviz_app.views.main_window.MainWindow`) creates an
:class:`AnalysisUI`, which

* adds one dock per registered panel (:data:`gptviz_app.panels.registry.PANELS`, in that
  order: head diagnostics, ablation, logit lens, comparisons, attention rollout) under the
  head grid, tabbed together (and with the fine-tuned head's panel) and hidden at start,
  each in a scroll area, each one click away on the *Analysis* toolbar
  (directly, or under "More ▾") and in the *Analysis* menu and View ▸ Panels;
* tells the worker what to compute with the ``analysis`` worker command: an
  :class:`~gptviz.analysis.runner.AnalysisSpec` merged from every panel's
  :meth:`~gptviz_app.panels.registry.AnalysisPanel.requests` (only the panels on screen ask
  for anything), sent again whenever a panel's visibility or settings change;
* registers itself as a controller view: every snapshot's ``extra["analysis"]`` goes to each
  panel's ``follow`` and, while the panel is on screen, its ``apply_analysis``; a hidden
  panel (dock closed, tab behind another) does no work per step and catches up the moment it
  is shown (:meth:`AnalysisUI.catch_up`);
* owns head ablation, which is session state rather than a panel: the menu's ablation
  actions, Ctrl+click on a head-grid thumbnail (ablate or restore) and its right-click menu
  (select, ablate or restore, clear all, diagnostics), the crossed out thumbnails of the
  ablated heads, and the panels' ``ablateToggled`` signals.

A panel adds menu actions of its own in its ``install(ui)`` (:meth:`AnalysisUI.add_action`).
"""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QEvent, QObject, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QBrush, QColor, QFontMetricsF, QKeySequence, QPen
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPathItem,
    QMenu,
    QScrollArea,
    QToolBar,
    QToolButton,
    QWidget,
)

from gptviz.analysis.runner import AnalysisResult, AnalysisSpec
from gptviz_app.panels.registry import AnalysisPanel, panel_classes
from gptviz_app.panels.widgets import ABLATED_COLOR, cross_path, rects_path
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.plot_text import least_text_size

#: The key that shows or hides each built-in panel (listed in Help ▸ Keyboard shortcuts). A
#: panel may set its own in ``install``; a key another action has already is left out.
#: Ctrl+Alt+T, L and D are the desktop's (terminal, lock, show desktop) on common Linux desktops.
#: Letters left to the desktop with Ctrl+Alt.
DESKTOP_KEYS = "TLD"
PANEL_SHORTCUTS = {
    "diagnostics": "Ctrl+Alt+H", "ablation": "Ctrl+Alt+A", "lens": "Ctrl+Alt+G",
    "compare": "Ctrl+Alt+C", "rollout": "Ctrl+Alt+R", "inside_head": "Ctrl+Alt+I",
    "embedding": "Ctrl+Alt+E", "head_writes": "Ctrl+Alt+W", "neurons": "Ctrl+Alt+N",
    "saliency": "Ctrl+Alt+S", "block_diagram": "Ctrl+Alt+B", "timeline": "Ctrl+Alt+M",
    "attribution": "Ctrl+Alt+U", "patching": "Ctrl+Alt+P",
    "branches": "Ctrl+Alt+K",  # not T: desktops take Ctrl+Alt+T for a terminal
}


class AnalysisUI(QObject):
    """See the module docstring. ``window`` is the
    :class:`~gptviz_app.views.main_window.MainWindow`.

    ``headToggled(layer, head)``: the user asked to ablate or restore a head.
    """

    headToggled = Signal(int, int)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = c = window.controller
        self.spec = AnalysisSpec()
        self.ablated: tuple[tuple[int, int], ...] = ()
        self.selected = (0, 0)
        self.last_menu: QMenu | None = None
        self.result: AnalysisResult | None = None
        self.actions: dict[str, QAction] = {}
        self.panels: dict[str, AnalysisPanel] = {}
        for key, cls in panel_classes().items():
            panel = cls()
            panel.key = key
            self.panels[key] = panel
        self.visible = dict.fromkeys(self.panels, False)
        #: Hidden panels that missed snapshots, and for each the last missed one that held
        #: any of its analyses (its data), see :meth:`catch_up`.
        self.stale: set[str] = set()
        self._missed: dict[str, tuple[AnalysisResult, Snapshot]] = {}
        self._add_docks()
        self._build_menu()
        self._build_toolbar()
        self._build_grid_overlay()
        for panel in self.panels.values():
            panel.headSelected.connect(c.select_head)
            panel.ablateToggled.connect(self.toggle_head)
            panel.settingsChanged.connect(self._update_spec)
            self.menu.addSeparator()  # each panel's own actions in a section (empty: hidden)
            panel.install(self)
        self._add_shortcuts()
        c.add_view(self)

    # ------------------------------------------------------------------ construction
    def _add_docks(self) -> None:
        """The panels go under the head grid, tabbed with the fine-tuned head's panel: opening
        one takes nothing from the attention map (which keeps its near-square share of the
        window) nor from the next-token chart; the window's layout
        (:class:`~gptviz_app.views.window_layout.WindowLayout`) gives the grid the height its
        thumbnails fill and the tabs the rest. Each panel sits in a scroll area, so that its
        controls never make the window wider than the screen (a narrow window scrolls them)."""
        w = self.window
        right = Qt.DockWidgetArea.RightDockWidgetArea
        # Docks the user drags to the bottom sit under the attention map only: the head grid
        # and the next-token chart keep their full height (both show what an ablation changes).
        w.setCorner(Qt.Corner.BottomRightCorner, right)
        prev = "classes" if "classes" in w.docks else None
        for key, panel in self.panels.items():
            w.add_panel(key, panel.title, PanelScroll(panel), right, register=False,
                        tabify=prev, split=None if prev else ("grid", Qt.Orientation.Vertical))
            prev = key
        for key in self.panels:
            dock = w.docks[key]
            dock.hide()
            dock.visibilityChanged.connect(lambda on, k=key: self._on_visible(k, on))
            # a tab behind another dragged out (floated) is shown with no visibilityChanged
            dock.topLevelChanged.connect(
                lambda _floating, k=key, d=dock: self._on_visible(k, d.isVisible()))
            dock.toggleViewAction().triggered.connect(
                lambda on, d=dock: d.raise_() if on else None)

    def _add_shortcuts(self) -> None:
        """Every panel one key away (:data:`PANEL_SHORTCUTS`; another panel gets the first free
        letter of its title), window-wide, and the key in the toolbar button's tooltip."""
        w = self.window
        taken = {s.toString() for a in w.findChildren(QAction) for s in a.shortcuts()}
        for key in self.panels:
            toggle = w.docks[key].toggleViewAction()
            if toggle.shortcut().isEmpty():
                seq = PANEL_SHORTCUTS.get(key)
                if not seq or seq in taken:  # a panel of its own (a plugin): a free letter
                    seq = next((f"Ctrl+Alt+{ch}" for ch in self.panels[key].title.upper()
                                + "0123456789" if ch.isalnum() and ch not in DESKTOP_KEYS
                                and f"Ctrl+Alt+{ch}" not in taken), None)
                if seq:
                    toggle.setShortcut(QKeySequence(seq))
                    taken.add(seq)
            if not toggle.shortcut().isEmpty():
                w.addAction(toggle)
                act = self.toolbar_actions[key]
                text = toggle.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
                act.setToolTip(f"{act.toolTip()} · {text}")

    def add_action(self, key: str, text: str, slot=None, checkable: bool = False,
                   checked: bool = False, tip: str = "", more: bool = False) -> QAction:
        """A named action in the Analysis menu (and the toolbar's "More ▾" menu with
        ``more``), also in ``window.actions[key]``."""
        act = QAction(text, self.window)
        act.setCheckable(checkable)
        if checkable:
            act.setChecked(checked)
            if slot is not None:
                act.toggled.connect(slot)
        elif slot is not None:
            act.triggered.connect(slot)
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        self.window.actions[key] = act
        self.actions[key] = act
        self.menu.addAction(act)
        if more:
            if not self._more_extras:
                self.more_menu.addSeparator()
            self._more_extras = True
            self.more_menu.addAction(act)
        return act

    def _build_menu(self) -> None:
        w = self.window
        menu = QMenu("&Analysis", w)
        help_menu = w.menus.get("help")
        if help_menu is not None:
            w.menuBar().insertMenu(help_menu.menuAction(), menu)
        else:  # pragma: no cover - a window without a Help menu
            w.menuBar().addMenu(menu)
        w.menus["analysis"] = menu
        self.menu = menu
        self.more_menu = QMenu("More", w)
        self._more_extras = False
        for key in self.panels:
            menu.addAction(w.docks[key].toggleViewAction())
        menu.addSeparator()
        self.add_action("ablate_selected", "Ablate / restore the selected head",
                        lambda: self.toggle_head(*self.selected),
                        tip="Switch the head shown in the attention map off, or back on")
        self.add_action("ablation_mean", "Mean-ablation (the head's mean output over the text)",
                        lambda on: self.set_mode("mean" if on else "zero"), checkable=True,
                        tip="Off: ablated heads output zeros")
        self.add_action("ablation_clear", "Clear all ablations", self.clear)

    def _build_toolbar(self) -> None:
        """Buttons after the sampling controls: the panels ``in_toolbar`` (one click each)
        and "More ▾" for the others. A button shows its panel (or brings its tab to the
        front); a second click hides it."""
        w = self.window
        tb = QToolBar("Analysis")
        tb.setObjectName("toolbar-analysis")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar_actions: dict[str, QAction] = {}
        more_titles = []
        for key, panel in self.panels.items():
            dock = w.docks[key]
            act = QAction((panel.button or panel.title) if panel.in_toolbar else panel.title, w)
            act.setCheckable(True)
            act.setToolTip(f"Show the {panel.title} panel (click again to hide it)")
            dock.toggleViewAction().toggled.connect(act.setChecked)
            act.triggered.connect(lambda on, k=key: self._on_button(k, on))
            self.toolbar_actions[key] = act
            if panel.in_toolbar:
                tb.addAction(act)
            else:
                self.more_menu.addAction(act)
                more_titles.append(panel.title)
        btn = QToolButton()
        btn.setText("More ▾")
        btn.setToolTip(", ".join(more_titles))
        btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        btn.setMenu(self.more_menu)
        tb.addWidget(btn)
        w.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)  # after the sampling controls
        w.menus["panels"].addAction(tb.toggleViewAction())
        self.toolbar = tb

    def _on_button(self, key: str, on: bool) -> None:
        dock = self.window.docks[key]
        if not on and not dock.isHidden() and not self.visible[key]:
            # behind another tab: bring it to the front instead of hiding it
            self.toolbar_actions[key].setChecked(True)
            dock.raise_()
            return
        self.reveal(key) if on else dock.hide()

    def _build_grid_overlay(self) -> None:
        g = self.window.grid
        self.grid_dim = QGraphicsPathItem()
        self.grid_dim.setPen(QPen(Qt.PenStyle.NoPen))
        self.grid_dim.setBrush(QBrush(QColor(0, 0, 0, 120)))
        self.grid_dim.setZValue(5)
        self.grid_cross = QGraphicsPathItem()
        pen = QPen(QColor(ABLATED_COLOR), 2.5)
        pen.setCosmetic(True)
        self.grid_cross.setPen(pen)
        self.grid_cross.setZValue(6)
        g.plot.addItem(self.grid_dim)
        g.plot.addItem(self.grid_cross)
        self._grid_geom: tuple | None = None
        g.glw.scene().sigMouseClicked.connect(self._on_grid_click)
        g.glw.scene().sigMouseMoved.connect(self._on_grid_move)

    # ------------------------------------------------------------------ spec
    def _on_visible(self, key: str, on: bool) -> None:
        self.visible[key] = bool(on)
        if on:
            self.catch_up(key)
        self._update_spec()

    def catch_up(self, key: str) -> None:
        """Bring a panel that missed snapshots while hidden up to date now: the last missed
        snapshot that held any of its analyses (when older than the latest), then the
        latest; a no-op for a panel that missed nothing."""
        if key not in self.stale:
            return
        self.stale.discard(key)
        missed = self._missed.pop(key, None)
        if missed is not None and missed[0] is not self.result:
            self._apply_panel(key, *missed)
        # the latest snapshot is the controller's (not kept here: a snapshot held one step
        # longer would be freed, its maps and all, inside this view's update)
        snap = self.controller.snapshot
        if snap is not None and self.result is not None and (
                snap.extra.get("analysis") is self.result):
            self._apply_panel(key, self.result, snap)

    def _apply_panel(self, key: str, res: AnalysisResult, snap: Snapshot) -> None:
        p = self.panels[key]
        p.apply_analysis(res, snap)
        scroll = self.window.docks[key].widget()
        if isinstance(scroll, PanelScroll) and scroll.fonts_due and (
                not p.analyses or any(n in res.results for n in p.analyses)):
            scroll.check_fonts()  # titles a panel sets with its first data

    def current_spec(self) -> AnalysisSpec:
        """What the panels ask for now (the first panel asking for an analysis sets its
        settings)."""
        wanted: dict[str, Any] = {}
        for key, panel in self.panels.items():
            for name, settings in panel.requests(self.visible[key]).items():
                wanted.setdefault(name, settings)
        return AnalysisSpec(wanted)

    def _update_spec(self) -> int:
        new = self.current_spec()
        if new == self.spec:
            return -1
        self.spec = new
        return self.send("spec", spec=new)

    def send(self, op: str, **kw: Any) -> int:
        """Send an ``analysis`` command to the worker; its generation (-1: not sent)."""
        client = self.controller.client
        if not client.thread.isRunning():
            return -1
        return self.controller.request("analysis", op=op, **kw)

    def reveal(self, key: str, front: bool = True) -> None:
        """Show a panel's dock (and bring its tab to the front when it was hidden or
        ``front``)."""
        dock = self.window.docks[key]
        hidden = dock.isHidden()
        if hidden:
            dock.show()
        if hidden or front:
            dock.raise_()

    def show_quietly(self, key: str) -> None:
        """Show a hidden panel; its tab comes to the front only when no other panel is in
        use (it then waits behind the one being read)."""
        dock = self.window.docks[key]
        if dock.isHidden():
            in_use = any(on for k, on in self.visible.items() if k != key)
            dock.show()
            if not in_use:
                dock.raise_()

    # ------------------------------------------------------------------ ablation
    def toggle_head(self, layer: int, head: int) -> int:
        """Ablate head (layer, head), or restore it when it is ablated."""
        gen = self.send("toggle_head", layer=int(layer), head=int(head))
        self.headToggled.emit(int(layer), int(head))
        return gen

    def restore(self, heads: list) -> int:
        gone = {tuple(h) for h in heads}
        return self.send("set_heads", heads=[h for h in self.ablated if tuple(h) not in gone])

    def clear(self) -> int:
        return self.send("clear")

    def set_mode(self, mode: str) -> int:
        act = self.actions["ablation_mean"]
        if act.isChecked() != (mode == "mean"):
            with QSignalBlocker(act):
                act.setChecked(mode == "mean")
        return self.send("set_mode", mode=mode)

    # ------------------------------------------------------------------ grid
    def head_menu(self, layer: int, head: int) -> QMenu:
        """The head grid's right-click menu for one head (kept in ``last_menu``)."""
        menu = QMenu(self.window.grid)
        menu.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        sel = menu.addAction(f"Select L{layer} H{head}")
        sel.triggered.connect(lambda: self.controller.select_head(layer, head))
        off = (layer, head) in self.ablated
        abl = menu.addAction(f"{'Restore' if off else 'Ablate'} L{layer} H{head}")
        abl.triggered.connect(lambda: self.toggle_head(layer, head))
        menu.setDefaultAction(abl)  # what Ctrl+click does, shown in bold
        if self.ablated:
            clr = menu.addAction(f"Clear all ablations ({len(self.ablated)})")
            clr.triggered.connect(self.clear)
        if "diagnostics" in self.panels:
            menu.addSeparator()
            diag = menu.addAction("Show head diagnostics")
            diag.triggered.connect(lambda: self.reveal("diagnostics"))
        self.last_menu = menu
        return menu

    def _on_grid_click(self, ev) -> None:
        g = self.window.grid
        cell = g.cell_at(ev.scenePos())
        if cell is None:
            return
        if ev.button() == Qt.MouseButton.RightButton:
            self.head_menu(*cell).popup(ev.screenPos().toPoint())
            ev.accept()
        elif (ev.button() == Qt.MouseButton.LeftButton
              and ev.modifiers() & Qt.KeyboardModifier.ControlModifier):
            self.toggle_head(*cell)

    def _on_grid_move(self, pos) -> None:
        g = self.window.grid
        cell = g.cell_at(pos)
        if cell is None:
            return
        off = " (ablated)" if cell in self.ablated else ""
        g.readout.setText(f"layer {cell[0]}, head {cell[1]}{off} — click: select · "
                          f"Ctrl+click: {'restore' if off else 'ablate'} · right-click: menu")

    def _draw_grid_overlay(self) -> None:
        g = self.window.grid
        geom = (g.pitch, g.cell, g.L, g.H, self.ablated)
        if geom == self._grid_geom:
            return
        self._grid_geom = geom
        rects = [QRectF(h * g.pitch, layer * g.pitch, g.cell, g.cell)
                 for layer, h in self.ablated if layer < g.L and h < g.H]
        self.grid_dim.setPath(rects_path(rects))
        self.grid_cross.setPath(cross_path(rects, inset=0.12))
        g.refresh()  # the crosses' cosmetic pen: no trace left where they were

    # ------------------------------------------------------------------ view protocol
    def set_model(self, info: ModelInfo) -> None:
        self.ablated = ()
        self._grid_geom = None
        self.stale.clear()  # the old session's snapshots: nothing to catch up with
        self._missed.clear()
        self._draw_grid_overlay()
        for p in self.panels.values():
            p.set_model(info)

    def apply_snapshot(self, snap: Snapshot) -> None:
        res = snap.extra.get("analysis")
        if not isinstance(res, AnalysisResult):
            return
        self.result = res
        v = snap.view
        self.selected = (v.layer, v.head)
        if tuple(res.ablated) != self.ablated:
            self.ablated = tuple(res.ablated)
            n = len(self.ablated)
            names = ", ".join(f"L{layer}H{h}" for layer, h in self.ablated[:6])
            self.window.status.showMessage(
                f"{n} head(s) ablated: {names}{'…' if n > 6 else ''}" if n
                else "No head ablated: the normal model", 4000)
        act = self.actions["ablation_mean"]
        if act.isChecked() != (res.ablation_mode == "mean"):
            with QSignalBlocker(act):
                act.setChecked(res.ablation_mode == "mean")
        self._draw_grid_overlay()
        visible = self.visible
        for key, p in self.panels.items():
            p.follow(res, snap)
            if visible[key]:
                self._apply_panel(key, res, snap)
                continue
            # hidden: nothing drawn now; what it missed is shown when it is (catch_up)
            self.stale.add(key)
            if (res.results or res.errors) and any(
                    n in res.results or n in res.errors for n in p.analyses):
                self._missed[key] = (res, snap)


#: Least size of an analysis panel, in text lines (width, height): a smaller dock (1024 x 640,
#: a short window) scrolls the panel instead of squeezing its plots and labels together.
PANEL_LEAST_EM = (16.0, 15.0)


class PanelScroll(QScrollArea):
    """An analysis panel in a frameless scroll area (``panel``): the panel fills it, and
    scrolls where the dock is smaller than the panel's minimum size (at least
    :data:`PANEL_LEAST_EM` lines of the theme's font). Themes pass through."""

    def __init__(self, panel: QWidget) -> None:
        super().__init__()
        self.panel = panel
        self.setWidget(panel)
        # Sized here rather than by widgetResizable: that one gives a panel with wrapping
        # labels (height-for-width) its preferred height, taller than the dock, and scrolls.
        self.setWidgetResizable(False)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.theme = None
        self.fonts_due = False
        self.viewport().installEventFilter(self)
        panel.installEventFilter(self)
        self._least_font(panel.font())

    def _least_font(self, font) -> None:
        em = QFontMetricsF(font).height()
        self.panel.setMinimumSize(int(PANEL_LEAST_EM[0] * em), int(PANEL_LEAST_EM[1] * em))
        self.fit_panel()

    def fit_panel(self) -> None:
        """The panel fills the viewport, down to its minimum size (then it scrolls)."""
        least = self.panel.minimumSize().expandedTo(self.panel.minimumSizeHint())
        size = self.viewport().size().expandedTo(least)
        if self.panel.size() != size:
            self.panel.resize(size)

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        # the viewport's size, and the panel's least size (a label wrapping onto more lines)
        if (obj is self.viewport() and e.type() == QEvent.Type.Resize) or (
                obj is self.panel and e.type() == QEvent.Type.LayoutRequest):
            self.fit_panel()
        return False

    def apply_theme(self, theme) -> None:
        if hasattr(self.panel, "apply_theme"):
            self.panel.apply_theme(theme)
        self.theme = theme
        self.check_fonts()
        self.fonts_due = True  # once more after the next data (titles set with it)
        self._least_font(theme.font())

    def check_fonts(self) -> None:
        """No plot text of the panel left at the old size (presentation mode, projectors)."""
        if self.theme is not None:
            least_text_size(self.panel, self.theme)
        self.fonts_due = False


def install(window) -> AnalysisUI:
    """Add the analysis panels, menu and toolbar to ``window`` (a MainWindow)."""
    return AnalysisUI(window)
