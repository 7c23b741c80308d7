"""Inside one head: how the selected query's attention is computed, with the real numbers.

Four plots, top to bottom, for the layer, head and query the attention map selects (live at
every step and when the timeline is scrubbed):

* the raw scores s_j = q·k_j · scale over the keys (bars; the future keys, masked to -inf
  before the softmax, as columns of their own colour);
* the softmax weights α_j (0 for the masked keys);
* for the chosen key (click a bar, or the key box; default: the key with the largest weight)
  the per-dimension products q_d·k_d, largest first (bertviz's neuron view): they sum to q·k;
* the query vector q and the output o = Σ_j α_j v_j, one cell per dimension.

The line under the plots writes the formula with the numbers of whatever is under the mouse.
With rotary positions q and k are the rotated vectors (the formula says so); with another
scale or grouped-query attention the formula and the header say which. The panel also puts
View ▸ Map stage (Alt+1..4: weights, raw scores, masked scores, value-weighted) in the menu,
and gives the attention map's stage selector to the controller. Computed on the worker (the
``"inside_head"`` analysis, :class:`gptviz.analysis.live_inside_head.InsideHeadAtQuery`).
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSignalBlocker, Qt
from PySide6.QtGui import QAction, QActionGroup, QFontMetrics, QKeySequence
from PySide6.QtWidgets import QSpinBox, QWidget

from gptviz.analysis.live_inside_head import InsideHead
from gptviz.analysis.runner import AnalysisResult
from gptviz.analysis.stages import STAGES
from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import esc
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.axes import pt_px, shorten, text_px, thin_ticks, tick_step
from gptviz_app.views.panel_layout import (
    controls_row,
    fit_wrapped,
    panel_layout,
    shrinkable_label,
    wrap_lines,
)
from gptviz_app.views.plots import style_axis
from gptviz_app.views.theme import DARK, Theme, diverging_colormap

#: Colour of the masked (-inf) keys, as on the attention map's masked-scores stage.
MINUS_INF_COLOR = "#b0307a"
#: Dimensions shown in the products plot at most.
TOP_DIMS = 24


class InsideHeadPanel(AnalysisPanel):
    """See the module docstring."""

    title = "Inside one head"
    button = "Inside head"
    analyses = ("inside_head",)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        # Wrapped, never cut: the head, the query and the formula with its scale (a narrow
        # dock gives them a second line).
        self.header = shrinkable_label(" ")
        self.header.setTextFormat(Qt.TextFormat.RichText)
        self.header.setWordWrap(True)
        self.key_box = QSpinBox()
        self.key_box.setPrefix("q·k of key ")
        self.key_box.setRange(0, 0)
        self.key_box.setToolTip("The key whose per-dimension products q_d·k_d are shown "
                                "(or click a bar)")
        self.key_box.valueChanged.connect(self._on_key_box)
        # the products plot's title names the key too ("key 10 'rob': Σ_d q_d·k_d"): no
        # "Products of" label taking the header's width in a narrow dock
        top = controls_row((self.header, 1), 6, self.key_box)
        top.setAlignment(self.key_box, Qt.AlignmentFlag.AlignTop)
        self.glw = pg.GraphicsLayoutWidget()
        # scores over weights on the left (keys shared), products over q and o on the right
        self.p_scores = self._plot(0, 0, "score")
        self.p_weights = self._plot(1, 0, "α")
        self.p_prod = self._plot(0, 1, "q_d·k_d")
        self.p_vec = self._plot(1, 1, "")
        self.p_scores.hideAxis("bottom")  # the weights' axis below names the keys
        lay = self.glw.ci.layout
        lay.setColumnStretchFactor(0, 3)
        lay.setColumnStretchFactor(1, 2)
        self.p_vec.invertY(True)
        self.p_weights.setXLink(self.p_scores)
        self.bars_scores = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.bars_masked = pg.BarGraphItem(x=[], y0=[], height=[], width=0.8)
        self.bars_weights = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.bars_prod = pg.BarGraphItem(x=[], height=[], width=0.8)
        self.p_scores.addItem(self.bars_masked)
        self.p_scores.addItem(self.bars_scores)
        self.p_weights.addItem(self.bars_weights)
        self.p_prod.addItem(self.bars_prod)
        self.minus_inf = pg.TextItem("−∞", anchor=(0.5, 0))  # over the masked columns
        self.p_scores.addItem(self.minus_inf)
        self.vec_image = pg.ImageItem(axisOrder="row-major")
        self.p_vec.addItem(self.vec_image)
        self.readout = panel_layout(self, top, self.glw)
        self.readout.setTextFormat(Qt.TextFormat.PlainText)
        self.view: InsideHead | None = None
        self.key = -1  # window position of the chosen key; -1: the largest weight
        self._dims = np.zeros(0, np.int64)
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.stage_actions: dict[str, QAction] = {}
        self.apply_theme(self.theme)

    def _plot(self, row: int, col: int, label: str) -> pg.PlotItem:
        p = self.glw.addPlot(row=row, col=col)
        p.setMenuEnabled(False)
        p.hideButtons()
        p.getViewBox().setMouseEnabled(x=False, y=False)
        if label:
            p.setLabel("left", label)
        for name in ("left", "bottom"):
            p.getAxis(name).enableAutoSIPrefix(False)  # "α (×0.001)" reads badly
        return p

    # ------------------------------------------------------------------ look
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        for p in (self.p_scores, self.p_weights, self.p_prod, self.p_vec):
            for name in ("left", "bottom"):
                style_axis(p.getAxis(name), theme, theme.font(0.8))
            p.getAxis("left").label.setFont(theme.font(0.85))
        self.vec_image.setColorMap(diverging_colormap(theme))
        self.minus_inf.setColor(MINUS_INF_COLOR)
        self.minus_inf.setFont(theme.font(0.8, bold=True))
        self.header.setFont(theme.font(1.0))
        self.readout.setFont(theme.font(0.95, mono=True))
        wrap_lines(self.readout)  # the formula line: two lines, never cut at the edge
        # the four plots keep room of their own when the lines above and below wrap (a narrow
        # dock then scrolls the panel)
        self.glw.setMinimumHeight(int(9 * QFontMetrics(theme.font(1.0)).lineSpacing()))
        self.key_box.setFont(theme.font(0.9))
        self._redraw()

    # ------------------------------------------------------------------ wiring
    def install(self, ui) -> None:
        """View ▸ Map stage (Alt+1..4), the attention map's stage selector, and a key for
        this panel (Ctrl+Alt+I)."""
        w, c = ui.window, ui.controller
        w.attention.stageChanged.connect(lambda stage: c.set_view(map_stage=stage))
        menu = w.menus["view"].addMenu("&Map stage")
        w.menus["map_stage"] = menu
        group = QActionGroup(w)
        for n, (key, text) in enumerate(STAGES, start=1):
            mnemonic = {"weights": "&Weights", "raw": "&Raw scores",
                        "masked": "&Masked scores", "value": "&Value-weighted"}[key]
            a = QAction(mnemonic, w)
            a.setCheckable(True)
            a.setChecked(key == "weights")
            a.setShortcut(QKeySequence(f"Alt+{n}"))
            a.setStatusTip(f"The attention map shows the head's {text.lower()}")
            a.triggered.connect(lambda _on=False, k=key: c.set_view(map_stage=k))
            group.addAction(a)
            menu.addAction(a)
            w.addAction(a)
            w.actions[f"map_stage_{key}"] = a
            self.stage_actions[key] = a
        dock = w.docks[self.key]
        toggle = dock.toggleViewAction()
        toggle.setShortcut(QKeySequence("Ctrl+Alt+I"))
        w.addAction(toggle)

    def set_model(self, info: ModelInfo) -> None:
        self.view = None
        self.key = -1
        self.header.setText("Inside one head: waiting for the model…")
        self._clear()

    def _clear(self) -> None:
        for b in (self.bars_scores, self.bars_weights, self.bars_prod):
            b.setOpts(x=[], height=[])
        self.bars_masked.setOpts(x=[], y0=[], height=[])
        self.vec_image.clear()

    def follow(self, res: AnalysisResult, snap: Snapshot) -> None:
        """View ▸ Map stage checks the stage shown (the menu is there while hidden too)."""
        act = self.stage_actions.get(snap.view.map_stage)
        if act is not None and not act.isChecked():
            with QSignalBlocker(act):
                act.setChecked(True)

    def apply_analysis(self, res: AnalysisResult, snap: Snapshot) -> None:
        if "inside_head" in res.errors:
            self.header.setText("Inside one head failed: " + esc(res.errors["inside_head"]))
            return
        v = res.get("inside_head")
        if v is None or v is self.view:
            return
        old = self.view
        if old is None or (old.layer, old.head, old.query) != (v.layer, v.head, v.query):
            self.key = -1  # another head or query: back to its strongest key
        self.view = v
        self._redraw()

    # ------------------------------------------------------------------ drawing
    def chosen_key(self) -> int:
        v = self.view
        if v is None:
            return -1
        if 0 <= self.key <= v.q_rel and not v.masked[self.key]:
            return self.key
        return int(np.argmax(v.weights))

    def _redraw(self) -> None:
        v = self.view
        if v is None:
            return
        th = self.theme
        T, i = v.scores.shape[0], v.q_rel
        x = np.arange(T, dtype=np.float64)
        seen = ~v.masked
        sc = v.scores.astype(np.float64)
        lo = min(0.0, float(sc[seen].min())) if seen.any() else -1.0
        hi = max(0.0, float(sc[seen].max())) if seen.any() else 1.0
        pad = 0.08 * max(1e-9, hi - lo)
        lo, hi = lo - pad, hi + pad
        self.bars_scores.setOpts(x=x[seen], height=sc[seen], width=0.8,
                                 brushes=[pg.mkBrush(th.accent if j == self.chosen_key()
                                                     else "#5b8fd6") for j in np.flatnonzero(seen)],
                                 pen=pg.mkPen(None))
        self.bars_masked.setOpts(x=x[~seen], y0=np.full((~seen).sum(), lo),
                                 height=np.full((~seen).sum(), hi - lo), width=0.8,
                                 brush=pg.mkBrush(MINUS_INF_COLOR + "90"), pen=pg.mkPen(None))
        self.p_scores.setYRange(lo, hi, padding=0)
        self.p_scores.setXRange(-0.5, T - 0.5, padding=0)
        self.minus_inf.setVisible(bool((~seen).any()))
        if (~seen).any():
            self.minus_inf.setPos(float(np.flatnonzero(~seen).mean()), hi)
        self.bars_weights.setOpts(x=x, height=v.weights.astype(np.float64), width=0.8,
                                  brush=pg.mkBrush(th.accent), pen=pg.mkPen(None))
        self.p_weights.setYRange(0, max(1e-6, float(v.weights.max())) * 1.08, padding=0)
        self._draw_products()
        self._draw_vectors()
        self._label_keys()
        self.key_box.setRange(0, max(0, i))
        with QSignalBlocker(self.key_box):
            self.key_box.setValue(self.chosen_key())
        self.header.setText(self._header_text())
        self.readout.setText(self._summary())
        self._fit_readout()

    def _fit_readout(self) -> None:
        """As many lines as the formula line (or a key's numbers) needs at this width."""
        v = self.view
        texts = [self._summary()] + ([self.describe_key(int(np.argmax(v.weights)))] if v else [])
        fit_wrapped(self.readout, texts)
        # the header's lines count in the panel's least height too (its dock scrolls rather
        # than lay the plots over the formula line)
        h = self.header.heightForWidth(max(1, self.header.width()))
        if h > 0 and self.header.minimumHeight() != h:
            self.header.setMinimumHeight(h)

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        self._fit_readout()

    def _header_text(self) -> str:
        v = self.view
        assert v is not None
        th = self.theme
        tok = v.tokens[v.q_rel] if v.q_rel < len(v.tokens) else "?"
        notes = []
        if v.rotary:
            notes.append(f"rotary: q, k rotated by their positions (R_i, {v.rotary_dim} of "
                         f"{v.head_dim} dims)")
        if v.grouped:
            notes.append(f"key/value head {v.kv_head} (grouped-query)")
        if v.average:
            notes.append("the map shows the layer's average; this is one head")
        note = (" · " + " · ".join(notes)) if notes else ""
        return (f"<b>L{v.layer} H{v.head}</b> · query {v.query} {esc(tok)} · "
                f"<span style='color:{th.accent}'>{v.formula}</span> (scale {v.scale_text})"
                f"{note}")

    def _summary(self) -> str:
        v = self.view
        if v is None:
            return " "
        return (f"{v.formula}, s_ij = −∞ for j > i (masked) · α_i = softmax(s_i) · "
                f"o_i = Σ_j α_ij v_j · ‖q‖ = {np.linalg.norm(v.q):.3f}, ‖o‖ = "
                f"{np.linalg.norm(v.output):.3f} — hover a bar for its numbers")

    def _draw_products(self) -> None:
        v = self.view
        assert v is not None
        j = self.chosen_key()
        dims, vals = v.top_products(j, TOP_DIMS)
        self._dims = dims
        n = len(dims)
        self.bars_prod.setOpts(x=np.arange(n, dtype=np.float64), height=vals.astype(np.float64),
                               width=0.8, pen=pg.mkPen(None),
                               brushes=[pg.mkBrush("#d9734e" if p >= 0 else "#5b8fd6")
                                        for p in vals])
        self.p_prod.setXRange(-0.5, max(1, n) - 0.5, padding=0)
        top = float(np.abs(vals).max()) if n else 1.0
        self.p_prod.setYRange(-top * 1.08 if (vals < 0).any() else 0, top * 1.08, padding=0)
        fpx = pt_px(self.theme.pt(0.8))
        step = tick_step(fpx * 2.6, max(1.0, self.p_prod.vb.width()) / max(1, n))
        self.p_prod.getAxis("bottom").setTicks(
            [thin_ticks([f"d{d}" for d in dims], step, offset=0.0)])
        shown = "" if n == v.head_dim else f" (the {n} largest of {v.head_dim})"
        self.p_prod.setTitle(f"key {v.window_start + j} {shorten(v.tokens[j], 10)!r}: "
                             f"Σ_d q_d·k_d = {float(v.products[j].sum()):.3f}",
                             color=self.theme.text, size=f"{self.theme.pt(0.8):.0f}pt")
        self.p_prod.setToolTip(f"q_d·k_d with key {v.window_start + j}, largest first{shown}; "
                               "they sum to q·k")

    def _draw_vectors(self) -> None:
        v = self.view
        assert v is not None
        img = np.stack([v.q, v.output]).astype(np.float32)  # (2, hd)
        top = float(np.abs(img).max()) or 1.0
        # each row on its own scale: o is much shorter than q
        scaled = img / np.maximum(np.abs(img).max(axis=1, keepdims=True), 1e-12)
        self.vec_image.setImage(scaled, levels=(-1, 1), autoLevels=False)
        self.vec_image.setRect(0, 0, img.shape[1], 2)
        self.p_vec.setXRange(0, img.shape[1], padding=0)
        self.p_vec.setYRange(0, 2, padding=0)
        self.p_vec.getAxis("left").setTicks([[(0.5, "q"), (1.5, "o")]])
        self.p_vec.getAxis("bottom").setTicks([thin_ticks(
            [str(d) for d in range(img.shape[1])], max(1, img.shape[1] // 8))])
        self._vec_top = top

    def _label_keys(self) -> None:
        v = self.view
        assert v is not None
        T = v.scores.shape[0]
        labels = [shorten(t, 8) for t in v.tokens[:T]]
        fpx = self.theme.pt(0.8)
        step = tick_step(text_px(fpx, 6), max(1.0, self.p_scores.vb.width()) / max(1, T))
        ticks = thin_ticks(labels, step, keep=v.q_rel, offset=0.0)
        self.p_weights.getAxis("bottom").setTicks([ticks])
        self.p_scores.getAxis("bottom").setTicks([ticks])

    # ------------------------------------------------------------------ mouse
    def _index_in(self, plot: pg.PlotItem, pos) -> float | None:
        vb = plot.getViewBox()
        if not vb.sceneBoundingRect().contains(pos):
            return None
        return vb.mapSceneToView(pos).x()

    def describe(self, pos) -> str | None:
        """The formula with the numbers under a scene point (None: nothing there)."""
        v = self.view
        if v is None:
            return None
        T = v.scores.shape[0]
        for plot in (self.p_scores, self.p_weights):
            xv = self._index_in(plot, pos)
            if xv is not None:
                j = int(math.floor(xv + 0.5))
                return self.describe_key(j) if 0 <= j < T else None
        xv = self._index_in(self.p_prod, pos)
        if xv is not None:
            n = int(math.floor(xv + 0.5))
            if 0 <= n < len(self._dims):
                d = int(self._dims[n])
                j = self.chosen_key()
                return (f"q_{d}·k_{d} = {v.q[d]:.4f} × {v.keys[j, d]:.4f} = "
                        f"{v.products[j, d]:.4f}  (key {v.window_start + j} {v.tokens[j]!r})")
            return None
        vb = self.p_vec.getViewBox()
        if vb.sceneBoundingRect().contains(pos):
            pt = vb.mapSceneToView(pos)
            d, r = int(math.floor(pt.x())), int(math.floor(pt.y()))
            if 0 <= d < v.head_dim and r in (0, 1):
                if r == 0:
                    return f"q_{d} = {v.q[d]:.4f}" + (" (rotated)" if v.rotary else "")
                top = np.argsort(-np.abs(v.weights * v.values[:, d]))[:2]
                terms = " + ".join(f"{v.weights[j]:.3f}×{v.values[j, d]:.3f}" for j in top)
                return f"o_{d} = Σ_j α_j v_j,{d} = {terms} + … = {v.output[d]:.4f}"
        return None

    def describe_key(self, j: int) -> str:
        """Score, mask and weight of key ``j`` (window position) with the formula's numbers."""
        v = self.view
        assert v is not None
        kt = v.tokens[j]
        where = f"key {v.window_start + j} {kt!r}"
        qk = float(v.products[j].sum())
        if v.masked[j]:
            return (f"{where}: s = q·k × {v.scale_text} = {qk:.4f} × {v.scale_text} = "
                    f"{v.scores[j]:.4f} → masked to −∞ (after the query) → α = 0")
        seen = ~v.masked
        m = float(v.scores[seen].max())
        z = float(np.exp(v.scores[seen].astype(np.float64) - m).sum())
        return (f"{where}: s = q·k × {v.scale_text} = {qk:.4f} × {v.scale_text} = "
                f"{v.scores[j]:.4f} · α = exp(s − {m:.3f}) / {z:.3f} = {v.weights[j]:.4f}")

    def _on_move(self, pos) -> None:
        text = self.describe(pos)
        self.readout.setText(text if text else self._summary())

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.view is None:
            return
        for plot in (self.p_scores, self.p_weights):
            xv = self._index_in(plot, ev.scenePos())
            if xv is not None:
                self.choose_key(int(math.floor(xv + 0.5)))
                return

    def choose_key(self, j: int) -> None:
        """Show the products of key ``j`` (window position; a masked one is refused)."""
        v = self.view
        if v is None or not 0 <= j < v.scores.shape[0] or v.masked[j]:
            return
        self.key = j
        self._redraw()

    def _on_key_box(self, j: int) -> None:
        self.choose_key(int(j))
