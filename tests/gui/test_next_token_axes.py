"""The next-token chart's axes: the probability axis on the LabelAxis' fast path, its labels
apart; the token axis keeps its width across steps whose labels fit it, never
narrower than its widest label; a step paints each axis at most once (counted paints)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .test_next_token_drawn import _candidates, _Snap  # noqa: E402


def _view(qtbot, size):
    from gptviz_app.views.next_token import NextTokenView

    view = NextTokenView()
    view.resize(*size)
    qtbot.addWidget(view)
    view.show()
    qtbot.waitExposed(view)
    return view


def _label_rects(axis):
    """The rectangles of the tick labels the axis draws, from pyqtgraph's own layout of
    the same ticks (the reference) and from the axis' (must agree)."""
    import pyqtgraph as pg
    from PySide6.QtGui import QPainter, QPicture

    out = []
    for gen in (pg.AxisItem.generateDrawSpecs, type(axis).generateDrawSpecs):
        picture = QPicture()
        p = QPainter(picture)
        try:
            before = axis.textWidth, axis.textHeight
            specs = gen(axis, p)
            axis.textWidth, axis.textHeight = before
        finally:
            p.end()
        out.append([(r.left(), r.right(), text) for r, _f, text in specs[2]])
    return out


@pytest.mark.parametrize("width", [260, 900])
def test_the_probability_axis_is_on_the_fast_path_with_labels_apart(qtbot, width):
    """Narrow and wide charts, probabilities small and large: the probability axis (labelled
    steps, half steps between them) is laid out by the LabelAxis' own code, as pyqtgraph lays
    it out; no two labels closer than a digit's width, none past 1.0."""
    from PySide6.QtGui import QFontMetricsF

    view = _view(qtbot, (width, 420))
    axis = view.plot.getAxis("bottom")
    rng = np.random.default_rng(4)
    labelled = 0
    for step, top in enumerate((0.02, 0.06, 0.2, 0.45, 0.9, 0.999)):
        cand = _candidates(step + 1, rng)
        probs = np.asarray(cand.probs, dtype=np.float64)
        probs = (probs / probs[0] * top).astype(np.float32)
        view.apply_snapshot(_Snap(replace(cand, probs=probs), 10 + step))
        view.glw.grab()
        assert axis._fast_ok() and len(axis._tickLevels) == 2
        assert axis._layout is not None  # painted by the fast path
        theirs, ours = _label_rects(axis)
        assert ours == theirs  # pyqtgraph lays the same labels out
        labelled += bool(ours)
        values = [v for level in axis._tickLevels for v, _ in level]
        assert max(values) <= 1.0
        gap = QFontMetricsF(axis.style["tickFont"]).horizontalAdvance("0")
        ours.sort()
        for (_l0, r0, _t0), (l1, _r1, _t1) in zip(ours, ours[1:]):
            assert l1 - r0 >= gap
        major = [v for v, _ in axis._tickLevels[0]]
        assert np.allclose(np.diff(major), view.tick_step)
    assert labelled >= 3


def _step_through(view, rng, tokens_of):
    widths, needs = [], []
    left = view.plot.getAxis("left")
    for step in range(1, 30):
        cand = _candidates(step, rng)
        cand = replace(cand, tokens=tokens_of(step, cand))
        view.apply_snapshot(_Snap(cand, 10 + step))
        view.glw.grab()
        labels = [t for _p, t in left._tickLevels[0]]
        widths.append(left.width())
        needs.append(left.widest(labels))
    return widths, needs


def test_the_token_axis_keeps_its_width_while_its_labels_fit(qtbot):
    """Steps whose labels are as wide or narrower leave the token axis as it is (no new
    layout, no fresh paint of the probability axis); a wider label widens it at once, in the
    step that brings it, and every label is drawn whole; after a dozen steps of narrower labels
    it narrows to what they need."""
    from gptviz_app.views.next_token import NARROW_AFTER

    view = _view(qtbot, (320, 480))
    left = view.plot.getAxis("left")
    long_every = {3, 4, 9}

    def tokens_of(step, cand):
        short = [f"·token{i}" for i in range(len(cand.tokens))]
        if step in long_every:
            short[step % len(short)] = "·notwithstanding" if step != 9 else "·nevertheless"
        return short

    widths, needs = _step_through(view, np.random.default_rng(5), tokens_of)
    pad = left.style["tickTextOffset"][0] + max(0, left.style["tickLength"])
    for w, need in zip(widths, needs):
        assert w >= need + pad  # never narrower than its widest label
    # widened at step 3 (index 2), kept through the narrower labels of the steps after it
    assert widths[2] > widths[1]
    assert len(set(widths[2:2 + NARROW_AFTER])) == 1
    # step 9's narrower long label fits the width kept; a dozen steps after the last long
    # one (step 9, index 8) the axis is narrower again (as wide as those steps needed)
    assert widths[8 + NARROW_AFTER] < widths[8]


