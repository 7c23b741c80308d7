"""The head grid's mosaic pixels coloured on the worker (``Snapshot.grid_pixels``) are an
independent colouring of the snapshot's float mosaic: pyqtgraph's index formula into the
colour map's 256-entry lookup table, premultiplied RGBA8888 by hand, NaN transparent; for
every grid mode, steps (incremental), Back, a jump, the square-root scale, a change of colours
and a change of thumbnail size."""

from __future__ import annotations

import numpy as np
import pytest

from gptviz_app.runtime import grid_pixels
from gptviz_app.runtime.snapshot import ViewSpec
from gptviz_app.runtime.snapshots import SnapshotBuilder


def _lut(name: str) -> np.ndarray:
    from gptviz_app.views.theme import colormap

    return colormap(name).getLookupTable(nPts=256)  # what the image item colours with


def _table(lut: np.ndarray) -> np.ndarray:
    """The lookup table as the bytes R, G, B, A of premultiplied pixels (an opaque table: its
    colours premultiplied are themselves), then a transparent pixel; by hand."""
    lut = lut.astype(np.uint32)
    alpha = lut[:, 3] if lut.shape[1] == 4 else np.full(len(lut), 255, np.uint32)
    assert (alpha == 255).all()  # the themes' colour maps are opaque
    rgba = lut[:, 0] | (lut[:, 1] << 8) | (lut[:, 2] << 16) | (alpha << 24)
    return np.append(rgba, np.uint32(0)).astype(np.uint32)


