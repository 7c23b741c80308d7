"""A pyqtgraph ``AxisItem`` for axes of explicit labels (tokens), cheap to lay out every step.

A step moves the range of the map's and the chart's axes (one more token, another top
probability), so pyqtgraph lays each of them out again, and its ``generateDrawSpecs`` measures
every label with ``QPainter.boundingRect`` and builds a few ``Point`` objects per tick (≈ 0.5 ms
an axis at 1,024 tokens). :class:`LabelAxis` gives the same draw specifications (the same
rectangles, flags, strings and tick lines, level after level with pyqtgraph's rule for how
crowded a later level's labels may be) for the case the app uses, levels of ticks set with
``setTicks`` and no grid, with each label's size measured once per font, and leaves every
other case to pyqtgraph.

It paints them straight away, without pyqtgraph's recorded picture: the tick lines of a
level in one call, and each label where ``drawText`` puts it in its rectangle moved by less
than half a device pixel so that the text starts on whole device pixels (crisp, and the
same pixels whichever way it is drawn: text at a fractional position rounds otherwise than
``drawText``). ``drawText`` lays its text out (itemizes and shapes it, the costly part of a
new label: new glyphs, fallback fonts) at every call; a label is laid out once instead, in a
``QTextLayout`` as ``drawText`` lays it out, which every paint of it draws again (it is what
``drawText`` itself draws). A label's size is measured as pyqtgraph measures it, once.

New ticks that differ from the ones drawn in a few labels (the map's query label moves on by
a row at every step while the others stay) repaint only those labels' and tick lines'
rectangles, each grown by a line height (a text's pixels may reach past its rectangle), and a
paint draws only the labels that reach into what it repaints; more changes, or another size,
range or style, lay the axis out afresh and repaint all of it.

A left or right axis sizes itself to the labels in view, so its width (and the map beside
it) changed from step to step as wider or narrower tokens scrolled into view, and each change
laid the plot out and painted it a second time. :meth:`LabelAxis.reserve` makes it as wide
as the widest label of a list (the whole window's tokens), whatever part of it is in view.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import NamedTuple

import pyqtgraph as pg
from PySide6.QtCore import QLineF, QPointF, QRectF, Qt
from PySide6.QtGui import (
    QColor,
    QFont,
    QFontMetricsF,
    QPainter,
    QPen,
    QTextLayout,
    QTextOption,
    QTransform,
)
from PySide6.QtWidgets import QGraphicsItem

#: What :attr:`LabelAxis.picture` holds once its specs are made (pyqtgraph sets it to None
#: whenever the axis must be laid out again: ticks, range, size, style).
_LAID_OUT = object()
#: Label sizes a :class:`LabelAxis` keeps at most (each a few dozen bytes).
MAX_SIZES = 100_000
#: Laid-out labels a :class:`LabelAxis` keeps at most (each a kilobyte or two with its glyphs:
#: a bound of MAX_SIZES would let one axis hold ~100 MB of them in a long session); an axis
#: shows a few hundred labels at most, so the layouts of the labels in view stay cached.
MAX_LAID = 4096
_MEASURE_BOX = QRectF(0, 0, 100, 100)  # how pyqtgraph measures a label: centred in a box
_CENTER = Qt.AlignmentFlag.AlignCenter
_FLAGS = {
    "left": Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
    "right": Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
    "top": Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignBottom,
    "bottom": Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
}
#: Where ``drawText`` puts a label's text in its rectangle, as the share of the room left
#: over (rectangle minus the text's advance, across; minus its line height, up) before it:
#: right-aligned, centred, left- or top-aligned, bottom-aligned.
_SHIFT = {"left": (1.0, 0.5), "right": (0.0, 0.5), "top": (0.5, 1.0), "bottom": (0.5, 0.0)}
#: How a label is drawn in its rectangle (as pyqtgraph's specs say), as the int drawText takes.
_DRAW_FLAGS = {o: int(f | Qt.TextFlag.TextDontClip) for o, f in _FLAGS.items()}


class _Layout(NamedTuple):
    """What a fast-path paint draws, in the axis' coordinates."""

    axis_pen: QPen
    axis: QLineF
    ticks: list[tuple[QPen, list[QLineF]]]  # each level's pen and lines
    labels: list[tuple[float, float, tuple]]  # pyqtgraph's rectangle's corner, measures


