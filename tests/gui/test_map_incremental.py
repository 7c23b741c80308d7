"""A map that grows by a token is coloured (and, told which cells stayed, pooled) again only
where it changed: what is drawn stays what a full pooling draws. Each state's image is
compared with an independent block maximum (NaN-padded blocks reduced by ``np.nanmax`` and
``np.nanmin``) of the cells in view, and its painted pixels with pyqtgraph's own
``ImageItem`` painting that array, through a run of appends, a rewind, an ablation-like
change of every row, another head, the square-root scale toggled, a signed stage, a slid
window, a resize (another block size), a zoom and a change while hidden; and in the app,
through steps, Back, an ablation, another head, the scale and the stages.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import settle  # noqa: E402


def ref_pool(a: np.ndarray, fy: int, fx: int, signed: bool) -> np.ndarray:
    """Blocks of ``fy`` x ``fx`` (the last ones: the cells left) as their largest number
    (``signed``: the one farthest from 0, the positive one of a tie), NaN when none."""
    rows, cols = a.shape
    ny, nx = -(-rows // fy), -(-cols // fx)
    padded = np.full((ny * fy, nx * fx), np.nan, np.float32)
    padded[:rows, :cols] = a
    blocks = padded.reshape(ny, fy, nx, fx)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # blocks of NaN only
        hi = np.nanmax(blocks, axis=(1, 3)).astype(np.float32)
        if signed:
            lo = np.nanmin(blocks, axis=(1, 3)).astype(np.float32)
            far = ~np.isnan(lo) & (-lo > hi)
            hi[far] = lo[far]
    return hi


def padded(expected: np.ndarray, mp) -> np.ndarray:
    """``expected`` (the blocks of the cells drawn) with NaN blocks up to the view's edge,
    where the view reaches past the map (a range rounded up beyond its newest token)."""
    (_x0, x1), (_y0, y1) = mp.vb.viewRange()
    r0, r1, c0, c1, fy, fx = mp.pooling()
    ny = max(expected.shape[0], -(-(max(r1, int(np.ceil(y1 - 1e-9))) - r0) // fy))
    nx = max(expected.shape[1], -(-(max(c1, int(np.ceil(x1 - 1e-9))) - c0) // fx))
    out = np.full((ny, nx), np.nan, np.float32)
    out[:expected.shape[0], :expected.shape[1]] = expected
    return out


def _painted(item, shape: tuple[int, int]) -> np.ndarray:
    """``item`` painted at ``shape`` (one pixel a cell) over grey, as 0xAARRGGBB ints."""
    from PySide6.QtGui import QImage, QPainter

    h, w = shape
    target = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    target.fill(0xFF404040)
    painter = QPainter(target)
    item.paint(painter)
    painter.end()
    bits = np.frombuffer(target.constBits(), np.uint32)
    return bits.reshape(h, target.bytesPerLine() // 4)[:, :w].copy()


def _reference_pixels(expected: np.ndarray, levels, lut) -> np.ndarray:
    import pyqtgraph as pg

    ref = pg.ImageItem(axisOrder="row-major")
    ref.setLookupTable(lut)
    ref.setImage(np.ascontiguousarray(expected), levels=levels, autoLevels=False)
    return _painted(ref, expected.shape)


def _causal(T: int, seed: int, signed: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = rng.random((T, T)).astype(np.float32)
    if signed:
        a = a * 2 - 1
    a[np.triu_indices(T, 1)] = np.nan
    return a


def _grown(a: np.ndarray, seed: int) -> np.ndarray:
    """``a`` with one more row and column (a step): the old cells unchanged."""
    T = a.shape[0] + 1
    b = _causal(T, seed, signed=bool(np.nanmin(a) < 0))
    b[:T - 1, :T - 1] = a
    return b


@pytest.fixture
def plot_view(qtbot):
    import pyqtgraph as pg

    from gptviz_app.views.plots import MapPlot
    from gptviz_app.views.theme import colormap

    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    mp = MapPlot(glw.addPlot(), aspect=False, mouse=True, fit=False, pool=True)
    mp.image.setColorMap(colormap("viridis"))
    glw.resize(320, 300)
    glw.show()
    qtbot.waitExposed(glw)
    return glw, mp


@pytest.mark.parametrize("hints", [False, True])
def test_a_growing_map_is_drawn_as_a_full_pooling_draws_it(qtbot, plot_view, monkeypatch,
                                                           hints):
    """Without hints (the app's case) every block is pooled and only the blocks that
    changed are coloured again; with ``kept`` hints (the caller knows which cells stayed)
    only the new blocks are pooled too. Either way: the full pooling's image and pixels."""
    from PySide6.QtCore import QRectF

    from gptviz_app.views import fast_image, plots

    glw, mp = plot_view
    pooled, coloured = [], []
    real_pool, real_colour = plots.max_pool, fast_image.FastImageItem._colour

    def counting_pool(part, *args, **kwargs):
        pooled.append(part.size)
        return real_pool(part, *args, **kwargs)

    def counting_colour(self, image, *args):
        coloured.append(image.size)
        return real_colour(self, image, *args)

    monkeypatch.setattr(plots, "max_pool", counting_pool)
    monkeypatch.setattr(fast_image.FastImageItem, "_colour", counting_colour)

    def show(src, levels=(0.0, 1.0), transform=np.sqrt, fit=True, kept=(0, 0)):
        if fit:
            with mp.drawing_held():
                mp.vb.setRange(QRectF(0, 0, src.shape[1], src.shape[0]), padding=0.0)
                mp.vb.updateMatrix()
        pooled.clear()
        coloured.clear()
        mp.set_image(src, levels, transform=transform, kept=kept if hints else (0, 0))
        check(src, levels, transform)
        return sum(pooled), sum(coloured)

    def check(src, levels, transform):
        r0, r1, c0, c1, fy, fx = mp.pooling()
        assert fy > 1 and fx > 1  # the case pooled blocks stand for
        expected = ref_pool(src[r0:r1, c0:c1], fy, fx, signed=levels[0] < 0)
        if transform is not None:
            expected = transform(expected)
        expected = padded(expected, mp)
        np.testing.assert_array_equal(mp.image.image, expected)
        assert np.array_equal(_painted(mp.image, expected.shape),
                              _reference_pixels(expected, levels, mp.image.lut))

    def few(counts, src):
        cells, pixels = counts
        assert pixels < mp.image.image.size // 10  # a block row and column coloured again
        assert (cells < src.size // 10) if hints else (cells == src.size)

    a = _causal(700, seed=0)
    assert show(a) == (a.size, mp.image.image.size)
    first = mp.image.image.shape
    while mp.image.image.shape == first:  # till the image grew: its buffers have room now
        a = _grown(a, seed=a.shape[0])
        show(a, kept=(a.shape[0] - 1,) * 2)
    for s in range(2, 6):  # steps
        a = _grown(a, seed=s)
        few(show(a, kept=(a.shape[0] - 1,) * 2), a)
    a = a[:-1, :-1].copy()  # Back
    few(show(a, kept=a.shape), a)
    changed = _grown(a + np.float32(0.01), seed=9)  # every row changes (an ablation)
    assert show(changed) == (changed.size, mp.image.image.size)
    other = _causal(changed.shape[0], seed=10)  # another head
    show(other)
    show(other, transform=None, kept=other.shape)  # linear scale: the same cells
    show(other, transform=np.sqrt, kept=other.shape)
    scores = _causal(other.shape[0], seed=11, signed=True)  # a signed stage
    show(scores, levels=(-1.0, 1.0), transform=None)
    grown = _grown(scores, seed=12)
    few(show(grown, levels=(-1.0, 1.0), transform=None, kept=scores.shape), grown)
    T = other.shape[0]
    slid = _causal(T, seed=13)
    slid[:T - 1, :T - 1] = other[1:, 1:]  # the window slid by one
    show(other)
    show(slid)
    # another block size: the view resized (the same map)
    glw.resize(200, 190)
    qtbot.waitUntil(lambda: mp.pooling()[4] > 3)
    check(slid, (0.0, 1.0), np.sqrt)
    # zoomed in: the visible cells, then a step while zoomed
    mp.vb.setRange(QRectF(100.5, 120.25, 300, 280), padding=0.0)
    mp.vb.updateMatrix()
    check(slid, (0.0, 1.0), np.sqrt)
    grown = _grown(slid, seed=14)
    show(grown, fit=False, kept=slid.shape)
    # steps while hidden: drawn when shown, from the cells that stayed through all of them
    glw.hide()
    hidden = grown
    for s in range(15, 18):
        hidden = _grown(hidden, seed=s)
        mp.set_image(hidden, (0.0, 1.0), transform=np.sqrt,
                     kept=(hidden.shape[0] - 1,) * 2 if hints else (0, 0))
    glw.show()
    qtbot.waitExposed(glw)
    mp.redraw()
    check(hidden, (0.0, 1.0), np.sqrt)


def test_fast_image_colours_only_the_changed_pixels_as_pyqtgraph_would(qapp):
    from gptviz_app.views.fast_image import FastImageItem
    from gptviz_app.views.theme import colormap

    item = FastImageItem()
    item.setColorMap(colormap("viridis"))
    buf = np.full((80, 80), np.nan, np.float32)
    a = _causal(40, seed=3)

    def shown(img, levels=(0.0, 1.0), kept=(0, 0)):
        item.setImage(img, levels=levels, autoLevels=False, kept=kept)
        got = _painted(item, img.shape)
        assert np.array_equal(got, _reference_pixels(img, levels, item.lut))

    buf[:40, :40] = a
    shown(buf[:40, :40])
    for n in range(41, 46):  # grows in place in a bigger buffer, as the pooled map does
        buf[:n, :n] = _grown(buf[:n - 1, :n - 1], seed=n)
        shown(buf[:n, :n], kept=(n - 1, n - 1))
    shown(buf[:44, :44], kept=(44, 44))                  # shrinks (Back)
    shown(buf[:44, :44], levels=(-0.5, 1.0), kept=(44, 44))  # other levels: all again
    item.setColorMap(colormap("magma"))                   # other colours: all again
    shown(buf[:44, :44], levels=(-0.5, 1.0), kept=(44, 44))
    buf[:44, :44] = _causal(44, seed=50)                  # a hint-less image: all again
    shown(buf[:44, :44], levels=(-0.5, 1.0))
    buf[:30, :30] += np.float32(0.2)                      # changed in place, then updated
    item.updateImage()
    assert np.array_equal(_painted(item, (44, 44)),
                          _reference_pixels(buf[:44, :44], (-0.5, 1.0), item.lut))


def _map_matches(view, snap) -> None:
    """The map's image is the independent pooling of the snapshot's map, painted as
    pyqtgraph paints it."""
    mp = view.map
    r0, r1, c0, c1, fy, fx = mp.pooling()
    stage, m = snap.extra.get("map_stage", ("weights", None))
    if m is None:
        src, levels, tf = snap.attn, (0.0, 1.0), (np.sqrt if snap.view.sqrt_scale else None)
    else:
        top = float(np.abs(m[np.isfinite(m)]).max() or 1.0)
        levels = (0.0, top) if stage == "value" else (-top, top)
        src, tf = np.where(np.isneginf(m), np.nan, m).astype(np.float32), None
    expected = ref_pool(src[r0:r1, c0:c1], fy, fx, signed=levels[0] < 0)
    expected = padded(tf(expected) if tf is not None else expected, mp)
    np.testing.assert_array_equal(mp.image.image, expected)
    assert np.array_equal(_painted(mp.image, expected.shape),
                          _reference_pixels(expected, mp.image.levels, mp.image.lut))


def test_the_app_map_stays_a_full_drawing_through_steps_and_changes(qtbot, window,
                                                                    tiny_bundle):
    from gptviz.analysis.ablation import make_ablation

    c, view = window.controller, window.attention
    _map_matches(view, settle(qtbot, window, c.step(1)))
    for _ in range(3):
        _map_matches(view, settle(qtbot, window, c.step(1)))
    _map_matches(view, settle(qtbot, window, c.back()))
    _map_matches(view, settle(qtbot, window, c.set_ablation(
        make_ablation(tiny_bundle.config, [(0, 0), (1, 1)], "zero"))))
    _map_matches(view, settle(qtbot, window, c.step(1)))
    _map_matches(view, settle(qtbot, window, c.select_head(1, 2)))
    _map_matches(view, settle(qtbot, window, c.step(1)))
    _map_matches(view, settle(qtbot, window, c.set_view(sqrt_scale=False)))
    _map_matches(view, settle(qtbot, window, c.step(1)))
    for stage in ("raw", "masked", "value", "weights"):
        _map_matches(view, settle(qtbot, window, c.set_view(map_stage=stage)))
        _map_matches(view, settle(qtbot, window, c.step(1)))
    _map_matches(view, settle(qtbot, window, c.set_ablation(None)))
    _map_matches(view, settle(qtbot, window, c.step(1)))


def test_the_app_pools_only_what_a_step_added_and_all_of_a_jump(qtbot, window, monkeypatch):
    """A step tells the map which cells it already held (the snapshot's ``attn_rev``): only
    the new row and column are pooled; a jump (Back, a forced token, another prompt, the
    window sliding) pools the whole map again. Each state is a full pooling's drawing."""
    from gptviz_app.views import plots

    c, view = window.controller, window.attention
    pooled: list[int] = []
    real_pool = plots._pool_into  # pools, or copies where a pixel holds one cell

    def counting_pool(out, part, *args, **kwargs):
        pooled.append(part.size)
        return real_pool(out, part, *args, **kwargs)

    monkeypatch.setattr(plots, "_pool_into", counting_pool)

    def shown(gen):
        pooled.clear()
        snap = settle(qtbot, window, gen)
        _map_matches(view, snap)
        return snap, sum(pooled)

    snap, _ = shown(c.step(1))
    for _ in range(3):
        snap, cells = shown(c.step(1))
        assert 0 < cells <= 2 * snap.T  # the new row and the new column's one cell
    for jump in ("back", "force", "prompt"):
        gen = (c.back() if jump == "back" else c.set_prompt("a new text") if jump == "prompt"
               else c.force(int(snap.ids[-1]) ^ 1, True))  # another last token
        snap, cells = shown(gen)
        assert cells == snap.T * snap.T, jump
        snap, cells = shown(c.step(1))
        assert 0 < cells <= 2 * snap.T
    start = snap.window_start
    while snap.window_start == start:  # to the end of the model's window: it slides
        before = snap.T
        snap, cells = shown(c.step(1))
    assert before > snap.T and cells == snap.T * snap.T  # slid: fewer rows, all new
    snap, cells = shown(c.step(1))
    assert 0 < cells <= 2 * snap.T


def test_after_an_export_the_screen_and_the_steps_after_it_are_pooled_again(qtbot, plot_view,
                                                                            tmp_path):
    """An export draws every cell into the map's image; the screen's next drawing (and the
    steps after it, told which cells stayed) is the pooled map again, all of it."""
    import pyqtgraph.exporters as ex

    glw, mp = plot_view

    def pooled_as_it_should(src):
        r0, r1, c0, c1, fy, fx = mp.pooling()
        assert fy > 1 and fx > 1
        expected = padded(ref_pool(src[r0:r1, c0:c1], fy, fx, signed=False), mp)
        np.testing.assert_array_equal(mp.image.image, expected)
        assert np.array_equal(_painted(mp.image, expected.shape),
                              _reference_pixels(expected, (0.0, 1.0), mp.image.lut))

    a = _causal(1000, seed=1)
    mp.set_image(a, (0.0, 1.0))
    mp.vb.setRange(xRange=(0, 1010), yRange=(0, 1010), padding=0)
    mp.vb.updateMatrix()
    mp.redraw()
    pooled_as_it_should(a)
    ex.ImageExporter(mp.plot).export(str(tmp_path / "map.png"))
    assert (tmp_path / "map.png").is_file()
    mp.redraw()
    pooled_as_it_should(a)
    for s in range(3):
        grown = _grown(a, seed=s)
        mp.set_image(grown, (0.0, 1.0), kept=a.shape)
        a = grown
        pooled_as_it_should(a)
