"""Attention read a layer at a time: what the analyses take besides ``[L, H, T, T]`` arrays.

A session's window holds its attention as packed rows
(:mod:`gptviz.engine.attention_store`); unpacking all of it as float32 takes ``4 L H T^2``
bytes (604 MB at GPT-2 small's shape and 1,024 tokens). The analyses that need every layer
(head scores, rollout) read one layer's ``[H, T, T]`` after the other from an
:class:`AttentionSource` instead, and those that need one head read only it. numpy only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeGuard, cast

import numpy as np

__all__ = ["AttentionSource", "as_array", "forward_attention", "is_source", "layer_reader"]


class AttentionSource(Protocol):
    """Attention ``[L, H, T, T]`` read a layer or a head at a time (e.g.
    :class:`~gptviz.engine.attention_store.PackedAttention`)."""

    shape: tuple[int, int, int, int]

    def layer(self, layer: int) -> np.ndarray:
        """``[H, T, T]`` float32 of one layer."""
        ...

    def head(self, layer: int, head: int) -> np.ndarray:
        """``[T, T]`` float32 of one head."""
        ...


def is_source(att: Any) -> TypeGuard[AttentionSource]:
    """Whether ``att`` is an :class:`AttentionSource` (read a layer at a time), not an array."""
    return not isinstance(att, np.ndarray) and callable(getattr(att, "layer", None))


def as_array(att: np.ndarray | AttentionSource) -> np.ndarray:
    """``att`` when it is an array (for the type checker: after :func:`is_source` said no)."""
    return cast(np.ndarray, att)


def layer_reader(att: np.ndarray | AttentionSource
                 ) -> tuple[tuple[int, ...], Callable[[int], np.ndarray]]:
    """The shape ``(L, H, T, T)`` of ``att`` and a function giving layer ``l``'s
    ``[H, T, T]`` (a view of an array, a fresh read of a source)."""
    if is_source(att):
        return tuple(att.shape), att.layer
    a = np.asarray(cast(np.ndarray, att))
    return a.shape, a.__getitem__


def forward_attention(model: Any, ids: Any, ablation: Any = None) -> Any:
    """Run ``model`` once on ``ids`` ``[T]`` and keep its attention packed (float32, lower
    triangles: the same numbers as :func:`gptviz.analysis.attention_array`), as a
    :class:`~gptviz.engine.attention_store.PackedAttention` read a layer at a time.

    Each layer's map is packed and let go as soon as it is read, so the peak is the forward's
    own maps plus half of them, not twice them (and what is kept is half).
    """
    import torch

    from gptviz.engine.attention_store import AttentionHistory, PackedAttention

    cfg = model.config
    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(1, -1).to(device)  # (1, T)
    T = int(x.shape[1])
    with torch.inference_mode():
        out = model(x, return_attn=True, ablation=ablation, last_only=True)
        maps = out.attentions  # L x (1, H, T, T)
        del out
        hist = AttentionHistory(cfg.n_layer, cfg.n_head, np.float32)
        hist.reserve(T)
        for layer in range(cfg.n_layer):
            hist.write_block(layer, maps[layer][0], 0)  # (H, T, T) -> packed rows
            maps[layer] = None  # free this layer's (H, T, T) now
    return PackedAttention(hist, T)
