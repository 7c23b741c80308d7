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
    for trial in range(24):
        n = int(rng.integers(0, 40))
        lo = float(rng.uniform(-5, 5))
        hi = lo + float(rng.uniform(1, 60))
        ticks = [(float(v), str(rng.choice(WORDS))) for v in rng.uniform(lo - 5, hi + 5, n)]
        font = QFont("DejaVu Sans", int(rng.choice([7, 9, 14])))
        axis.setStyle(tickFont=font, tickLength=int(rng.choice([-4, 0, 5])))
        axis.setTicks([ticks])
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
    assert checked > 100  # many labels were compared (not only empty axes)


def test_label_axis_leaves_other_axes_to_pyqtgraph(qtbot):
    """Automatic ticks (numbers), several levels or a grid: pyqtgraph's own layout."""

    from gptviz_app.views.label_axis import LabelAxis

    glw, axis, plot = _axis_plot(qtbot, LabelAxis, "bottom", (300, 200))
    plot.setXRange(0, 10, padding=0)
    for ticks in (None, [[(1.0, "a")], [(2.0, "b")]]):
        axis.setTicks(ticks)
        for grid in (False, 80):
            axis.setGrid(grid)
            assert not axis._fast_ok()
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


@pytest.mark.parametrize("orientation", ["left", "top", "bottom"])
def test_label_axis_paints_the_pixels_pyqtgraph_paints(qtbot, orientation):
    """Drawn straight away (no recorded picture), the axis' pixels are pyqtgraph's: labels
    of every width, ticks pointing inwards, and again after new ticks."""
    import pyqtgraph as pg
    from PySide6.QtCore import QRect
    from PySide6.QtGui import QFont

    from gptviz_app.views.label_axis import LabelAxis

    def shot(cls, exposed=None):
        glw, axis, plot = _axis_plot(qtbot, cls, orientation, (360, 260), show=False)
        axis.setStyle(tickFont=QFont("DejaVu Sans", 9), tickLength=-4)
        axis.setPen(pg.mkPen("#888"))
        axis.setTextPen(pg.mkPen("#eee"))
        axis.setTicks([[(i + 0.5, WORDS[i % len(WORDS)]) for i in range(0, 40, 3)]])
        plot.setRange(xRange=(0, 40), yRange=(0, 40), padding=0)
        glw.show()
        qtbot.waitExposed(glw)
        glw.grab()
        if exposed is not None:  # new ticks, a part of the view painted first
            axis.setTicks([[(i + 0.5, WORDS[(i + 1) % len(WORDS)]) for i in range(0, 40, 2)]])
            glw.viewport().repaint(exposed)
        img = glw.grab().toImage()
        glw.close()
        return img

    for exposed in (None, QRect(0, 0, 200, 120)):
        ours, theirs = shot(LabelAxis, exposed), shot(pg.AxisItem, exposed)
        assert ours == theirs


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
