"""Attention rollout (Abnar & Zuidema, 2020) of the current text (issue 5).

The map is the rollout ``R = A'_{L-1} … A'_0`` of the model's window (heads averaged per
layer, ablated heads left out; with the residual identity ``0.5 A + 0.5 I`` when the option is
on), rows = the top layer's positions, columns = input positions; the selected query's row is
outlined. "Shade the token strip" draws that row on the token chips instead of the selected
head's attention.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, QSignalBlocker, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QWidget

from gptviz_app.runtime.analysis_builder import AnalysisResult
from gptviz_app.panels.widgets import MapPlot, short, token_ticks
from gptviz_app.views.panel_layout import panel_layout, shrinkable_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.theme import DARK, Theme, colormap


class RolloutPanel(QWidget):
    """Signals: ``residualChanged(bool)``, ``stripChanged(bool)``."""

    residualChanged = Signal(bool)
    stripChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.residual = QCheckBox("Include residual identity")
        self.residual.setChecked(True)
        self.residual.setToolTip("Model the skip connection as 0.5·A + 0.5·I (rows renormalised), "
                                 "as in the paper; off: the raw head-averaged attention.")
        self.residual.toggled.connect(self.residualChanged)
        self.strip = QCheckBox("Shade token strip with rollout")
        self.strip.setToolTip("The token chips show the query's rollout row instead of the "
                              "selected head's attention")
        self.strip.toggled.connect(self.stripChanged)
        self.info = shrinkable_label(" ")
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(self.residual)
        top.addWidget(self.strip)
        top.addSpacing(6)
        top.addWidget(self.info, 1)
        self.glw = pg.GraphicsLayoutWidget()
        plot = self.glw.addPlot(row=0, col=0)
        plot.showAxis("top")
        plot.hideAxis("bottom")
        self.map = MapPlot(plot, aspect=False, mouse=True)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colormap("viridis"),
                                        interactive=False, width=12, label="rollout (√ scale)")
        self.colorbar.setImageItem(self.map.image, insert_in=plot)
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
        self.colorbar.setColorMap(colormap(theme.colormap))
        ax = self.colorbar.axis
        ax.setStyle(tickFont=theme.font(0.8))
        ax.setTextPen(pg.mkPen(theme.text))
        ax.setTicks([[(np.sqrt(v), f"{v:g}") for v in (0, 0.01, 0.05, 0.1, 0.25, 0.5, 1)]])
        self.readout.setFont(theme.font(0.95, mono=True))
        self._relabel()

    def set_model(self, info: ModelInfo) -> None:
        self.map_data = None
        self.map.set_image(None, (0, 1))

    def set_options(self, residual: bool, strip: bool) -> None:
        for box, on in ((self.residual, residual), (self.strip, strip)):
            if box.isChecked() != on:
                with QSignalBlocker(box):
                    box.setChecked(on)

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "rollout" in res.errors:
            self.info.setText("Rollout failed: " + res.errors["rollout"])
            return
        m = res.rollout_map
        if m is None:
            return
        self.tokens = snap.tokens[snap.window_start:]
        self.ws = snap.window_start
        self.q_rel = res.rollout_query - snap.window_start
        if m is not self.map_data:
            self.map_data = m
            self.map.set_image(m, (0.0, 1.0), display=np.sqrt(m))
        T = m.shape[0]
        q = self.q_rel
        self.map.set_box(QRectF(0, q, q + 1, 1) if 0 <= q < T else None)
        res_txt = "with residual identity" if res.spec.rollout_residual else "attention only"
        abl = f", without {len(res.ablated)} ablated head(s)" if res.ablated else ""
        if 0 <= q < T:
            row = np.nan_to_num(m[q, :q + 1])
            top = np.argsort(-row)[:3]
            best = ", ".join(f"{self.tokens[k]!r} {row[k]:.2f}" for k in top)
            self.info.setText(f"{T} tokens")
            self.note = f"{T} tokens, {res_txt}{abl} · query {res.rollout_query}: {best}"
            self.info.setToolTip(self.note)
            if not self.readout.text().startswith("rollout:"):
                self.readout.setText(self.note)
        self._relabel()

    def _relabel(self, *_) -> None:
        if self.map_data is None:
            return
        T = self.map_data.shape[0]
        labels = [short(t) for t in self.tokens[:T]]
        (x0, x1), (y0, y1) = self.map.vb.viewRange()
        w = max(1.0, self.map.vb.width()) * T / max(1e-9, x1 - x0)
        h = max(1.0, self.map.vb.height()) * T / max(1e-9, y1 - y0)
        fpx = self.theme.pt(0.8) * 96 / 72
        self.map.plot.getAxis("left").setTicks([token_ticks(labels, h, fpx * 1.4,
                                                            keep=self.q_rel)])
        self.map.plot.getAxis("top").setTicks([token_ticks(labels, w, fpx * 5)])

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
