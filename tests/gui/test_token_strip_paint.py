"""The token chips drawn the cheap way (fills, then outlines stamped from a picture drawn once
per chip size, then texts, only the chips a paint's region meets) show what drawing every
chip on its own, from its definition, shows: on the screen after many partial repaints, and
on a scaled painter (a high-DPI screen), where the outlines are drawn in place."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .chip_pictures import flush as _flush  # noqa: E402
from .chip_pictures import on_screen, reference_chips  # noqa: E402

WORDS = ["a", "the", "robot", "↵", "␍", "x" * 70, "is", ",", "<0x81><0x8C>", "·attention"]


def _on_screen(canvas):
    """The canvas's pixels on the screen, in the reference pictures' format."""
    from PySide6.QtGui import QImage

    return on_screen(canvas).convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)


def _canvas(qtbot, theme, n=50, width=620):
    from PySide6.QtWidgets import QScrollArea

    from gptviz_app.views.theme import DARK, LIGHT
    from gptviz_app.views.token_strip import ChipCanvas

    canvas = ChipCanvas()
    area = QScrollArea()  # as in the strip: the canvas fills its own background
    qtbot.addWidget(area)
    area.setWidget(canvas)
    area.setWidgetResizable(True)
    area.resize(width, 560)  # (within the offscreen screen: its grab shows all of it)
    area.show()
    qtbot.waitExposed(area)
    canvas.apply_theme(DARK if theme == "dark" else LIGHT)
    rng = np.random.default_rng(11)
    canvas.tokens = [("·" * int(rng.integers(0, 2))) + w for w in rng.choice(WORDS, n)]
    canvas.prompt_len, canvas.window_start, canvas.query = 20, 0, n - 1
    canvas.forced = rng.random(n) < 0.25
    canvas._relayout()
    canvas.update()
    qtbot.wait(30)  # (the first paint, flushed to the window's backing store)
    canvas.area = area  # kept alive with the canvas
    assert canvas.height() == area.viewport().height()  # all of it on the screen
    return canvas, rng


def _shade(canvas, w):
    canvas._set_weights(np.asarray(w, np.float32), "test")
    canvas._codes = None
    canvas._update_chips(False)


@pytest.mark.parametrize("theme", ["dark", "light"])
def test_partial_repaints_show_every_chip_as_defined(qtbot, theme):
    from PySide6.QtCore import QRect

    canvas, rng = _canvas(qtbot, theme)
    n = len(canvas.tokens)
    for step in range(8):
        if step == 3:  # the query moves back: the chips after it dim, its outline moves
            canvas.query = 41
        if step == 5:  # the window slides (its bar): everything painted again
            canvas.window_start = 6
            canvas._update_chips(True)
        if step == 6:  # the last chips placed anew (other tokens; as set_data, all painted
            # again: chips were taken away), the others kept
            canvas.tokens = canvas.tokens[:38] + ["robot", "↵", "x" * 70] * 4
            assert canvas._relayout(38)
            n = len(canvas.tokens)
            canvas.forced = np.zeros(n, bool)
            canvas._update_chips(True)
        z = np.exp(rng.normal(size=n) * 2)
        w = z / z.sum()
        if step == 7:  # few chips change: the others are not painted, and stay
            w = canvas.weights.astype(np.float64).copy()
            w[[2, 3, 20]] = [0.9, 0.0, 0.5]
        _shade(canvas, w[:max(canvas.query - canvas.window_start + 1, 0)])
        if step == 2:  # two updates before a paint: it draws the chips of both
            _shade(canvas, np.roll(canvas.weights, 3))
        if step == 4:  # more to paint than the chips asked for (e.g. an expose)
            canvas.update(QRect(0, 0, 60, 90))
        _flush()
        assert _on_screen(canvas) == reference_chips(canvas), f"step {step}"
    assert canvas._drawing._outlines, "no outline was stamped"


@pytest.mark.parametrize(("scale", "shift"), [(2.0, 0.0), (1.0, 0.5), (1.5, 0.0)])
def test_a_scaled_or_shifted_painter_draws_the_outlines_in_place(qtbot, scale, shift):
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QImage, QPainter

    canvas, rng = _canvas(qtbot, "dark", n=40)
    z = np.exp(rng.normal(size=40))
    _shade(canvas, z / z.sum())
    canvas._drawing._outlines.clear()
    img = QImage(int(canvas.width() * scale), int(canvas.height() * scale),
                 QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(canvas.palette().color(canvas.backgroundRole()))
    p = QPainter(img)
    p.translate(shift, shift)
    p.scale(scale, scale)
    canvas.render(p, QPoint(0, 0))
    p.end()
    assert img == reference_chips(canvas, scale, shift)
    assert not canvas._drawing._outlines  # (the pictures are for whole pixels only)


def test_the_dirty_region_is_the_union_of_the_changed_chips(qtbot):
    from PySide6.QtGui import QRegion

    from gptviz_app.views.token_strip import CHIP_BLEED

    canvas, rng = _canvas(qtbot, "dark", n=50)
    b = CHIP_BLEED
    for _ in range(30):
        chips = np.flatnonzero(rng.random(50) < rng.choice([0.1, 0.5, 0.95]))
        if not chips.size:
            continue
        want = QRegion()
        for i in chips.tolist():
            want += canvas.rects[i].adjusted(-b, -b, b, b)
        got = canvas._bleed_region(chips.tolist())
        assert got.xored(want).isEmpty()
        # the chips a region meets: those whose box and bleed intersect it
        first, last = 5, 45
        meets = [i for i in range(first, last)
                 if got.intersects(canvas.rects[i].adjusted(-b, -b, b, b))]
        assert canvas._chips_meeting(got, first, last) == meets
