"""A step repaints only what changed: the token chips whose look changed (not the whole
strip), labels whose text changed (not their docks and the window under them), and the same
header set again measures nothing. What the screen shows stays what a full repaint draws."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from gptviz.engine.sampling import SamplingSettings  # noqa: E402
from gptviz.engine.session import Session  # noqa: E402

from .chip_pictures import flush as _flush  # noqa: E402
from .chip_pictures import on_screen as _on_screen  # noqa: E402
from .chip_pictures import reference_chips  # noqa: E402
from .conftest import close_window, settle, show_window  # noqa: E402


def _painted(widget):
    """A context that records the regions of ``widget``'s paint events (``.regions``)."""
    from PySide6.QtCore import QEvent, QObject

    class Spy(QObject):
        def __init__(self):
            super().__init__()
            self.regions = []

        def eventFilter(self, obj, e):  # noqa: N802 - Qt name
            if obj is widget and e.type() == QEvent.Type.Paint:
                self.regions.append([(r.x(), r.y(), r.width(), r.height())
                                     for r in e.region()])
            return False

    spy = Spy()
    widget.installEventFilter(spy)
    return spy


def test_a_changed_chip_alone_is_repainted_and_the_screen_equals_a_full_paint(
        qtbot, tiny_bundle):
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz_app.views.token_strip import CHIP_BLEED, TokenStrip

    s = Session(tiny_bundle, "Once upon a time there was a little model " * 2,
                SamplingSettings(seed=3))
    b = SnapshotBuilder(s, cell=8, gap=1)
    strip = TokenStrip()
    qtbot.addWidget(strip)
    strip.resize(700, 240)
    strip.show()
    qtbot.waitExposed(strip)
    canvas = strip.canvas
    strip.apply_snapshot(b.build(0, "x", ViewSpec()))
    qtbot.wait(30)
    spy = _painted(canvas)
    for gen in range(1, 6):  # steps: a new chip, the query moves, the shading changes
        s.step()
        strip.apply_snapshot(b.build(gen, "step", ViewSpec()))
        _flush()
        shown = _on_screen(canvas)
        assert shown == canvas.grab().toImage(), f"step {gen}: the screen is not a full paint"
    # One chip's shading changes: only its box (and the pixels its outline reaches) repaint.
    n = canvas.weights.shape[0]
    w = np.full(n, 0.01, np.float32)
    canvas.set_weights(w, "test")
    _flush()
    before = _on_screen(canvas)
    w2 = w.copy()
    w2[2] = 0.8
    spy.regions.clear()
    canvas.set_weights(w2, "test")
    assert _on_screen(canvas) == before  # nothing painted yet: the grab reads the screen
    _flush()
    r = canvas.rects[canvas.window_start + 2].adjusted(-CHIP_BLEED, -CHIP_BLEED,
                                                     CHIP_BLEED, CHIP_BLEED)
    assert spy.regions == [[(r.x(), r.y(), r.width(), r.height())]]
    assert _on_screen(canvas) != before
    assert _on_screen(canvas) == canvas.grab().toImage()
    # The same weights again: nothing to repaint.
    spy.regions.clear()
    canvas.set_weights(w2.copy(), "test")
    _flush()
    assert spy.regions == []


def test_a_caption_repaint_stops_at_its_dock_and_looks_the_same(qtbot, tiny_bundle):
    from PySide6.QtWidgets import QDockWidget

    win = show_window(qtbot, tiny_bundle)
    try:
        settle(qtbot, win, win.controller.step(2))
        qtbot.wait(50)
        _flush()
        docks = [win.docks[k] for k in ("text", "grid", "next")]
        assert all(d.widget().autoFillBackground() for d in docks)
        assert win.centralWidget().autoFillBackground()
        assert win.status.fields.autoFillBackground()
        spies = {name: _painted(w) for name, w in
                 [("window", win), ("status bar", win.status)]
                 + [(d.objectName(), d) for d in docks]}
        legend = win.token_strip.legend.label
        legend_spy = _painted(legend)
        win.token_strip.legend.setText(legend.text() + " more")
        win.status.context.setText("context 99 / 99")
        _flush()
        assert legend_spy.regions, "the legend was not repainted"
        assert {k: v.regions for k, v in spies.items() if v.regions} == {}
        # The window drawn with the containers filling their own background is the window
        # drawn as before, with its docks and the window painting under them.
        opaque = win.grab().toImage()
        filled = [d.widget() for d in docks] + [win.centralWidget(), win.status.fields]
        for w in filled:
            w.setAutoFillBackground(False)
        try:
            assert win.grab().toImage() == opaque
        finally:
            for w in filled:
                w.setAutoFillBackground(True)
        assert isinstance(docks[0], QDockWidget)
    finally:
        close_window(win)


