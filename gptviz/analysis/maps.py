"""Attention maps as they are drawn: one head's (or a layer's mean) ``[T, T]`` map with the
masked cells set to NaN, so plots show the mask instead of zeros: the future (keys after the
query) in every layer, and in a local layer (GPT-Neo) the keys outside its window too.

Which cells are masked is the model's own :func:`gptviz.model.gpt.window_mask` (what
:func:`~gptviz.model.gpt.attention_mask` applies before the softmax), read here as numpy.

The analyses take an attention ``att`` either as an ``[L, H, T, T]`` array or as a source
read a layer at a time (a session's
:meth:`~gptviz.engine.session.Session.packed_attention`: anything with ``shape``,
``layer(l)`` and ``head(l, h)``), so that they never unpack a whole window at once
(:mod:`gptviz.analysis.sources`, :func:`head_map`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gptviz.analysis.sources import AttentionSource, as_array, is_source, layer_reader
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import key_window, window_mask

__all__ = ["AttentionSource", "is_source", "layer_reader",
           "upper_mask", "display_mask", "layer_windows", "masked_map", "head_map",
           "mask_row", "mask_pooled_row", "map_scale",
           "map_cells"]

_MASKS: dict[int | None, np.ndarray] = {}  # per window: one growing mask, sliced for every T


def display_mask(T: int, window: int | None = None) -> np.ndarray:
    """Boolean ``[T, T]``, True where a query (row) cannot see a key (column): after it, or
    (``window`` set) at or before query - window; read-only."""
    big = _MASKS.get(window)
    if big is None or big.shape[0] < T:
        n = max(T, 2 * (big.shape[0] if big is not None else 64))
        big = window_mask(n, n, window).numpy()
        big.flags.writeable = False
        _MASKS[window] = big
    return big[:T, :T]


def upper_mask(T: int) -> np.ndarray:
    """Boolean ``[T, T]``, True strictly above the diagonal (key after query); read-only."""
    return display_mask(T)


def layer_windows(config: GPTConfig) -> tuple[int | None, ...]:
    """Every layer's window (:func:`~gptviz.model.gpt.key_window`; ``None``: global)."""
    return tuple(key_window(config, layer) for layer in range(config.n_layer))


def masked_map(a: np.ndarray, window: int | None = None) -> np.ndarray:
    """Copy of a ``[T, T]`` attention map as C-contiguous float32 with NaN where masked
    (above the diagonal, and outside a local layer's ``window``)."""
    out = np.array(a, dtype=np.float32, order="C", copy=True)
    out[display_mask(out.shape[0], window)] = np.nan
    return out


def head_map(att: np.ndarray | AttentionSource, layer: int, head: int,
             average: bool) -> np.ndarray:
    """The ``[T, T]`` map of one head (or its layer's mean) of ``att`` ``[L, H, T, T]`` (an
    array or an :class:`AttentionSource`, of which it reads that layer or head only)."""
    if is_source(att):
        return att.layer(layer).mean(axis=0) if average else att.head(layer, head)
    a = as_array(att)
    return a[layer].mean(axis=0) if average else a[layer, head]


def _local(windows: Sequence[int | None] | None) -> list[tuple[int, int]]:
    """``(layer, window)`` of the local layers."""
    return [(i, w) for i, w in enumerate(windows or ()) if w is not None]


def _pooled_mask(T: int, f: int, window: int | None) -> np.ndarray:
    """``[n, n]`` (n = ceil(T / f)): True where every token cell of an ``f`` x ``f`` block is
    masked (cells past T count as masked)."""
    n = math.ceil(T / f)
    full = np.ones((n * f, n * f), bool)
    full[:T, :T] = display_mask(T, window)
    return np.asarray(full.reshape(n, f, n, f).all(axis=(1, 3)))


def mask_row(row: np.ndarray, windows: Sequence[int | None] | None = None) -> np.ndarray:
    """The newest query's rows ``[L, H, T]`` with NaN on the keys a local layer hides from
    it (keys 0 .. T - 1 - window); ``row`` itself when no layer is local."""
    local = _local(windows)
    T = row.shape[-1]
    if not any(w < T for _, w in local):
        return row
    out = np.array(row, dtype=np.float32, copy=True)
    for layer, w in local:
        if w < T:
            out[layer, :, :T - w] = np.nan
    return out


def mask_pooled_row(cells: np.ndarray, T: int, f: int,
                    windows: Sequence[int | None] | None = None) -> None:
    """After the newest query (row T - 1) was pooled into block row r = (T - 1) // f of
    ``cells`` ``[L, H, >= n, >= n]``, NaN on that row's blocks a local layer masks wholly;
    in place. Blocks become masked only on a block row's first query, and stay so."""
    local = _local(windows)
    if not local:
        return
    n, r = math.ceil(T / f), (T - 1) // f
    for layer, w in local:
        cells[layer, :, r, :n][:, _pooled_mask(T, f, w)[r]] = np.nan


def map_scale(T: int, cell: int) -> tuple[str, int]:
    """How a ``T``-token map fits a ``cell``-pixel thumbnail: ``("up", f)``, ``f = cell // T``
    pixels a token, while it fits; else ``("pool", f)``, max over blocks of ``f = ceil(T /
    cell)`` tokens."""
    if cell >= T:
        return ("up", max(1, cell // T))
    return ("pool", math.ceil(T / cell))


def _layer_cells(a: np.ndarray, kind: str, f: int, window: int | None,
                 dst: np.ndarray) -> None:
    """One layer's thumbnails of ``a`` ``[H, T, T]`` into ``dst`` ``[H, >= cell, >= cell]``
    (see :func:`map_cells`)."""
    T = a.shape[-1]
    if kind == "up":
        img = a.repeat(f, axis=1).repeat(f, axis=2).astype(np.float32)  # [H, T f, T f]
        img[:, display_mask(T).repeat(f, 0).repeat(f, 1)] = np.nan
        if window is not None:
            img[:, display_mask(T, window).repeat(f, 0).repeat(f, 1)] = np.nan
        dst[:, :T * f, :T * f] = img
        return
    n = math.ceil(T / f)
    if n * f != T:
        pad = np.zeros((a.shape[0], n * f, n * f), np.float32)
        pad[:, :T, :T] = a
    else:
        pad = a
    pooled = pad.reshape(a.shape[0], n, f, n, f).max(axis=(2, 4))  # [H, n, n]
    pooled[:, upper_mask(n)] = np.nan
    if window is not None:
        pooled[:, _pooled_mask(T, f, window)] = np.nan
    dst[:, :n, :n] = pooled


def map_cells(att: np.ndarray | AttentionSource, cell: int, out: np.ndarray,
              windows: Sequence[int | None] | None = None) -> tuple[str, int]:
    """Every head's thumbnail at :func:`map_scale` into ``out`` ``[L, H, >= cell, >= cell]``
    (the cells of a mosaic), NaN where masked, one layer of ``att`` read at a time; returns
    the scale. ``out`` is written only in the drawn ``[: T f, : T f]`` or ``[:n, :n]``
    corner of each cell."""
    (L, _, T, _), read = layer_reader(att)
    kind, f = map_scale(T, cell)
    if T == 0:
        return kind, f
    for layer in range(L):  # the layer's read is let go before the next one is made
        _layer_cells(read(layer), kind, f, windows[layer] if windows else None, out[layer])
    return kind, f