def _coloured(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """pyqtgraph's colours of ``values`` at levels 0..1: index trunc(clip(v * n, 0, n - 1))
    (float32, as its rescaleData), premultiplied, NaN transparent (alpha and colour 0)."""
    n = len(lut)
    v = np.asarray(values, np.float32)
    nan = np.isnan(v)
    idx = np.clip(np.where(nan, 0, v) * np.float32(n), 0, n - 1).astype(np.int64)
    r, g, b = (lut[idx, k].astype(np.uint32) for k in range(3))
    px = r | (g << 8) | (b << 16) | (np.uint32(255) << 24)
    return np.where(nan, np.uint32(0), px).astype(np.uint32)


def test_the_table_by_hand_is_the_views_table():
    """The view's table (premultiplied by Qt) is the one built by hand here."""
    from gptviz_app.views.fast_image import premultiplied_table

    for name in ("magma", "viridis", "inferno", "cividis"):
        np.testing.assert_array_equal(premultiplied_table(_lut(name)), _table(_lut(name)))


def test_colour_rows_clips_and_makes_nan_transparent():
    lut = _lut("viridis")
    v = np.array([[0.0, 0.5, 1.0, 1.5, -0.2, np.nan, np.inf, -np.inf, 0.99999, 1 / 256]],
                 np.float32)
    out = np.zeros(v.shape, np.uint32)
    grid_pixels.colour_rows(v, _table(lut), out)
    np.testing.assert_array_equal(out, _coloured(v, lut))
    assert out[0, 5] == 0 and out[0, 3] == out[0, 2] and out[0, 4] == out[0, 0]


class Colours:
    """Counts the pixels ``colour_rows`` colours (the worker's cost)."""

    def __init__(self, monkeypatch) -> None:
        self.pixels = 0
        real = grid_pixels.colour_rows

        def counting(values, table, out, levels=(0.0, 1.0)):
            self.pixels += values.size
            real(values, table, out, levels)

        monkeypatch.setattr(grid_pixels, "colour_rows", counting)

    def take(self) -> int:
        n, self.pixels = self.pixels, 0
        return n


def _check(snap, lut) -> None:
    assert snap.grid_pixels is not None and snap.grid_pixels.dtype == np.uint32
    assert snap.grid_pixels.shape == snap.grid.shape and snap.grid_pixels.flags.c_contiguous
    assert not snap.grid_pixels.flags.writeable and not snap.grid.flags.writeable
    np.testing.assert_array_equal(snap.grid_pixels, _coloured(snap.grid, lut))
    assert len(np.unique(snap.grid_pixels)) > 3  # thumbnails, not only gaps


def _pooling(T: int, cell: int = 8) -> tuple[int, int] | None:
    """A pooled map's blocks (tokens) and its block rows (None: not pooled, drawn larger)."""
    if cell >= T:
        return None
    f = -(-T // cell)
    return f, -(-T // f)


@pytest.mark.parametrize("mode", ["auto", "map", "row", "value"])
def test_the_snapshots_pixels_are_the_float_mosaic_coloured(tiny_bundle, mode, monkeypatch):
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "Once upon a time there was a robot")
    b = SnapshotBuilder(s, cell=8, gap=1)
    dark, light = _lut("magma"), _lut("viridis")
    table = _table(dark)
    count = Colours(monkeypatch)
    snap = b.build(1, "init", ViewSpec(grid_mode=mode, sqrt_scale=False), grid_table=table)
    _check(snap, dark)
    assert snap.grid_table is table
    assert count.take() == snap.grid.size  # the first one: all of it
    gen, pooled = 2, _pooling(snap.T)
    for k in range(6):  # steps; in map mode pooled (8-pixel cells), mostly coloured in part
        b.note_step(s.step())
        snap = b.build(gen, "step", ViewSpec(grid_mode=mode, sqrt_scale=k >= 4),
                       grid_table=table)
        gen += 1
        _check(snap, dark)
        coloured = count.take()
        if snap.grid_mode == "map" and k != 4 and pooled and _pooling(snap.T) == pooled:
            # (k = 4: on the square-root scale from now on, coloured whole)
            assert coloured < snap.grid.size // 4, k  # the same stretch: a block row a layer
        pooled = _pooling(snap.T)
    before = snap
    snap = b.build(gen, "view", ViewSpec(grid_mode=mode, sqrt_scale=True, layer=1),
                   grid_table=table)
    # nothing the mosaic shows changed: the same arrays, nothing coloured
    assert snap.grid is before.grid and snap.grid_pixels is before.grid_pixels
    assert count.take() == 0
    s.undo(2)  # Back
    b.note_jump()
    snap = b.build(gen + 1, "undo", ViewSpec(grid_mode=mode), grid_table=table)
    _check(snap, dark)
    assert count.take() == snap.grid.size  # a jump: all of it
    table = _table(light)  # the theme changed: coloured whole with the new colours
    snap = b.build(gen + 2, "view", ViewSpec(grid_mode=mode), grid_table=table)
    _check(snap, light)
    assert snap.grid_table is table and count.take() == snap.grid.size
    b.note_step(s.step())
    snap = b.build(gen + 3, "step", ViewSpec(grid_mode=mode), grid_cell=13, grid_table=table)
    assert snap.grid_cell == 13  # a new size: a new mosaic, coloured whole
    _check(snap, light)
    assert count.take() == snap.grid.size
    s.goto(1)  # a jump
    b.note_jump()
    _check(b.build(gen + 4, "goto", ViewSpec(grid_mode=mode), grid_table=table), light)


def test_a_pooled_map_grown_by_steps_is_coloured_in_part_and_right(tiny_bundle, monkeypatch):
    """Map mode pooled over blocks: a step changes one block row of every cell, and only the
    image rows drawn from it are coloured again; over many steps (new block rows, a new
    pooling) every picture is the whole mosaic coloured."""
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "The little robot")
    b = SnapshotBuilder(s, cell=8, gap=1)
    lut = _lut("inferno")
    table = _table(lut)
    count = Colours(monkeypatch)
    b.build(1, "init", ViewSpec(grid_mode="map"), grid_table=table)
    partial = 0
    for k in range(30):
        b.note_step(s.step())
        count.take()
        snap = b.build(k + 2, "step", ViewSpec(grid_mode="map"), grid_table=table)
        _check(snap, lut)
        partial += count.take() < snap.grid.size
    assert partial >= 15


def test_no_table_no_pixels(tiny_bundle):
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "Once upon a time")
    snap = SnapshotBuilder(s, cell=8, gap=1).build(1, "init", ViewSpec())
    assert snap.grid_pixels is None and snap.grid_table is None
