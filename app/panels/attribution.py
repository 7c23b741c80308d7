"""Direct logit attribution: how much every head and feed-forward layer writes the logit of
the selected token (the newest by default), live per step.

The map has one row per layer and one column per head (each head's output through its slice
of the output projection, read through the final norm with its scale frozen at that
position), a narrow column beside it the feed-forward layers; red pushes the token's logit
up, blue down, on one symmetric colour scale. The line under the title gives the embedding,
the rest (attention-projection biases, final norm shift) and the total, which is the logit.
Shift+click (or right-click) a bar of the next-token chart to compare: the map then
attributes logit(chosen) - logit(that token). Computed on the worker with the session's
ablation (the ``"attribution"`` analysis,
:class:`gptviz.analysis.live_attribution.LogitAttributionAtQuery`). A post-LayerNorm model
(GPT-1) has no such decomposition: the panel says so instead of showing numbers.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QPushButton, QWidget

from gptviz.analysis.live_attribution import AttributionSettings, AttributionView
from gptviz.analysis.runner import AnalysisResult
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import ABLATED_COLOR, esc
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.panel_layout import (
    controls_row,
    panel_layout,
    shrinkable_label,
    wrap_lines,
)
from gptviz_app.views.plots import MapPlot
from gptviz_app.views.theme import DARK, Theme, diverging_colormap


class AttributionPanel(AnalysisPanel):
    """The L x H map of direct logit attribution, with the feed-forward layers beside it."""

    title = "Logit attribution"
    button = "Attribution"
    analyses = ("attribution",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.vs: int | None = None
        self.header = shrinkable_label(" ")
        self.header.setWordWrap(True)  # a narrow dock: two lines, not a cut one
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.stop = QPushButton("Stop comparing")
        self.stop.setToolTip("Attribute the plain logit again (not a difference)")
        self.stop.clicked.connect(lambda: self.set_vs(-1))
        self.stop.hide()
        top = controls_row((self.header, 1), self.stop)
        self.glw = pg.GraphicsLayoutWidget()
        self.map = MapPlot(self.glw.addPlot(row=0, col=0), aspect=False)
        self.mlp = MapPlot(self.glw.addPlot(row=0, col=1), aspect=False)
        self.glw.ci.layout.setColumnStretchFactor(0, 6)
        self.glw.ci.layout.setColumnStretchFactor(1, 1)
        self.colorbar = self.mlp.add_colorbar(12, label="logit contribution",
                                              values=(-1.0, 1.0))
        self.readout = panel_layout(self, top, self.glw)
        self.readout.setToolTip("Shift+click a bar of the next-token chart to compare the "
                                "chosen token with it")
        self.view: AttributionView | None = None
        self.note = " "
        self.next_token = None
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.apply_theme(self.theme)

    # ------------------------------------------------------------------ wiring
    def install(self, ui) -> None:
        """Follow the next-token chart's "compare with" choice."""
        nt = getattr(ui.window, "next_token", None)
        if nt is not None and hasattr(nt, "compareChosen"):
            self.next_token = nt
            nt.compareChosen.connect(self.set_vs)

    def set_vs(self, token_id: int) -> None:
        """Attribute logit(target) - logit(``token_id``); -1: the plain logit."""
        vs = None if token_id is None or int(token_id) < 0 else int(token_id)
        if vs == self.vs:
            return
        self.vs = vs
        self.stop.setVisible(vs is not None)
        nt = self.next_token
        if nt is not None and nt.compare_id != vs:
            nt.compare_id = vs
        self.settingsChanged.emit()

    def requests(self, visible: bool) -> dict:
        return {"attribution": AttributionSettings(vs=self.vs)} if visible else {}

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        cmap = diverging_colormap(theme)
        self.map.apply_theme(theme, cmap)
        self.mlp.apply_theme(theme, cmap)
        # the rows' title in the tick labels' size (pyqtgraph's 9 points read badly on a
        # projector); set here, before the first data, so that the axis makes room for it
        self.map.plot.getAxis("left").label.setFont(theme.font(0.85))
        self.map.plot.setLabel("left", "layer")
        self.header.setFont(theme.font(1.0))
        self.readout.setFont(theme.font(0.95, mono=True))
        wrap_lines(self.readout)  # two lines rather than a cut one
        self._redraw()

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        self.vs = None
        if self.next_token is not None:
            self.next_token.compare_id = None  # another model: other token ids
        self.stop.hide()
        self.map.set_image(None, (0, 1))
        self.mlp.set_image(None, (0, 1))
        self.header.setText("Logit attribution: waiting for the model…")

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "attribution" in res.errors:
            self.header.setText("Logit attribution failed: " + esc(res.errors["attribution"]))
            return
        view = res.get("attribution")
        if view is not None and view is not self.view:
            self.view = view
            self._redraw()

    # ------------------------------------------------------------------ drawing
    def _redraw(self) -> None:
        v = self.view
        if v is None:
            return
        th = self.theme
        what = f"<b style='color:{th.accent}'>{esc(v.target_token)}</b>"
        kind = {"chosen": "the token chosen", "likely": "the most likely next token",
                "picked": "token"}[v.target_kind]
        if v.vs_token is not None:
            what += f" − {esc(v.vs_token)}"
        abl = (f" · <span style='color:{ABLATED_COLOR}'>{v.n_ablated} head(s) ablated</span>"
               if v.n_ablated else "")
        title = f"{what} ({kind}) after position {v.position} {esc(v.token)}{abl}"
        logit_word = "logit difference" if v.vs_id is not None else "logit"
        a = v.attribution
        self.header.setToolTip(title)
        if a is None:
            self.header.setText(f"<span style='color:{th.accent}'>{esc(v.reason or '')}</span>")
            self.header.setToolTip(v.reason or "")
            self.map.set_image(None, (0, 1))
            self.mlp.set_image(None, (0, 1))
            self.note = "no attribution for this model"
            self.readout.setText(self.note)
            return
        self.header.setText(f"{logit_word} <b>{a.logit:+.3f}</b> of {title}")
        m = float(max(np.abs(a.heads).max(initial=0.0), np.abs(a.mlps).max(initial=0.0)))
        m = m if m > 0 else 1.0
        heads = a.heads.astype(np.float32)
        mlps = a.mlps.astype(np.float32).reshape(-1, 1)
        self.map.set_image(heads, (-m, m))
        self.mlp.set_image(mlps, (-m, m))
        self.colorbar.setLevels((-m, m))
        L, H = heads.shape
        left = [(i + 0.5, str(i)) for i in range(L)]
        step = max(1, H // 16)
        self.map.plot.getAxis("left").setTicks([left])
        self.map.plot.getAxis("top").setTicks([[(h + 0.5, str(h)) for h in range(0, H, step)]])
        self.mlp.plot.getAxis("left").setTicks([[]])
        self.mlp.plot.getAxis("top").setTicks([[(0.5, "MLP")]])
        best = np.unravel_index(int(np.argmax(np.abs(heads))), heads.shape)
        self.note = (f"= embed {a.embed:+.3f} + heads {a.heads.sum():+.3f} + MLPs "
                     f"{a.mlps.sum():+.3f} + rest {a.rest:+.3f} · strongest head "
                     f"L{best[0]}.H{best[1]} {heads[best]:+.3f}")
        self.readout.setText(self.note)

    def _on_move(self, pos) -> None:
        a = self.view.attribution if self.view is not None else None
        if a is None:
            return
        c = self.map.cell_at(pos)
        if c is not None:
            layer, head = c
            self.readout.setText(f"head L{layer}.H{head}: {a.heads[layer, head]:+.4f} "
                                 "(click selects it)")
            return
        c = self.mlp.cell_at(pos)
        if c is not None:
            self.readout.setText(f"MLP of layer {c[0]}: {a.mlps[c[0]]:+.4f}")
            return
        self.readout.setText(self.note)

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        c = self.map.cell_at(ev.scenePos())
        if c is not None:
            self.headSelected.emit(int(c[0]), int(c[1]))
