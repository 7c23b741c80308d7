"""The token axes (gptviz_app.views.label_axis.LabelAxis): pyqtgraph's layout of the labels,
measured once per string, and a query axis that keeps its width while tokens scroll by."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .conftest import EventCounts, close_window, settle, show_window  # noqa: E402

WORDS = ["a", "the", "internationally", " ", "W", "…", "supercalifragi…", "ll", "é", "42",
         "'\\n'", "mmmmmmmm"]


def _specs(axis, own: bool):
    """The axis' draw specs as plain tuples (its own method, or pyqtgraph's on the same
    axis), and the text size it remembered after them."""
    import pyqtgraph as pg
    from PySide6.QtGui import QPainter, QPicture

    picture = QPicture()
    p = QPainter(picture)
    try:
        specs = (axis.generateDrawSpecs(p) if own else pg.AxisItem.generateDrawSpecs(axis, p))
    finally:
        p.end()
    if specs is None:
        return None
    (pen, a0, a1), ticks, texts = specs
    return ((pen.color().name(), a0.x(), a0.y(), a1.x(), a1.y()),
            [(tp.color().rgba(), p1.x(), p1.y(), p2.x(), p2.y()) for tp, p1, p2 in ticks],
            [(r.x(), r.y(), r.width(), r.height(), int(f.value if hasattr(f, "value") else f), s)
             for r, f, s in texts],
            axis.textWidth, axis.textHeight)


def _axis_plot(qtbot, cls, orientation: str, size: tuple[int, int], show: bool = True):
    """A plot in a layout widget of ``size`` with a ``cls`` axis on ``orientation`` (shown,
    and the widget on screen unless ``show`` is False): ``(glw, axis, plot)``."""
    import pyqtgraph as pg

    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    glw.resize(*size)
    axis = cls(orientation)
    plot = glw.addPlot(row=0, col=0, axisItems={orientation: axis})
    plot.showAxis(orientation)
    if show:
        glw.show()
        qtbot.waitExposed(glw)
    return glw, axis, plot


@pytest.mark.parametrize("orientation", ["left", "right", "top", "bottom"])
def test_label_axis_lays_labels_out_as_pyqtgraph(qtbot, orientation):
    """Same axis line, tick lines (pen, ends) and label rectangles, flags and strings as
    pyqtgraph's own ``generateDrawSpecs``, for ticks in and out of range, labels of any width
    (some past the axis' ends, which both leave out), ranges of any direction, two fonts and
    tick lengths in and out."""
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, orientation, (420, 330))
    rng = np.random.default_rng(3)
    checked = 0
    levels_drawn: set[bool] = set()
    for trial in range(24):
        n = int(rng.integers(0, 40))
        lo = float(rng.uniform(-5, 5))
        hi = lo + float(rng.uniform(1, 60))
        ticks = [(float(v), str(rng.choice(WORDS))) for v in rng.uniform(lo - 5, hi + 5, n)]
        font = QFont("DejaVu Sans", int(rng.choice([7, 9, 14])))
        axis.setStyle(tickFont=font, tickLength=int(rng.choice([-4, 0, 5])))
        # one level, or two or three (each shorter and fainter, its labels where they fit);
        # short numbers on the levels after the first, sparse or dense
        levels = [ticks]
        for _ in range(int(rng.choice([0, 0, 1, 2]))):
            m = int(rng.choice([0, 2, 6, 30]))
            levels.append([(float(v), f"{v:.3g}") for v in rng.uniform(lo, hi, m)])
        axis.setTicks(levels)
        if orientation in ("left", "right"):
            plot.setYRange(lo, hi, padding=0)
        else:
            plot.setXRange(lo, hi, padding=0)
        if trial % 3 == 0:
            plot.getViewBox().invertY(not plot.getViewBox().yInverted())
        plot.layout.activate()
        # the text size each remembers moves the axis: both start from the same one
        before = axis.textWidth, axis.textHeight
        theirs = _specs(axis, own=False)
        axis.textWidth, axis.textHeight = before
        ours = _specs(axis, own=True)
        assert ours == theirs
        checked += len(theirs[2]) if theirs else 0
        if theirs and len(levels) > 1:
            first = {t for _v, t in levels[0]}
            levels_drawn.add(any(t not in first for *_r, t in theirs[2]))
    assert checked > 100  # many labels were compared (not only empty axes)
    assert levels_drawn == {True, False}  # later levels' labels drawn, and left out


def test_label_axis_leaves_other_axes_to_pyqtgraph(qtbot):
    """Automatic ticks (numbers) or a grid: pyqtgraph's own layout."""

    from gptviz_app.views.label_axis import LabelAxis

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, "bottom", (300, 200))
    plot.setXRange(0, 10, padding=0)
    for ticks in (None, [[(1.0, "a")], [(2.0, "b")]]):
        axis.setTicks(ticks)
        for grid in (False, 80):
            axis.setGrid(grid)
            assert axis._fast_ok() == (ticks is not None and grid is False)
            assert _specs(axis, own=True) == _specs(axis, own=False)


