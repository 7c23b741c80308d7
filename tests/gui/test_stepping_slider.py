"""The timeline slider repaints for a new range or value only when what it draws changed: a
step at the end of the timeline (``n / n`` after ``n-1 / n-1``) leaves it alone, and what the
screen shows of it is, after every change, what a plain ``QSlider`` at that range and value
shows (pytest-qt, offscreen: the screen is the window's backing store)."""

from __future__ import annotations

import random

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from .chip_pictures import PaintSpy, flush, on_screen  # noqa: E402
from .conftest import close_window, settle, show_window  # noqa: E402


def pixels(img) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return a[:, :img.width() * 4].copy()


def repainted(widget) -> np.ndarray:
    """What the screen shows of ``widget`` once it (with what is under it) is painted whole."""
    widget.repaint()
    flush()
    return pixels(on_screen(widget))


class _Pair:
    """A :class:`TimelineSlider` and a plain ``QSlider``, each alone in a window of the same
    size: the plain one, set from scratch, is what the timeline slider should show."""

    def __init__(self, qtbot, width: int = 420):
        from PySide6.QtCore import Qt
        from PySide6.QtWidgets import QHBoxLayout, QSlider, QWidget

        from gptviz_app.views.stepping import TimelineSlider

        self.hosts, sliders = [], []
        for cls in (TimelineSlider, QSlider):
            host = QWidget()
            lay = QHBoxLayout(host)
            lay.setContentsMargins(4, 2, 4, 2)
            s = cls(Qt.Orientation.Horizontal)
            s.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            lay.addWidget(s)
            host.resize(width, 32)
            qtbot.addWidget(host)
            host.show()
            qtbot.waitExposed(host)
            self.hosts.append(host)
            sliders.append(s)
        self.slider, self.plain = sliders
        qtbot.wait(30)  # the first exposes come from the (offscreen) window system
        flush()

    def set(self, maximum: int, value: int) -> None:
        self.slider.set_position(maximum, value)
        self.plain.setRange(0, maximum)
        self.plain.setValue(value)
        flush()

    def shown(self) -> np.ndarray:
        return pixels(on_screen(self.slider))

    def expected(self) -> np.ndarray:
        return pixels(on_screen(self.plain))


def test_a_step_at_the_end_repaints_nothing_and_shows_the_same(qtbot):
    pair = _Pair(qtbot)
    pair.set(10, 10)
    before = pair.shown()
    spy = PaintSpy(pair.slider)
    asked = pair.slider.repaints_asked
    for n in range(11, 40):
        pair.set(n, n)  # handle at the right end every time
        assert np.array_equal(pair.shown(), pair.expected()), n
    spy.stop()
    assert spy.regions == [] and pair.slider.repaints_asked == asked
    assert np.array_equal(pair.shown(), before)
    # a fresh rendering of the slider agrees with what the screen kept
    assert np.array_equal(pixels(pair.slider.grab().toImage()),
                          pixels(pair.plain.grab().toImage()))


def test_a_moved_handle_repaints_and_shows_the_new_place(qtbot):
    pair = _Pair(qtbot)
    pair.set(10, 10)
    end = pair.shown()
    spy = PaintSpy(pair.slider)
    pair.set(10, 3)  # scrubbed back
    assert spy.regions
    assert np.array_equal(pair.shown(), pair.expected())
    assert not np.array_equal(pair.shown(), end)
    spy.regions.clear()
    pair.set(11, 3)  # a longer range: the handle moves left
    assert spy.regions
    assert np.array_equal(pair.shown(), pair.expected())
    spy.stop()


def test_every_range_and_value_shows_what_a_plain_slider_shows(qtbot):
    """Random steps, scrubs, redos and resets, some keeping the handle's pixel, some not:
    the screen always shows the plain slider's pixels, and only some changes repainted."""
    pair = _Pair(qtbot, width=300)
    rng = random.Random(7)
    n, value, quiet = 0, 0, 0
    for _ in range(120):
        kind = rng.choice(["step", "step", "step", "back", "scrub", "reset", "long"])
        if kind == "step":
            n, value = n + 1, n + 1
        elif kind == "back":
            n, value = max(0, n - 1), max(0, n - 1)
        elif kind == "scrub":
            value = rng.randint(0, n)
        elif kind == "reset":
            n = value = 0
        else:
            n = rng.randint(500, 1100)
            value = rng.choice([n, n - 1, rng.randint(0, n)])
        asked = pair.slider.repaints_asked
        pair.set(n, value)
        quiet += pair.slider.repaints_asked == asked
        assert np.array_equal(pair.shown(), pair.expected()), (kind, n, value)
    assert 10 < quiet < 110


def test_state_changes_still_repaint(qtbot):
    pair = _Pair(qtbot)
    pair.set(20, 20)
    for on in (False, True):
        pair.slider.setEnabled(on)
        pair.plain.setEnabled(on)
        flush()
        assert np.array_equal(pair.shown(), pair.expected()), on
        pair.set(21, 21)
        assert np.array_equal(pair.shown(), pair.expected()), on
    for host in pair.hosts:
        host.resize(260, 32)
    flush()
    pair.set(22, 22)
    assert np.array_equal(pair.shown(), pair.expected())


def test_window_steps_leave_the_slider_alone_and_a_scrub_moves_it(qtbot, tiny_bundle):
    win = show_window(qtbot, tiny_bundle)
    try:
        slider = win.stepping.slider
        settle(qtbot, win, win.controller.step(1))
        qtbot.wait(50)
        flush()
        spy = PaintSpy(slider)
        for _ in range(3):
            snap = settle(qtbot, win, win.controller.step(1))
            flush()
            assert slider.maximum() == slider.value() == snap.n_total == snap.n_generated
        assert spy.regions == []
        shown = pixels(on_screen(slider))
        assert np.array_equal(shown, repainted(slider))  # what a whole repaint shows
        slider.setValue(1)  # the user scrubs back: the window goes to step 1
        settle(qtbot, win)
        flush()
        assert spy.regions
        spy.stop()
        assert slider.value() == 1
        moved = pixels(on_screen(slider))
        assert np.array_equal(moved, repainted(slider))
        assert not np.array_equal(moved, shown)
    finally:
        close_window(win)
