"""The head grid's mosaic is drawn at the size the panel shows it: one mosaic pixel a device
pixel (no rows or keys skipped by scaling), redrawn after a resize without stopping a run."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from .conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402


def shown_pitch(grid) -> float:
    """Device pixels from one thumbnail to the next on screen."""
    import pyqtgraph as pg

    a = grid.vb.mapViewToScene(pg.Point(0, 0))
    b = grid.vb.mapViewToScene(pg.Point(grid.pitch, 0))
    return (b.x() - a.x()) * grid.glw.devicePixelRatioF()


def test_the_mosaic_is_drawn_one_pixel_a_pixel_and_follows_a_resize(qtbot,
                                                                   tiny_bundle_factory):
    bundle = tiny_bundle_factory(n_layer=6, n_head=8)
    win = show_window(qtbot, bundle, size=(1024, 640))
    try:
        c, grid = win.controller, win.grid
        assert grid.isVisible()
        gen = c.client.latest
        # the panel's size settles after the window's first layout: asked for, then drawn
        qtbot.waitUntil(lambda: c.snapshot.grid_cell == grid.cell_shown(), timeout=TIMEOUT)
        snap = settle(qtbot, win)
        assert c.client.latest == gen  # redrawn under the same request
        assert snap.grid_cell == grid.cell_shown() == grid.cell < 64
        assert abs(shown_pitch(grid) - (snap.grid_cell + snap.grid_gap)) <= 1.0
        # the outline sits on the selected thumbnail's cells
        r = grid.selection.rect()
        assert (r.width(), r.height()) == (grid.cell + 2, grid.cell + 2)
        # idle: a bigger window redraws the mosaic at its new size, under the same request
        gen = c.client.latest
        win.resize(1600, 1000)
        qtbot.waitUntil(lambda: c.snapshot.grid_cell == grid.cell_shown(), timeout=TIMEOUT)
        snap = settle(qtbot, win)
        assert snap.grid_cell > 20 and c.client.latest == gen
        assert abs(shown_pitch(grid) - (snap.grid_cell + snap.grid_gap)) <= 1.0
        # a resize during a multi-step run neither stops it nor waits for its end
        n0 = snap.n_generated
        run = c.step(40)
        qtbot.waitUntil(lambda: c.snapshot.n_generated > n0, timeout=TIMEOUT)
        win.resize(1024, 640)
        snap = settle(qtbot, win, run)
        assert snap.n_generated == n0 + 40  # not stopped
        # drawn at the new size: by the run's next snapshot, or redrawn once it is idle
        qtbot.waitUntil(lambda: c.snapshot.grid_cell == grid.cell_shown(), timeout=TIMEOUT)
        assert c.client.latest == run and c.snapshot.n_generated == n0 + 40
    finally:
        close_window(win)