def test_a_reserved_axis_keeps_its_width_and_fits_its_widest_label(qtbot):
    """``reserve``: as wide as the widest label needs, whichever labels are in view; a new
    font is measured again; ``None`` gives the axis back to pyqtgraph's sizing."""
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, "left", (400, 300))
    labels = ["a", "internationally", "b"]
    axis.setStyle(tickFont=QFont("DejaVu Sans", 9))
    axis.reserve(axis.widest(labels))
    plot.layout.activate()
    width = axis.width()
    assert width > axis.label_size("internationally")[0]
    for shown in (["a"], ["b", "a"], labels):
        axis.setTicks([[(float(i), t) for i, t in enumerate(shown)]])
        plot.setYRange(0, len(shown), padding=0)
        glw.grab()  # painted: pyqtgraph would size the axis to these labels now
        plot.layout.activate()
        assert axis.width() == width
        # every label in view is drawn whole (none left out for want of room)
        assert len(_specs(axis, own=True)[2]) == len(shown)
    axis.setStyle(tickFont=QFont("DejaVu Sans", 18))
    axis.reserve(axis.widest(labels))
    plot.layout.activate()
    assert axis.width() > width * 1.5
    axis.reserve(None)
    axis.setTicks([[(0.0, "a")]])
    glw.grab()
    plot.layout.activate()
    assert axis.width() < width


def test_the_map_keeps_its_width_while_tokens_scroll_by(qtbot, tiny_bundle):
    """Step after step (labels thinned, wide and narrow tokens coming into view) and zoomed
    into narrow tokens, the main map keeps its width unless a wider token joins the window:
    its query axis is as wide as the window's widest label needs, whatever is in view."""
    import math

    win = show_window(qtbot, tiny_bundle, prompt="a internationally b " * 8, size=(1024, 640))
    try:
        view = win.attention
        axis = view.plot.getAxis("left")
        settle(qtbot, win)

        def needed(snap) -> int:
            tokens = snap.tokens[snap.window_start:snap.window_start + snap.T]
            widest = max(axis.label_size(view_label(t))[0] for t in tokens)
            title = axis.label.boundingRect().height() * 0.8
            return math.ceil(widest + axis.style["tickTextOffset"][0] + title)

        from gptviz_app.views.attention_map import LABEL_CHARS
        from gptviz_app.views.axes import shorten

        def view_label(t: str) -> str:
            return shorten(t, LABEL_CHARS)

        seen: dict[int, set] = {}
        for _ in range(8):
            snap = settle(qtbot, win, win.controller.step(1))
            qtbot.wait(20)
            assert round(axis.width()) == needed(snap)
            seen.setdefault(axis.width(), set()).add(round(view.vb.width(), 1))
        # one map width for each axis width (a new widest token is the only change)
        assert all(len(ws) == 1 for ws in seen.values())
        before = (axis.width(), round(view.vb.width(), 1))
        # zoomed into the first row ("a"): a narrow label in view, the same width
        view.vb.setRange(yRange=(0, 1), xRange=(0, 1), padding=0)
        qtbot.wait(30)
        assert (axis.width(), round(view.vb.width(), 1)) == before
    finally:
        close_window(win)


