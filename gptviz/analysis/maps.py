"""Attention maps as they are drawn: one head's (or a layer's mean) ``[T, T]`` map with the
masked cells set to NaN, so plots show the mask instead of zeros: the future (keys after the
query) in every layer, and in a local layer (GPT-Neo) the keys outside its window too.

Which cells are masked is the model's own :func:`gptviz.model.gpt.window_mask` (what
:func:`~gptviz.model.gpt.attention_mask` applies before the softmax), read here as numpy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from gptviz.model.config import GPTConfig
from gptviz.model.gpt import key_window, window_mask

__all__ = ["upper_mask", "display_mask", "layer_windows", "masked_map", "head_map",
           "mask_images", "mask_pooled", "mask_row", "mask_pooled_row"]

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


def head_map(att: np.ndarray, layer: int, head: int, average: bool) -> np.ndarray:
    """The ``[T, T]`` map of one head (or its layer's mean) of ``att`` ``[L, H, T, T]``."""
    return att[layer].mean(axis=0) if average else att[layer, head]


def _local(windows: Sequence[int | None] | None) -> list[tuple[int, int]]:
    """``(layer, window)`` of the local layers."""
    return [(i, w) for i, w in enumerate(windows or ()) if w is not None]


def mask_images(img: np.ndarray, T: int, f: int,
                windows: Sequence[int | None] | None = None) -> None:
    """NaN into ``img`` ``[L, H, T*f, T*f]`` (maps drawn ``f`` pixels per token) wherever a
    token cell is masked in its layer; in place."""
    img[:, :, display_mask(T).repeat(f, 0).repeat(f, 1)] = np.nan
    for layer, w in _local(windows):
        img[layer, :, display_mask(T, w).repeat(f, 0).repeat(f, 1)] = np.nan


def _pooled_mask(T: int, f: int, window: int | None) -> np.ndarray:
    """``[n, n]`` (n = ceil(T / f)): True where every token cell of an ``f`` x ``f`` block is
    masked (cells past T count as masked)."""
    n = math.ceil(T / f)
    full = np.ones((n * f, n * f), bool)
    full[:T, :T] = display_mask(T, window)
    return np.asarray(full.reshape(n, f, n, f).all(axis=(1, 3)))


def mask_pooled(pooled: np.ndarray, T: int, f: int,
                windows: Sequence[int | None] | None = None) -> None:
    """NaN into max-pooled maps ``pooled`` ``[L, H, n, n]`` (blocks of ``f`` tokens) on the
    blocks whose cells are all masked; in place. Without local layers that is
    :func:`upper_mask` of n."""
    pooled[:, :, upper_mask(pooled.shape[-1])] = np.nan
    for layer, w in _local(windows):
        pooled[layer, :, _pooled_mask(T, f, w)] = np.nan


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
