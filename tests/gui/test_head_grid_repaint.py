"""What a step repaints of the head grid (pytest-qt, offscreen): the mosaic, not the head and
layer labels beside it; and what the window shows after steps, a new selection and ablated
heads (painted piece by piece) is what a full repaint of the grid shows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, settle  # noqa: E402


def on_screen(win, widget) -> np.ndarray:
    """The pixels of ``widget`` as the window last put them on the screen (the offscreen
    screen reads the window's backing store: the sum of every partial repaint)."""
    from PySide6.QtCore import QPoint
    from PySide6.QtGui import QImage

    shot = win.screen().grabWindow(win.winId()).toImage()
    top_left = widget.mapTo(win, QPoint(0, 0))
    part = shot.copy(top_left.x(), top_left.y(), widget.width(), widget.height())
    return as_array(part.convertToFormat(QImage.Format.Format_RGB32))


def as_array(img) -> np.ndarray:
    from PySide6.QtGui import QImage

    img = img.convertToFormat(QImage.Format.Format_RGB32)
    a = np.frombuffer(img.constBits(), np.uint8).reshape(img.height(), img.bytesPerLine())
    return a[:, :img.width() * 4].copy()


def drawn_afresh(widget) -> np.ndarray:
    """The pixels of ``widget`` painted whole, now."""
    return as_array(widget.grab().toImage())


def flush(qtbot) -> None:
    from PySide6.QtCore import QCoreApplication

    for _ in range(4):
        QCoreApplication.sendPostedEvents(None, 0)
    qtbot.wait(30)


class PaintRegions:
    """The regions of the paint events ``widget`` gets while entered."""

    def __init__(self, widget) -> None:
        from PySide6.QtCore import QEvent, QObject

        self.widget, self.regions = widget, []
        regions = self.regions

        class Filter(QObject):
            def eventFilter(self, obj, e):  # noqa: N802 - Qt name
                if e.type() == QEvent.Type.Paint:
                    regions.append(e.region().boundingRect())
                return False

        self._filter = Filter()

    def __enter__(self):
        self.widget.installEventFilter(self._filter)
        return self

    def __exit__(self, *exc):
        self.widget.removeEventFilter(self._filter)


def test_a_step_repaints_the_mosaic_and_not_the_labels(qtbot, window):
    grid = window.grid
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    view = grid.glw.viewport()
    flush(qtbot)
    c = window.controller
    with PaintRegions(view) as paints:
        for _ in range(3):
            c.step(1)
            settle(qtbot, window)
            flush(qtbot)
    # the thumbnails' part of the view (the view box clips them), a pixel more or less
    vb = grid.glw.mapFromScene(grid.vb.sceneBoundingRect()).boundingRect()
    image = grid.glw.mapFromScene(grid.image.sceneBoundingRect()).boundingRect() & vb
    assert len(paints.regions) >= 3
    for r in paints.regions:
        assert r.adjusted(-1, -1, 1, 1).contains(image) and vb.adjusted(-1, -1, 1, 1).contains(r)
    for name in ("left", "top"):
        # what Qt looks up as exposed (a pixel more around the region) misses the labels
        axis = grid.glw.mapFromScene(grid.plot.getAxis(name).sceneBoundingRect()).boundingRect()
        assert not any(r.adjusted(-1, -1, 1, 1).intersects(axis) for r in paints.regions), name


def test_the_grid_on_screen_is_what_a_full_repaint_shows(qtbot, window):
    grid, c, ui = window.grid, window.controller, window.analysis
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    view = grid.glw.viewport()
    for change in (lambda: c.step(1), lambda: c.select_head(1, 2),
                   lambda: ui.toggle_head(0, 1), lambda: c.select_head(0, 0),
                   lambda: c.step(1), lambda: ui.toggle_head(0, 1),
                   lambda: c.set_view(average=True), lambda: c.step(1)):
        change()
        settle(qtbot, window)
        flush(qtbot)
        np.testing.assert_array_equal(on_screen(window, view), drawn_afresh(view))