def _whole_pixel_axis():
    """pyqtgraph's ``AxisItem`` drawing each label with its own ``drawText`` in its own
    rectangle, moved by less than half a device pixel so that the text starts on whole device
    pixels (where Qt puts a text in a rectangle: its advance and its line height aligned by the
    flags); otherwise its paint (specs made, recorded into a picture, played back)."""
    import pyqtgraph as pg
    from PySide6.QtCore import QPointF, QRectF, Qt
    from PySide6.QtGui import QFontMetricsF, QPainter, QPicture

    align = Qt.AlignmentFlag

    class WholePixelAxis(pg.AxisItem):
        def paint(self, p, opt, widget):
            to_device = p.deviceTransform()
            fm = QFontMetricsF(self.style["tickFont"])
            picture = QPicture()
            rec = QPainter(picture)
            try:
                rec.setFont(self.style["tickFont"])
                specs = self.generateDrawSpecs(rec)
                if specs is not None:
                    line, ticks, texts = specs
                    moved = []
                    for rect, flags, text in texts:
                        f = int(flags)
                        full = fm.boundingRect(QRectF(0, 0, 100, 100), align.AlignCenter, text)
                        room_x = rect.width() - fm.horizontalAdvance(text)
                        room_y = rect.height() - full.height()
                        at = QPointF(rect.x() + room_x * (1.0 if f & align.AlignRight else
                                                          0.5 if f & align.AlignHCenter else 0),
                                     rect.y() + room_y * (1.0 if f & align.AlignBottom else
                                                          0.5 if f & align.AlignVCenter else 0))
                        dev = to_device.map(at)
                        whole = to_device.inverted()[0].map(QPointF(round(dev.x()),
                                                                    round(dev.y())))
                        moved.append((rect.translated(whole - at), flags, text))
                    self.drawPicture(rec, line, ticks, moved)
            finally:
                rec.end()
            picture.play(p)

    return WholePixelAxis


def _axis_shot(qtbot, cls, orientation, font, dpr, exposed=None, levels=1):
    """An axis of ``cls`` with labels of every width, ticks pointing inwards (``levels``: and
    a level of numbers between them), painted whole twice (at ``dpr`` device pixels a pixel:
    labels new, then seen before), or with new ticks while ``exposed`` alone is repainted;
    the images, first paint first."""
    import pyqtgraph as pg
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QImage, QPainter

    glw, axis, plot = _axis_plot(qtbot, cls, orientation, (360, 260), show=False)
    axis.setStyle(tickFont=font, tickLength=-4)
    axis.setPen(pg.mkPen("#888"))
    axis.setTextPen(pg.mkPen("#eee"))
    ticks = [[(i + 0.37 * (i % 3), WORDS[i % len(WORDS)]) for i in range(0, 40, 3)]]
    if levels > 1:
        ticks.append([(i + 1.6, f"{i / 10:g}") for i in range(0, 40, 6)])
    axis.setTicks(ticks)
    plot.setRange(xRange=(0, 40.3), yRange=(0, 39.7), padding=0)

    def render():
        # the scene drawn onto a sharper image (a screen of that ratio draws it so)
        port = glw.viewport().rect()
        img = QImage(port.width() * dpr, port.height() * dpr, QImage.Format.Format_RGB32)
        img.setDevicePixelRatio(dpr)
        img.fill(0)
        p = QPainter(img)
        glw.scene().render(p, QRectF(port), glw.mapToScene(port).boundingRect())
        p.end()
        return img

    if dpr != 1:
        imgs = [render(), render()]
        glw.show()
        qtbot.waitExposed(glw)
    else:
        glw.show()
        qtbot.waitExposed(glw)
        imgs = [glw.grab().toImage()]
        if exposed is not None:
            axis.setTicks([[(i + 0.5, WORDS[(i + 1) % len(WORDS)]) for i in range(0, 40, 2)]])
            glw.viewport().repaint(exposed)
        imgs.append(glw.grab().toImage())
    glw.close()
    return imgs


@pytest.mark.parametrize("orientation", ["left", "right", "top", "bottom"])
def test_label_axis_paints_pyqtgraphs_labels_at_whole_pixels(qtbot, orientation):
    """Drawn straight away (no recorded picture, labels laid out once), the axis' pixels are
    pyqtgraph's with each label moved to start on whole device pixels (crisp, and where a
    cached text draws exactly what ``drawText`` draws): fonts of the map, the chart and a
    projector, device pixel ratios 1 and 2, and again after new ticks with a part of the view
    repainted."""
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    reference = _whole_pixel_axis()
    sans, mono = QFont("DejaVu Sans", 9), QFont("DejaVu Sans Mono", 11)
    cases = [(sans, 1, None), (sans, 1, QRect(0, 0, 200, 120)), (mono, 1, None),
             (QFont("DejaVu Sans", 7), 2, None), (mono, 2, None), (QFont("DejaVu Sans", 7), 1, 2),
             (sans, 2, 2)]
    big = QFont("DejaVu Sans")
    big.setPointSizeF(14.5)
    cases.append((big, 1, None))
    for font, dpr, exposed in cases:
        levels = 2 if exposed == 2 else 1  # (2: a second level of ticks, painted whole)
        exposed = exposed if exposed != 2 else None
        ours = _axis_shot(qtbot, LabelAxis, orientation, font, dpr, exposed, levels)
        theirs = _axis_shot(qtbot, reference, orientation, font, dpr, exposed, levels)
        assert ours == theirs, (font.family(), font.pointSizeF(), dpr, exposed, levels)
        # ... and differ from an axis without labels (the labels were drawn)
        if exposed is None:
            none = _axis_shot(qtbot, _no_labels_axis(), orientation, font, dpr, None, levels)
            assert ours != none


