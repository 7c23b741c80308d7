"""The embedding of the selected query token: h_0 = W_e[u] + W_p[t].

The header gives the norms of the token part W_e[u] and the position part W_p[t], their
cosine and the norm of their sum h_0 (the residual stream entering block 0); the bars on the
left are the tokens whose embeddings are nearest to W_e[u] by cosine; the map on the right is
cos(W_p[i], W_p[j]) for every pair of learned positions, the query's position outlined
(hover: the numbers). A family with rotary positions (or none) has no W_p: the panel says so.
Computed on the worker (the ``"embedding"`` analysis,
:class:`gptviz.analysis.live_embedding.EmbeddingAtQuery`).
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import QWidget

from gptviz.analysis.live_embedding import EmbeddingView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import esc
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import (
    controls_row,
    panel_layout,
    shrinkable_label,
    wrap_lines,
)
from gptviz_app.views.plots import MapPlot, set_label_ticks, style_axis
from gptviz_app.views.theme import DARK, Theme, diverging_colormap

_NO_POSITIONS = {
    "rotary": "rotary positions: no W_p, h_0 = W_e[u]; the position rotates q and k inside "
              "every attention layer (see Inside one head)",
    "none": "no position embedding: h_0 = W_e[u]; the model knows positions only through "
            "the causal mask",
}


class EmbeddingPanel(AnalysisPanel):
    """See the module docstring."""

    title = "Embedding"
    analyses = ("embedding",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.header = shrinkable_label(" ")
        self.header.setWordWrap(True)  # a narrow dock: two lines, not a cut one
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        top = controls_row((self.header, 1))
        self.glw = pg.GraphicsLayoutWidget()
        self.p_near = self.glw.addPlot(row=0, col=0)
        self.p_near.setMenuEnabled(False)
        self.p_near.hideButtons()
        self.p_near.getViewBox().setMouseEnabled(x=False, y=False)
        self.p_near.getViewBox().invertY(True)
        self.p_near.setLabel("bottom", "cos(W_e[u], W_e[v])")
        self.bars = pg.BarGraphItem(x0=[], y=[], width=[], height=0.7)
        self.p_near.addItem(self.bars)
        self.map = MapPlot(self.glw.addPlot(row=0, col=1), aspect=True, mouse=True)
        self.map.plot.setLabel("left", "W_p row i")
        self.map.plot.setLabel("top", "cos(W_p[i], W_p[j]): row j")
        self.colorbar = self.map.add_colorbar(12, label="cos", values=(-1.0, 1.0))
        self.glw.ci.layout.setColumnStretchFactor(0, 2)
        self.glw.ci.layout.setColumnStretchFactor(1, 3)
        self.readout = panel_layout(self, top, self.glw)
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        self.view: EmbeddingView | None = None
        self._map_shown: np.ndarray | None = None
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        self.map.apply_theme(theme, cmap=diverging_colormap(theme))
        for name in ("left", "bottom"):
            style_axis(self.p_near.getAxis(name), theme, theme.font(0.85))
        self.p_near.getAxis("bottom").label.setFont(theme.font(0.8))
        for name in ("left", "top"):
            self.map.plot.getAxis(name).label.setFont(theme.font(0.8))
        self.header.setFont(theme.font(1.0))
        self.readout.setFont(theme.font(0.95, mono=True))
        wrap_lines(self.readout)  # two lines rather than a cut one
        self._redraw()

    def install(self, ui) -> None:
        """Ctrl+Alt+E shows or hides the panel."""
        toggle = ui.window.docks[self.key].toggleViewAction()
        toggle.setShortcut(QKeySequence("Ctrl+Alt+E"))
        ui.window.addAction(toggle)

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        self._map_shown = None
        self.map.set_image(None, (-1, 1))
        self.header.setText("Embedding: waiting for the model…")

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "embedding" in res.errors:
            self.header.setText("Embedding failed: " + esc(res.errors["embedding"]))
            return
        v = res.get("embedding")
        if v is not None and v is not self.view:
            self.view = v
            self._redraw()

    def _redraw(self) -> None:
        v = self.view
        if v is None:
            return
        th = self.theme
        n = len(v.near_ids)
        self.bars.setOpts(x0=np.zeros(n), y=np.arange(n, dtype=np.float64),
                          width=v.near_cos.astype(np.float64), height=0.7,
                          brush=pg.mkBrush(th.accent), pen=pg.mkPen(None))
        self.p_near.setXRange(min(0.0, float(v.near_cos.min(initial=0))), 1.0, padding=0.02)
        self.p_near.setYRange(-0.5, max(1, n) - 0.5, padding=0)
        set_label_ticks(self.p_near, "left", [(float(i), repr(t)[:14])
                                              for i, t in enumerate(v.near_tokens)])
        self.p_near.setTitle(f"nearest to {v.token!r}", color=th.text,
                             size=f"{th.pt(0.85):.0f}pt")
        tok = f"<b>{esc(v.token)}</b> (id {v.token_id})"
        if v.position_part is None:
            self.header.setText(f"h_0 of {tok} at position {v.position}: ‖W_e[u]‖ = "
                                f"{v.token_norm:.3f} · <i>{_NO_POSITIONS.get(v.positions, '')}"
                                "</i>")
            self.map.set_image(None, (-1, 1))
            self.map.plot.setTitle("no learned positions", color=th.text_dim)
            self._map_shown = None
            return
        self.header.setText(
            f"h_0 = W_e[u] + W_p[t] for {tok} at t = {v.position}: ‖W_e[u]‖ = "
            f"{v.token_norm:.3f}, ‖W_p[t]‖ = {v.position_norm:.3f}, cos = {v.cosine:.3f}, "
            f"‖h_0‖ = {v.h0_norm:.3f}")
        m = v.position_map
        assert m is not None
        if m is not self._map_shown:
            self._map_shown = m
            self.map.set_image(m, (-1.0, 1.0))
            P = m.shape[0]
            step = max(1, P // 4)
            ticks = [(i + 0.5, str(i)) for i in range(0, P, step)]
            for name in ("left", "top"):
                self.map.plot.getAxis(name).setTicks([ticks])
        self.map.plot.setTitle("")
        P = m.shape[0]
        t = v.position
        self.map.set_box(QRectF(0, t, P, 1) if t < P else None)
        self.readout.setText(self._summary())

    def _summary(self) -> str:
        v = self.view
        if v is None or v.position_part is None:
            return " "
        return (f"‖h_0‖² = ‖W_e‖² + ‖W_p‖² + 2·‖W_e‖‖W_p‖·cos = {v.token_norm ** 2:.3f} + "
                f"{v.position_norm ** 2:.3f} + 2·{v.token_norm:.3f}·{v.position_norm:.3f}·"
                f"{v.cosine:.3f} = {v.h0_norm ** 2:.3f}")

    def _on_move(self, pos) -> None:
        v = self.view
        c = self.map.cell_at(pos)
        if v is not None and c is not None and v.position_map is not None:
            i, j = c
            self.readout.setText(f"cos(W_p[{i}], W_p[{j}]) = {v.position_map[i, j]:.4f}")
            return
        vb = self.p_near.getViewBox()
        if v is not None and vb.sceneBoundingRect().contains(pos):
            r = int(np.floor(vb.mapSceneToView(pos).y() + 0.5))
            if 0 <= r < len(v.near_ids):
                self.readout.setText(f"cos(W_e[{v.token!r}], W_e[{v.near_tokens[r]!r}] "
                                     f"(id {int(v.near_ids[r])})) = {v.near_cos[r]:.4f}")
                return
        self.readout.setText(self._summary())
