"""Small building blocks shared by the analysis panels (issue 5).

* :class:`MapPlot` — one heat map in a pyqtgraph ``PlotItem``: a single ``ImageItem``, NaN
  cells showing a hatched backdrop (the causal mask, undefined scores), an outline box (the
  query row or the selected head) and a cross overlay (ablated heads). Items are created once
  and updated in place.
* :func:`cross_path` / :func:`rects_path` — one ``QPainterPath`` for many marks.
* :func:`diverging_colormap`, :func:`token_ticks`, :func:`esc`.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPen
from PySide6.QtWidgets import QGraphicsPathItem, QGraphicsRectItem

from gptviz_app.views.theme import Theme, colormap

#: Colour of the marks on ablated heads (the same in both themes).
ABLATED_COLOR = "#ff4d6d"


def esc(s: str) -> str:
    """HTML-escape a token for rich text (shown as its repr, like the next-token panel)."""
    return html.escape(repr(s))


def diverging_colormap(theme: Theme):
    """Blue - neutral - red colormap for differences (dark centre on the dark theme)."""
    name = "CET-D4" if theme.name == "dark" else "CET-D1A"
    try:
        return pg.colormap.get(name)
    except Exception:  # pragma: no cover - a pyqtgraph without the CET maps
        return pg.ColorMap([0.0, 0.5, 1.0], [(59, 76, 192), (40, 40, 40), (180, 4, 38)])


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
    path = QPainterPath()
    for r in rects:
        path.addRect(r)
    return path


def token_ticks(labels: list[str], pixels: float, font_px: float, offset: float = 0.5,
                keep: int | None = None) -> list[tuple[float, str]]:
    """Axis ticks for token labels, thinned so they do not overlap (``pixels`` = axis length
    in pixels, ``font_px`` = room one label needs); ``keep`` is always labelled."""
    n = len(labels)
    if n == 0:
        return []
    step = max(1, math.ceil(font_px / max(1e-9, pixels / n)))
    ticks = [(i + offset, labels[i]) for i in range(0, n, step) if keep is None
             or abs(i - keep) >= step or i == keep]
    if keep is not None and 0 <= keep < n and all(t[0] != keep + offset for t in ticks):
        ticks.append((keep + offset, labels[keep]))
    return ticks


def short(tok: str, n: int = 8) -> str:
    return tok if len(tok) <= n else tok[: n - 1] + "…"


class MapPlot:
    """A heat map in ``plot`` (a ``pg.PlotItem``), rows top to bottom.

    Parameters
    ----------
    plot
        The plot to draw in (its ViewBox is inverted and, with ``aspect``, aspect-locked).
    aspect
        Keep cells square.
    mouse
        Allow pan/zoom with the mouse.
    """

    def __init__(self, plot: pg.PlotItem, aspect: bool = True, mouse: bool = False) -> None:
        self.plot = plot
        plot.setMenuEnabled(False)
        plot.hideButtons()
        self.vb: pg.ViewBox = plot.getViewBox()
        self.vb.invertY(True)
        self.vb.setAspectLocked(aspect)
        self.vb.setDefaultPadding(0.0)
        self.vb.setMouseEnabled(x=mouse, y=mouse)
        self.backdrop_fill = QGraphicsRectItem(0, 0, 1, 1)
        self.backdrop_fill.setPen(QPen(Qt.PenStyle.NoPen))
        self.backdrop_fill.setZValue(-11)
        plot.addItem(self.backdrop_fill)
        self.backdrop = QGraphicsRectItem(0, 0, 1, 1)
        self.backdrop.setPen(QPen(Qt.PenStyle.NoPen))
        self.backdrop.setZValue(-10)
        plot.addItem(self.backdrop)
        self.image = pg.ImageItem(axisOrder="row-major")
        plot.addItem(self.image)
        self.marks = QGraphicsPathItem()
        self.marks.setZValue(6)
        plot.addItem(self.marks)
        self.box = QGraphicsRectItem(0, 0, 1, 1)
        self.box.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.box.setZValue(8)
        self.box.setVisible(False)
        plot.addItem(self.box)
        self.shape = (0, 0)
        self.data = np.zeros((0, 0), np.float32)

    def apply_theme(self, theme: Theme, cmap=None) -> None:
        self.backdrop.setBrush(QBrush(QColor(theme.masked_hatch), Qt.BrushStyle.BDiagPattern))
        self.backdrop_fill.setBrush(QBrush(QColor(theme.masked)))
        pen = QPen(QColor(theme.accent), 2.0)
        pen.setCosmetic(True)
        self.box.setPen(pen)
        mpen = QPen(QColor(ABLATED_COLOR), 2.0)
        mpen.setCosmetic(True)
        self.marks.setPen(mpen)
        self.image.setColorMap(cmap if cmap is not None else colormap(theme.colormap))
        for name in ("left", "top", "bottom"):
            ax = self.plot.getAxis(name)
            ax.setStyle(tickFont=theme.font(0.8), tickLength=0)
            ax.setTextPen(pg.mkPen(theme.text))
            ax.setPen(pg.mkPen(theme.grid_line))
        self.plot.titleLabel.item.setFont(theme.font(0.9, bold=True))
        self.plot.titleLabel.setAttr("color", theme.text)

    def set_title(self, text: str, theme: Theme) -> None:
        self.plot.setTitle(text, color=theme.text, size=f"{theme.pt(0.9):.0f}pt")

    def set_image(self, data: np.ndarray | None, levels: tuple[float, float],
                  display: np.ndarray | None = None) -> None:
        """Show ``data`` ``[rows, cols]`` (``display``: what to draw, e.g. its square root;
        hover values come from ``data``). ``None`` clears."""
        if data is None or data.size == 0:
            self.data = np.zeros((0, 0), np.float32)
            self.image.clear()
            self.shape = (0, 0)
            for it in (self.backdrop, self.backdrop_fill):
                it.setRect(QRectF(0, 0, 0, 0))
            self.box.setVisible(False)
            return
        self.data = data
        rows, cols = data.shape
        self.image.setImage(data if display is None else display, levels=levels,
                            autoLevels=False)
        rect = QRectF(0, 0, cols, rows)
        self.image.setRect(rect)
        self.backdrop.setRect(rect)
        self.backdrop_fill.setRect(rect)
        if (rows, cols) != self.shape:
            self.shape = (rows, cols)
            self.vb.setRange(rect, padding=0.0)

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
