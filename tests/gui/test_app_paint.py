"""Maps drawn at the view's resolution (``MapPlot(pool=True)``): a map with more cells than
its view has device pixels is drawn as blocks that keep their strongest cell, hover readouts
still read the exact cell, and the image after a step is the one a fresh build gives.

Every expected image comes from a block maximum written out here (plain loops over
``np.nanmax``), never from :func:`gptviz_app.views.plots.max_pool`.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402


def block_max(a: np.ndarray, fy: int, fx: int, signed: bool = False) -> np.ndarray:
    """Reference: every ``fy`` x ``fx`` block of ``a`` (the last ones: what is left) as its
    largest value (``signed``: the one farthest from 0), NaN cells left out."""
    rows, cols = a.shape
    out = np.full((math.ceil(rows / fy), math.ceil(cols / fx)), np.nan, np.float32)
    for i in range(out.shape[0]):
        for j in range(out.shape[1]):
            b = a[i * fy:(i + 1) * fy, j * fx:(j + 1) * fx]
            b = b[~np.isnan(b)]
            if b.size:
                out[i, j] = b[np.argmax(np.abs(b))] if signed else b.max()
    return out


def causal(T: int, seed: int = 0) -> np.ndarray:
    """A ``[T, T]`` map of small weights, NaN above the diagonal, one strong cell."""
    rng = np.random.default_rng(seed)
    a = (rng.random((T, T)) * 0.01).astype(np.float32)
    a[np.triu_indices(T, 1)] = np.nan
    a[T // 2 + 1, T // 3] = 0.9          # a single strong cell
    return a


def test_max_pool_keeps_each_blocks_maximum():
    from gptviz_app.views.plots import max_pool

    a = causal(37, seed=1)
    for fy, fx in ((1, 1), (2, 2), (3, 4), (5, 1), (37, 37)):
        got = max_pool(a, fy, fx)
        np.testing.assert_array_equal(got, block_max(a, fy, fx))
        assert np.nanmax(got) == pytest.approx(0.9)  # the strong cell survives every size
    # diverging scores: the value farthest from 0 wins, its sign kept
    s = np.random.default_rng(2).normal(size=(23, 31)).astype(np.float32)
    s[7, 4] = -9.0
    s[np.triu_indices(23, 1)] = np.nan
    got = max_pool(s, 3, 2, signed=True)
    np.testing.assert_array_equal(got, block_max(s, 3, 2, signed=True))
    assert np.nanmin(got) == -9.0


@pytest.fixture
def layout(qtbot):
    import pyqtgraph as pg

    glw = pg.GraphicsLayoutWidget()
    qtbot.addWidget(glw)
    glw.resize(300, 240)
    glw.show()
    qtbot.waitExposed(glw)
    return glw


def factors(m, rows: int, cols: int) -> tuple[int, int]:
    """Cells per device pixel of the view box (rounded up), from its size and range."""
    (x0, x1), (y0, y1) = m.vb.viewRange()
    dpr = m.vb.scene().views()[0].devicePixelRatioF()
    return (max(1, math.ceil((y1 - y0) / (m.vb.height() * dpr) - 1e-9)),
            max(1, math.ceil((x1 - x0) / (m.vb.width() * dpr) - 1e-9)))


def test_pooled_map_draws_blocks_hover_reads_the_cell_export_gets_all(qtbot, layout):
    from PySide6.QtCore import QRectF

    from gptviz_app.views.plots import MapPlot

    m = MapPlot(layout.addPlot(row=0, col=0), aspect=False, pool=True)
    T = 700
    a = causal(T)
    m.set_image(a, (0.0, 1.0), transform=np.sqrt)
    qtbot.waitUntil(lambda: m.vb.width() > 100, timeout=TIMEOUT)
    m.vb.setRange(QRectF(0, 0, T, T), padding=0.0)
    fy, fx = factors(m, T, T)
    assert fy > 1 and fx > 1                       # more cells than pixels
    img = np.asarray(m.image.image)
    np.testing.assert_array_equal(img, np.sqrt(block_max(a, fy, fx)))
    assert img.shape[0] <= m.vb.height() and img.shape[1] <= m.vb.width()
    assert np.nanmax(img) == pytest.approx(math.sqrt(0.9))   # the strong cell is drawn
    r = m.image.mapRectToParent(m.image.boundingRect())     # blocks cover the whole map
    assert r.left() == 0 and r.top() == 0 and r.width() >= T and r.height() >= T
    # hover: the exact cell from the whole map
    q, k = T // 2 + 1, T // 3
    assert m.cell_at(m.cell_center(q, k)) == (q, k) and m.data[q, k] == np.float32(0.9)
    # zoomed in on 50 x 50 cells: those cells, each drawn whole
    m.vb.setRange(QRectF(100, 200, 50, 50), padding=0.0)
    img = np.asarray(m.image.image)
    r = m.image.mapRectToParent(m.image.boundingRect())
    r0, c0 = int(r.top()), int(r.left())
    assert r0 <= 200 and c0 <= 100 and r.bottom() >= 250 and r.right() >= 150
    np.testing.assert_array_equal(img, np.sqrt(a[r0:r0 + img.shape[0], c0:c0 + img.shape[1]]))
    # an exporter (PNG at any width, SVG) draws every cell; then the view's blocks again
    m.vb.setRange(QRectF(0, 0, T, T), padding=0.0)
    m.image.setExportMode(True, {})
    np.testing.assert_array_equal(np.asarray(m.image.image), np.sqrt(a))
    m.image.setExportMode(False)
    assert np.asarray(m.image.image).shape == block_max(a, fy, fx).shape


LONG = ("Once upon a time there was a little robot who liked to count the stars. " * 8)[:420]


def test_window_map_after_a_step_equals_a_fresh_build_and_hover_is_exact(
        qtbot, tiny_bundle_factory):
    from PySide6.QtCore import QPointF

    win = show_window(qtbot, tiny_bundle_factory(block_size=512), prompt=LONG,
                      size=(1024, 640))
    try:
        view, c = win.attention, win.controller
        snap = settle(qtbot, win)
        qtbot.waitUntil(lambda: view.vb.width() > 50, timeout=TIMEOUT)
        snap = settle(qtbot, win, c.step())
        s = c.client.worker.session
        T = snap.T
        full = s.attention()[0, 0]                                  # (T, T) of L0 H0
        m = view.map
        fy, fx = factors(m, T, T)
        assert fy > 1 or fx > 1, "the map must hold more cells than the view has pixels"
        want = block_max(np.where(np.triu(np.ones((T, T), bool), 1), np.nan, full), fy, fx)
        np.testing.assert_allclose(np.asarray(view.image.image), np.sqrt(want), rtol=1e-5,
                                   atol=1e-6, equal_nan=True)
        # hover: the cell under the mouse, read from the whole map
        q, k = T - 2, T // 3
        at = view.glw.mapFromScene(view.vb.mapViewToScene(QPointF(k + 0.5, q + 0.5)))
        qtbot.mouseMove(view.glw.viewport(), at)
        qtbot.waitUntil(lambda: "weight" in view.readout.text(), timeout=TIMEOUT)
        p = view.vb.mapSceneToView(view.glw.mapToScene(at))
        q, k = int(np.floor(p.y())), int(np.floor(p.x()))
        assert k <= q < T
        assert f"weight {float(full[q, k]):.4f}" in view.readout.text()
        assert f"query {q} " in view.readout.text() and f"key {k} " in view.readout.text()
    finally:
        close_window(win)
