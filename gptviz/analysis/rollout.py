"""Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in Transformers").

Per layer the heads are averaged, ``A_l = mean_h att[l, h]`` (``[T, T]``, rows sum to 1).
With ``residual=True`` the skip connection is modelled as in the paper,
``A'_l = 0.5 A_l + 0.5 I`` with rows renormalised to sum to 1. The rollout is the product
through the layers, ``R = A'_{L-1} ··· A'_1 A'_0``: ``R[i, k]`` is how much of position ``k``'s
input flows into position ``i``'s output of the last layer. Products of row-stochastic lower
triangular matrices stay row-stochastic and lower triangular, so ``R`` is causal and its rows
sum to 1.

Every function takes the attention as an ``[L, H, T, T]`` array or as a source read a layer
at a time (:class:`~gptviz.analysis.sources.AttentionSource`, e.g. a session's
:meth:`~gptviz.engine.session.Session.packed_attention`): from a source the rollout and its
row read one layer's ``[H, T, T]`` after the other and hold one ``A'_l`` at a time.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gptviz.analysis.sources import AttentionSource, as_array, is_source

__all__ = ["attention_rollout", "rollout_row", "rollout_layers"]


def rollout_layers(att: np.ndarray, residual: bool = True,
                   head_mask: np.ndarray | None = None) -> np.ndarray:
    """The per-layer mixing matrices ``A'_l`` the rollout multiplies.

    Parameters
    ----------
    att
        ``[L, H, T, T]`` attention probabilities.
    residual
        Add the identity for the skip connection (``0.5 A + 0.5 I``, rows renormalised).
    head_mask
        Optional ``[L, H]`` weights: 1 includes a head in its layer's average, 0 leaves it out
        (fractional weights give a weighted average). A layer whose weights are all 0 is the
        identity (it moves nothing between positions).

    Returns
    -------
    np.ndarray
        ``[L, T, T]``.
    """
    att = np.asarray(att)
    if att.ndim != 4 or att.shape[-1] != att.shape[-2]:
        raise ValueError(f"attention must have shape [L, H, T, T], got {att.shape}")
    dtype = np.result_type(att.dtype, np.float32)
    n_layer, n_head, t, _ = att.shape
    eye = np.eye(t, dtype=dtype)
    if head_mask is None:
        mixed = att.mean(axis=1, dtype=dtype)  # [L, T, T]
    else:
        w = np.asarray(head_mask, dtype=dtype)
        if w.shape != (n_layer, n_head):
            raise ValueError(f"head_mask must have shape {(n_layer, n_head)}, got {w.shape}")
        total = w.sum(axis=1)  # [L]
        mixed = np.einsum("lh,lhqk->lqk", w, att.astype(dtype, copy=False))  # [L, T, T]
        empty = total == 0
        mixed[~empty] /= total[~empty, None, None]
        mixed[empty] = eye
    if residual:
        mixed = 0.5 * mixed + 0.5 * eye
        sums = mixed.sum(axis=-1, keepdims=True)  # [L, T, 1]
        mixed = mixed / np.where(sums > 0, sums, 1)
    return mixed


def _layer_mixing(att: AttentionSource, residual: bool, head_mask: np.ndarray | None
                  ) -> tuple[int, int, Callable[[int], np.ndarray]]:
    """``(L, T, mixing)`` of a source: ``mixing(l)`` is ``A'_l`` ``[T, T]`` float32 from
    layer ``l``'s ``[H, T, T]`` alone, the same numbers as ``rollout_layers(...)[l]``."""
    n_layer, n_head, t, t2 = att.shape
    if t != t2:
        raise ValueError(f"attention must have shape [L, H, T, T], got {tuple(att.shape)}")
    w = None
    if head_mask is not None:
        w = np.asarray(head_mask, dtype=np.float32)
        if w.shape != (n_layer, n_head):
            raise ValueError(f"head_mask must have shape {(n_layer, n_head)}, got {w.shape}")

    def mixing(layer: int) -> np.ndarray:
        a = att.layer(layer)[None]  # [1, H, T, T]
        m = None if w is None else w[layer:layer + 1]  # [1, H]
        return rollout_layers(a, residual=residual, head_mask=m)[0]  # [T, T]

    return n_layer, t, mixing


def attention_rollout(att: np.ndarray | AttentionSource, residual: bool = True,
                      head_mask: np.ndarray | None = None,
                      n_layers: int | None = None) -> np.ndarray:
    """Attention rollout over all layers (or the first ``n_layers``).

    Parameters
    ----------
    att
        ``[L, H, T, T]`` attention probabilities (an array, or a source read a layer at a
        time).
    residual
        Model the skip connection as ``0.5 A + 0.5 I`` (the paper's choice).
    head_mask
        Optional ``[L, H]`` head weights (see :func:`rollout_layers`), e.g. to leave out
        ablated heads.
    n_layers
        Roll out only through layers ``0 .. n_layers - 1`` (default all).

    Returns
    -------
    np.ndarray
        ``[T, T]``: row ``i`` is the attribution of the last rolled-out layer's output at
        position ``i`` to the input positions.
    """
    if is_source(att):
        n_layer, _, mix = _layer_mixing(att, residual, head_mask)
    else:
        mixed = rollout_layers(as_array(att), residual=residual, head_mask=head_mask)
        n_layer, mix = mixed.shape[0], mixed.__getitem__
    n = n_layer if n_layers is None else int(n_layers)
    if not 1 <= n <= n_layer:
        raise ValueError(f"n_layers must be in 1..{n_layer}")
    rollout = mix(0)
    for layer in range(1, n):  # one T×T product per layer
        rollout = mix(layer) @ rollout
    return rollout


def rollout_row(att: np.ndarray | AttentionSource, query: int, residual: bool = True,
                head_mask: np.ndarray | None = None, n_layers: int | None = None) -> np.ndarray:
    """Row ``query`` of :func:`attention_rollout`, computed with vector-matrix products only.

    Parameters
    ----------
    att
        ``[L, H, T, T]`` attention probabilities (an array, or a source read a layer at a
        time).
    query
        The query position (negative counts from the end).
    residual, head_mask, n_layers
        As in :func:`attention_rollout`.

    Returns
    -------
    np.ndarray
        ``[T]``, sums to 1, zero after ``query``.
    """
    if is_source(att):
        n_layer, t, mix = _layer_mixing(att, residual, head_mask)
    else:
        mixed = rollout_layers(as_array(att), residual=residual, head_mask=head_mask)
        n_layer, t, mix = mixed.shape[0], mixed.shape[-1], mixed.__getitem__
    q = query + t if query < 0 else query
    if not 0 <= q < t:
        raise ValueError(f"query {query} is outside 0..{t - 1}")
    n = n_layer if n_layers is None else int(n_layers)
    if not 1 <= n <= n_layer:
        raise ValueError(f"n_layers must be in 1..{n_layer}")
    row = mix(n - 1)[q]  # [T]
    for layer in range(n - 2, -1, -1):
        row = row @ mix(layer)
    return row