def test_the_same_header_again_is_neither_elided_nor_measured_again(qtbot, monkeypatch):
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    from gptviz_app.views import elided_label
    from gptviz_app.views.elided_label import ElidedLabel
    from gptviz_app.views.steady_label import SteadyLabel

    host = QWidget()
    qtbot.addWidget(host)
    box = SteadyLabel(label=ElidedLabel(""))
    QVBoxLayout(host).addWidget(box)
    host.resize(160, 60)
    host.show()
    qtbot.waitExposed(host)
    template = "<b>Step 5</b>: <b>{}</b> · after position 16"
    box.set_rich(template, "'·a long token'", bold=True)
    qtbot.wait(20)
    lab = box.label
    assert lab.elided
    shown, tip = lab.text(), lab.toolTip()
    assert tip == lab.full_text()
    calls = {"measure": 0, "size": 0}
    real_measure = elided_label._measure

    def measure(text, font):
        calls["measure"] += 1
        return real_measure(text, font)

    real_size, real_hfw = type(lab).sizeHint, type(lab).heightForWidth

    def size_hint(self):
        calls["size"] += 1
        return real_size(self)

    def height_for_width(self, w):  # how the box measures a line whose width it ignores
        calls["size"] += 1
        return real_hfw(self, w)

    monkeypatch.setattr(elided_label, "_measure", measure)
    monkeypatch.setattr(ElidedLabel, "sizeHint", size_hint)
    monkeypatch.setattr(ElidedLabel, "heightForWidth", height_for_width)
    box.set_rich(template, "'·a long token'", bold=True)
    box.setToolTip("")  # the same tooltip
    assert calls == {"measure": 0, "size": 0}
    assert lab.text() == shown and lab.toolTip() == tip
    # A new tooltip: the text shown stays, the tooltip says the whole text first.
    box.setToolTip("click: more")
    assert calls["size"] == 0
    assert lab.text() == shown and lab.toolTip() == lab.full_text() + "\nclick: more"
    # Another token is elided and measured again; so is the same one at another width.
    box.set_rich(template, "'·x'", bold=True)
    assert lab.text() != shown and calls["size"] > 0
    host.resize(900, 60)
    qtbot.waitUntil(lambda: not lab.elided)
    assert lab.toolTip() == "click: more"


def test_rich_widths_are_kept_per_font(qtbot):
    from PySide6.QtGui import QFont, QTextDocument

    from gptviz_app.views.elided_label import _html_width, _plain

    def independent(html, font):
        doc = QTextDocument()
        doc.setDocumentMargin(0)
        doc.setDefaultFont(font)
        doc.setHtml(html)
        return doc.idealWidth(), doc.toPlainText()

    html = "<b>Step 12</b>: · after position 160"
    small, big = QFont(), QFont()
    small.setPointSizeF(9)
    big.setPointSizeF(21)
    for _ in range(2):  # measured, then remembered
        for f in (small, big):
            assert (_html_width(html, f), _plain(html, f)) == independent(html, f)
    assert _html_width(html, big) > 2 * _html_width(html, small)


@pytest.mark.parametrize(("theme", "query"), [("dark", 41), ("light", 41), ("dark", -1),
                                              ("light", 59)])
def test_the_chips_are_painted_as_defined(qtbot, theme, query):
    from PySide6.QtGui import QImage
    from PySide6.QtWidgets import QScrollArea

    from gptviz_app.views.theme import DARK, LIGHT
    from gptviz_app.views.token_strip import ChipCanvas

    canvas = ChipCanvas()
    area = QScrollArea()  # as in the strip: the canvas fills its own background
    qtbot.addWidget(area)
    area.setWidget(canvas)
    area.setWidgetResizable(True)
    area.resize(420, 400)
    area.show()
    qtbot.waitExposed(area)
    canvas.apply_theme(DARK if theme == "dark" else LIGHT)
    rng = np.random.default_rng(5)
    n = 60
    canvas.tokens = [("·" * int(rng.integers(0, 3))) + w for w in
                     rng.choice(["a", "the", "robot", "↵", "␍", "x" * 70, "is", ","], n)]
    canvas.prompt_len, canvas.window_start, canvas.query = 12, 7, query
    canvas.forced = rng.random(n) < 0.3
    canvas._set_weights(np.concatenate([[0.0, 1.0, 0.25, np.nan], rng.random(max(query, 40)) ** 4]
                                       ).astype(np.float32), "test")
    canvas._relayout()
    canvas.update()
    qtbot.wait(10)
    shot = canvas.grab(canvas.rect()).toImage().convertToFormat(
        QImage.Format.Format_ARGB32_Premultiplied)
    want = reference_chips(canvas)
    assert shot.size() == want.size()
    assert shot == want
