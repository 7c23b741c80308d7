"""The head grid shows the pixels the worker coloured (``Snapshot.grid_pixels``) without
colouring the mosaic again when they were made with its own colours, colours it itself when
not (a theme changed since, the first snapshot); either way what it draws is the float mosaic
coloured independently (pyqtgraph's index formula into the colour map, premultiplied by hand,
NaN transparent), and what is on screen is what a full repaint of the grid shows."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402
from tests.gui.test_head_grid_repaint import drawn_afresh, flush, on_screen  # noqa: E402
from tests.test_grid_pixels import _coloured  # noqa: E402


class Colourings:
    """Counts the grid image's own colourings (``FastImageItem._colour`` on it)."""

    def __init__(self, monkeypatch, item) -> None:
        from gptviz_app.views.fast_image import FastImageItem

        self.n = 0
        real = FastImageItem._colour

        def counting(this, *args, **kwargs):
            if this is item:
                self.n += 1
            return real(this, *args, **kwargs)

        monkeypatch.setattr(FastImageItem, "_colour", counting)

    def take(self) -> int:
        n, self.n = self.n, 0
        return n


def _drawn(item) -> np.ndarray:
    """The pixels of the item's picture (premultiplied RGBA8888 bytes as uint32)."""
    from PySide6.QtGui import QImage

    img = item.qimage
    assert img.format() == QImage.Format.Format_RGBA8888_Premultiplied
    bits = np.frombuffer(img.constBits(), np.uint32)
    return bits.reshape(img.height(), img.bytesPerLine() // 4)[:, :img.width()]


def _check_drawn(window, screen: bool = True) -> None:
    """The grid shows the snapshot's float mosaic, coloured as by hand, and (``screen``) the
    screen is what a full repaint shows."""
    from gptviz_app.views.theme import colormap

    grid, snap = window.grid, window.controller.snapshot
    assert _shows(grid, snap.grid)
    lut = colormap(window.theme.colormap).getLookupTable(nPts=256)
    np.testing.assert_array_equal(_drawn(grid.image), _coloured(snap.grid, lut))
    if screen:
        view = grid.glw.viewport()
        np.testing.assert_array_equal(on_screen(window, view), drawn_afresh(view))


def _shows(grid, mosaic) -> bool:
    """Whether the grid's image is ``mosaic`` (pyqtgraph keeps a view of the array)."""
    return grid.image.image.base is mosaic or grid.image.image is mosaic


def _shows_the_snapshots_pixels(window) -> bool:
    grid, snap = window.grid, window.controller.snapshot
    px = snap.grid_pixels
    return (px is not None and grid.image.shown is px
            and np.frombuffer(grid.image.qimage.constBits(), np.uint32).ctypes.data
            == px.ctypes.data)  # the picture is over the snapshot's own buffer


def _step(qtbot, window, action) -> None:
    action()
    settle(qtbot, window)
    flush(qtbot)


def test_the_grid_shows_the_workers_pixels_and_colours_others_itself(qtbot, window,
                                                                     monkeypatch):
    from dataclasses import replace

    from gptviz_app.views.theme import DARK, LIGHT

    grid, c = window.grid, window.controller
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    _step(qtbot, window, lambda: c.step(1))  # by now the worker has the grid's colours
    colourings = Colourings(monkeypatch, grid.image)
    for mode in ("auto", "map", "row", "value", "map"):
        _step(qtbot, window, lambda m=mode: c.set_view(grid_mode=m))
        for action in (lambda: c.step(1), lambda: c.step(1), lambda: c.back(),
                       lambda: c.set_view(sqrt_scale=not c.view.sqrt_scale)):
            _step(qtbot, window, action)
            assert _shows_the_snapshots_pixels(window), mode
            assert colourings.take() == 0, mode  # nothing coloured on the UI thread
            _check_drawn(window)
    assert DARK.colormap == LIGHT.colormap
    for theme in (LIGHT, replace(LIGHT, colormap="magma"), DARK):
        # other colours: the snapshot on screen has the old ones, the grid colours the mosaic
        # itself (painted at once, before any snapshot made since can come in); the same
        # colours (another theme, the same colour map): the worker's pixels are still right
        same = theme.colormap == window.theme.colormap
        window.set_theme(theme)
        grid.glw.viewport().repaint()
        assert _shows_the_snapshots_pixels(window) == same
        assert (colourings.take() == 0) == same
        _check_drawn(window, screen=False)
        settle(qtbot, window)
        flush(qtbot)
        _check_drawn(window)
        # the next snapshot is coloured by the worker with the new colours
        _step(qtbot, window, lambda: c.step(1))
        assert _shows_the_snapshots_pixels(window) and colourings.take() == 0
        _check_drawn(window)


def test_a_resize_and_a_hidden_grid_show_the_latest_pixels(qtbot, tiny_bundle_factory):
    """A new thumbnail size (the mosaic drawn and coloured whole by the worker) and a grid
    panel hidden during steps: shown again, it draws the latest snapshot's pixels."""
    window = show_window(qtbot, tiny_bundle_factory(n_layer=6, n_head=8), size=(1024, 640))
    try:
        _resize_and_hide(qtbot, window)
    finally:
        close_window(window)


def _resize_and_hide(qtbot, window) -> None:
    grid, c = window.grid, window.controller
    qtbot.waitUntil(lambda: c.snapshot.grid_cell == grid.cell_shown(), timeout=TIMEOUT)
    _step(qtbot, window, lambda: c.step(1))
    assert _shows_the_snapshots_pixels(window)
    cell = c.snapshot.grid_cell
    window.resize(1600, 1000)
    qtbot.waitUntil(lambda: c.snapshot.grid_cell == grid.cell_shown() != cell, timeout=TIMEOUT)
    settle(qtbot, window)
    flush(qtbot)
    assert _shows_the_snapshots_pixels(window)
    _check_drawn(window)
    dock = window.docks["grid"]
    dock.hide()
    for _ in range(3):
        _step(qtbot, window, lambda: c.step(1))
    assert not _shows(grid, c.snapshot.grid)  # nothing drawn while hidden
    dock.show()
    flush(qtbot)
    qtbot.waitUntil(lambda: _shows(grid, c.snapshot.grid), timeout=TIMEOUT)
    flush(qtbot)
    assert _shows_the_snapshots_pixels(window)
    _check_drawn(window)


def test_a_grid_without_the_workers_colours_colours_itself_and_asks_for_them(
        qtbot, tiny_bundle, monkeypatch):
    """The first snapshot (the worker had no colours yet): coloured by the grid, which sends
    its colours; a snapshot coloured with them is shown as it is."""
    from gptviz.engine.session import Session
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz_app.views.head_grid import HeadGrid

    grid = HeadGrid()
    qtbot.addWidget(grid)
    grid.resize(500, 400)
    grid.show()
    qtbot.waitExposed(grid)
    s = Session(tiny_bundle, "Once upon a time there was a robot")
    b = SnapshotBuilder(s, cell=16, gap=2)
    grid.set_model(b.model_info(tiny_bundle))
    qtbot.waitUntil(lambda: grid.vb.width() > 50, timeout=TIMEOUT)
    sent = []
    grid.coloursWanted.connect(sent.append)
    colourings = Colourings(monkeypatch, grid.image)
    snap = b.build(1, "init", ViewSpec(grid_mode="map"))
    assert snap.grid_pixels is None
    grid.apply_snapshot(snap)
    flush(qtbot)  # no worker here: nothing else comes in
    assert colourings.take() > 0 and grid.image.shown is None
    assert len(sent) == 1 and not sent[0].flags.writeable
    lut = grid.image.lut
    np.testing.assert_array_equal(_drawn(grid.image), _coloured(snap.grid, lut))
    b.note_step(s.step())
    snap = b.build(2, "step", ViewSpec(grid_mode="map"), grid_table=sent[0])
    grid.apply_snapshot(snap)
    flush(qtbot)  # no worker here: nothing else comes in
    assert colourings.take() == 0 and grid.image.shown is snap.grid_pixels
    assert len(sent) == 1  # not asked for again
    np.testing.assert_array_equal(_drawn(grid.image), _coloured(snap.grid, lut))


@pytest.mark.parametrize("smooth", [False, True])
def test_the_workers_pixels_paint_what_the_item_would_colour(qapp, tiny_bundle, smooth):
    """Painted scaled as the panel scales it, the worker's pixels put the same pixels on
    screen as the mosaic coloured by the item itself (and by pyqtgraph's own item)."""
    import pyqtgraph as pg

    from gptviz.engine.session import Session
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz_app.views.fast_image import premultiplied_table
    from gptviz_app.views.mosaic_image import MosaicImage
    from gptviz_app.views.theme import colormap
    from tests.gui.test_fast_image_drawn import _painted

    s = Session(tiny_bundle, "Once upon a time there was a robot")
    b = SnapshotBuilder(s, cell=13, gap=2)
    cmap = colormap("magma")
    table = premultiplied_table(cmap.getLookupTable(nPts=256))
    for mode, sqrt in (("map", False), ("row", True), ("value", False)):
        snap = b.build(1, "v", ViewSpec(grid_mode=mode, sqrt_scale=sqrt), grid_table=table)
        h, w = snap.grid.shape
        for size in ((w, h), (int(w * 1.37), int(h * 1.37)), (w * 3 - 1, h * 2 + 5)):
            shown = []
            for cls in (MosaicImage, pg.ImageItem):
                item = cls(axisOrder="row-major")
                item.setColorMap(cmap)
                if cls is MosaicImage:
                    item.set_mosaic(snap.grid, snap.grid_pixels, snap.grid_table)
                else:
                    item.setImage(snap.grid, levels=(0.0, 1.0), autoLevels=False)
                shown.append(_painted(item, size, smooth))
                if cls is MosaicImage:
                    assert item.shown is snap.grid_pixels  # the worker's, not coloured here
            assert np.array_equal(shown[0], shown[1]), (mode, size)