class LabelAxis(pg.AxisItem):
    """``pg.AxisItem`` whose labels are measured once per font and string (see the module
    notes); a left or right one can be made as wide as a list of labels (:meth:`reserve`)."""

    def __init__(self, orientation: str, **kwargs) -> None:
        super().__init__(orientation, **kwargs)
        # label -> (width, height * 0.8, height, label), in the font of _sizes_font
        self._sizes: dict[str, tuple[float, float, float, str]] = {}
        # labels drawn: each laid out, with its advance (None: a label of several lines)
        self._laid: dict[str, tuple[QTextLayout, float] | None] = {}
        #: the painter's font and layout direction the labels were laid out in
        self._laid_in: tuple[QFont, Qt.LayoutDirection] | None = None
        self._sizes_font = ""                              # QFont.key() they were measured in
        self._reserved: float | None = None               # widest reserved label (pixels)
        self._layout: _Layout | None = None               # what paint draws (fast path)
        # paint is told what it repaints (opt.exposedRect): a few labels that moved are drawn
        # again, not the whole axis (see setTicks)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemUsesExtendedStyleOption)

    # ------------------------------------------------------------------ measuring
    def _font(self) -> QFont:
        return self.style.get("tickFont") or QFont()

    def _measured(self) -> dict[str, tuple[float, float, float, str]]:
        """The labels measured in the tick font now (emptied when the font changed)."""
        key = self._font().key()
        # a new font, or more strings than any vocabulary's labels (labels of numbers, a
        # session of hand-typed tokens): measured afresh
        if key != self._sizes_font or len(self._sizes) > MAX_SIZES:
            self._sizes, self._sizes_font = {}, key
            self._laid = {}
        return self._sizes

    def label_size(self, text: str) -> tuple[float, float]:
        """``(width, height)`` of a label as pyqtgraph lays it out (its height is 0.8 of the
        font's bounding box: "usually just a bit too large")."""
        return self._labels_of([text])[0][:2]

    def _labels_of(self, texts: Iterable[str]) -> list[tuple[float, float, float, str]]:
        """Each label's ``(width, height * 0.8, height, text)`` (see :meth:`label_size`; the
        whole height places its text)."""
        sizes = self._measured()
        out = []
        fm = None
        for text in texts:
            got = sizes.get(text)
            if got is None:
                fm = fm or QFontMetricsF(self._font())
                br = fm.boundingRect(_MEASURE_BOX, _CENTER, text)
                got = sizes[text] = (br.width(), br.height() * 0.8, br.height(), text)
            out.append(got)
        return out

    def widest(self, labels: Iterable[str]) -> float:
        """The width of the widest of ``labels`` (0 for none)."""
        return max((lab[0] for lab in self._labels_of(labels)), default=0.0)

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
        return (self._tickLevels is not None and len(self._tickLevels) >= 1
                and self.grid is False and s["showValues"] and s["maxTextLevel"] >= 0
                and s["stopAxisAtTick"] == (False, False) and s["tickAlpha"] is None
                and self.orientation in _FLAGS)

    def _lay_out(self) -> _Layout | None:
        """pyqtgraph's layout of explicit ticks (axis line, each level's tick lines, label
        rectangles) with cached label measures; ``None`` where pyqtgraph draws nothing."""
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
        to_device = self.deviceTransform_()  # as mapToDevice, looked up once
        if to_device is None:
            return None
        ends = [to_device.map(pt) for pt in span]
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

        style = self.style
        tick_len = style["tickLength"]
        # each level's tick lines (shorter and fainter level after level, as pyqtgraph's) and
        # its labels in view, positions across the axis
        ticks: list[tuple[QPen, list[QLineF]]] = []
        levels = []
        for i, level in enumerate(self._tickLevels):
            pen = self.tickPen()
            if pen.brush().style() == Qt.BrushStyle.SolidPattern:  # as pyqtgraph: the alpha
                pen = QPen(pen)
                color = QColor(pen.color())
                color.setAlpha(int(255 / (i + 1)))
                pen.setColor(color)
            tick_end = tick_stop + tick_len / (i * 0.5 + 1.0) * tick_dir
            at = [(x, t) for x, t in ((v * scale - offset, t) for v, t in level)
                  if x_min <= x <= x_max]
            if axis == 0:
                ticks.append((pen, [QLineF(tick_stop, x, tick_end, x) for x, _ in at]))
            else:
                ticks.append((pen, [QLineF(x, tick_stop, x, tick_end) for x, _ in at]))
            levels.append((len(level), at))

        gap = max(0, tick_len) + style["tickTextOffset"][axis]
        br = self.boundingRect()
        left, top, right, bottom = br.left(), br.top(), br.right(), br.bottom()
        length = math.hypot(ends[1].x() - ends[0].x(), ends[1].y() - ends[0].y())
        placed: list[tuple[float, float, tuple]] = []
        along = 0.0    # the labels' extent along the axis, levels so far (pyqtgraph's fill)
        across = 0.0   # the widest label of a left or right axis, the highest of a top one
        drawn_across = 0.0
        for i, (count, at) in enumerate(levels[:style["maxTextLevel"] + 1]):
            if count == 0:
                continue
            labels = self._labels_of([t for _, t in at])
            along += sum(lab[1 - axis] for lab in labels)
            across = max([across, *(lab[axis] for lab in labels)])
            # as pyqtgraph: a level after the first only while the labels are not too crowded
            if i > 0 and any(len(placed) >= n and along / length >= limit
                             for n, limit in style["textFillLimits"]):
                break
            drawn_across = across
            for (x, _text), lab in zip(at, labels):
                width, height = lab[0], lab[1]
                if o == "left":
                    rx, ry = tick_stop - gap - width, x - height / 2
                elif o == "right":
                    rx, ry = tick_stop + gap, x - height / 2
                elif o == "top":
                    rx, ry = x - width / 2, tick_stop - gap - height
                else:
                    rx, ry = x - width / 2, tick_stop + gap
                # as pyqtgraph: a label past the axis' ends is left out (its rectangle is not
                # its intersection with the axis' one, which Qt compares within 1e-12)
                if not (left <= rx and top <= ry and rx + width <= right
                        and ry + height <= bottom and width > 0 < height):
                    rect = QRectF(rx, ry, width, height)
                    if not (width > 0 < height) or br & rect != rect:
                        continue
                placed.append((rx, ry, lab))
        self._updateMaxTextSize(drawn_across)
        return _Layout(self.pen(), QLineF(*span), ticks, placed)

    def generateDrawSpecs(self, p):  # noqa: N802 - pyqtgraph name
        """pyqtgraph's specs (axis line, ticks, label rectangles) for explicit ticks, with
        cached label sizes; any other case is pyqtgraph's own."""
        if not self._fast_ok():
            return super().generateDrawSpecs(p)
        if self.style["tickFont"] is not None:
            p.setFont(self.style["tickFont"])
        lay = self._lay_out()
        if lay is None:
            return None
        flags = _FLAGS[self.orientation] | Qt.TextFlag.TextDontClip
        return ((lay.axis_pen, lay.axis.p1(), lay.axis.p2()),
                [(pen, t.p1(), t.p2()) for pen, lines in lay.ticks for t in lines],
                [(QRectF(x, y, lab[0], lab[1]), flags, lab[3]) for x, y, lab in lay.labels])

    # ------------------------------------------------------------------ new ticks
    def setTicks(self, ticks):  # noqa: N802 - pyqtgraph name
        """pyqtgraph's ``setTicks``; on the fast path, with a layout that still holds (same
        size, range, style), only what differs is repainted: the labels and tick lines the new
        ticks add or leave out (the map's query label moves on by a row at every step while
        the other labels stay), not the whole axis."""
        lay = self._layout if self.picture is _LAID_OUT else None
        if ticks == self._tickLevels:
            return
        self._tickLevels = ticks
        new = self._lay_out() if lay is not None and self._fast_ok() else None
        if new is None:  # laid out afresh at the next paint, all of it repainted
            self.picture = None
            self.update()
            return
        # pyqtgraph forgets the picture when it checks the labels' room (as the paint's own
        # layout does), a resize or a new range: the axis is laid out again at its paint.
        # Otherwise the paint draws this layout: where most labels changed (the chart's
        # tokens at each step), all of the axis is repainted, not laid out a second time
        rects = _changes(lay, new)
        self._layout, self.picture = new, _LAID_OUT
        if rects is None:
            self.update()
            return
        for r in rects:
            self.update(r)

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
            if self.picture is None or self._layout is None:
                self._layout = self._lay_out()
                self.picture = _LAID_OUT
            if self._layout is not None:
                self._draw(p, self._layout, getattr(opt, "exposedRect", None))
        finally:
            p.restore()

    def _draw(self, p: QPainter, lay: _Layout, exposed: QRectF | None = None) -> None:
        """pyqtgraph's lines, and its labels each at whole device pixels (see the module
        notes): its cached layout drawn where ``drawText`` would draw the label in a
        rectangle moved by less than half a pixel. Only the labels that reach into
        ``exposed`` (what the view repaints; the painter is clipped to it) are drawn."""
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        p.setRenderHint(QPainter.RenderHint.TextAntialiasing, True)
        p.setPen(lay.axis_pen)
        p.drawLine(lay.axis)
        for pen, lines in lay.ticks:
            if lines:
                p.setPen(pen)
                p.drawLines(lines)
        if not lay.labels:
            return
        font = self.style["tickFont"]
        if font is not None:
            p.setFont(font)
        font = p.font()  # what drawText lays the labels out in
        p.setPen(self.textPen())
        # within what the view repaints now (a replaced clip would draw over what it keeps)
        p.setClipRect(self.boundingRect().toAlignedRect(), Qt.ClipOperation.IntersectClip)
        dt = p.deviceTransform()
        # whole device pixels wherever the view only moves and scales (not when it rotates)
        snap = (dt.type().value <= QTransform.TransformationType.TxScale.value
                and dt.m11() > 0 < dt.m22())
        sx, sy, ox, oy = dt.m11(), dt.m22(), dt.dx(), dt.dy()
        fx, fy = _SHIFT[self.orientation]
        flags = _DRAW_FLAGS[self.orientation]
        cache = self._laid
        layout_dir = p.layoutDirection()
        # laid out again in another painter's font or direction (the tick font unset, a
        # right-to-left widget), and when there are more labels than a vocabulary's (the
        # font itself compared: a key is a new string at every call)
        laid_in = (font, layout_dir)
        if len(cache) >= MAX_LAID or laid_in != self._laid_in:
            cache.clear()
            self._laid_in = laid_in
        if exposed is not None and exposed.isValid():
            el, et, er, eb = exposed.left(), exposed.top(), exposed.right(), exposed.bottom()
        else:
            el = et = -math.inf
            er = eb = math.inf
        for rx, ry, (width, height, full_h, text) in lay.labels:
            # the label's pixels lie within a line height of its rectangle (TextDontClip)
            if rx - full_h > er or ry - full_h > eb or rx + width + full_h < el \
                    or ry + height + full_h < et:
                continue
            if not snap:
                laid = None
            elif text in cache:
                laid = cache[text]
            else:
                laid = cache[text] = None if _lines(text) else _laid_out(text, font, layout_dir)
            if laid is None:  # as pyqtgraph (a label of several lines, a rotated view)
                p.drawText(QRectF(rx, ry, width, height), flags, text)
                continue
            # where drawText puts the text's top left in this rectangle (it aligns the text's
            # advance and its whole line height, of which the rectangle keeps 0.8), moved to
            # whole device pixels
            layout, advance = laid
            x = rx + (width - advance) * fx
            y = ry + (height - full_h) * fy
            layout.draw(p, QPointF((round(x * sx + ox) - ox) / sx, (round(y * sy + oy) - oy) / sy))


