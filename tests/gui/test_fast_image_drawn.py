""":class:`FastImageItem` puts the same pixels on screen as ``pg.ImageItem``: both items are
painted by QPainter into an image, scaled down and up as the views scale them, and the
painted pixels compared. pyqtgraph's own item is the independent construction; the maps have
NaN holes (the causal mask, the mosaic's gaps), values outside the levels and infinities.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pytestqt")


def _map(h: int, w: int, seed: int, holes: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a = (rng.random((h, w)) * 1.4 - 0.2).astype(np.float32)
    a[rng.random((h, w)) < holes] = np.nan
    a[np.triu_indices(min(h, w), 1)] = np.nan      # a causal mask's triangle
    a[0, -1] = np.inf
    a[-1, 0] = -np.inf
    return a


def _painted(item, size: tuple[int, int], smooth: bool) -> np.ndarray:
    """The pixels of ``item`` painted into a ``size`` image over a grey background, scaled
    so that the map fills it (what a view does), as 0xAARRGGBB ints."""
    from PySide6.QtGui import QImage, QPainter, QTransform

    w, h = size
    target = QImage(w, h, QImage.Format.Format_ARGB32_Premultiplied)
    target.fill(0xFF404040)
    rows, cols = item.image.shape
    painter = QPainter(target)
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
    painter.setTransform(QTransform.fromScale(w / cols, h / rows))
    item.paint(painter)
    painter.end()
    bits = np.frombuffer(target.constBits(), np.uint32)
    return bits.reshape(h, target.bytesPerLine() // 4)[:, :w].copy()


@pytest.mark.parametrize("smooth", [False, True])
def test_fast_image_paints_what_pyqtgraph_paints(qapp, smooth):
    import pyqtgraph as pg

    from gptviz_app.views.fast_image import FastImageItem
    from gptviz_app.views.theme import colormap

    # shapes: the mosaic's (804, drawn smaller), a small map drawn larger, odd widths
    cases = (((804, 804), (301, 301), 0.05), ((37, 53), (200, 111), 0.3),
             ((5, 1), (20, 7), 0.0), ((64, 63), (64, 63), 0.5))
    for (h, w), size, holes in cases:
        a = _map(h, w, seed=h + w, holes=holes)
        for levels in ((0.0, 1.0), (-0.3, 0.8)):
            pixels = []
            for cls in (pg.ImageItem, FastImageItem):
                item = cls(axisOrder="row-major")
                item.setColorMap(colormap("magma"))
                item.setImage(a, levels=levels, autoLevels=False)
                pixels.append(_painted(item, size, smooth))
            assert np.array_equal(pixels[0], pixels[1]), ((h, w), size, levels)
            assert len(np.unique(pixels[1])) > 3  # a map was painted, not only background
            assert item._fast_ok()  # by the fast path (not pyqtgraph's, which it stands for)


def test_fast_image_paints_a_translucent_lookup_table_as_pyqtgraph(qapp):
    """A lookup table with alpha (e.g. an overlay): Qt premultiplies the colours alike."""
    import pyqtgraph as pg

    from gptviz_app.views.fast_image import FastImageItem

    rng = np.random.default_rng(3)
    lut = rng.integers(0, 256, (200, 4)).astype(np.uint8)
    lut[:10, 3] = 0
    a = _map(41, 29, seed=5, holes=0.2)
    pixels = []
    for cls in (pg.ImageItem, FastImageItem):
        item = cls(axisOrder="row-major")
        item.setLookupTable(lut)
        item.setImage(a, levels=(0.1, 0.9), autoLevels=False)
        pixels.append(_painted(item, (87, 123), smooth=False))
    assert np.array_equal(pixels[0], pixels[1])
    assert item._fast_ok()  # the fast path drew it


def test_fast_image_reuses_its_buffers_without_showing_an_old_map(qapp):
    """A second map of the same shape (the next step) shows only the second map: NaN
    cells that became numbers are drawn, numbers that became NaN are cleared."""
    import pyqtgraph as pg

    from gptviz_app.views.fast_image import FastImageItem
    from gptviz_app.views.theme import colormap

    first, second = _map(30, 40, seed=1, holes=0.4), _map(30, 40, seed=2, holes=0.4)
    fast = FastImageItem()
    fast.setColorMap(colormap("viridis"))
    fast.setImage(first, levels=(0.0, 1.0), autoLevels=False)
    _painted(fast, (40, 30), smooth=False)
    fast.setImage(second, levels=(0.0, 1.0), autoLevels=False)
    ref = pg.ImageItem(axisOrder="row-major")
    ref.setColorMap(colormap("viridis"))
    ref.setImage(second, levels=(0.0, 1.0), autoLevels=False)
    assert np.array_equal(_painted(fast, (40, 30), False), _painted(ref, (40, 30), False))