def _no_labels_axis():
    import pyqtgraph as pg

    class NoLabels(pg.AxisItem):
        def drawPicture(self, p, axisSpec, tickSpecs, textSpecs):  # noqa: N802, N803
            super().drawPicture(p, axisSpec, tickSpecs, [])

    return NoLabels


def test_label_axis_draws_multi_line_labels_with_draw_text(qtbot):
    """A label of two lines (no token label has one) is drawn as pyqtgraph draws it, at its
    first paint and after."""
    import pyqtgraph as pg
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    def shot(cls):
        glw, axis, plot = _axis_plot(qtbot, cls, "bottom", (300, 200), show=False)
        axis.setStyle(tickFont=QFont("DejaVu Sans", 9))
        axis.setTicks([[(2.0, "two\nlines"), (6.0, "x\ny")]])
        plot.setXRange(0, 8, padding=0)
        glw.show()
        qtbot.waitExposed(glw)
        imgs = [glw.grab().toImage(), glw.grab().toImage()]  # labels new, then seen before
        glw.close()
        return imgs

    assert shot(LabelAxis) == shot(pg.AxisItem)


def test_a_step_paints_the_map_once(qtbot, tiny_bundle):
    """pyqtgraph moved the map's items to the new range (one more token) while painting
    them, which asked for a second paint of the whole map: a step paints it once."""
    from PySide6.QtCore import QCoreApplication, QEvent

    win = show_window(qtbot, tiny_bundle, prompt="a internationally b " * 4)
    try:
        port = win.attention.glw.viewport()
        c = win.controller
        settle(qtbot, win, c.step(2))
        qtbot.wait(50)
        paints = EventCounts(QEvent.Type.Paint)
        per_step = []
        for _ in range(6):
            with paints:
                settle(qtbot, win, c.step(1))
                for _ in range(4):
                    QCoreApplication.sendPostedEvents(None, 0)
                qtbot.wait(10)
            per_step.append(paints.of(port))
        assert per_step == [1] * len(per_step)
    finally:
        close_window(win)


def test_the_static_texts_an_axis_keeps_are_bounded(qtbot):
    """Labels of many tokens over a long session (each label's static text ≈ 1 KB): the axis
    keeps a bounded number of them, and still draws the labels in view."""
    from gptviz_app.views.label_axis import MAX_LAID, LabelAxis
    from gptviz_app.views.plots import set_label_ticks

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, "left", (300, 900))
    per_round, rounds = 200, MAX_LAID // 200 + 3
    plot.setRange(yRange=(0, per_round), padding=0)
    most = 0
    for r in range(rounds):
        set_label_ticks(plot, "left", [(i + 0.5, f"w{r}_{i}") for i in range(per_round)])
        glw.grab()  # first paint: drawn by drawText
        glw.grab()  # second: static texts made
        most = max(most, len(axis._laid))
    assert rounds * per_round > MAX_LAID + per_round  # (more labels than the bound)
    assert most <= MAX_LAID + per_round
    assert axis._laid and f"w{rounds - 1}_0" in axis._laid


