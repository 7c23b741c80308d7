"""Attention maps as they are drawn: one head's (or a layer's mean) ``[T, T]`` map with the
future (keys after the query) set to NaN, so plots show the causal mask instead of zeros."""

from __future__ import annotations

import numpy as np

__all__ = ["upper_mask", "masked_map", "head_map"]

_UPPER: dict[str, np.ndarray] = {}  # one growing mask, sliced for every T


def upper_mask(T: int) -> np.ndarray:
    """Boolean ``[T, T]``, True strictly above the diagonal (key after query); read-only."""
    big = _UPPER.get("m")
    if big is None or big.shape[0] < T:
        n = max(T, 2 * (big.shape[0] if big is not None else 64))
        big = np.triu(np.ones((n, n), dtype=bool), 1)
        big.flags.writeable = False
        _UPPER["m"] = big
    return big[:T, :T]


def masked_map(a: np.ndarray) -> np.ndarray:
    """Copy of a ``[T, T]`` attention map as C-contiguous float32 with NaN above the
    diagonal."""
    out = np.array(a, dtype=np.float32, order="C", copy=True)
    out[upper_mask(out.shape[0])] = np.nan
    return out


def head_map(att: np.ndarray, layer: int, head: int, average: bool) -> np.ndarray:
    """The ``[T, T]`` map of one head (or its layer's mean) of ``att`` ``[L, H, T, T]``."""
    return att[layer].mean(axis=0) if average else att[layer, head]
