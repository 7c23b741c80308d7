"""A pyqtgraph ``ImageItem`` that colours a float map with NaN holes in a few numpy passes.

pyqtgraph's own path for a float image with NaN cells (the causal mask, the mosaic's gaps)
finds the NaN cells with ``nonzero()``, applies the lookup table into an RGBA copy and clears
their alpha: ≈ 7.7 ms for the 804 x 804 mosaic of 12 x 12 heads, every step. Here the same
colours come from a scale-and-clip, NaN made index -1, and a lookup in a table of
premultiplied RGBA8888 pixels whose entry -1 is transparent, all into buffers the item keeps:
≈ 1.8 ms CPU in the window. (Qt's own colour-table conversion is quicker on paper, but its new
2.6 MB image a step costs 632 page faults, as the process has glibc map every large block
afresh, see ``gptviz.engine.memory.limit_heap_fragmentation``; with the masking of the NaN
pixels, ≈ 2.4 ms.) The rows go through in slices that stay in the CPU's cache.

The colours are pyqtgraph's exactly: index ``trunc(clip((v - lo) * n / (hi - lo), 0, n - 1))``
into the item's lookup table of ``n <= 256`` entries (pyqtgraph's ``rescaleData``), NaN
transparent; premultiplied by Qt itself, as Qt premultiplies the RGBA image pyqtgraph makes
(the same format family, so Qt scales it on the same path, to the same pixels). Anything else
(other dtypes than float32, RGB data, no levels, a lookup table that is a function or longer
than 256 entries, down-sampling) goes through pyqtgraph unchanged.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QRectF
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGraphicsItem

from gptviz_app.runtime.grid_pixels import colour_rows, slice_buffers


def colour_table(lut: np.ndarray) -> list[int]:
    """A Qt colour table (``0xAARRGGBB`` ints) of a pyqtgraph lookup table ``[n, 3|4]``
    (uint8 RGB or RGBA)."""
    lut = np.asarray(lut, np.uint32)
    alpha = lut[:, 3] if lut.shape[1] == 4 else np.full(len(lut), 255, np.uint32)
    argb = (alpha << 24) | (lut[:, 0] << 16) | (lut[:, 1] << 8) | lut[:, 2]
    return [int(v) for v in argb]


def premultiplied_table(lut: np.ndarray) -> np.ndarray:
    """``[n + 1]`` uint32: the bytes of the premultiplied RGBA8888 pixels of a pyqtgraph
    lookup table ``[n, 3|4]`` (premultiplied by Qt), then a transparent one (index -1)."""
    argb = colour_table(lut)
    row = QImage(len(argb), 1, QImage.Format.Format_ARGB32)
    for x, v in enumerate(argb):
        row.setPixel(x, 0, v)
    row = row.convertToFormat(QImage.Format.Format_RGBA8888_Premultiplied)
    table = np.zeros(len(argb) + 1, np.uint32)
    table[:-1] = np.frombuffer(row.constBits(), np.uint32)[:len(argb)]
    return table


class Repainters:
    """Parts of an item repainted through child items that paint nothing, one rectangle each:
    Qt unites all the rectangles an item's ``update`` is given before the next paint into one
    (an L of a new row and column: the whole map), while those of different items stay
    apart in the repainted region."""

    def __init__(self, parent: QGraphicsItem, n: int = 2) -> None:
        self._items = [_NoPaint(parent) for _ in range(n)]

    def update(self, rects: list[QRectF]) -> None:
        """Repaint ``rects`` (the parent's coordinates; at most ``n``)."""
        for item, rect in zip(self._items, rects, strict=False):
            item.update(rect)


class _NoPaint(QGraphicsItem):
    """A child item as big as its parent that paints nothing (see :class:`Repainters`)."""

    def boundingRect(self) -> QRectF:  # noqa: N802 - Qt name
        parent = self.parentItem()
        return parent.boundingRect() if parent is not None else QRectF()

    def paint(self, *_args) -> None:  # noqa: D102 - Qt's
        pass


class FastImageItem(pg.ImageItem):
    """``pg.ImageItem`` (row-major) with a faster :meth:`render` for 2-D float maps with
    levels and a colour map; it draws exactly what pyqtgraph would.

    ``setImage(image, kept=(rows, cols))``: ``image`` holds the previous image's values in its
    first ``rows`` x ``cols`` (a map that grew by a token): only the other pixels are coloured
    again, when the levels and colours are those of the last picture, and, when the image
    also keeps its shape (its place is the item's transform: unchanged), only they are
    repainted (``update`` of their rectangles, not of the whole item: the axes and items
    around a map are not painted again for a step)."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("axisOrder", "row-major")
        super().__init__(**kwargs)
        self._fast_bufs: tuple | None = None  # (float, index, pixel slices): _buffers
        self._fast_table: tuple[np.ndarray, np.ndarray] | None = None  # (the lut, its table)
        self._pixels: np.ndarray | None = None  # the picture's pixels (a corner of it)
        #: (levels, table, pixel buffer, (h, w)) of the picture the pixels hold now
        self._drawn: tuple | None = None
        self._kept = (0, 0)  # leading rows and columns of the image that are the picture's
        self._partial: list | None = None  # the rectangles setImage's update repaints
        # made now: an item added to a scene later repaints all of its bounding rectangle
        self._repainters = Repainters(self)

    def setImage(self, image=None, autoLevels=None, kept=(0, 0), **kargs):  # noqa: N802
        # an update without an image (pyqtgraph's updateImage) may follow a change in place
        k = (0, 0) if image is None else kept
        self._kept = (min(self._kept[0], k[0]), min(self._kept[1], k[1]))
        if image is not None and not autoLevels \
                and ("levels" in kargs or not self._defaultAutoLevels):
            self._partial = self._changed_rects(image, kargs.get("levels", self.levels))
        try:
            super().setImage(image, autoLevels, **kargs)
        finally:
            self._partial = None

    def _changed_rects(self, image, levels) -> list[QRectF] | None:
        """The rectangles (item coordinates: one unit a pixel) that :meth:`render` will colour
        again for ``image`` at ``levels``, or None where it colours all of it (or the item
        changes shape: Qt repaints all of it then anyway)."""
        drawn, px, old = self._drawn, self._pixels, self.image
        if drawn is None or old is None or levels is None or np.ndim(levels) != 1:
            return None
        if not isinstance(image, np.ndarray) or image.shape != old.shape \
                or image.dtype != np.float32 or not self._fast_ok():
            return None
        h, w = image.shape
        if tuple(float(v) for v in levels) != drawn[0] or drawn[1] is not self._table() \
                or drawn[2] is not px or px.shape[0] < h or px.shape[1] < w:
            return None
        kr, kc = min(self._kept[0], drawn[3][0], h), min(self._kept[1], drawn[3][1], w)
        rects = []
        if kr < h:
            rects.append(QRectF(0, kr, w, h - kr))
        if kc < w and kr > 0:
            rects.append(QRectF(kc, 0, w - kc, kr))
        return rects

    def update(self, *args) -> None:  # noqa: D102 - Qt's
        partial = getattr(self, "_partial", None)  # None: within pyqtgraph's __init__
        if args or partial is None:
            super().update(*args)
            return
        self._partial = None  # setImage's own update: only the pixels coloured again
        self._repainters.update(partial)

    def clear(self) -> None:  # noqa: D102 - pyqtgraph's
        self._kept = (0, 0)
        super().clear()

    def _fast_ok(self) -> bool:
        img, lut, levels = self.image, self.lut, self.levels
        if img is None or img.ndim != 2 or img.dtype != np.float32 or img.size == 0:
            return False
        if self.autoDownsample or self.axisOrder != "row-major" or self.paintMode is not None:
            return False
        if not isinstance(lut, np.ndarray) or lut.dtype != np.uint8 or lut.ndim != 2 \
                or lut.shape[1] not in (3, 4) or not 0 < len(lut) <= 256:
            return False
        return levels is not None and np.ndim(levels) == 1 and len(levels) == 2

    def _buffers(self, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The float, index and pixel buffers of :func:`colour_rows`, room for a slice of
        rows ``w`` wide (kept: a map is coloured at every step)."""
        bufs = self._fast_bufs
        if bufs is None or len(bufs[0]) < w:
            work, index = slice_buffers(w)
            bufs = self._fast_bufs = (work, index, np.empty(len(work), np.uint32))
        return bufs

    def _pixel_buffer(self, h: int, w: int) -> np.ndarray:
        """A buffer of at least ``h`` x ``w`` pixels: the one there is if it has room (a map
        that grows keeps its buffer), else one of that size or, once the size changed, with
        room for a few more rows and columns."""
        px = self._pixels
        if px is None or px.shape[0] < h or px.shape[1] < w:
            slack = 0 if px is None else 16
            px = self._pixels = np.empty((h + slack, w + slack), np.uint32)
        return px

    def _table(self) -> np.ndarray:
        lut = self.lut
        if self._fast_table is None or self._fast_table[0] is not lut:
            self._fast_table = (lut, premultiplied_table(lut))
        return self._fast_table[1]

    def render(self) -> None:  # noqa: D102 - pyqtgraph's
        if not self._fast_ok():
            self._drawn = None
            super().render()
            return
        image = self.image
        h, w = image.shape
        pixels = self._pixel_buffer(h, w)
        table = self._table()
        levels = tuple(float(v) for v in self.levels)
        kr = kc = 0
        drawn = self._drawn
        if drawn is not None and drawn[0] == levels and drawn[1] is table \
                and drawn[2] is pixels:
            kr, kc = min(self._kept[0], drawn[3][0], h), min(self._kept[1], drawn[3][1], w)
        self._colour(image[kr:], pixels[kr:h, :w], table, levels)
        self._colour(image[:kr, kc:], pixels[:kr, kc:w], table, levels)
        self._drawn, self._kept = (levels, table, pixels, (h, w)), (h, w)
        # on the item's own buffer, rewritten by the next render (nothing else keeps it)
        self.qimage = QImage(pixels.data, w, h, 4 * pixels.shape[1],
                             QImage.Format.Format_RGBA8888_Premultiplied)
        self._processingBuffer = None
        self._displayBuffer = None
        self._renderRequired = False
        self._unrenderable = False

    def _colour(self, image: np.ndarray, out: np.ndarray, table: np.ndarray,
                levels: tuple[float, float]) -> None:
        """``out`` = the pixels of ``image`` (same shape), a slice of rows at a time, in the
        buffers the item keeps."""
        if image.size:
            colour_rows(image, table, out, levels, self._buffers(image.shape[1]))
