"""The next-token chart draws what pyqtgraph's bars and text items drew, in one paint a step.

:class:`~gptviz_app.views.bar_rows.BarRows` replaced a ``pg.BarGraphItem`` pair and a
``pg.TextItem`` per value label: its picture is compared pixel for pixel with those items
drawn the old way in a plot of the same size. The chart's steadiness is checked by what it
does (paint events, axis widths), never by timing.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .conftest import EventCounts  # noqa: E402

SIZE = (360, 300)
ROWS = 5


def _plot(qtbot):
    """A bare chart plot (no axes, rows top to bottom, a fixed range) in a shown widget."""
    import pyqtgraph as pg

    glw = pg.GraphicsLayoutWidget()
    glw.setBackground("#202020")
    plot = glw.addPlot()
    for name in ("left", "bottom"):
        plot.hideAxis(name)
    plot.hideButtons()
    vb = plot.getViewBox()
    vb.invertY(True)
    vb.setRange(xRange=(0, 0.8), yRange=(-0.6, ROWS - 0.4), padding=0)
    glw.resize(*SIZE)
    qtbot.addWidget(glw)
    glw.show()
    qtbot.waitExposed(glw)
    return glw, plot


def _pixels(widget) -> np.ndarray:
    from PySide6.QtGui import QImage

    im = widget.grab().toImage().convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(im.constBits(), np.uint8).reshape(im.height(), im.bytesPerLine() // 4, 4)
    return a[:, :im.width(), :3].copy()


def _data():
    rng = np.random.default_rng(3)
    probs = np.sort(rng.uniform(0.02, 0.6, ROWS))[::-1]
    final = probs * rng.uniform(0.3, 1.4, ROWS)
    labels = [f"{p:.1%} → {f:.1%}" for p, f in zip(probs, final, strict=True)]
    return probs, final, labels


def test_bar_rows_draw_the_bars_and_labels_as_pyqtgraphs_items(qtbot):
    import pyqtgraph as pg
    from PySide6.QtGui import QFont

    from gptviz_app.views.bar_rows import BarRows

    probs, final, labels = _data()
    ys = np.arange(ROWS, dtype=float)
    brushes = [pg.mkBrush("#5b8def")] * (ROWS - 1) + [pg.mkBrush("#ffb000")]
    grey = [pg.mkBrush("#8a8a8a")] * ROWS
    font = QFont("DejaVu Sans", 10)
    ends = np.maximum(probs, final) + 0.008
    # the old way: two BarGraphItems (the grey one over the other) and a TextItem a row
    glw_a, plot_a = _plot(qtbot)
    plot_a.addItem(pg.BarGraphItem(x0=np.zeros(ROWS), y=ys + 0.12, width=final, height=0.5,
                                   brushes=brushes, pens=[pg.mkPen(None)] * ROWS))
    plot_a.addItem(pg.BarGraphItem(x0=np.zeros(ROWS), y=ys - 0.22, width=probs, height=0.3,
                                   brushes=grey, pens=[pg.mkPen(None)] * ROWS))
    items = []
    for row, text in enumerate(labels):
        t = pg.TextItem(text, anchor=(0, 0.5), color="#e0e0e0")
        t.setFont(font)
        plot_a.addItem(t)
        t.setPos(float(ends[row]), row)
        items.append(t)
    # the new: one BarRows
    glw_b, plot_b = _plot(qtbot)
    rows = BarRows(font, "#e0e0e0")
    plot_b.addItem(rows)
    rows.bars.setOpts(x0=np.zeros(ROWS), y=ys + 0.12, width=final, height=0.5, brushes=brushes)
    rows.raw_bars.setOpts(x0=np.zeros(ROWS), y=ys - 0.22, width=probs, height=0.3,
                          brushes=grey)
    rows.set_labels([(text, ends[row], row) for row, text in enumerate(labels)])
    rows.set_extent(plot_b.getViewBox().viewRect())
    # A bar's end within a hair of a pixel's centre is rounded one way or the other
    # (BarGraphItem's recorded picture keeps coordinates less exactly): none here.
    vb = plot_b.getViewBox()
    for bars in (rows.bars, rows.raw_bars):
        for rect, _brush in bars.rects:
            corner = vb.mapViewToDevice(rect.bottomRight())
            top = vb.mapViewToDevice(rect.topLeft())
            for v in (corner.x(), corner.y(), top.y()):
                assert abs((v % 1) - 0.5) > 0.02, v
    a, b = _pixels(glw_a), _pixels(glw_b)
    assert (a != b).any(axis=2).sum() == 0
    assert len(np.unique(b.reshape(-1, 3), axis=0)) > 6  # bars, text and its antialiasing
    # what the tests read of the labels: their texts and their boxes, the text items' own
    assert rows.labels() == labels
    for (text, rect), item in zip(rows.label_rects(), items, strict=True):
        want = item.sceneBoundingRect()
        assert text == item.textItem.toPlainText()
        for got, exp in ((rect.left(), want.left()), (rect.right(), want.right()),
                         (rect.top(), want.top()), (rect.bottom(), want.bottom())):
            assert got == pytest.approx(exp, abs=1.0)


def test_bar_rows_are_painted_only_when_they_change(qtbot):
    import pyqtgraph as pg
    from PySide6.QtGui import QFont

    from gptviz_app.views.bar_rows import BarRows

    glw, plot = _plot(qtbot)
    rows = BarRows(QFont("DejaVu Sans", 10), "#e0e0e0")
    plot.addItem(rows)
    rows.set_extent(plot.getViewBox().viewRect())
    painted = []
    inner = rows.paint
    rows.paint = lambda *a: (painted.append(1), inner(*a))
    ys = np.arange(ROWS, dtype=float)
    brushes = [pg.mkBrush("#5b8def")] * ROWS

    def show(widths, labels):
        rows.bars.setOpts(x0=np.zeros(ROWS), y=ys, width=widths, height=0.75, brushes=brushes)
        rows.set_labels([(t, w, row) for row, (t, w) in enumerate(zip(labels, widths))])
        painted.clear()
        glw.viewport().repaint()  # a window exposed again paints everything
        qtbot.wait(20)
        return len(painted)

    widths = np.linspace(0.5, 0.1, ROWS)
    labels = [f"{w:.1%}" for w in widths]
    assert show(widths, labels) >= 1
    painted.clear()
    from PySide6.QtCore import QCoreApplication

    QCoreApplication.sendPostedEvents(None, 0)
    rows.bars.setOpts(x0=np.zeros(ROWS), y=ys, width=widths, height=0.75, brushes=brushes)
    rows.set_labels([(t, w, row) for row, (t, w) in enumerate(zip(labels, widths))])
    qtbot.wait(30)
    assert painted == []  # the same bars and labels again: nothing to paint
    rows.set_labels([(t + "!", w, row) for row, (t, w) in enumerate(zip(labels, widths))])
    qtbot.waitUntil(lambda: len(painted) > 0, timeout=2000)


# ---------------------------------------------------------------------- the whole chart
def _candidates(step: int, rng, n: int = 12):
    from gptviz_app.runtime.snapshot import Candidates

    probs = np.sort(rng.dirichlet(np.full(40, 0.3)))[::-1][:n].astype(np.float32)
    words = ["·a", "·the", "·notwithstanding", "·of", "·x", "·thereafter", "·to", "·b"]
    tokens = [words[(step + i) % len(words)] + str(i) for i in range(n)]
    chosen = int(rng.integers(0, n))
    return Candidates(kind="last", ids=np.arange(n, dtype=np.int64), tokens=tokens,
                      probs=probs, entropy=3.2, chosen=chosen, chosen_id=chosen,
                      chosen_prob=float(probs[chosen]), step=step)


class _Snap:
    def __init__(self, cand, n_tokens: int) -> None:
        self.candidates, self.prompt_len, self.n_tokens = cand, 4, n_tokens


@pytest.fixture
def chart(qtbot):
    from gptviz_app.views.next_token import NextTokenView

    view = NextTokenView()
    view.resize(300, 480)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return view


def test_a_step_paints_the_chart_once(qtbot, chart):
    """pyqtgraph moved the bars to a new range (or beside a new width of the token labels) in
    the paint, which asked for a second paint of the whole chart: a step paints it once."""
    from PySide6.QtCore import QCoreApplication, QEvent

    port = chart.glw.viewport()
    rng = np.random.default_rng(0)
    chart.apply_snapshot(_Snap(_candidates(1, rng), 10))
    qtbot.wait(50)
    paints = EventCounts(QEvent.Type.Paint)
    per_step = []
    for step in range(2, 14):
        with paints:
            chart.apply_snapshot(_Snap(_candidates(step, rng), 9 + step))
            for _ in range(4):
                QCoreApplication.sendPostedEvents(None, 0)
            qtbot.wait(10)
        per_step.append(paints.of(port))
    assert per_step == [1] * len(per_step)


def test_the_same_labels_keep_the_axes_pictures(qtbot, chart):
    """A step whose token labels (or probability ticks) are those of the step before leaves
    their axis' picture as it was; other labels are drawn, a longer one in a wider axis."""
    from dataclasses import replace

    rng = np.random.default_rng(1)
    left, bottom = chart.plot.getAxis("left"), chart.plot.getAxis("bottom")
    cand = _candidates(1, rng)
    cand = replace(cand, tokens=[f"·{i}" for i in range(len(cand.tokens))])
    chart.apply_snapshot(_Snap(cand, 10))
    chart.glw.viewport().repaint()
    assert left.picture is not None and bottom.picture is not None
    chart.apply_snapshot(_Snap(cand, 10))  # the same again: nothing to draw again
    assert left.picture is not None and bottom.picture is not None
    width = left.width()
    longer = replace(cand, tokens=["·notwithstanding"] + cand.tokens[1:])
    chart.apply_snapshot(_Snap(longer, 11))
    assert left.picture is None and left.width() > width
    assert [label for _pos, label in left._tickLevels[0]][0] == repr("·notwithstanding")
