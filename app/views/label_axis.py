"""A pyqtgraph ``AxisItem`` for axes of explicit labels (tokens), cheap to lay out every step.

A step moves the range of the map's and the chart's axes (one more token, another top
probability), so pyqtgraph lays each of them out again, and its ``generateDrawSpecs`` measures
every label with ``QPainter.boundingRect`` and builds a few ``Point`` objects per tick (≈ 0.5 ms
an axis at 1,024 tokens). :class:`LabelAxis` gives the same draw specifications (the same
rectangles, flags, strings and tick lines) for the case the app uses, one level of ticks set
with ``setTicks`` and no grid, with each label's size measured once per font, and leaves every
other case to pyqtgraph.

A left or right axis sizes itself to the labels in view, so its width (and the map beside
it) changed from step to step as wider or narrower tokens scrolled into view, and each change
laid the plot out and painted it a second time. :meth:`LabelAxis.reserve` makes it as wide
as the widest label of a list (the whole window's tokens), whatever part of it is in view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetricsF, QPainter, QPen

#: What :attr:`LabelAxis.picture` holds once its specs are made (pyqtgraph sets it to None
#: whenever the axis must be laid out again: ticks, range, size, style).
_LAID_OUT = object()
#: Label sizes a :class:`LabelAxis` keeps at most (each a few dozen bytes).
MAX_SIZES = 100_000
_MEASURE_BOX = QRectF(0, 0, 100, 100)  # how pyqtgraph measures a label: centred in a box
_CENTER = Qt.AlignmentFlag.AlignCenter
_FLAGS = {
    "left": Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
    "right": Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
    "top": Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
    "bottom": Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
}


class LabelAxis(pg.AxisItem):
    """``pg.AxisItem`` whose labels are measured once per font and string (see the module
    notes); a left or right one can be made as wide as a list of labels (:meth:`reserve`)."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        self._sizes: dict[str, tuple[float, float]] = {}  # label -> (width, height * 0.8)
        self._sizes_font = ""                              # QFont.key() they were measured in
        self._reserved: float | None = None               # widest reserved label (pixels)
        self._specs: tuple | None = None                  # what paint draws (fast path)

    # ------------------------------------------------------------------ measuring
    def _font(self) -> QFont:
        return self.style.get("tickFont") or QFont()

    def _measured(self) -> dict[str, tuple[float, float]]:
        """The label sizes measured in the tick font now (emptied when the font changed)."""
        key = self._font().key()
        # a new font, or more strings than any vocabulary's labels (labels of numbers, a
        # session of hand-typed tokens): measured afresh
        if key != self._sizes_font or len(self._sizes) > MAX_SIZES:
            self._sizes, self._sizes_font = {}, key
        return self._sizes

    def label_size(self, text: str) -> tuple[float, float]:
        """``(width, height)`` of a label as pyqtgraph lays it out (its height is 0.8 of the
        font's bounding box: "usually just a bit too large")."""
        return self._sizes_of([text])[0]

    def _sizes_of(self, texts: Iterable[str]) -> list[tuple[float, float]]:
        sizes = self._measured()
        out = []
        fm = None
        for text in texts:
            size = sizes.get(text)
            if size is None:
                fm = fm or QFontMetricsF(self._font())
                br = fm.boundingRect(_MEASURE_BOX, _CENTER, text)
                size = sizes[text] = (br.width(), br.height() * 0.8)
            out.append(size)
        return out

    def widest(self, labels: Iterable[str]) -> float:
        """The width of the widest of ``labels`` (0 for none)."""
        return max((w for w, _ in self._sizes_of(labels)), default=0.0)

    def reserve(self, widest: float | None) -> None:
        """Make a left or right axis as wide as a label ``widest`` pixels wide needs (see
        :meth:`widest`), whichever labels are in view; ``None``: sized to the labels in view
        again, as pyqtgraph does."""
        if widest == self._reserved:
            return
        self._reserved = widest
        if widest is None:
            self.setWidth(None)
            return
        w = widest + self.style["tickTextOffset"][0] + max(0, self.style["tickLength"])
        if self.label.isVisible():
            w += self.label.boundingRect().height() * 0.8
        self.setWidth(math.ceil(w))

    def setLabel(self, *args, **kwargs):  # noqa: N802 - pyqtgraph name
        super().setLabel(*args, **kwargs)
        self._refresh_reserved()

    def setStyle(self, **kwargs):  # noqa: N802 - pyqtgraph name
        super().setStyle(**kwargs)
        self._refresh_reserved()

    def _refresh_reserved(self) -> None:
        """A new font, title or offset: the reserved width is measured again (with the
        labels' sizes in the new font) at the next :meth:`reserve`."""
        if getattr(self, "_reserved", None) is not None and self.fixedWidth is not None:
            self._reserved = -1.0  # never a width: the next reserve sets it again

    # ------------------------------------------------------------------ layout
    def _fast_ok(self) -> bool:
        s = self.style
        return (self._tickLevels is not None and len(self._tickLevels) == 1
                and self.grid is False and s["showValues"] and s["maxTextLevel"] >= 0
                and s["stopAxisAtTick"] == (False, False) and s["tickAlpha"] is None
                and self.orientation in _FLAGS)

    def generateDrawSpecs(self, p):  # noqa: N802 - pyqtgraph name
        """pyqtgraph's specs (axis line, ticks, label rectangles) for one level of explicit
        ticks, with cached label sizes; any other case is pyqtgraph's own."""
        if not self._fast_ok():
            return super().generateDrawSpecs(p)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        bounds = self.mapRectFromParent(self.geometry())
        o = self.orientation
        if o == "left":
            span = (bounds.topRight() + QPointF(-1, -1), bounds.bottomRight() + QPointF(-1, 1))
            tick_stop, tick_dir, axis = bounds.right(), -1, 0
        elif o == "right":
            span = (bounds.topLeft() + QPointF(1, -1), bounds.bottomLeft() + QPointF(1, 1))
            tick_stop, tick_dir, axis = bounds.left(), 1, 0
        elif o == "top":
            span = (bounds.bottomLeft() + QPointF(-1, -1), bounds.bottomRight() + QPointF(1, -1))
            tick_stop, tick_dir, axis = bounds.bottom(), -1, 1
        else:
            span = (bounds.topLeft() + QPointF(-1, 1), bounds.topRight() + QPointF(1, 1))
            tick_stop, tick_dir, axis = bounds.top(), 1, 1
        ends = [self.mapToDevice(pt) for pt in span]
        if None in ends:
            return None
        if math.hypot(ends[1].x() - ends[0].x(), ends[1].y() - ends[0].y()) == 0:
            return None
        r0, r1 = self.range
        dif = r1 - r0
        if dif == 0:
            scale, offset = 1.0, 0.0
        elif axis == 0:
            scale = -bounds.height() / dif
            offset = r0 * scale - bounds.height()
        else:
            scale = bounds.width() / dif
            offset = r0 * scale
        x_a, x_b = r0 * scale - offset, r1 * scale - offset
        x_min, x_max = min(x_a, x_b), max(x_a, x_b)

        tick_len = self.style["tickLength"]
        pen = self.tickPen()
        if pen.brush().style() == Qt.BrushStyle.SolidPattern:  # as pyqtgraph: alpha 255
            pen = QPen(pen)
            color = QColor(pen.color())
            color.setAlpha(255)
            pen.setColor(color)
        tick_end = tick_stop + tick_len * tick_dir
        tick_specs = []
        placed: list[tuple[float, str]] = []
        for v, text in self._tickLevels[0]:
            x = v * scale - offset
            if x < x_min or x > x_max:
                continue
            placed.append((x, text))
            if axis == 0:
                tick_specs.append((pen, QPointF(tick_stop, x), QPointF(tick_end, x)))
            else:
                tick_specs.append((pen, QPointF(x, tick_stop), QPointF(x, tick_end)))
        axis_spec = (self.pen(), span[0], span[1])

        text_specs = []
        sizes = self._sizes_of(t for _, t in placed)
        # across the axis: the widest label of a left or right axis, the highest of a top one
        size2 = max((s[axis] for s in sizes), default=0)
        gap = max(0, tick_len) + self.style["tickTextOffset"][axis]
        flags = _FLAGS[o] | Qt.TextFlag.TextDontClip
        br = self.boundingRect()
        for (x, text), (width, height) in zip(placed, sizes):
            if o == "left":
                rect = QRectF(tick_stop - gap - width, x - height / 2, width, height)
            elif o == "right":
                rect = QRectF(tick_stop + gap, x - height / 2, width, height)
            elif o == "top":
                rect = QRectF(x - width / 2, tick_stop - gap - height, width, height)
            else:
                rect = QRectF(x - width / 2, tick_stop + gap, width, height)
            if br & rect != rect:  # as pyqtgraph: a label past the axis' ends is left out
                continue
            text_specs.append((rect, flags, text))
        self._updateMaxTextSize(size2)
        return axis_spec, tick_specs, text_specs

    # ------------------------------------------------------------------ painting
    def paint(self, p, opt, widget):  # noqa: D102 - pyqtgraph's
        if not self._fast_ok():
            if self.picture is _LAID_OUT:
                self.picture = None
            super().paint(p, opt, widget)
            return
        # pyqtgraph records the axis into a QPicture and plays it back; drawing the few lines
        # and labels straight away costs less than recording them (the axis is laid out again
        # at almost every step) and no more than playing them back
        p.save()
        try:
            if self.picture is None or self._specs is None:
                self._specs = self.generateDrawSpecs(p)
                self.picture = _LAID_OUT
            if self._specs is not None:
                self.drawPicture(p, *self._specs)
        finally:
            p.restore()

    def drawPicture(self, p: QPainter, axisSpec, tickSpecs, textSpecs):  # noqa: N802, N803
        """pyqtgraph's drawing of the specs, with one pen change for all the ticks when they
        share it (the fast path's do)."""
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        pen, p1, p2 = axisSpec
        p.setPen(pen)
        p.drawLine(p1, p2)
        last = None
        for tick_pen, t1, t2 in tickSpecs:
            if tick_pen is not last:
                p.setPen(tick_pen)
                last = tick_pen
            p.drawLine(t1, t2)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        p.setPen(self.textPen())
        # within what the view repaints now (a replaced clip would draw over what it keeps)
        p.setClipRect(self.boundingRect().toAlignedRect(), Qt.ClipOperation.IntersectClip)
        for rect, flags, text in textSpecs:
            p.drawText(rect, int(flags), text)
