"""pyqtgraph building blocks of every map in the app (attention map, head grid, the analysis
panels' maps).

* :func:`plot_widget` — a ``GraphicsLayoutWidget`` whose scene keeps no item index;
* :func:`setup_map_plot` — a ``PlotItem`` set up for a map: rows top to bottom, no menu or
  buttons, no padding, keys on the top axis;
* :class:`MapPlot` — a map with its items: one row-major ``ImageItem`` (updated in place with
  ``setImage(a, levels=...)``), NaN cells showing a hatched backdrop (the causal mask,
  undefined scores), an outline box (the query row or the selected head), a cross overlay
  (ablated heads) and, from :meth:`MapPlot.add_colorbar`, its colour bar. Items are created
  once;
* :func:`style_axis`, :func:`style_colorbar` — the theme's fonts and colours on an axis and on
  a colour bar; :func:`sqrt_ticks` — colour-bar ticks of a square-root colour scale;
* :func:`cross_path` / :func:`rects_path` — one ``QPainterPath`` for many marks;
* :func:`set_label_ticks` — tick labels on a left or right axis that is widened for them
  before it paints (so that no new, longer label is left out);
* :func:`max_pool` — a map shrunk to blocks that keep their strongest cell: a
  ``MapPlot(pool=True)`` draws a map with more cells than its view has device pixels at the
  view's resolution (what Qt would otherwise thin out by sampling, and much faster to paint).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsItem, QGraphicsPathItem, QGraphicsRectItem, QGraphicsScene

from gptviz_app.views.fast_image import FastImageItem, Repainters
from gptviz_app.views.label_axis import LabelAxis
from gptviz_app.views.theme import ABLATED_COLOR, Theme, colormap


def cross_path(rects: Iterable[QRectF], inset: float = 0.18) -> QPainterPath:
    """An X inside each rectangle (inset by a fraction of its size)."""
    path = QPainterPath()
    for r in rects:
        dx, dy = r.width() * inset, r.height() * inset
        a = r.adjusted(dx, dy, -dx, -dy)
        path.moveTo(a.topLeft())
        path.lineTo(a.bottomRight())
        path.moveTo(a.topRight())
        path.lineTo(a.bottomLeft())
    return path


def rects_path(rects: Iterable[QRectF]) -> QPainterPath:
    """The outlines of many rectangles as one path."""
    path = QPainterPath()
    for r in rects:
        path.addRect(r)
    return path


def set_label_ticks(plot: pg.PlotItem, name: str, ticks: list[tuple[float, str]],
                    narrow_after: int = 12) -> None:
    """Put ``ticks`` ``(position, label)`` on the ``"left"`` or ``"right"`` axis of ``plot``,
    with the axis as wide as its widest label right away.

    pyqtgraph measures the labels while it paints: a label wider than the axis is left out of
    that paint, and the axis only grows for the next one. A step that brings a longer token
    (Play) then drew its chart once without that bar's label (and a screenshot taken then kept
    it so). Here the labels are measured first and the plot laid out again at once. The axis
    narrows less eagerly than it grows: each new width lays the plot out again and paints
    every axis afresh, and the next-token chart's candidates change from step to step (its
    axis went from one width to another at almost every step). It narrows at once when it
    is at least twice as wide as its labels need or their font changed, else once
    ``narrow_after`` calls in a row had it more than 10 pixels too wide, to the widest those
    calls needed. The same ticks again leave the axis as it is (its picture is kept); a
    :class:`LabelAxis` measures each label once.
    """
    from PySide6.QtGui import QFontMetricsF

    axis = plot.getAxis(name)
    if axis._tickLevels != [ticks]:
        axis.setTicks([ticks])
    font = axis.style.get("tickFont") or QFont()
    if isinstance(axis, LabelAxis):
        text = axis.widest(t for _pos, t in ticks)
    else:
        fm = QFontMetricsF(font)
        box = QRectF(0, 0, 100, 100)  # how pyqtgraph measures a label (centred in a box)
        text = max((fm.boundingRect(box, Qt.AlignmentFlag.AlignCenter, t).width()
                    for _pos, t in ticks), default=0.0)
    need = math.ceil(text + axis.style["tickTextOffset"][0] + max(0, axis.style["tickLength"])
                     + 2)
    if axis.label.isVisible():
        need += math.ceil(axis.label.boundingRect().height() * 0.8)
    have = axis.width()
    # (font, calls in a row with room to spare, the most they needed)
    key, spare, most = getattr(axis, "_narrowing", ("", 0, 0))
    width = None
    if need > have:
        width, spare, most = need, 0, 0
    elif need < have - 10:
        spare, most = spare + 1, max(most, need)
        if key != font.key() or 2 * need <= have:
            width, spare, most = need, 0, 0
        elif spare >= narrow_after:
            width, spare, most = most, 0, 0
    else:
        spare, most = 0, 0
    axis._narrowing = (font.key(), spare, most)
    if width is not None:
        axis.setWidth(width)
        plot.layout.activate()  # the new width takes effect before the next paint


def label_axes(plot: pg.PlotItem) -> None:
    """Give ``plot`` a :class:`LabelAxis` on each side (the same look; cheaper to lay out
    again every step), each shown or hidden as before."""
    shown = {name: plot.getAxis(name).isVisible() for name in ("left", "right", "top", "bottom")}
    plot.setAxisItems({name: LabelAxis(name) for name in shown})
    for name, visible in shown.items():
        plot.showAxis(name, visible)


def plot_widget() -> pg.GraphicsLayoutWidget:
    """A new ``GraphicsLayoutWidget`` whose scene keeps no index of its items.

    Qt files a scene's items in a BSP tree by default and files an item again (a queued
    update that asks for its bounding rectangle) whenever it moves or changes size: the bars,
    labels and axes of a plot do at every step. A plot holds a few dozen items, which Qt finds
    under the mouse or in a repainted region by walking them, without a tree to keep.
    """
    glw = pg.GraphicsLayoutWidget()
    glw.scene().setItemIndexMethod(QGraphicsScene.ItemIndexMethod.NoIndex)
    return glw


def setup_map_plot(plot: pg.PlotItem, aspect: bool = False, mouse: bool = False,
                   top_axis: bool = True) -> pg.ViewBox:
    """Set ``plot`` up for a map and return its ViewBox: rows top to bottom, no context menu
    or auto-range button, no padding, cells square with ``aspect``, pan/zoom with ``mouse``;
    the bottom axis hidden and, with ``top_axis``, the top one shown (keys above the map)."""
    plot.setMenuEnabled(False)
    plot.hideButtons()
    label_axes(plot)
    vb: pg.ViewBox = plot.getViewBox()
    vb.invertY(True)
    vb.setAspectLocked(aspect)
    vb.setDefaultPadding(0.0)
    vb.setMouseEnabled(x=mouse, y=mouse)
    if top_axis:
        plot.showAxis("top")
    plot.hideAxis("bottom")
    return vb


def style_axis(axis: pg.AxisItem, theme: Theme, font: QFont, tick_length: int | None = None,
               line: str | None = None) -> None:
    """Tick labels in ``font`` and the theme's text colour, the axis title in its dimmed text
    colour; the axis line in ``line`` (default: the theme's grid colour); ``tick_length`` in
    pixels (negative: ticks point inwards)."""
    style: dict = {"tickFont": font}
    if tick_length is not None:
        style["tickLength"] = tick_length
    axis.setStyle(**style)
    # setPen colours the title too (pale grid grey on a projector): the title's colour last
    axis.setPen(pg.mkPen(line or theme.grid_line))
    axis.setTextPen(pg.mkPen(theme.text))
    title_colour(axis, theme)


def title_colour(axis: pg.AxisItem, theme: Theme) -> None:
    """The axis title (``setLabel``) in the theme's dimmed text colour, as the main map's."""
    axis.labelStyle["color"] = theme.text_dim
    axis._updateLabel()


def style_colorbar(bar: pg.ColorBarItem, theme: Theme, cmap, font_factor: float = 0.8,
                   title_factor: float | None = None) -> None:
    """A colour bar in the theme: colormap ``cmap``, tick labels of ``font_factor`` size in the
    text colour and its title (on its left axis) of ``title_factor`` size (default: the tick
    labels' size), so that presentation fonts enlarge it too."""
    bar.setColorMap(cmap)
    bar.axis.setStyle(tickFont=theme.font(font_factor))
    bar.axis.setTextPen(pg.mkPen(theme.text))
    title = bar.getAxis("left")
    title.label.setFont(theme.font(font_factor if title_factor is None else title_factor))
    title_colour(title, theme)  # and makes room for the title in its new size


def sqrt_ticks(values: Iterable[float]) -> list[tuple[float, str]]:
    """Colour-bar ticks of a square-root colour scale: ``values`` labelled where they are
    drawn (at their square roots)."""
    return [(math.sqrt(v), f"{v:g}") for v in values]


def _fold(a: np.ndarray, f: int, axis: int, ufunc: np.ufunc,
          out: np.ndarray | None = None) -> np.ndarray:
    """``a`` with each run of ``f`` rows (``axis`` 0) or columns (``axis`` 1) made one by
    ``ufunc`` (``np.fmax`` or ``np.fmin``; the last run: what is left), as float32 (into
    ``out`` if given); ``a`` itself when ``f`` is 1. One pass per place in a run, each over
    whole runs of rows or columns: for rows, contiguous memory read once."""
    if f == 1:
        return a
    rows, cols = a.shape
    shape = (-(-rows // f), cols) if axis == 0 else (rows, -(-cols // f))
    out = np.empty(shape, np.float32) if out is None else out
    src, dst = (a, out) if axis == 0 else (a.T, out.T)  # columns: the transposed views' rows
    first, second = src[0::f], src[1::f]
    k = len(second)
    ufunc(first[:k], second, out=dst[:k])
    dst[k:] = first[k:]  # a last run of a single row
    for i in range(2, f):
        s = src[i::f]
        ufunc(dst[:len(s)], s, out=dst[:len(s)])
    return out


def _pooled(a: np.ndarray, fy: int, fx: int, ufunc: np.ufunc,
            out: np.ndarray | None = None) -> np.ndarray:
    """:func:`max_pool`'s blocks made one by ``ufunc`` (``np.fmax``: NaN loses to any
    number; ``np.fmin``), as float32, into ``out`` (default: a new array). Rows first
    (contiguous: the big array read once), then the columns of the folded rows, a band of
    block rows at a time, so that the folded band stays in the CPU's cache."""
    if fy == 1 or fx == 1:  # one fold (or none)
        folded = _fold(_fold(a, fy, 0, ufunc), fx, 1, ufunc)
        if out is None:
            return np.array(a, np.float32) if folded is a else folded
        out[...] = folded
        return out
    rows, cols = a.shape
    ny, nx = -(-rows // fy), -(-cols // fx)
    band = max(1, (1 << 15) // cols)  # block rows whose folded rows fill 128 KB
    folded = np.empty((min(band, ny), cols), np.float32)
    out = np.empty((ny, nx), np.float32) if out is None else out
    for b0 in range(0, ny, band):
        part = a[b0 * fy:(b0 + band) * fy]
        k = -(-len(part) // fy)
        _fold(_fold(part, fy, 0, ufunc, out=folded[:k]), fx, 1, ufunc, out=out[b0:b0 + k])
    return out


def max_pool(a: np.ndarray, fy: int, fx: int, signed: bool = False,
             out: np.ndarray | None = None) -> np.ndarray:
    """``a`` ``[rows, cols]`` in blocks of ``fy`` x ``fx`` cells, each block its largest value
    (``signed``: the value farthest from 0, its sign kept, for diverging scales). NaN cells are
    left out (a block of NaN only stays NaN); the last blocks of a side that ``fy`` or ``fx``
    does not divide are the cells that are left. Shape ``[ceil(rows/fy), ceil(cols/fx)]``,
    float32, written into ``out`` when given (a view of a bigger buffer will do)."""
    hi = _pooled(a, fy, fx, np.fmax, out)
    if signed:  # the smallest where it is farther from 0 (NaN compares false: hi stays)
        lo = _pooled(a, fy, fx, np.fmin)
        np.copyto(hi, lo, where=lo < -hi)
    return hi


def _pool_into(out: np.ndarray, part: np.ndarray, fy: int, fx: int, signed: bool,
               transform) -> None:
    """``out`` = ``transform`` of :func:`max_pool` of ``part`` (``out`` its shape; nothing when
    it is empty)."""
    if out.size == 0:
        return
    if fy > 1 or fx > 1:
        max_pool(part, fy, fx, signed=signed, out=out)
    else:
        out[...] = part
    if isinstance(transform, np.ufunc):
        transform(out, out=out)
    elif transform is not None:
        out[...] = transform(out)


class Backdrop(QGraphicsItem):
    """A filled rectangle (the map's NaN backdrop) that, grown or shrunk from the same corner
    (a step adds a row and a column), asks Qt to repaint only the strips it gained or lost.

    A ``QGraphicsRectItem`` repaints all of its old and new rectangle on ``setRect``: the
    whole map, at every step. Here the bounding rectangle is a room a little bigger than the
    rectangle (grown by a quarter when outgrown: re-laid out only then), and the fill is
    drawn as ``QGraphicsRectItem`` draws it (no pen, the brush over the rectangle)."""

    def __init__(self) -> None:
        super().__init__()
        self._rect = QRectF()
        self._room = QRectF()
        self._brush = QBrush()
        self._strips = Repainters(self)  # the strips on the right and below: apart

    def rect(self) -> QRectF:
        return QRectF(self._rect)

    def brush(self) -> QBrush:
        return QBrush(self._brush)

    def setBrush(self, brush: QBrush) -> None:  # noqa: N802 - Qt name
        self._brush = QBrush(brush)
        self.update()

    def setPen(self, _pen: QPen) -> None:  # noqa: N802 - Qt name; never outlined
        pass

    def setRect(self, rect: QRectF) -> None:  # noqa: N802 - Qt name
        old = self._rect
        if rect == old:
            return
        self._rect = QRectF(rect)
        if not self._room.contains(rect) or old.topLeft() != rect.topLeft():
            self.prepareGeometryChange()  # the old room repainted (what it held is gone)
            self._room = QRectF(rect.x(), rect.y(), rect.width() * 1.25 + 16,
                                rect.height() * 1.25 + 16)
            self.update()
            return
        # from the same corner: the strips on the right and below that differ
        x, y = rect.x(), rect.y()
        r_in, r_out = sorted((old.right(), rect.right()))
        b_in, b_out = sorted((old.bottom(), rect.bottom()))
        self._strips.update([r for r in (QRectF(r_in, y, r_out - r_in, b_out - y),
                                         QRectF(x, b_in, r_out - x, b_out - b_in))
                             if not r.isEmpty()])

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt name
        return self._room

    def paint(self, p, _opt, _widget=None) -> None:  # noqa: D102 - Qt's
        if self._rect.isEmpty():
            return
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(self._brush)
        p.drawRect(self._rect)


class _MapImage(FastImageItem):
    """The map's ``ImageItem`` (a :class:`FastImageItem`); an exporter (PNG at any width,
    SVG) gets every cell, not the blocks drawn at the screen's resolution."""

    def __init__(self, owner: MapPlot) -> None:
        super().__init__()
        self._owner = owner

    def setExportMode(self, export, opts=None):  # noqa: N802 - pyqtgraph name
        super().setExportMode(export, opts)
        self._owner._draw(full=bool(export))


class MapPlot:
    """A heat map in ``plot`` (a ``pg.PlotItem``), rows top to bottom.

    Parameters
    ----------
    plot
        The plot to draw in (set up by :func:`setup_map_plot`).
    aspect
        Keep cells square.
    mouse
        Allow pan/zoom with the mouse.
    fit
        Show the whole map whenever its shape changes (off: the owner sets the range).
    top_axis
        Show the top axis (column labels above the map).
    tick_factor, tick_length
        Size of the axes' tick labels (a :meth:`Theme.font` factor) and length of their ticks.
    pool
        Draw at the view's resolution: of a map with more cells in view than the view has
        device pixels, the image holds the visible part in :func:`max_pool` blocks (no more
        blocks than pixels), so a single strong cell is never lost; zoomed in, only the visible
        cells. :attr:`data` (the hover values) stays the whole map.
    """

    def __init__(self, plot: pg.PlotItem, aspect: bool = True, mouse: bool = False,
                 fit: bool = True, top_axis: bool = True, tick_factor: float = 0.8,
                 tick_length: int = 0, pool: bool = False) -> None:
        self.plot = plot
        self.vb = setup_map_plot(plot, aspect=aspect, mouse=mouse, top_axis=top_axis)
        self.fit = fit
        self.pool = pool
        self._src: np.ndarray | None = None   # what is drawn, whole (before the transform)
        self._transform = None                 # e.g. np.sqrt, applied after pooling
        self._levels: tuple[float, float] = (0.0, 1.0)
        self._drawn_key: tuple | None = None   # (blocks drawn, their padding) of the image now
        self._image_rect: tuple | None = None  # (c0, r0, blocks, block size) placed last
        # the pooled image (a view of the first of two buffers kept from draw to draw), the
        # pooling key and colour scale it was made with, and how many leading rows and
        # columns of _src are the cells it was made of (see set_image's ``kept``)
        self._pool_bufs: tuple[np.ndarray, np.ndarray] | None = None  # (the image's, spare)
        self._pool_key: tuple | None = None
        self._pool_diff = np.zeros((0, 0), bool)
        self._pool_kept = (0, 0)
        self._pool_shape = (0, 0)  # the pooled image's blocks (rows, columns)
        self._dirty = False                    # hidden when the map changed: draw when shown
        self._held = False                     # see drawing_held
        if pool:  # zoom, pan and resize change how many cells a pixel holds
            self.vb.sigRangeChanged.connect(self._redraw_view)
            self.vb.sigResized.connect(self._redraw_view)
        self.tick_factor, self.tick_length = tick_factor, tick_length
        self.backdrop_fill = Backdrop()
        self.backdrop_fill.setZValue(-11)
        plot.addItem(self.backdrop_fill)
        self.backdrop = Backdrop()
        self.backdrop.setZValue(-10)
        plot.addItem(self.backdrop)
        self.image = _MapImage(self) if pool else FastImageItem()
        plot.addItem(self.image)
        self.marks = QGraphicsPathItem()
        self.marks.setZValue(6)
        plot.addItem(self.marks)
        self.box = QGraphicsRectItem(0, 0, 1, 1)
        self.box.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.box.setZValue(8)
        self.box.setVisible(False)
        plot.addItem(self.box)
        self.colorbar: pg.ColorBarItem | None = None
        self._bar_fonts: tuple[float, float | None] = (0.8, None)
        self.shape = (0, 0)
        self.data = np.zeros((0, 0), np.float32)

    def add_colorbar(self, width: int, label: str | None = None,
                     values: tuple[float, float] = (0.0, 1.0), cmap=None,
                     font_factor: float = 0.8, title_factor: float | None = None,
                     cell: tuple[pg.GraphicsLayoutWidget, int, int] | None = None
                     ) -> pg.ColorBarItem:
        """The map's colour bar (non-interactive, ``width`` pixels wide, titled ``label``), on
        the right of the plot or, with ``cell = (layout, row, col)``, in that layout cell;
        :meth:`apply_theme` styles it (:func:`style_colorbar` with the two font factors)."""
        bar = pg.ColorBarItem(values=values, colorMap=cmap if cmap is not None
                              else colormap("viridis"), interactive=False, width=width,
                              label=label)
        if cell is None:
            bar.setImageItem(self.image, insert_in=self.plot)
        else:
            bar.setImageItem(self.image)
            layout, row, col = cell
            layout.addItem(bar, row=row, col=col)
        self.colorbar = bar
        self._bar_fonts = (font_factor, title_factor)
        return bar

    def apply_theme(self, theme: Theme, cmap=None) -> None:
        """Colours and fonts of ``theme``; ``cmap`` colours the map and its colour bar
        (default: the theme's colormap)."""
        cmap = cmap if cmap is not None else colormap(theme.colormap)
        self.backdrop.setBrush(QBrush(QColor(theme.masked_hatch), Qt.BrushStyle.BDiagPattern))
        self.backdrop_fill.setBrush(QBrush(QColor(theme.masked)))
        pen = QPen(QColor(theme.accent), 2.0)
        pen.setCosmetic(True)
        self.box.setPen(pen)
        mpen = QPen(QColor(ABLATED_COLOR), 2.0)
        mpen.setCosmetic(True)
        self.marks.setPen(mpen)
        self.image.setColorMap(cmap)
        for name in ("left", "top", "bottom"):
            style_axis(self.plot.getAxis(name), theme, theme.font(self.tick_factor),
                       tick_length=self.tick_length)
        self.plot.titleLabel.item.setFont(theme.font(0.9, bold=True))
        self.plot.titleLabel.setAttr("color", theme.text)
        if self.colorbar is not None:
            style_colorbar(self.colorbar, theme, cmap, *self._bar_fonts)

    def set_title(self, text: str, theme: Theme) -> None:
        self.plot.setTitle(text, color=theme.text, size=f"{theme.pt(0.9):.0f}pt")

    def set_image(self, data: np.ndarray | None, levels: tuple[float, float],
                  display: np.ndarray | None = None, transform=None,
                  kept: tuple[int, int] = (0, 0)) -> None:
        """Show ``data`` ``[rows, cols]`` (``display``: what to draw, e.g. its square root;
        hover values come from ``data``). ``transform``: an increasing function (e.g.
        ``np.sqrt``) of what is drawn, applied after pooling (it keeps each block's maximum).
        ``kept`` ``(rows, cols)``: what is drawn holds the cells of the previous call's in its
        first ``rows`` x ``cols`` (a step that appends a token): of a pooled map, only the
        blocks with other cells are pooled and coloured again. ``None`` clears."""
        if self.pool:
            pk = self._pool_kept
            self._pool_kept = (min(pk[0], kept[0]), min(pk[1], kept[1]))
        if data is None or data.size == 0:
            self.data = np.zeros((0, 0), np.float32)
            self._src = None
            self._drawn_key = self._image_rect = None
            self.image.clear()
            self.shape = (0, 0)
            for it in (self.backdrop, self.backdrop_fill):
                it.setRect(QRectF(0, 0, 0, 0))
            self.box.setVisible(False)
            return
        self.data = data
        rows, cols = data.shape
        rect = QRectF(0, 0, cols, rows)
        reshaped = (rows, cols) != self.shape
        self.shape = (rows, cols)  # before drawing: the blocks to draw depend on it
        if self.pool:
            self._src = data if display is None else display
            self._transform, self._levels = transform, levels
            self._drawn_key = None
            self._draw()
        else:
            shown = data if display is None else display
            self.image.setImage(shown if transform is None else transform(shown),
                                levels=levels, autoLevels=False)
            self.image.setRect(rect)
        self.backdrop.setRect(rect)
        self.backdrop_fill.setRect(rect)
        if reshaped and self.fit:
            self.vb.setRange(rect, padding=0.0)

    def device_size(self) -> tuple[float, float]:
        """The view's width and height in device pixels (at least 1 each)."""
        views = self.vb.scene().views() if self.vb.scene() is not None else []
        dpr = views[0].devicePixelRatioF() if views else 1.0
        return max(1.0, self.vb.width() * dpr), max(1.0, self.vb.height() * dpr)

    def pooling(self) -> tuple[int, int, int, int, int, int]:
        """``(row0, row1, col0, col1, fy, fx)``: the cells to draw (the visible ones, block
        aligned) and the block size that puts no more blocks than device pixels on a side."""
        rows, cols = self.shape
        (x0, x1), (y0, y1) = self.vb.viewRange()
        w_px, h_px = self.device_size()
        fx = max(1, math.ceil((x1 - x0) / w_px - 1e-9))
        fy = max(1, math.ceil((y1 - y0) / h_px - 1e-9))
        c0 = max(0, math.floor(x0)) // fx * fx
        r0 = max(0, math.floor(y0)) // fy * fy
        c1 = min(cols, max(c0, math.ceil(x1)))
        r1 = min(rows, max(r0, math.ceil(y1)))
        return r0, r1, c0, c1, fy, fx

    def image_blocks(self, key: tuple) -> tuple[int, int]:
        """``(rows, cols)`` of the pooled image of ``key`` (:meth:`pooling`): the blocks of the
        cells drawn and, where the view reaches past the map (a range rounded up beyond its
        newest token), NaN blocks up to the view's edge. The image then keeps its shape and
        place while the range stays, and a step repaints only the blocks it changed."""
        r0, r1, c0, c1, fy, fx = key
        (_x0, x1), (_y0, y1) = self.vb.viewRange()
        ey = max(r1, math.ceil(y1 - 1e-9))
        ex = max(c1, math.ceil(x1 - 1e-9))
        return -(-(ey - r0) // fy), -(-(ex - c0) // fx)

    def _redraw_view(self, *_) -> None:
        if self._src is not None and not self._held:
            self._draw()

    @contextmanager
    def drawing_held(self) -> Iterator[None]:
        """Range changes inside do not redraw the image (the owner sets a new one next)."""
        self._held = True
        try:
            yield
        finally:
            self._held = False

    def redraw(self) -> None:
        """Draw what was set while the map was hidden (call when it is shown)."""
        if self._dirty:
            self._draw()

    def _shown(self) -> bool:
        views = self.vb.scene().views() if self.vb.scene() is not None else []
        return bool(views) and views[0].isVisible() and self.vb.isVisible()

    def _draw(self, full: bool = False) -> None:
        """The image of :attr:`_src` at the view's resolution (see ``pool``); ``full``: every
        cell (for an exporter)."""
        src = self._src
        if src is None:
            return
        if not full and not self._shown():
            self._dirty = True  # nobody sees it: drawn when shown (:meth:`redraw`)
            return
        self._dirty = False
        key = (0, src.shape[0], 0, src.shape[1], 1, 1) if full else self.pooling()
        r0, r1, c0, c1, fy, fx = key
        # with the blocks of NaN up to the view's edge: a range that grows past the newest
        # token (a resize after the fit) pads the image further, the cells drawn the same
        drawn = key if full else (key, self.image_blocks(key))
        if drawn == self._drawn_key:
            return
        self._drawn_key = drawn
        if r1 <= r0 or c1 <= c0:
            self._image_rect = None
            self.image.clear()
            return
        if full:
            part = src[r0:r1, c0:c1]
            if self._transform is not None:
                part = self._transform(part)
            part, kept = np.ascontiguousarray(part, np.float32), (0, 0)
            # the image holds every cell now: the next pooled draw pools and colours it all
            self._pool_key, self._pool_kept = None, (0, 0)
        else:
            part, kept = self._pooled_image(src, key)
        self.image.setImage(part, levels=self._levels, autoLevels=False, kept=kept)
        ny, nx = part.shape
        placed = (c0, r0, nx, ny, fx, fy)
        if placed != self._image_rect:  # the same: the image stays put (no repaint of it all)
            self._image_rect = placed
            self.image.setRect(QRectF(c0, r0, nx * fx, ny * fy))

    def _pooled_image(self, src: np.ndarray, key: tuple) -> tuple[np.ndarray, tuple[int, int]]:
        """The blocks of ``key`` (:meth:`pooling`) of ``src``, transformed, NaN up to the
        view's edge (:meth:`image_blocks`), and how many leading rows and columns of them are
        the last image's (the image colours only the others again). Blocks whose cells are
        all among those that stayed (``set_image``'s ``kept``) and that were whole then and
        are now keep their values (each block's maximum of the same cells) and are not pooled
        again. Otherwise every block is pooled, into the other of two buffers, and compared
        with the last image's (a step changes its last block row and column only)."""
        r0, r1, c0, c1, fy, fx = key
        ny, nx = -(-(r1 - r0) // fy), -(-(c1 - c0) // fx)
        my, mx = self.image_blocks(key)
        signed = self._levels[0] < 0
        tf = self._transform
        prev, bufs = self._pool_key, self._pool_bufs
        same_blocks = (prev is not None and (prev[0], prev[2]) == (r0, c0)
                       and prev[4:] == (fy, fx, signed, tf))
        if bufs is None or any(b.shape[0] < my or b.shape[1] < mx for b in bufs):
            # room for the blocks of a few more tokens: a step does not need new buffers
            bufs = self._pool_bufs = (np.empty((my + 16, mx + 16), np.float32),
                                      np.empty((my + 16, mx + 16), np.float32))
            self._pool_diff = np.empty((my + 16, mx + 16), bool)  # where the blocks differ
            same_blocks = False
        by = bx = 0
        if same_blocks:
            kr = min(self._pool_kept[0], prev[1], r1)
            kc = min(self._pool_kept[1], prev[3], c1)
            by, bx = max(0, (kr - r0) // fy), max(0, (kc - c0) // fx)
        old_shape = self._pool_shape
        self._pool_key = (r0, r1, c0, c1, fy, fx, signed, tf)
        self._pool_kept, self._pool_shape = src.shape, (my, mx)
        if by or bx:  # in place: the blocks of cells that stayed are kept
            out = bufs[0][:my, :mx]
            _pool_into(out[by:ny, :nx], src[r0 + by * fy:r1, c0:c1], fy, fx, signed, tf)
            _pool_into(out[:by, bx:nx], src[r0:r0 + by * fy, c0 + bx * fx:c1], fy, fx, signed,
                       tf)
            out[ny:], out[:ny, nx:] = np.nan, np.nan  # past the map's edge
            return out, (by, bx)
        out = bufs[1][:my, :mx]
        _pool_into(out[:ny, :nx], src[r0:r1, c0:c1], fy, fx, signed, tf)
        out[ny:], out[:ny, nx:] = np.nan, np.nan
        kept = (0, 0)
        if same_blocks:
            oy, ox = min(my, old_shape[0]), min(mx, old_shape[1])
            old = bufs[0][:oy, :ox]
            other = np.not_equal(out[:oy, :ox].view(np.uint32), old.view(np.uint32),
                                 out=self._pool_diff[:oy, :ox])
            differs = np.flatnonzero(other.any(axis=1))
            kept = (int(differs[0]) if differs.size else oy, ox)
        self._pool_bufs = (bufs[1], bufs[0])
        return out, kept

    def set_box(self, rect: QRectF | None) -> None:
        self.box.setVisible(rect is not None)
        if rect is not None:
            self.box.setRect(rect)

    def set_marks(self, cells: Iterable[tuple[int, int]]) -> None:
        """Cross out cells ``(row, col)``."""
        self.marks.setPath(cross_path(QRectF(c, r, 1, 1) for r, c in cells))

    def cell_at(self, scene_pos: QPointF) -> tuple[int, int] | None:
        """``(row, col)`` under a scene point, or None."""
        rows, cols = self.shape
        if not rows or not self.vb.sceneBoundingRect().contains(scene_pos):
            return None
        p = self.vb.mapSceneToView(scene_pos)
        r, c = int(math.floor(p.y())), int(math.floor(p.x()))
        if 0 <= r < rows and 0 <= c < cols:
            return r, c
        return None

    def cell_center(self, row: int, col: int) -> QPointF:
        """Scene position of a cell's centre (tests click there)."""
        return self.vb.mapViewToScene(pg.Point(col + 0.5, row + 0.5))
