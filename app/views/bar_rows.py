"""The next-token chart's bars and their value labels, drawn by one graphics item.

The chart drew its bars with two ``pg.BarGraphItem`` and a ``pg.TextItem`` per value label.
Each ``TextItem`` is a ``QGraphicsTextItem`` (a text document laid out and painted for a
label of six characters) whose transform pyqtgraph sets again before every paint after the
view's range changed, and setting it asked for a second paint of the chart at every step.
:class:`BarRows` paints the same rectangles (filled as ``BarGraphItem`` fills them) and the
same labels (as a ``TextItem`` places them: left end and middle at their anchor, inside its
document margin, in pixels) in one ``paint``; what it draws changes only through
:meth:`BarSet.setOpts` (``BarGraphItem``'s arguments) and :meth:`BarRows.set_labels`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QStaticText, QTextDocument

#: ``QGraphicsTextItem``'s document margin: the room a ``TextItem`` keeps around its text.
TEXT_MARGIN = 4.0


class BarSet:
    """One set of horizontal bars of a :class:`BarRows` (``opts`` as ``pg.BarGraphItem``'s:
    ``x0``, ``y``, ``width``, ``height``, ``brushes``)."""

    def __init__(self, owner: BarRows) -> None:
        self._owner = owner
        self.opts: dict = {"x0": np.zeros(0), "y": np.zeros(0), "width": np.zeros(0),
                           "height": 0.75, "brushes": []}
        self.rects: list[tuple[QRectF, object]] = []
        # the rectangles of each brush (in the order first met), as paint fills them
        self.by_brush: list[tuple[object, list[QRectF]]] = []

    def setOpts(self, **opts) -> None:  # noqa: N802 - pg.BarGraphItem's name
        """New bars (without an outline), repainted only if they changed."""
        self.opts.update(opts)
        o = self.opts
        # as Python floats (tolist): the same numbers, without a numpy scalar per operation
        ys = np.asarray(o["y"], dtype=float).tolist()
        rects = [(QRectF(x, y - h / 2, w, h), b)
                 for x, y, w, h, b in zip(_floats(o["x0"], len(ys)), ys,
                                          _floats(o["width"], len(ys)),
                                          _floats(o["height"], len(ys)), o["brushes"],
                                          strict=True)]
        if rects != self.rects:
            self.rects = rects
            groups: dict[int, tuple[object, list[QRectF]]] = {}
            for rect, brush in rects:
                groups.setdefault(id(brush), (brush, []))[1].append(rect)
            self.by_brush = list(groups.values())
            self._owner.update()


class BarRows(pg.GraphicsObject):
    """Two sets of bars (:attr:`bars`, then :attr:`raw_bars` over them) and a label at the
    end of each row, in a ``ViewBox``'s data coordinates; see the module notes."""

    def __init__(self, font: QFont, color: QColor | str) -> None:
        super().__init__()
        self.bars = BarSet(self)
        self.raw_bars = BarSet(self)
        self._font = QFont(font)
        self._color = QColor(color)
        self._labels: list[tuple[str, float, float]] = []  # (text, x, y) anchors
        self._static: dict[str, QStaticText] = {}          # laid-out label texts
        self._widths: dict[str, float] = {}                # their advances
        self._box_h = _box_height(self._font)
        self._metrics = QFontMetricsF(self._font)
        self._line_h = self._metrics.height()
        self._rect = QRectF()

    # ------------------------------------------------------------------ content
    @property
    def font(self) -> QFont:
        """The labels' font."""
        return QFont(self._font)

    def set_style(self, font: QFont, color: QColor | str) -> None:
        """The labels' font and colour."""
        if font != self._font:
            self._font = QFont(font)
            self._static.clear()
            self._widths.clear()
            self._box_h = _box_height(self._font)
            self._metrics = QFontMetricsF(self._font)
            self._line_h = self._metrics.height()
        self._color = QColor(color)
        self.update()

    def set_labels(self, labels: Sequence[tuple[str, float, float]]) -> None:
        """Labels ``(text, x, y)``: each text starts at ``(x, y)`` (in data coordinates) and is
        centred on it vertically."""
        labels = [(t, float(x), float(y)) for t, x, y in labels if t]
        if labels != self._labels:
            self._labels = labels
            self.update()

    def labels(self) -> list[str]:
        """The label texts, a row's after the row above's."""
        return [t for t, _x, _y in self._labels]

    def set_extent(self, rect: QRectF) -> None:
        """What the item may paint over (the view's range: the view box clips the rest)."""
        if rect != self._rect:
            self.prepareGeometryChange()
            self._rect = QRectF(rect)

    # ------------------------------------------------------------------ geometry
    def line_height(self) -> float:
        """Line height of the labels' font."""
        return self._line_h

    def text_width(self, text: str) -> float:
        """Advance of ``text`` in the labels' font (measured once)."""
        w = self._widths.get(text)
        if w is None:
            if len(self._widths) > 4096:
                self._widths.clear()
            w = self._widths[text] = self._metrics.horizontalAdvance(text)
        return w

    def text_box(self, text: str) -> tuple[float, float]:
        """Width and height of a label with its margins, as a ``QGraphicsTextItem``'s."""
        return self.text_width(text) + 2 * TEXT_MARGIN, self._box_h

    def label_rects(self) -> list[tuple[str, QRectF]]:
        """Each label and its box (with the margins) in scene coordinates."""
        out = []
        for text, x, y in self._labels:
            at = self.mapToScene(QPointF(x, y))
            w, h = self.text_box(text)
            out.append((text, QRectF(at.x(), at.y() - h / 2, w, h)))
        return out

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt name
        return QRectF(self._rect)

    # ------------------------------------------------------------------ paint
    def _text(self, text: str) -> QStaticText:
        st = self._static.get(text)
        if st is None:
            # new labels at most steps: room for every one of "0.0%" to "100.0%" (a session
            # shows the same ones again), and a few hundred of the knobs' "a → b"
            if len(self._static) > 1536:
                self._static.clear()
            st = self._static[text] = QStaticText(text)
            st.setTextFormat(Qt.TextFormat.PlainText)
            st.prepare(font=self._font)
        return st

    def paint(self, p: QPainter, *args) -> None:
        # BarGraphItem's fill, drawn straight away (its recorded picture keeps coordinates a
        # hair less exactly: an edge within ~0.01 px of a pixel's centre may round otherwise)
        # (a set's rectangles lie in rows of their own: filled brush by brush, they cover the
        # same pixels as one by one; the second set is drawn over the first)
        p.setPen(Qt.PenStyle.NoPen)
        for bars in (self.bars, self.raw_bars):
            for brush, rects in bars.by_brush:
                p.setBrush(brush)
                p.drawRects(rects)
        if not self._labels:
            return
        to_device = p.transform()
        p.save()
        p.resetTransform()
        p.setFont(self._font)
        p.setPen(self._color)
        top = TEXT_MARGIN - self._box_h / 2
        for text, x, y in self._labels:
            at = to_device.map(QPointF(x, y))
            p.drawStaticText(QPointF(at.x() + TEXT_MARGIN, at.y() + top), self._text(text))
        p.restore()


def _floats(values, n: int) -> list[float]:
    """``values`` (one number, or one a bar) as ``n`` floats, a bar's each."""
    a = np.asarray(values, dtype=float)
    return [float(a)] * n if a.ndim == 0 else a.tolist()


def _box_height(font: QFont) -> float:
    """Height of a one-line ``QGraphicsTextItem`` in ``font`` (its text and margins)."""
    doc = QTextDocument()
    doc.setDocumentMargin(TEXT_MARGIN)
    doc.setDefaultFont(font)
    doc.setPlainText("0.0%")
    return doc.size().height()