def _changes(old: _Layout, new: _Layout) -> list[QRectF] | None:
    """The rectangles (axis coordinates) to repaint for ``new`` in place of ``old``: around
    each label and tick line one has and the other has not; ``None`` when more than that
    changed (the axis line, the levels' pens, most labels): all of it is repainted then."""
    if old.axis != new.axis or old.axis_pen != new.axis_pen or len(old.ticks) != len(new.ticks) \
            or any(a[0] != b[0] for a, b in zip(old.ticks, new.ticks)):
        return None
    gone = set(old.labels).symmetric_difference(new.labels)
    if len(gone) > max(4, len(new.labels) // 3):
        return None
    rects = []
    for x, y, (width, height, full_h, _text) in gone:
        # the text's pixels lie within a line height of its rectangle (see _draw)
        rects.append(QRectF(x - full_h, y - full_h, width + 2 * full_h, height + 2 * full_h))
    for (_pen, a), (_pen2, b) in zip(old.ticks, new.ticks):
        for line in set(map(_line_key, a)).symmetric_difference(map(_line_key, b)):
            x1, y1, x2, y2 = line
            rects.append(QRectF(min(x1, x2) - 2, min(y1, y2) - 2, abs(x2 - x1) + 4,
                                abs(y2 - y1) + 4))
    return rects


def _line_key(line: QLineF) -> tuple[float, float, float, float]:
    return line.x1(), line.y1(), line.x2(), line.y2()


def _lines(text: str) -> bool:
    """Whether ``text`` is drawn on several lines (placed otherwise: as pyqtgraph does), or
    has a tab (``drawText`` draws it as a space, a text layout moves on to a tab stop)."""
    return "\n" in text or "\r" in text or "\t" in text or "\u2028" in text \
        or "\u2029" in text


def _laid_out(text: str, font: QFont, direction: Qt.LayoutDirection) -> tuple[QTextLayout, float]:
    """``text`` (one line) laid out in ``font`` as ``drawText`` lays it out in a painter of
    that layout ``direction`` (one line as wide as it needs, aligned left, its glyphs kept
    for the next paint), and its advance, by which ``drawText`` aligns it."""
    layout = QTextLayout(text, font)
    option = QTextOption()
    option.setTextDirection(direction)
    layout.setTextOption(option)
    layout.setCacheEnabled(True)
    layout.beginLayout()
    line = layout.createLine()
    line.setLineWidth(0x01000000)  # drawText's width for a line that is not wrapped
    layout.endLayout()
    return layout, line.horizontalAdvance()
