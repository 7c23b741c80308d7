"""What a step costs the window beyond painting: no re-layout of views whose texts keep their
room, no synchronous repaints, images coloured exactly as pyqtgraph colours them.

Real widgets and real snapshots; the assertions read Qt's own events and pixels, not timings
(the timings are ``python -m gptviz bench --gui``'s).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .conftest import EventCounts, close_window, settle, show_window  # noqa: E402


def _layout_request():
    from PySide6.QtCore import QEvent

    return QEvent.Type.LayoutRequest


# ---------------------------------------------------------------------- colours
@pytest.mark.parametrize("levels", [(0.0, 1.0), (-0.5, 0.7), (0.3, 0.3)])
@pytest.mark.parametrize("cmap", ["viridis", "magma"])
def test_fast_image_colours_every_cell_as_pyqtgraph(qapp, levels, cmap):
    """Same pixels as ``pg.ImageItem`` for maps with NaN holes, infinities, values outside
    the levels, odd widths (the 8-bit lines are padded), with and without NaN."""
    import pyqtgraph as pg
    from PySide6.QtGui import QImage

    from gptviz_app.views.fast_image import FastImageItem
    from gptviz_app.views.theme import colormap

    rng = np.random.default_rng(7)
    for h, w, holes in ((37, 53, 0.3), (5, 1, 0.0), (64, 64, 0.5), (3, 90, 0.0)):
        a = (rng.random((h, w)) * 1.6 - 0.3).astype(np.float32)
        a[rng.random((h, w)) < holes] = np.nan
        a[0, 0] = np.inf
        a[-1, -1] = -np.inf
        pixels = []
        for cls in (pg.ImageItem, FastImageItem):
            item = cls(axisOrder="row-major")
            item.setColorMap(colormap(cmap))
            item.setImage(a, levels=levels, autoLevels=False)
            item.render()
            # premultiplied, as drawn: a transparent cell is transparent whatever its colour
            q = item.qimage.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)
            pixels.append(np.array([[q.pixel(x, y) for x in range(w)] for y in range(h)]))
        assert np.array_equal(pixels[0], pixels[1]), (h, w, levels, cmap)
        # and it is the fast path that drew them (premultiplied already: drawn as it is)
        assert item.qimage.format() == QImage.Format.Format_RGBA8888_Premultiplied


def test_fast_image_leaves_other_data_to_pyqtgraph(qapp):
    """RGBA data (the head grid's backdrop) is pyqtgraph's to draw."""
    from gptviz_app.views.fast_image import FastImageItem

    item = FastImageItem()
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[..., 3] = 255
    item.setImage(rgba, levels=None, autoLevels=False)
    item.render()
    assert item.qimage is not None and item.qimage.width() == 6
    assert item.qimage.pixelColor(2, 1).red() == 200


# ---------------------------------------------------------------------- steady labels
def test_steady_label_asks_for_a_layout_only_when_it_needs_other_room(qtbot):
    from PySide6.QtWidgets import QHBoxLayout, QWidget

    from gptviz_app.views.steady_label import SteadyLabel

    host = QWidget()
    qtbot.addWidget(host)
    row = QHBoxLayout(host)
    label = SteadyLabel("step 11 / 11")
    row.addWidget(label)
    row.addStretch(1)
    host.resize(400, 40)
    host.show()
    qtbot.waitExposed(host)
    qtbot.wait(50)  # laid out
    events = EventCounts(_layout_request())
    with events:
        label.setText("step 12 / 12")  # digits of one width: the same room
        qtbot.wait(20)
    assert events.of(host) == 0 and label.relayouts == 0
    assert label.text() == "step 12 / 12"
    with events:
        label.setText("step 12 / 12 and a much longer text")
        qtbot.wait(20)
    assert events.of(host) >= 1 and label.relayouts == 1
    qtbot.waitUntil(lambda: label.width() >= label.label.sizeHint().width())
    assert label.label.geometry() == label.rect()  # the label fills its box


def test_steady_label_follows_a_wrapped_text_onto_another_line(qtbot):
    from PySide6.QtWidgets import QSizePolicy, QVBoxLayout, QWidget

    from gptviz_app.views.steady_label import SteadyLabel

    host = QWidget()
    qtbot.addWidget(host)
    col = QVBoxLayout(host)
    label = SteadyLabel("short")
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    label.setWordWrap(True)
    col.addWidget(label)
    col.addStretch(1)
    host.resize(200, 300)
    host.show()
    qtbot.waitExposed(host)
    qtbot.wait(50)
    one, asked = label.height(), label.relayouts
    label.setText("tiny")  # still one line
    assert label.relayouts == asked
    label.setText("a text long enough to need a second line at this width, or a third")
    assert label.relayouts == asked + 1
    qtbot.waitUntil(lambda: label.height() > one)


# ---------------------------------------------------------------------- the window
@pytest.fixture
def classes_window(qtbot, tiny_bundle_factory):
    win = show_window(qtbot, tiny_bundle_factory(n_classes=3,
                                                 class_names=("comedy", "history", "tragedy")))
    yield win
    close_window(win)


def test_a_step_lays_out_none_of_the_views(qtbot, classes_window):
    """The views' texts change at every step (the title's token count, the next-token header,
    the legend's query, the step counter, the class in bold); none lays its view out again
    when the text keeps its room."""
    win = classes_window
    c = win.controller
    snap = settle(qtbot, win)
    while snap.T < 10 or snap.n_generated < 10:  # two-digit counts from here on
        snap = settle(qtbot, win, c.step(1))
    views = [win.attention, win.grid, win.next_token, win.token_strip, win.stepping,
             win.classes]
    events = EventCounts(_layout_request())
    texts = []
    for _ in range(3):
        with events:
            snap = settle(qtbot, win, c.step(1))
            qtbot.wait(30)  # the posted layout requests have been delivered
        texts.append((win.attention.title.text(), win.stepping.position.text(),
                      win.next_token.header.full_text()))
        assert {type(v).__name__: events.of(v) for v in views} == {
            type(v).__name__: 0 for v in views}
    # the texts did change (what the views show is the new step's)
    assert len(set(texts)) == 3
    assert win.attention.title.text() == f"{snap.T} tokens"
    assert win.stepping.position.text() == f"step {snap.n_generated} / {snap.n_total}"
    assert win.attention.header_fit.full_title == f"{snap.T} tokens"
    assert win.attention.header_fit.fits()


def test_the_class_panel_paints_with_the_window_and_keeps_its_names_column(qtbot,
                                                                          classes_window):
    """A new probability is not painted at once (QProgressBar would repaint itself inside the
    step, ~2 ms a bar) and the class in bold does not move the bars."""
    from PySide6.QtCore import QEvent

    win = classes_window
    panel = win.classes
    assert panel.isVisible()
    x0 = panel.bars[0].x()
    events = EventCounts(QEvent.Type.Paint)
    for probs in ([0.7, 0.2, 0.1], [0.1, 0.2, 0.7], [0.2, 0.6, 0.2]):
        snap = win.controller.snapshot
        snap.class_probs = np.asarray(probs, np.float32)
        with events:
            panel.apply_snapshot(snap)
        assert all(events.of(b) == 0 for b in panel.bars)  # none painted inside the update
        best = int(np.argmax(probs))
        assert [lab.label.font().bold() for lab in panel.names] == [
            i == best for i in range(3)]
        assert [b.value() for b in panel.bars] == [round(p * 1000) for p in probs]
        qtbot.wait(30)
        assert [b.x() for b in panel.bars] == [x0] * 3


def test_status_figures_of_the_same_width_lay_nothing_out(qtbot, window):
    """The status bar's step and view times change at every step; as long as they need no
    more room, the bar is not laid out again (the time field keeps its widest width)."""
    bar = window.status
    times = (14.5, 10.0, 9.9, 11.1)
    for ms in times:  # the widest of them sets the field's width
        bar.set_view_ms(ms)
    qtbot.wait(30)
    events = EventCounts(_layout_request())
    with events:
        for ms in times:
            bar.set_view_ms(ms)
        qtbot.wait(30)
    assert events.of(bar.fields) == 0 and events.of(bar) == 0
    assert bar.timing.text().endswith("view 11.1 ms")
