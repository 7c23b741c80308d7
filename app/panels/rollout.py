"""Attention rollout (Abnar & Zuidema, 2020) of the current text.

The map is the rollout ``R = A'_{L-1} … A'_0`` of the model's window (heads averaged per
layer, ablated heads left out; with the residual identity ``0.5 A + 0.5 I`` when the option is
on), rows = the top layer's positions, columns = input positions; the selected query's row is
outlined. "Shade the token strip" draws that row on the token chips instead of the selected
head's attention. Computed on the worker (the ``"rollout"`` analysis,
:class:`gptviz.analysis.live_rollout.WindowRollout`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSignalBlocker, Signal
from PySide6.QtWidgets import QCheckBox, QWidget

from gptviz.analysis.live_rollout import RolloutSettings, RolloutView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.axes import MAP_LABEL_CHARS, pt_px, shorten, thin_ticks, tick_step
from gptviz_app.views.panel_layout import controls_row, panel_layout, shrinkable_label
from gptviz_app.views.plots import MapPlot, sqrt_ticks
from gptviz_app.views.theme import DARK, Theme


class RolloutPanel(AnalysisPanel):
    """Signals: ``residualChanged(bool)``, ``stripChanged(bool)``."""

    title = "Attention rollout"
    analyses = ("rollout",)
    token_strip = None  # the window's token strip, shaded with the query's row (install)

    residualChanged = Signal(bool)
    stripChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        # short texts: the row fits the panel's least width at presentation font sizes (the
        # tooltips and the Analysis menu's actions say them in full)
        self.residual = QCheckBox("+ residual")
        self.residual.setChecked(True)
        self.residual.setToolTip("Include the residual identity: model the skip connection as "
                                 "0.5·A + 0.5·I (rows renormalised), as in the paper; off: the "
                                 "raw head-averaged attention.")
        self.residual.toggled.connect(self.residualChanged)
        self.strip = QCheckBox("Shade chips")
        self.strip.setToolTip("Shade the token strip with rollout: the token chips show the "
                              "query's rollout row instead of the selected head's attention")
        self.strip.toggled.connect(self.stripChanged)
        for box in (self.residual, self.strip):
            box.toggled.connect(lambda _on: self.settingsChanged.emit())
        self.info = shrinkable_label(" ")
        top = controls_row(self.residual, self.strip, 6, (self.info, 1))
        self.glw = pg.GraphicsLayoutWidget()
        self.map = MapPlot(self.glw.addPlot(row=0, col=0), aspect=False, mouse=True)
        self.colorbar = self.map.add_colorbar(12, label="rollout (√ scale)")
        self.readout = panel_layout(self, top, self.glw)
        self.tokens: list[str] = []
        self.ws = 0
        self.note = " "
        self.map_data: np.ndarray | None = None
        self.q_rel = -1
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.map.vb.sigResized.connect(self._relabel)
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        self.map.apply_theme(theme)
        self.colorbar.axis.setTicks([sqrt_ticks((0, 0.01, 0.05, 0.1, 0.25, 0.5, 1))])
        self.readout.setFont(theme.font(0.95, mono=True))
        self._relabel()

    def set_model(self, info: ModelInfo) -> None:
        self.map_data = None
        self.map.set_image(None, (0, 1))
        self._relabel()

    def requests(self, visible: bool) -> dict:
        """The whole map while visible; the query's row alone while it shades the strip."""
        strip = self.strip.isChecked()
        if not (visible or strip):
            return {}
        return {"rollout": RolloutSettings(map=visible, strip=strip,
                                           residual=self.residual.isChecked())}

    def install(self, ui) -> None:
        """Analysis ▸ Shade token strip with attention rollout (also under "More ▾") and
        Rollout includes the residual identity, in step with the check boxes here."""
        self.token_strip = ui.window.token_strip
        for key, text, box, tip, more in (
                ("rollout_strip", "Shade token strip with attention rollout", self.strip,
                 "The token chips show the query's attention rollout over all layers instead "
                 "of the selected head's attention", True),
                ("rollout_residual", "Rollout includes the residual identity", self.residual,
                 "0.5·A + 0.5·I per layer, as in Abnar & Zuidema (2020)", False)):
            act = ui.add_action(key, text, box.setChecked, checkable=True,
                                checked=box.isChecked(), tip=tip, more=more)
            box.toggled.connect(act.setChecked)

    def set_options(self, residual: bool, strip: bool) -> None:
        for box, on in ((self.residual, residual), (self.strip, strip)):
            if box.isChecked() != on:
                with QSignalBlocker(box):
                    box.setChecked(on)

    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """The token strip's shading, also while the panel is hidden."""
        rv: RolloutView | None = res.get("rollout")
        settings = res.spec.settings("rollout")
        if rv is not None and settings is not None and settings.strip:
            self._shade_strip(rv, snap)

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "rollout" in res.errors:
            self.info.setText("Rollout failed: " + res.errors["rollout"])
            return
        rv: RolloutView | None = res.get("rollout")
        if rv is None:
            return
        m = rv.map
        if m is None:
            return
        self.tokens = snap.tokens[snap.window_start:]
        self.ws = snap.window_start
        self.q_rel = rv.query - snap.window_start
        if m is not self.map_data:
            self.map_data = m
            self.map.set_image(m, (0.0, 1.0), display=np.sqrt(m))
        T = m.shape[0]
        q = self.q_rel
        self.map.set_box(QRectF(0, q, q + 1, 1) if 0 <= q < T else None)
        res_txt = "with residual identity" if rv.residual else "attention only"
        abl = f", without {len(res.ablated)} ablated head(s)" if res.ablated else ""
        if 0 <= q < T:
            row = np.nan_to_num(m[q, :q + 1])
            top = np.argsort(-row)[:3]
            best = ", ".join(f"{self.tokens[k]!r} {row[k]:.2f}" for k in top)
            self.info.setText(f"{T} tokens")
            self.note = f"{T} tokens, {res_txt}{abl} · query {rv.query}: {best}"
            self.info.setToolTip(self.note)
            if not self.readout.text().startswith("rollout:"):
                self.readout.setText(self.note)
        self._relabel()

    def _shade_strip(self, rv: RolloutView, snap: Snapshot) -> None:
        if self.token_strip is None:
            return
        q_rel = snap.query - snap.window_start
        how = "with residual" if rv.residual else "attention only"
        self.token_strip.set_shading(
            np.asarray(rv.row[:q_rel + 1], np.float32),
            f"attention rollout of query {snap.query} ({how})",
            f"<b>attention rollout</b> of query <b>{snap.query}</b> over all layers ({how})")

    def _relabel(self, *_) -> None:
        if self.map_data is None:  # no map yet: no numbers of an empty plot on its axes
            for name in ("left", "top"):
                self.map.plot.getAxis(name).setTicks([[]])
            return
        T = self.map_data.shape[0]
        labels = [shorten(t, MAP_LABEL_CHARS) for t in self.tokens[:T]]
        (x0, x1), (y0, y1) = self.map.vb.viewRange()
        col_px = max(1.0, self.map.vb.width()) / max(1e-9, x1 - x0)   # pixels per token
        row_px = max(1.0, self.map.vb.height()) / max(1e-9, y1 - y0)
        fpx = pt_px(self.theme.pt(0.8))
        self.map.plot.getAxis("left").setTicks(
            [thin_ticks(labels, tick_step(fpx * 1.4, row_px), keep=self.q_rel)])
        self.map.plot.getAxis("top").setTicks([thin_ticks(labels, tick_step(fpx * 5, col_px))])

    def _on_move(self, pos) -> None:
        c = self.map.cell_at(pos)
        if c is None or self.map_data is None:
            self.readout.setText(self.note)
            return
        q, k = c
        v = float(self.map_data[q, k])
        qt = self.tokens[q] if q < len(self.tokens) else "?"
        kt = self.tokens[k] if k < len(self.tokens) else "?"
        val = "masked (future)" if not np.isfinite(v) else f"{v:.4f}"
        self.readout.setText(f"rollout: position {self.ws + q} {qt!r} ← input {self.ws + k} "
                             f"{kt!r}: {val}")
