"""The head grid's mosaic item: shows the pixels the worker coloured, when they are its own.

The worker colours each snapshot's mosaic with the table the view sent it
(:mod:`gptviz_app.runtime.grid_pixels`: the same arithmetic as :class:`FastImageItem`); the
item puts those pixels on screen as they are, a ``QImage`` over the snapshot's buffer, kept
while shown. Pixels made with another table than the item's own (the theme changed since,
the first snapshot) are coloured here, as :class:`FastImageItem` colours any map: what is on
screen is always the item's colours of the float mosaic it holds (``image``).
"""

from __future__ import annotations

import numpy as np
from PySide6.QtGui import QImage

from gptviz_app.runtime.grid_pixels import same_table
from gptviz_app.views.fast_image import FastImageItem

#: The mosaic's levels: attention weights (or shares) in 0..1, on a square-root scale or not.
LEVELS = (0.0, 1.0)


class MosaicImage(FastImageItem):
    """A :class:`FastImageItem` for the mosaic: :meth:`set_mosaic` takes the float mosaic and,
    optionally, its pixels and the table they were coloured with."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._given: tuple[np.ndarray, np.ndarray] | None = None  # (pixels, their table)
        self.shown: np.ndarray | None = None  # the pixels the picture is over (kept alive)

    def colours(self) -> np.ndarray | None:
        """The table this item colours with now (``None``: no colour map yet)."""
        if not isinstance(self.lut, np.ndarray):
            return None
        return self._table()

    def set_mosaic(self, values: np.ndarray, pixels: np.ndarray | None = None,
                   table: np.ndarray | None = None) -> None:
        """Show the float mosaic ``values``; ``pixels`` (uint32, ``values``' shape): its
        pixels under ``table``, shown as they are if that is the item's table then."""
        self.setImage(values, levels=LEVELS, autoLevels=False)
        if pixels is not None and table is not None and pixels.shape == values.shape \
                and pixels.flags.c_contiguous:
            self._given = (pixels, table)

    def setImage(self, image=None, autoLevels=None, kept=(0, 0), **kargs):  # noqa: N802
        if image is not None:  # another map: pixels given before are not its own
            self._given = None
        super().setImage(image, autoLevels, kept=kept, **kargs)

    def clear(self) -> None:  # noqa: D102 - pyqtgraph's
        self._given = self.shown = None
        super().clear()

    def _given_ok(self) -> bool:
        given = self._given
        if given is None or not self._fast_ok() or self.image is None:
            return False
        if tuple(float(v) for v in self.levels) != LEVELS:
            return False
        return given[0].shape == self.image.shape and same_table(given[1], self._table())

    def render(self) -> None:  # noqa: D102 - pyqtgraph's
        if not self._given_ok():
            self.shown = None
            super().render()
            return
        pixels = self._given[0]  # type: ignore[index]
        h, w = pixels.shape
        self.shown = pixels
        self.qimage = QImage(pixels.data, w, h, 4 * w,
                             QImage.Format.Format_RGBA8888_Premultiplied)
        self._drawn = None  # the item's own buffer is not the picture: colour it all next time
        self._processingBuffer = None
        self._displayBuffer = None
        self._renderRequired = False
        self._unrenderable = False
