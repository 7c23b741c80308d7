"""The analysis panels in the main window (issue 5): docks, the Analysis menu and toolbar,
ablation from the head grid, rollout shading of the token strip.

:func:`install` (called once by :class:`gptviz_app.views.main_window.MainWindow`) creates an
:class:`AnalysisUI`, which

* adds five docks at the bottom, hidden at start, each one click away on the *Analysis*
  toolbar (and in the *Analysis* menu and View ▸ Panels): **Head diagnostics**, **Ablation**
  (side by side), **Logit lens** and **Compare A/B** (tabbed with Ablation), **Attention
  rollout** (tabbed with diagnostics);
* tells the worker what to compute (:class:`gptviz_app.runtime.analysis_builder.AnalysisSpec`: only the
  panels actually on screen) with the ``analysis`` worker command, which also carries head
  ablation and pinning;
* registers itself as a controller view: every snapshot's ``extra["analysis"]`` goes to the
  panels; ablated heads are crossed out on the head grid; with "Shade token strip with
  attention rollout" the token strip shows the query's rollout row;
* adds to the head grid: right-click a thumbnail for a menu (select / ablate or restore),
  Ctrl+click to ablate or restore directly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QRectF, QSignalBlocker, Qt, QTimer
from PySide6.QtGui import QAction, QBrush, QColor, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QMenu, QToolBar

from gptviz_app.panels.ablation import AblationPanel
from gptviz_app.runtime.analysis_builder import AnalysisResult, AnalysisSpec
from gptviz_app.panels.widgets import ABLATED_COLOR, cross_path, rects_path
from gptviz_app.panels.compare import ComparePanel
from gptviz_app.panels.diagnostics import DiagnosticsPanel
from gptviz_app.panels.lens import LensPanel
from gptviz_app.panels.rollout import RolloutPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot

#: Dock keys, in toolbar order.
PANEL_KEYS = ("diagnostics", "ablation", "lens", "compare", "rollout")
#: Dock title and toolbar button text of each panel.
TITLES = {"diagnostics": ("Head diagnostics", "Diagnostics"), "ablation": ("Ablation", "Ablation"),
          "lens": ("Logit lens", "Lens"), "compare": ("Compare A/B", "Compare"),
          "rollout": ("Attention rollout", "Rollout")}


class AnalysisUI(QObject):
    """See the module docstring. ``window`` is the :class:`~gptviz_app.views.main_window.MainWindow`."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.controller = c = window.controller
        self.spec = AnalysisSpec()
        self.visible = {k: False for k in PANEL_KEYS}
        self.ablated: tuple[tuple[int, int], ...] = ()
        self.selected = (0, 0)
        self.last_menu: QMenu | None = None
        self.result: AnalysisResult | None = None

        self.diagnostics = DiagnosticsPanel()
        self.ablation = AblationPanel()
        self.lens = LensPanel()
        self.compare = ComparePanel()
        self.rollout = RolloutPanel()
        self.panels = {"diagnostics": self.diagnostics, "ablation": self.ablation,
                       "lens": self.lens, "compare": self.compare, "rollout": self.rollout}
        bottom = Qt.DockWidgetArea.BottomDockWidgetArea
        # The bottom docks sit under the attention map only: the head grid and the next-token
        # chart on the right keep their full height (both show what an ablation changes).
        window.setCorner(Qt.Corner.BottomRightCorner, Qt.DockWidgetArea.RightDockWidgetArea)
        prev = None
        for key in PANEL_KEYS:
            window.add_panel(key, TITLES[key][0], self.panels[key], bottom, register=False,
                             tabify=prev)
            prev = key
        self._sized = False
        for key in PANEL_KEYS:
            dock = window.docks[key]
            dock.hide()
            dock.visibilityChanged.connect(lambda on, k=key: self._on_visible(k, on))
            dock.toggleViewAction().triggered.connect(
                lambda on, d=dock: d.raise_() if on else None)
            dock.toggleViewAction().toggled.connect(
                lambda on: QTimer.singleShot(0, self._fit_height) if on else None)
        self._build_menu()
        self._build_toolbar()
        self._build_grid_overlay()

        d = self.diagnostics
        d.headSelected.connect(c.select_head)
        d.ablateToggled.connect(self.toggle_head)
        self.lens.kChanged.connect(lambda _k: self._update_spec())
        a = self.ablation
        a.modeChanged.connect(self.set_mode)
        a.clearRequested.connect(self.clear)
        a.restoreRequested.connect(self.restore)
        a.toggleSelectedRequested.connect(lambda: self.toggle_head(*self.selected))
        a.headSelected.connect(c.select_head)
        cp = self.compare
        cp.pinRequested.connect(self.pin)
        cp.sourceChanged.connect(lambda _s: self._update_spec())
        cp.alignChanged.connect(lambda _s: self._update_spec())
        self.rollout.residualChanged.connect(self.actions["rollout_residual"].setChecked)
        self.rollout.stripChanged.connect(self.actions["rollout_strip"].setChecked)
        c.add_view(self)

    # ------------------------------------------------------------------ construction
    def _action(self, key: str, text: str, slot=None, checkable: bool = False,
                checked: bool = False, tip: str = "") -> QAction:
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
        return act

    def _build_menu(self) -> None:
        w = self.window
        self.actions: dict[str, QAction] = {}
        menu = QMenu("&Analysis", w)
        help_menu = w.menus.get("help")
        if help_menu is not None:
            w.menuBar().insertMenu(help_menu.menuAction(), menu)
        else:  # pragma: no cover - a window without a Help menu
            w.menuBar().addMenu(menu)
        w.menus["analysis"] = menu
        for key in PANEL_KEYS:
            menu.addAction(w.docks[key].toggleViewAction())
        menu.addSeparator()
        menu.addAction(self._action(
            "rollout_strip", "Shade token strip with attention rollout", self._on_strip,
            checkable=True, tip="The token chips show the query's attention rollout over all "
                                "layers instead of the selected head's attention"))
        menu.addAction(self._action(
            "rollout_residual", "Rollout includes the residual identity", self._on_residual,
            checkable=True, checked=True, tip="0.5·A + 0.5·I per layer, as in Abnar & "
                                              "Zuidema (2020)"))
        menu.addSeparator()
        menu.addAction(self._action(
            "ablate_selected", "Ablate / restore the selected head",
            lambda: self.toggle_head(*self.selected),
            tip="Switch the head shown in the attention map off, or back on"))
        menu.addAction(self._action(
            "ablation_mean", "Mean-ablation (the head's mean output over the text)",
            lambda on: self.set_mode("mean" if on else "zero"), checkable=True,
            tip="Off: ablated heads output zeros"))
        menu.addAction(self._action("ablation_clear", "Clear all ablations", self.clear))
        menu.addSeparator()
        menu.addAction(self._action("compare_pin", "Pin current state as A (compare)", self.pin))
        menu.addAction(self._action("compare_ablation", "Compare clean (A) with ablated (B)",
                                    self.compare_clean_vs_ablated))
        self.menu = menu

    def _build_toolbar(self) -> None:
        """Buttons after the sampling controls: Diagnostics and Ablation (one click each) and
        "More ▾" for the lens, comparisons and rollout. A button shows its panel (or brings
        its tab to the front); a second click hides it."""
        from PySide6.QtWidgets import QToolButton

        w = self.window
        tb = QToolBar("Analysis")
        tb.setObjectName("toolbar-analysis")
        tb.setMovable(False)
        tb.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.toolbar_actions: dict[str, QAction] = {}
        more = QMenu("More", w)
        for key in PANEL_KEYS:
            dock = w.docks[key]
            act = QAction(TITLES[key][1] if key in ("diagnostics", "ablation")
                          else TITLES[key][0], w)
            act.setCheckable(True)
            act.setToolTip(f"Show the {TITLES[key][0]} panel (click again to hide it)")
            dock.toggleViewAction().toggled.connect(act.setChecked)
            act.triggered.connect(lambda on, k=key: self._on_button(k, on))
            self.toolbar_actions[key] = act
            if key in ("diagnostics", "ablation"):
                tb.addAction(act)
            else:
                more.addAction(act)
        more.addSeparator()
        more.addAction(self.actions["rollout_strip"])
        more.addAction(self.actions["compare_pin"])
        btn = QToolButton()
        btn.setText("More ▾")
        btn.setToolTip("Logit lens, comparisons, attention rollout")
        btn.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        btn.setMenu(more)
        tb.addWidget(btn)
        self.more_menu = more
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

    def _fit_height(self) -> None:
        """The first time a panel opens, give the bottom docks a third of the window."""
        if self._sized:
            return
        self._sized = True
        w = self.window
        dock = w.docks["diagnostics"]
        w.resizeDocks([dock], [max(220, int(w.height() * 0.32))], Qt.Orientation.Vertical)

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
        self._update_spec()

    def _on_strip(self, on: bool) -> None:
        self.rollout.set_options(self.actions["rollout_residual"].isChecked(), on)
        self._update_spec()

    def _on_residual(self, on: bool) -> None:
        self.rollout.set_options(on, self.actions["rollout_strip"].isChecked())
        self._update_spec()

    def current_spec(self) -> AnalysisSpec:
        v = self.visible
        return AnalysisSpec(
            heads=v["diagnostics"], lens=v["lens"], lens_k=self.lens.k,
            rollout_map=v["rollout"], rollout_strip=self.actions["rollout_strip"].isChecked(),
            rollout_residual=self.actions["rollout_residual"].isChecked(),
            ablation=v["ablation"] or v["diagnostics"], compare=v["compare"],
            compare_source=self.compare.source, compare_align=self.compare.align)

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

    # ------------------------------------------------------------------ ablation & co
    def toggle_head(self, layer: int, head: int) -> int:
        """Ablate head (layer, head), or restore it when it is ablated."""
        gen = self.send("toggle_head", layer=int(layer), head=int(head))
        dock = self.window.docks["ablation"]
        if dock.isHidden():  # show the effect; a new tab stays behind a panel in use
            in_use = any(self.visible[k] for k in PANEL_KEYS if k != "ablation")
            dock.show()
            if not in_use:
                dock.raise_()
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
        self.ablation.set_mode(mode)
        return self.send("set_mode", mode=mode)

    def pin(self) -> int:
        gen = self.send("pin")
        self.reveal("compare")
        return gen

    def compare_clean_vs_ablated(self) -> None:
        self.compare.set_source("ablation")
        self.reveal("compare")

    def reveal(self, key: str, front: bool = True) -> None:
        """Show a panel's dock (and bring its tab to the front when it was hidden or
        ``front``)."""
        dock = self.window.docks[key]
        hidden = dock.isHidden()
        if hidden:
            dock.show()
        if hidden or front:
            dock.raise_()

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
        if self.ablated:
            clr = menu.addAction(f"Clear all ablations ({len(self.ablated)})")
            clr.triggered.connect(self.clear)
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
                          f"right-click or Ctrl+click: {'restore' if off else 'ablate'}")

    def _draw_grid_overlay(self) -> None:
        g = self.window.grid
        geom = (g.pitch, g.cell, g.L, g.H, self.ablated)
        if geom == self._grid_geom:
            return
        self._grid_geom = geom
        rects = [QRectF(h * g.pitch, l * g.pitch, g.cell, g.cell) for l, h in self.ablated
                 if l < g.L and h < g.H]
        self.grid_dim.setPath(rects_path(rects))
        self.grid_cross.setPath(cross_path(rects, inset=0.12))

    # ------------------------------------------------------------------ view protocol
    def set_model(self, info: ModelInfo) -> None:
        self.ablated = ()
        self._grid_geom = None
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
            names = ", ".join(f"L{l}H{h}" for l, h in self.ablated[:6])
            self.window.status.showMessage(
                f"{n} head(s) ablated: {names}{'…' if n > 6 else ''}" if n
                else "No head ablated: the normal model", 4000)
        act = self.actions["ablation_mean"]
        if act.isChecked() != (res.ablation_mode == "mean"):
            with QSignalBlocker(act):
                act.setChecked(res.ablation_mode == "mean")
        self._draw_grid_overlay()
        for p in self.panels.values():
            p.apply_analysis(res, snap)
        if res.rollout_row is not None and res.spec.rollout_strip:
            self._shade_strip(res, snap)

    def _shade_strip(self, res: AnalysisResult, snap: Snapshot) -> None:
        q_rel = snap.query - snap.window_start
        how = "with residual" if res.spec.rollout_residual else "attention only"
        self.window.token_strip.set_shading(
            np.asarray(res.rollout_row[:q_rel + 1], np.float32),
            f"attention rollout of query {snap.query} ({how})",
            f"<b>attention rollout</b> of query <b>{snap.query}</b> over all layers ({how})")


def install(window) -> AnalysisUI:
    """Add the analysis panels, menu and toolbar to ``window`` (a MainWindow)."""
    return AnalysisUI(window)
