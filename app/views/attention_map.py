"""The T x T causal attention map of the selected layer and head (or their average).

Rows are queries, columns keys, token labels on both axes (thinned out when crowded so
they never overlap), a colour bar, the upper (future) triangle hatched grey, the query row
outlined. Hovering a cell shows query token, key token and weight; clicking a row makes it
the query. Plot items are created once; a snapshot only calls ``setImage`` and, when the
tokens change, re-labels the axes.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPen
from PySide6.QtWidgets import (QCheckBox, QComboBox, QGraphicsRectItem, QHBoxLayout, QLabel,
                               QWidget)

from gptviz_app.views.panel_layout import panel_layout, shrinkable_label
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.theme import DARK, Theme, colormap

LABEL_CHARS = 10


def short_label(tok: str, n: int = LABEL_CHARS) -> str:
    """A token shortened for an axis label."""
    return tok if len(tok) <= n else tok[: n - 1] + "…"


class AttentionMapView(QWidget):
    """Signals: ``layerChanged(int)``, ``headChanged(int)`` (-1 = average of heads),
    ``queryClicked(int)`` (global position)."""

    layerChanged = Signal(int)
    headChanged = Signal(int)
    queryClicked = Signal(int)
    scaleChanged = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.layer_box = QComboBox()
        self.head_box = QComboBox()
        self.layer_box.setToolTip("Layer (Up/Down in the grid's order)")
        self.head_box.setToolTip("Head, or the average of the layer's heads")
        self.layer_box.currentIndexChanged.connect(self._on_layer)
        self.head_box.currentIndexChanged.connect(self._on_head)
        self.sqrt_box = QCheckBox("√ scale")
        self.sqrt_box.setChecked(True)
        self.sqrt_box.setToolTip("Square-root colour scale: small weights (long texts) stay "
                                 "visible; the colour bar shows true weights")
        self.sqrt_box.toggled.connect(self.scaleChanged)
        self.title = shrinkable_label("")
        top = QHBoxLayout()
        top.setContentsMargins(4, 0, 4, 0)
        top.addWidget(QLabel("Layer"))
        top.addWidget(self.layer_box)
        top.addSpacing(8)
        top.addWidget(QLabel("Head"))
        top.addWidget(self.head_box)
        top.addSpacing(8)
        top.addWidget(self.sqrt_box)
        top.addSpacing(8)
        top.addWidget(self.title, 1)

        self.glw = pg.GraphicsLayoutWidget()
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.vb: pg.ViewBox = self.plot.getViewBox()
        self.vb.invertY(True)
        # Not aspect-locked: the map fills the panel, so the axis labels sit right at its edges.
        self.vb.setDefaultPadding(0.0)
        self.vb.setMouseEnabled(x=True, y=True)
        self.plot.showAxis("top")
        self.plot.hideAxis("bottom")
        self.plot.setLabel("left", "query")
        self.plot.setLabel("top", "key")
        # The future (masked) triangle: a hatched rectangle behind the image; NaN pixels of
        # the image are transparent and let it show through.
        self.backdrop_fill = QGraphicsRectItem(0, 0, 1, 1)
        self.backdrop_fill.setPen(QPen(Qt.PenStyle.NoPen))
        self.backdrop_fill.setZValue(-11)
        self.plot.addItem(self.backdrop_fill)
        self.backdrop = QGraphicsRectItem(0, 0, 1, 1)
        self.backdrop.setPen(QPen(Qt.PenStyle.NoPen))
        self.backdrop.setZValue(-10)
        self.plot.addItem(self.backdrop)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.image.setZValue(0)
        self.plot.addItem(self.image)
        self.query_box = QGraphicsRectItem(0, 0, 1, 1)
        self.query_box.setZValue(5)
        self.query_box.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.plot.addItem(self.query_box)
        self.colorbar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colormap("viridis"),
                                        interactive=False, width=14, label="weight")
        self.colorbar.setImageItem(self.image, insert_in=self.plot)
        self.readout = panel_layout(self, top, self.glw)
        self.readout.setTextFormat(Qt.TextFormat.PlainText)

        self.tokens: list[str] = []
        self.sqrt_scale = True
        self.window_start = 0
        self.T = 0
        self.query_rel = -1
        self.data = np.zeros((0, 0), np.float32)
        self._labels_key = None
        self._user_range = False
        self._range_T = -1
        self.vb.sigRangeChangedManually.connect(self._on_manual_range)
        self.vb.sigResized.connect(self._relabel)
        self.vb.sigRangeChanged.connect(self._relabel)
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.apply_theme(self.theme)

    # ------------------------------------------------------------------ look
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        brush = QBrush(QColor(theme.masked_hatch), Qt.BrushStyle.BDiagPattern)
        self.backdrop.setBrush(brush)
        self.backdrop_fill.setBrush(QBrush(QColor(theme.masked)))
        pen = QPen(QColor(theme.accent), 2.0)
        pen.setCosmetic(True)
        self.query_box.setPen(pen)
        self.colorbar.setColorMap(colormap(theme.colormap))
        font = theme.font(0.9)
        for name in ("left", "top"):
            ax = self.plot.getAxis(name)
            ax.setStyle(tickFont=font, tickLength=-4, autoExpandTextSpace=True)
            ax.setTextPen(pg.mkPen(theme.text))
            ax.setPen(pg.mkPen(theme.grid_line))
            ax.label.setFont(theme.font(0.9))
        self.plot.setLabel("left", "query", color=theme.text_dim)
        self.plot.setLabel("top", "key", color=theme.text_dim)
        cb_ax = self.colorbar.axis
        cb_ax.setStyle(tickFont=theme.font(0.85))
        cb_ax.setTextPen(pg.mkPen(theme.text))
        # the colour bar's title ("weight") sits on its left axis; scales with presentation mode
        self.colorbar.getAxis("left").label.setFont(theme.font(0.85))
        self._colorbar_ticks()
        self.readout.setFont(theme.font(1.0, mono=True))
        self.title.setFont(theme.font(1.0, bold=True))
        self._labels_key = None
        self._relabel()

    def _colorbar_ticks(self) -> None:
        values = (0, 0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 1) if self.sqrt_scale else \
            (0, 0.2, 0.4, 0.6, 0.8, 1)
        pos = (lambda v: math.sqrt(v)) if self.sqrt_scale else (lambda v: v)
        self.colorbar.axis.setTicks([[(pos(v), f"{v:g}") for v in values]])
        self.colorbar.getAxis("left").setLabel("weight (√ scale)" if self.sqrt_scale else "weight")

    def display_data(self, attn: np.ndarray) -> np.ndarray:
        """What the image shows for a map: the weights, or their square roots."""
        return np.sqrt(attn) if self.sqrt_scale else attn

    # ------------------------------------------------------------------ model
    def set_model(self, info: ModelInfo) -> None:
        for box, items in ((self.layer_box, [f"L{i}" for i in range(info.n_layer)]),
                           (self.head_box, [f"H{i}" for i in range(info.n_head)]
                            + ["Average of heads"])):
            with QSignalBlocker(box):
                box.clear()
                box.addItems(items)
        self._labels_key = None
        self._user_range = False

    def _on_layer(self, i: int) -> None:
        if i >= 0:
            self.layerChanged.emit(i)

    def _on_head(self, i: int) -> None:
        if i >= 0:
            self.headChanged.emit(-1 if i == self.head_box.count() - 1 else i)

    # ------------------------------------------------------------------ data
    def apply_snapshot(self, snap: Snapshot) -> None:
        a = snap.attn
        T = a.shape[0]
        self.data = a
        self.tokens = snap.tokens
        self.window_start = snap.window_start
        self.T = T
        self.query_rel = snap.query - snap.window_start
        v = snap.view
        if v.sqrt_scale != self.sqrt_scale:
            self.sqrt_scale = v.sqrt_scale
            self._colorbar_ticks()
        if self.sqrt_box.isChecked() != v.sqrt_scale:
            with QSignalBlocker(self.sqrt_box):
                self.sqrt_box.setChecked(v.sqrt_scale)
        self.image.setImage(self.display_data(a), levels=(0.0, 1.0), autoLevels=False)
        self.image.setRect(QRectF(0, 0, T, T))
        self.backdrop.setRect(QRectF(0, 0, T, T))
        self.backdrop_fill.setRect(QRectF(0, 0, T, T))
        self.query_box.setRect(QRectF(0, self.query_rel, max(1, self.query_rel + 1), 1))
        for box, idx in ((self.layer_box, v.layer),
                         (self.head_box, self.head_box.count() - 1 if v.average else v.head)):
            if box.currentIndex() != idx:
                with QSignalBlocker(box):
                    box.setCurrentIndex(idx)
        who = "average of heads" if v.average else f"head {v.head}"
        self.title.setText(f"{T} tokens")
        self.title.setToolTip(f"layer {v.layer}, {who}: {T} tokens in the model's window")
        if T != self._range_T and not self._user_range:
            self._fit()
        self._range_T = T
        key = (snap.window_start, T, self.query_rel, hash(snap.ids.tobytes()))
        if key != self._labels_key:
            self._labels_key = key
            self._relabel()

    def _fit(self) -> None:
        self.vb.setRange(QRectF(0, 0, max(1, self.T), max(1, self.T)), padding=0.0)

    def _on_manual_range(self, *_):
        self._user_range = True

    def reset_zoom(self) -> None:
        self._user_range = False
        self._fit()
        self._relabel()

    # ------------------------------------------------------------------ axes
    def _relabel(self, *_):
        T = self.T
        if T <= 0:
            for name in ("left", "top"):
                self.plot.getAxis(name).setTicks([[]])
            return
        (x0, x1), (y0, y1) = self.vb.viewRange()
        w_px, h_px = max(1.0, self.vb.width()), max(1.0, self.vb.height())
        px_x = w_px / max(1e-9, x1 - x0)   # pixels per token horizontally
        px_y = h_px / max(1e-9, y1 - y0)
        font_h = self.theme.pt(0.9) * 96 / 72 * 1.25
        labels = [short_label(t) for t in self.tokens[self.window_start:self.window_start + T]]
        lens = sorted(len(s) for s in labels)
        wide = lens[int(0.9 * (len(lens) - 1))] if lens else 1
        avg_w = self.theme.pt(0.9) * 96 / 72 * 0.62 * (wide + 2)
        sy = max(1, math.ceil(font_h / px_y))
        sx = max(1, math.ceil(avg_w / px_x))
        q = self.query_rel
        left = [(i + 0.5, f"{labels[i]}") for i in range(0, T, sy) if abs(i - q) >= sy or i == q]
        top = [(i + 0.5, labels[i]) for i in range(0, T, sx)]
        if 0 <= q < T and all(i != q + 0.5 for i, _ in left):
            left.append((q + 0.5, labels[q]))
        self.plot.getAxis("left").setTicks([left])
        self.plot.getAxis("top").setTicks([top])

    # ------------------------------------------------------------------ mouse
    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """(query, key) window positions under a scene point, or None."""
        if not self.vb.sceneBoundingRect().contains(scene_pos) or self.T <= 0:
            return None
        p = self.vb.mapSceneToView(scene_pos)
        k, q = int(math.floor(p.x())), int(math.floor(p.y()))
        if 0 <= q < self.T and 0 <= k < self.T:
            return q, k
        return None

    def describe(self, q: int, k: int) -> str:
        """The hover text of cell (query q, key k) in window positions."""
        ws = self.window_start
        qt, kt = self.tokens[ws + q], self.tokens[ws + k]
        if k > q:
            return f"query {ws + q} {qt!r} → key {ws + k} {kt!r}: masked (future token)"
        w = float(self.data[q, k])
        return f"query {ws + q} {qt!r} → key {ws + k} {kt!r}: weight {w:.4f}"

    def _on_move(self, pos) -> None:
        c = self.cell_at(pos)
        self.readout.setText(self.describe(*c) if c else " ")

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        if ev.double():
            self.reset_zoom()
            return
        c = self.cell_at(ev.scenePos())
        if c is not None:
            self.queryClicked.emit(self.window_start + c[0])
