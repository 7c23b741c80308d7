"""All heads at once: an L x H grid of thumbnails drawn as ONE mosaic ImageItem.

The worker keeps the mosaic (:class:`gptviz_app.runtime.snapshots.GridMosaic`) and updates it
incrementally, and colours it with the table this view sends it (``coloursWanted``): the view
shows those pixels as they are (:class:`~gptviz_app.views.mosaic_image.MosaicImage`), or
colours the mosaic itself when they were made with other colours (a theme changed).
Separate ImageItems per head would cost ~100 ms per repaint at 12 x 12 heads; one mosaic
costs a few ms. Clicking a cell selects that layer and head (``headSelected(layer, head)``);
the selected cell is outlined. The mosaic keeps square cells and sits in the panel's top left
corner (under the head labels), whatever the panel's shape.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QBrush, QColor, QFontMetricsF, QPen
from PySide6.QtWidgets import QGraphicsRectItem, QGraphicsView, QLabel, QWidget

from gptviz_app.runtime.grid_pixels import same_table
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.runtime.snapshots import grid_cell_fitting
from gptviz_app.views.axes import text_px, thin_ticks, tick_step
from gptviz_app.views.elided_label import ElidedLabel
from gptviz_app.views.mosaic_image import MosaicImage
from gptviz_app.views.panel_layout import choice_box, controls_row, panel_layout, set_choice
from gptviz_app.views.plots import plot_widget, setup_map_plot, style_axis
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.theme import DARK, Theme, colormap

#: Room around the mosaic for the selection outline (pixels).
MARGIN_PX = 3.0
#: How long the panel's size must stay put before the mosaic is asked for at that size (ms).
WANT_DELAY_MS = 150
# "Value-wtd": value-weighted maps (no wider than "Whole maps": the caption keeps its room)
MODE_ITEMS = (("auto", "Auto"), ("map", "Whole maps"), ("row", "Query row"),
              ("value", "Value-wtd"))


class HeadGrid(QWidget):
    """Signals: ``headSelected(int layer, int head)``, ``modeChanged(str)``,
    ``cellWanted(int)``: the thumbnail size (device pixels) the panel shows now, for the
    worker to draw the mosaic at from its next snapshot (the first size at once, a new one a
    moment after the panel's size settles); ``coloursWanted(np.ndarray)``: the table of
    pixels the view colours with (``[n + 1]`` uint32, read-only), for the worker to colour the
    mosaic with (sent again with a snapshot coloured otherwise)."""

    headSelected = Signal(int, int)
    modeChanged = Signal(str)
    cellWanted = Signal(int)
    coloursWanted = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.mode_box = choice_box(MODE_ITEMS, self.modeChanged.emit,
                                   "Auto: whole maps for short texts, the query's row "
                                   "(wrapped like text) for long ones · Value-wtd: "
                                   "value-weighted maps ‖α·v W_O‖, rows as shares")
        # a new text every step: a steady label does not lay the window out again for it
        self.caption = SteadyLabel(label=ElidedLabel(""), steady_height=True)
        top = controls_row(QLabel("Thumbnails"), self.mode_box, 8, (self.caption, 1))
        self.glw = plot_widget()
        # Nothing here is antialiased: a step repaints the mosaic's own rectangle, not 2 px
        # more, which would reach the head and layer labels beside it (both axes painted again
        # at every step). The outlines (cosmetic pens wider than their items' bounds on a
        # high-DPI screen) repaint the whole view when they move: see refresh().
        self.glw.setOptimizationFlag(QGraphicsView.OptimizationFlag.DontAdjustForAntialiasing)
        self.plot: pg.PlotItem = self.glw.addPlot(row=0, col=0)
        self.vb: pg.ViewBox = setup_map_plot(self.plot, aspect=False, mouse=False)
        for name in ("left", "top", "bottom", "right"):  # names: no SI prefix to look for
            self.plot.getAxis(name).enableAutoSIPrefix(False)
        self.backdrop = pg.ImageItem(axisOrder="row-major")
        self.backdrop.setZValue(-10)
        self.plot.addItem(self.backdrop)
        self.image = MosaicImage()  # the worker's pixels, or coloured in a few numpy passes
        self.plot.addItem(self.image)
        self.selection = QGraphicsRectItem(0, 0, 1, 1)
        self.selection.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.selection.setZValue(10)
        self.plot.addItem(self.selection)
        self.readout = panel_layout(self, top, self.glw)
        self.L = self.H = 0
        self.kv_heads = 0  # key/value heads (grouped-query attention), see set_model
        self.cell, self.gap = 64, 3
        # the snapshot's mosaic: (float mosaic, its pixels, their colours); pending: it came
        # while hidden
        self._mosaic: tuple | None = None
        self._pending: tuple | None = None
        self.layer = self.head = 0
        self.average = False
        #: Optional ``(layer, head) -> str`` appended to the hover read-out (a panel sets it,
        #: e.g. what the head writes at the query).
        self.cell_note: Callable[[int, int], str] | None = None
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.vb.sigResized.connect(self._fit)
        self.vb.sigRangeChanged.connect(self._ticks)
        self.wanted_cell: int | None = None  # the size last asked for (cellWanted)
        self._layer_key: tuple | None = None  # (layers, pitch, cell, step) of the layer ticks
        self._want = QTimer(self)  # a resize's last size is asked for, not every one on the way
        self._want.setSingleShot(True)
        self._want.setInterval(WANT_DELAY_MS)
        self._want.timeout.connect(self._ask_cell)
        self.apply_theme(self.theme)

    @property
    def pitch(self) -> int:
        return self.cell + self.gap

    # ------------------------------------------------------------------ look
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        self.image.setColorMap(colormap(theme.colormap))
        self._send_colours()
        pen = QPen(QColor(theme.accent), 3.0)
        pen.setCosmetic(True)
        self.selection.setPen(pen)
        for name in ("left", "top"):  # labels only: the axis lines in the background colour
            style_axis(self.plot.getAxis(name), theme, theme.font(0.85), tick_length=0,
                       line=theme.plot_bg)
        self.readout.setFont(theme.font(0.95))
        # the layer axis as wide as its widest label ever: thinned labels ("L9" for "L10")
        # would narrow it, widen the thumbnails' rows and bring the label back, and so on
        self.plot.getAxis("left").setStyle(autoReduceTextSpace=False)
        self._draw_backdrop()
        self._ticks()

    def _send_colours(self) -> None:
        table = self.image.colours()
        if table is not None:
            table.flags.writeable = False  # the worker's from now on
            self.coloursWanted.emit(table)

    def _label_step(self, label_px: float, along_px: float, span: float) -> int:
        """Label every ``step``-th row or column of thumbnails so that labels ``label_px``
        long never touch along an axis ``along_px`` long that shows ``span`` scene units."""
        if along_px <= 1:
            return 1
        return tick_step(label_px, along_px * self.pitch / max(1e-9, span))

    def _ticks(self, *_) -> None:
        """Head labels on top and layer labels at the left, every ``step``-th one so that
        they never touch (big fonts in presentation mode, many heads in a narrow panel,
        rows of a few pixels in a short one)."""
        if not self.H:
            return
        p, c = self.pitch, self.cell
        (x0, x1), _ = self.vb.viewRange()
        label_px = text_px(self.theme.pt(0.85), len(f"H{self.H - 1}") + 1.5)
        step = self._label_step(label_px, self.vb.width(), x1 - x0)
        self.plot.getAxis("top").setTicks(
            [thin_ticks([f"H{j}" for j in range(self.H)], step, offset=c / 2, pitch=p)])
        self._layer_ticks()

    def cell_shown(self) -> int | None:
        """The thumbnail size (device pixels) that fills the panel's thumbnails one pixel
        per pixel: the mosaic's own size is then what is seen (``None``: not laid out)."""
        if not self.L or not self.H:
            return None
        w, h = self.vb.width(), self.vb.height()
        if w <= 1 or h <= 1:
            return None
        views = self.glw.scene().views()
        dpr = views[0].devicePixelRatioF() if views else 1.0
        return grid_cell_fitting((w - 2 * MARGIN_PX) * dpr, (h - 2 * MARGIN_PX) * dpr,
                                 self.L, self.H)

    def _ask_cell(self) -> None:
        cell = self.cell_shown()
        if cell is not None and cell != self.wanted_cell and self.isVisible():
            self.wanted_cell = cell
            self.cellWanted.emit(cell)

    def _fit(self, *_) -> None:
        """Show the whole mosaic with square cells, as large as the panel allows, anchored at
        the top left (with ``setAspectLocked`` it would float in the middle of a tall or wide
        panel, far from its head and layer labels). Only while shown: a hidden panel (or a
        window being closed) fits again when it is shown (:meth:`showEvent`)."""
        if not self.L or not self.isVisible():
            return
        w, h = self.vb.width(), self.vb.height()
        if w <= 1 or h <= 1:
            return
        width, height = self.H * self.pitch - self.gap, self.L * self.pitch - self.gap
        scale = max(1e-9, min((w - 2 * MARGIN_PX) / width, (h - 2 * MARGIN_PX) / height))
        x0 = y0 = -MARGIN_PX / scale
        self.vb.setRange(xRange=(x0, x0 + w / scale), yRange=(y0, y0 + h / scale), padding=0)
        self._ticks()
        if self.wanted_cell is None:
            self._ask_cell()  # the first size at once: the next snapshot is drawn at it
        elif self.cell_shown() != self.wanted_cell:
            self._want.start()

    def _show_mosaic(self) -> None:
        """The snapshot's mosaic on the image (a hidden panel's, once shown)."""
        self._pending = None
        if self._mosaic is not None:
            self.image.set_mosaic(*self._mosaic)

    def showEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().showEvent(e)
        self._fit()
        if self._pending is not None:
            self._show_mosaic()

    def _draw_backdrop(self) -> None:
        """Grey cells with gaps in the plot background colour (static until the model changes)."""
        if not self.L:
            return
        p, c = self.pitch, self.cell
        rgba = np.zeros((self.L * p, self.H * p, 4), np.uint8)
        col = QColor(self.theme.masked)
        view = rgba.reshape(self.L, p, self.H, p, 4)
        view[:, :c, :, :c] = (col.red(), col.green(), col.blue(), 255)
        self.backdrop.setImage(rgba, levels=None, autoLevels=False)

    # ------------------------------------------------------------------ model
    def set_model(self, info: ModelInfo) -> None:
        self.L, self.H = info.n_layer, info.n_head
        # Grouped-query attention: fewer key/value heads than query heads (0: one each).
        self.kv_heads = getattr(info, "kv_heads", 0) or info.n_head
        self._ticks()
        self.image.clear()
        self._pending = self._mosaic = None
        self._draw_backdrop()
        self._fit()
        self._place_selection()

    def _layer_ticks(self) -> None:
        """Layer labels at the left, every ``step``-th one so that they never overlap (rows
        of a few pixels: a short panel, presentation fonts at 1024 x 640)."""
        if not self.L:
            return
        p, c = self.pitch, self.cell
        _, (y0, y1) = self.vb.viewRange()
        line_px = QFontMetricsF(self.theme.font(0.85)).height()
        step = self._label_step(line_px, self.vb.height(), y1 - y0)
        key = (self.L, p, c, step)
        if key == self._layer_key:
            return  # (set at every range change: the same ticks are not laid out again)
        self._layer_key = key
        self.plot.getAxis("left").setTicks(
            [thin_ticks([f"L{i}" for i in range(self.L)], step, offset=c / 2, pitch=p)])

    def _place_selection(self) -> None:
        p, c = self.pitch, self.cell
        if self.average:
            self.selection.setRect(QRectF(-1, self.layer * p - 1, self.H * p - self.gap + 2, c + 2))
        else:
            self.selection.setRect(QRectF(self.head * p - 1, self.layer * p - 1, c + 2, c + 2))
        self.refresh()

    def refresh(self) -> None:
        """Repaint the whole view: after an outline (the selection, the ablated heads' marks)
        moved, whose cosmetic pen may reach past its item's bounds (a rare change)."""
        self.glw.viewport().update()

    # ------------------------------------------------------------------ data
    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.grid.shape[0] != self.L * (snap.grid_cell + snap.grid_gap):
            return  # a snapshot of another model
        if (snap.grid_cell, snap.grid_gap) != (self.cell, self.gap):
            self.cell, self.gap = snap.grid_cell, snap.grid_gap
            self._draw_backdrop()
            self._layer_ticks()
            self._fit()
            self._place_selection()
        self._mosaic = (snap.grid, snap.grid_pixels, snap.grid_table)
        if self.isVisible():
            self._show_mosaic()
        else:  # nobody sees it (a hidden panel): drawn when shown
            self._pending = self._mosaic
        if not same_table(snap.grid_table, self.image.colours()):
            self._send_colours()  # coloured here: the worker has not had these colours yet
        v = snap.view
        if (v.layer, v.head, v.average) != (self.layer, self.head, self.average):
            self.layer, self.head, self.average = v.layer, v.head, v.average
            self._place_selection()
        set_choice(self.mode_box, v.grid_mode)
        txt, tip = self._caption(snap)
        self.caption.setText(txt)
        self.caption.setToolTip(tip)

    def _caption(self, snap: Snapshot) -> tuple[str, str]:
        """The caption's text and tooltip. The text changes only when what the thumbnails
        show does (not at every step: the window's length is in the status bar, the query
        followed is the newest token), so that a step does not set and paint it again."""
        T, v = snap.T, snap.view
        if snap.grid_mode == "value":
            txt = "value-weighted maps"
            tip = ("Each thumbnail is a head's value-weighted map ‖α_ij·v_j W_O‖ (Kobayashi et "
                   "al., 2020), each row divided by its sum: where the head's output at the "
                   f"query really comes from ({T} tokens)")
        elif snap.grid_mode == "map":
            b = math.ceil(T / snap.grid_cell)
            txt = "whole maps" + (f", max of {b}×{b} blocks" if b > 1 else "")
            tip = (f"Each thumbnail is a head's whole {T}×{T} map" +
                   (f", each pixel the maximum of a {b}×{b} block" if b > 1 else ""))
        else:
            keys = snap.query - snap.window_start + 1
            which = "the newest query" if v.query is None else f"query {snap.query}"
            txt = f"row of {which}, {snap.grid_cell} keys/line"
            tip = (f"Each thumbnail shows the attention of query {snap.query} over its {keys} "
                   f"keys, wrapped like text: {snap.grid_cell} keys per line, first key top left")
        if v.sqrt_scale:
            tip += " (square-root colour scale)"
        kv = self.kv_heads or self.H
        if kv < self.H:
            g = self.H // kv
            tip += (f". Grouped-query attention: {kv} key/value heads for {self.H} query heads; "
                    f"heads 0–{g - 1} share key/value head 0, the next {g} head 1, …")
        return txt, tip

    # ------------------------------------------------------------------ mouse
    def cell_at(self, scene_pos) -> tuple[int, int] | None:
        """(layer, head) under a scene point, or None (gaps count as the cell before them)."""
        if not self.L or not self.vb.sceneBoundingRect().contains(scene_pos):
            return None
        pt = self.vb.mapSceneToView(scene_pos)
        head, layer = int(pt.x() // self.pitch), int(pt.y() // self.pitch)
        if 0 <= layer < self.L and 0 <= head < self.H and pt.x() >= 0 and pt.y() >= 0:
            return layer, head
        return None

    def cell_center(self, layer: int, head: int):
        """Scene position of the centre of a cell (tests click there)."""
        p, c = self.pitch, self.cell
        return self.vb.mapViewToScene(pg.Point(head * p + c / 2, layer * p + c / 2))

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton:
            return
        c = self.cell_at(ev.scenePos())
        if c is not None:
            self.headSelected.emit(*c)

    def kv_note(self, head: int) -> str:
        """``" (key/value head 1, shared with heads 2–3)"`` under grouped-query attention
        (query head ``h`` reads key/value head ``h // (n_head / kv_heads)``), else ``""``."""
        kv = self.kv_heads or self.H
        if kv >= self.H:
            return ""
        g = self.H // kv
        k = head // g
        return f" (key/value head {k}, shared with heads {k * g}–{k * g + g - 1})"

    def _on_move(self, pos) -> None:
        c = self.cell_at(pos)
        text = f"layer {c[0]}, head {c[1]}{self.kv_note(c[1])} — click to select" if c else " "
        note = self.cell_note(*c) if c and self.cell_note is not None else ""
        self.readout.setText(f"{text} · {note}" if note else text)
