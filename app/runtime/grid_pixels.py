"""The head grid's mosaic coloured on the worker thread (numpy only, no Qt).

The view sends the table of premultiplied RGBA8888 pixels its image item colours with
(:func:`gptviz_app.views.fast_image.premultiplied_table`: ``n`` colours, then a transparent
entry for NaN); the snapshot carries the mosaic's pixels under that table, which the view
shows without colouring them again. :func:`colour_rows` is also how the image item colours
(the same arithmetic as pyqtgraph's ``rescaleData``): index
``trunc(clip((v - lo) * n / (hi - lo), 0, n - 1))`` in float32, NaN the last entry.
"""

from __future__ import annotations

import numpy as np

_SLICE = 1 << 16  # pixels per slice of rows: its float and index buffers fit in a core's L2


def slice_buffers(w: int, h: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The float and index buffers :func:`colour_rows` colours rows ``w`` wide through (a
    slice of rows at a time; at most ``h`` rows when given)."""
    rows = max(1, _SLICE // w) if h is None else min(max(1, _SLICE // w), h)
    n = rows * w
    return np.empty(n, np.float32), np.empty(n, np.intp)


def colour_rows(values: np.ndarray, table: np.ndarray, out: np.ndarray,
                levels: tuple[float, float] = (0.0, 1.0),
                buffers: tuple[np.ndarray, ...] | None = None) -> None:
    """``out`` (uint32, ``values``' shape) = the pixels of the float32 ``values`` under
    ``table`` (``[n + 1]`` uint32, the last entry for NaN), a slice of rows at a time.

    ``buffers``: the float and index buffers to work in (:func:`slice_buffers`, kept by a
    caller that colours at every step), and a pixel buffer as long for an ``out`` that is not
    contiguous (a corner of a larger image); made here when not given."""
    h, w = values.shape
    if h == 0 or w == 0:
        return
    work, index = (buffers or slice_buffers(w, h))[:2]
    n = len(table) - 1
    lo, hi = levels
    scale = np.float32(n / ((hi - lo) or 1.0))
    step = max(1, len(work) // w)
    direct = out.flags.c_contiguous  # else each slice goes through a pixel buffer
    tmp = None if direct else (buffers[2] if buffers is not None and len(buffers) > 2
                               else np.empty(step * w, np.uint32))
    for r0 in range(0, h, step):
        rows = values[r0:r0 + step]
        k = len(rows)
        wk, ix = work[:k * w].reshape(k, w), index[:k * w].reshape(k, w)
        # pyqtgraph's rescaleData: (v - offset) * scale in float32, clipped, truncated
        if lo == 0.0:  # as the image item: x - 0 is x, one pass less
            np.multiply(rows, scale, out=wk)
        else:
            np.subtract(rows, np.float32(lo), out=wk)
            np.multiply(wk, scale, out=wk)
        np.clip(wk, 0, n - 1, out=wk)  # NaN stays NaN, infinities are clipped
        np.fmax(wk, -1, out=wk)         # NaN (only NaN) -> -1: the transparent entry
        ix[...] = wk                    # truncated
        # "wrap": -1 is the table's last entry (numpy wraps an index with a loop: only -1
        # ever wraps, once; "raise" would check every index)
        if tmp is None:
            np.take(table, ix, out=out[r0:r0 + k], mode="wrap")
        else:
            px = tmp[:k * w].reshape(k, w)
            np.take(table, ix, out=px, mode="wrap")
            out[r0:r0 + k] = px


def same_table(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    """Whether two colour tables colour alike (the same array, or equal ones)."""
    if a is None or b is None:
        return False
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))


class MosaicPixels:
    """The pixels of the last mosaic image coloured, kept to colour the next one in part.

    :meth:`colour` returns a new array whenever anything changed (the one handed out before
    is the previous snapshot's, which the view may still show), else the same one."""

    def __init__(self) -> None:
        self._table: np.ndarray | None = None
        self._pixels: np.ndarray | None = None

    def colour(self, values: np.ndarray, table: np.ndarray | None,
               changed: np.ndarray | None) -> np.ndarray | None:
        """The pixels of ``values`` under ``table`` (``None``: no table, no pixels).

        ``changed``: the rows of ``values`` that may differ from the last image coloured
        (``None``: any); the others are copied from its pixels when the table is the same."""
        if table is None:
            self._table = self._pixels = None
            return None
        last = self._pixels
        if changed is not None and last is not None and last.shape == values.shape \
                and same_table(self._table, table):
            if len(changed) == 0:
                return last
            out = last.copy()
            rows = np.asarray(changed, np.intp)
            # runs of consecutive rows coloured as slices (a gather would copy them twice)
            breaks = np.flatnonzero(np.diff(rows) != 1) + 1
            for run in np.split(rows, breaks):
                r0, r1 = int(run[0]), int(run[-1]) + 1
                colour_rows(values[r0:r1], table, out[r0:r1])
        else:
            out = np.empty(values.shape, np.uint32)
            colour_rows(values, table, out)
        out.flags.writeable = False  # shared with the view thread from now on
        self._table, self._pixels = table, out
        return out