@pytest.mark.parametrize("orientation", ["left", "top"])
def test_new_ticks_repaint_what_changed_and_the_screen_is_a_full_repaint(qtbot, orientation):
    """Ticks that differ in a few labels (a query label moving on by a row, one label
    replaced, one left out, one added) repaint a small part of the axis; many new labels
    repaint all of it. Each time the screen (the backing store, painted in part) holds what
    a repaint of the whole view puts there, pixel for pixel."""
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis
    from tests.gui.chip_pictures import PaintSpy, flush, on_screen

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, orientation, (420, 360))
    axis.setStyle(tickFont=QFont("DejaVu Sans", 9), tickLength=-4)
    if orientation == "left":
        axis.reserve(axis.widest(WORDS))
    plot.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    base = [(4.0 * i + 0.5, WORDS[i % len(WORDS)]) for i in range(24)]
    axis.setTicks([base + [(61.5, "query")]])

    def paint_now():  # the window asks for its update on a timer (offscreen too)
        qtbot.wait(40)
        flush()

    paint_now()
    port = glw.viewport()
    spy = PaintSpy(port)
    regions = spy.regions
    for _ in range(5):  # what the first layout asked for (the labels' room) painted
        regions.clear()
        paint_now()
        if not regions:
            break
    box = glw.mapFromScene(axis.sceneBoundingRect()).boundingRect()
    whole = box.width() * box.height()
    small = [base + [(62.5, "query")],                        # the query label moves on
             base[:5] + [(20.5, "another")] + base[6:] + [(62.5, "query")],  # one replaced
             base[:7] + base[8:] + [(62.5, "query")],         # one left out
             base[:7] + base[8:] + [(62.5, "query"), (99.2, "é")]]  # one added
    try:
        # the first new ticks after the axis' first layout may lay it out once more (the
        # room its labels take, measured while painting): from then on, step by step
        axis.setTicks([base + [(61.0, "query")]])
        paint_now()
        for ticks in small:
            regions.clear()
            axis.setTicks([ticks])
            paint_now()
            assert regions
            area = sum(r.width() * r.height() for reg in regions for r in reg)
            assert area < 0.3 * whole, (orientation, ticks[-1], area, whole)
            shown = on_screen(port)  # painted in part
            port.repaint()  # all of it, afresh
            paint_now()
            assert shown == on_screen(port), ticks
        regions.clear()
        axis.setTicks([[(4.0 * i + 1.5, WORDS[(i + 3) % len(WORDS)]) for i in range(24)]])
        paint_now()  # most labels new: all of the axis again
        area = sum(r.width() * r.height() for reg in regions for r in reg)
        assert area >= 0.9 * whole
        axis.setTicks([small[-1]])
        paint_now()
    finally:
        spy.stop()
    shown = on_screen(port)
    port.repaint()
    paint_now()
    assert shown == on_screen(port)


@pytest.mark.parametrize("orientation", ["left", "bottom"])
def test_new_ticks_laid_out_once_are_not_laid_out_again_to_paint(qtbot, orientation,
                                                                  monkeypatch):
    """Ticks whose labels mostly changed (the chart's tokens at every step) are laid out
    once, where they are set, and the paint draws that layout: all of the axis repainted,
    the screen as a repaint of a new axis puts it. A new range in between is laid out
    again for the paint."""
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis
    from tests.gui.chip_pictures import flush, on_screen

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, orientation, (420, 360))
    axis.setStyle(tickFont=QFont("DejaVu Sans", 9), tickLength=-4)
    plot.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)

    def paint_now():
        qtbot.wait(40)
        flush()

    def ticks(shift: int):
        return [[(4.0 * i + 1.5, WORDS[(i + shift) % len(WORDS)]) for i in range(24)]]

    axis.setTicks(ticks(0))
    for _ in range(3):  # the first layouts (the labels' room) settled
        paint_now()
    fresh_glw, fresh, fresh_plot = _axis_plot(qtbot, LabelAxis, orientation, (420, 360))
    fresh.setStyle(tickFont=QFont("DejaVu Sans", 9), tickLength=-4)
    fresh_plot.setRange(xRange=(0, 100), yRange=(0, 100), padding=0)
    layouts = []
    real = LabelAxis._lay_out
    monkeypatch.setattr(LabelAxis, "_lay_out",
                        lambda self: (layouts.append(self), real(self))[1])
    for shift in (1, 2, 5):
        axis.setTicks(ticks(shift))
        assert layouts.count(axis) == 1   # where the ticks were set
        paint_now()
        assert layouts.count(axis) == 1, shift   # not again for the paint
        layouts.clear()
        fresh.setTicks(ticks(shift))
        for _ in range(3):
            paint_now()
        if axis.width() == fresh.width() and axis.height() == fresh.height():
            assert on_screen(glw.viewport()) == on_screen(fresh_glw.viewport()), shift
        shown = on_screen(glw.viewport())
        glw.viewport().repaint()
        paint_now()
        assert shown == on_screen(glw.viewport()), shift
        layouts.clear()
    # a new range after the ticks: the paint lays the axis out for it
    axis.setTicks(ticks(7))
    plot.setRange(xRange=(0, 90), yRange=(0, 90), padding=0)
    layouts.clear()
    paint_now()
    assert axis in layouts
    shown = on_screen(glw.viewport())
    glw.viewport().repaint()
    paint_now()
    assert shown == on_screen(glw.viewport())