def test_a_step_paints_each_chart_axis_once_at_most(qtbot):
    """Counted paints of the chart's axes (their own paint, whichever path draws): at most
    one each a step; the probability axis is laid out afresh only when its ticks or its
    room changed."""
    from PySide6.QtCore import QCoreApplication

    from gptviz_app.views.label_axis import LabelAxis

    view = _view(qtbot, (320, 480))
    axes = {name: view.plot.getAxis(name) for name in ("left", "bottom")}
    painted: dict[str, int] = {}
    fresh: dict[str, int] = {}
    # paint (a Qt override) calls _draw for each paint and _lay_out for each fresh one
    orig_draw, orig_lay_out = LabelAxis._draw, LabelAxis._lay_out

    def count(into, self):
        for name, axis in axes.items():
            if axis is self:
                into[name] = into.get(name, 0) + 1

    def draw(self, *args):
        count(painted, self)
        return orig_draw(self, *args)

    def lay_out(self):
        count(fresh, self)
        return orig_lay_out(self)

    rng = np.random.default_rng(6)
    first = _candidates(1, rng)
    probs = first.probs
    view.apply_snapshot(_Snap(first, 10))
    view.glw.grab()
    qtbot.wait(30)
    LabelAxis._draw, LabelAxis._lay_out = draw, lay_out
    try:
        per_step = []
        for step in range(2, 16):
            painted.clear()
            fresh.clear()
            cand = _candidates(step, rng)
            # new tokens of one width, the same probabilities (the same probability range)
            cand = replace(cand, tokens=[f"·{(step + i) % 7}" for i in range(len(cand.tokens))],
                           probs=probs)
            view.apply_snapshot(_Snap(cand, 9 + step))
            for _ in range(4):
                QCoreApplication.sendPostedEvents(None, 0)
            qtbot.wait(10)
            per_step.append((dict(painted), dict(fresh)))
    finally:
        LabelAxis._draw, LabelAxis._lay_out = orig_draw, orig_lay_out
    for counts, _fresh in per_step:
        assert all(n <= 1 for n in counts.values()), per_step
        assert counts.get("left") == 1  # new token labels: drawn
    # the probability ticks stayed (the same probabilities) and so did the token axis'
    # width: the probability axis was not laid out again
    assert sum(f.get("bottom", 0) for _c, f in per_step) <= 1, per_step


def test_half_step_labels_are_left_out_only_where_they_would_crowd(qtbot):
    """Charts of many widths and tops: the half steps' labels are drawn wherever they and
    the steps' labels would all stand at least a digit's width apart (pixel positions from
    the view's range, label widths measured here as pyqtgraph measures them), and left out
    only where some two would stand closer (the default window's chart showed "0.5" alone
    where "0.25  0.5  0.75" had room)."""
    from PySide6.QtCore import QRectF, Qt
    from PySide6.QtGui import QFontMetricsF

    rng = np.random.default_rng(7)
    shown = hidden = 0
    for width in range(200, 520, 40):
        view = _view(qtbot, (width, 420))
        axis = view.plot.getAxis("bottom")
        for k, top in enumerate((0.3, 0.587, 0.9)):
            cand = _candidates(k + 1, rng)
            probs = np.asarray(cand.probs, dtype=np.float64)
            probs = (probs / probs[0] * top).astype(np.float32)
            view.apply_snapshot(_Snap(replace(cand, probs=probs), 10 + k))
            view.glw.grab()
            fm = QFontMetricsF(axis.style["tickFont"])
            (x0, x1), _ = view.vb.viewRange()
            px = view.vb.width() / (x1 - x0)
            values = sorted(v for level in axis._tickLevels for v, _ in level)
            spans = []
            for v in values:
                w = fm.boundingRect(QRectF(0, 0, 100, 100), Qt.AlignmentFlag.AlignCenter,
                                    f"{v:g}").width()
                c = (v - x0) * px
                spans.append((c - w / 2, c + w / 2))
            fits = all(b[0] - a[1] >= fm.horizontalAdvance("0")
                       for a, b in zip(spans, spans[1:]))
            labelled = any(t for _v, t in axis._tickLevels[1])
            drawn = {lab[-1] for *_xy, lab in axis._layout.labels}  # (each label last)
            if labelled:
                assert fits, (width, top)
                assert all(f"{v:g}" in drawn for v, _ in axis._tickLevels[1]), (width, top)
                shown += 1
            else:
                assert not fits, (width, top, values)
                hidden += 1
        view.close()
    assert shown and hidden
