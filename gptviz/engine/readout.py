"""Reading a session's window without changing it: attention, activations, cache, traces.

Reading the buffers
-------------------
Besides the attention (:func:`attention`, the whole ``(L, H, T, T)`` of the window without
recomputation) and the next-token distribution, analyses can read the window's final
activations (:func:`final_hidden`: logits of any window position without a forward pass),
copy the KV cache up to a position (:func:`kv_cache_snapshot`: run one more position for the
cost of one step) and run the model with the session's ablation
(:attr:`~gptviz.engine.session.Session.device_ablation`), without touching the session.
:func:`trace_arrays` is what a trace file (:mod:`gptviz.io.export`) holds: one fresh forward
over the window.

Each function here backs the :class:`~gptviz.engine.session.Session` method of the same name.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import torch

from gptviz.engine.attention_store import PackedAttention
from gptviz.engine.validation import check_int
from gptviz.engine.window import ContextWindow
from gptviz.model.gpt import Ablation, KVCache

__all__ = ["attention", "attention_head", "attention_layer", "attention_row", "packed_attention",
           "final_hidden", "kv_cache_snapshot", "class_probs",
           "trace_arrays"]


def attention(window: ContextWindow, copy: bool = False) -> np.ndarray:
    """Attention of the window ``(L, H, T, T)`` float32, unpacked from the window's history:
    a new array, read-only unless ``copy`` (then the caller's to change)."""
    out = window.attention_maps()
    if not copy:
        out.flags.writeable = False
    return out


def _check_layer(window: ContextWindow, layer: int, head: int = 0) -> tuple[int, int]:
    cfg = window.model.config
    layer, head = check_int(layer, "layer"), check_int(head, "head")
    if not 0 <= layer < cfg.n_layer or not 0 <= head < cfg.n_head:
        raise ValueError(f"no head ({layer}, {head}): the model has {cfg.n_layer} layers "
                         f"of {cfg.n_head} heads")
    return layer, head


def attention_head(window: ContextWindow, layer: int, head: int) -> np.ndarray:
    """Attention of one head over the window ``(T, T)`` float32 (read-only).

    Raises
    ------
    ValueError
        No such layer or head.
    """
    layer, head = _check_layer(window, layer, head)
    out = window.attention_maps(layer, head)
    out.flags.writeable = False
    return out


def attention_layer(window: ContextWindow, layer: int) -> np.ndarray:
    """Attention of every head of one layer over the window ``(H, T, T)`` float32
    (read-only); ``ValueError`` when there is no such layer."""
    layer, _ = _check_layer(window, layer)
    out = window.attention_maps(layer)
    out.flags.writeable = False
    return out


def packed_attention(window: ContextWindow, copy: bool = False) -> PackedAttention:
    """The window's attention up to the cursor, read a layer or a head at a time
    (:class:`~gptviz.engine.attention_store.PackedAttention`): on the live history (valid
    until the window changes), or on a copy of its packed rows when ``copy``."""
    maps = PackedAttention(window.attn, window.length)
    return maps.copy() if copy else maps


def attention_row(window: ContextWindow, pos: int | None = None) -> np.ndarray:
    """Attention of the query at window position ``pos`` (default: the newest) in every layer
    and head, ``(L, H, pos + 1)`` float32; ``ValueError`` outside the window."""
    T = window.length
    q = T - 1 if pos is None else check_int(pos, "query position")
    if not 0 <= q < T:
        raise ValueError(f"query position {q} is outside the window (0..{T - 1})")
    return window.attention_row(q)


def final_hidden(window: ContextWindow, copy: bool = False) -> torch.Tensor:
    """The final activations of the window ``(T, C)`` (after the last layer norm, before the
    output projection), one row per window position, on the model's device.

    ``model.lm_head(final_hidden(w)[t])`` are the logits of the token after window position
    ``t`` (under the session's ablation) without a forward pass. A view into the buffer unless
    ``copy``: do not modify it; it is valid until the next call that changes the session
    (step, undo, ...).
    """
    view = window.hidden[:window.length]  # (T, C)
    return view.clone() if copy else view


def kv_cache_snapshot(window: ContextWindow, length: int | None = None,
                      room: int = 1) -> KVCache:
    """A copy of the keys and values of the first ``length`` window positions (default: the
    whole window), as a new batch-1 :class:`~gptviz.model.gpt.KVCache` with ``length`` set and
    room for ``room`` more positions.

    Feeding the token at window position ``length`` into it
    (``model(idx, cache, ablation=session.device_ablation)``) runs that position like the
    session did, at the cost of one step instead of the whole prefix (e.g. the logit lens at
    an earlier query). The window's own cache is not touched.

    Raises
    ------
    ValueError
        ``length`` outside ``0 .. window_len``, ``room < 0``, or ``length + room`` beyond
        ``block_size``.
    """
    cached = window.length  # window positions whose keys/values are valid
    n = cached if length is None else check_int(length, "length")
    extra = check_int(room, "room")
    B = window.block_size
    if not 0 <= n <= cached:
        raise ValueError(f"the cache holds window positions 0..{cached - 1} (asked for the "
                         f"first {n})")
    if extra < 0 or n + extra > B or n + extra == 0:
        raise ValueError(f"room must be >= 0 with length + room in 1..{B}"
                         f" (got length {n}, room {extra})")
    p = window.model.wte.weight
    with torch.no_grad():
        snap = KVCache(window.model.config, batch=1, device=p.device, dtype=p.dtype,
                       capacity=n + extra)
        snap.k[:, :, :, :n] = window.cache.k[:, :1, :, :n]  # (L, 1, nh, n, hd)
        snap.v[:, :, :, :n] = window.cache.v[:, :1, :, :n]
    snap.length = n
    return snap


@torch.inference_mode()
def class_probs(window: ContextWindow) -> np.ndarray | None:
    """``(n_classes,)`` softmax of the fine-tuning head at the cursor (``None``: no head)."""
    model = window.model
    if model.config.n_classes <= 0:
        return None
    h = window.hidden[window.length - 1].view(1, 1, -1)  # (1, 1, C)
    return torch.softmax(model.classify(h).float(), dim=-1)[0].cpu().numpy()


@torch.inference_mode()
def trace_arrays(window: ContextWindow, tokens: list[int], prompt_len: int,
                 display: Callable[[int], str],
                 ablation: Ablation | None) -> dict[str, np.ndarray]:
    """The window of ``tokens`` as the arrays of a trace NPZ file.

    One full forward under ``ablation`` over the window gives

    * ``token_ids`` int64 ``(T,)``, ``tokens`` unicode ``(T,)`` display strings (``display``),
    * ``attention`` float32 ``(L, H, T, T)``,
    * ``probs`` float32 ``(T, V)``: row t is the softmax distribution of the token after
      position t, before any sampling filter,
    * ``prompt_len`` int64 scalar: prompt tokens inside the window (of ``prompt_len`` in all),
    * ``window_start`` int64 scalar: global position of the window's first token,
    * ``config`` the model config as a JSON string.
    """
    model = window.model
    cfg = model.config
    ws = window.start
    ids = tokens[ws:]
    T = len(ids)
    idx = torch.tensor([ids], dtype=torch.long, device=window.device)  # (1, T)
    out = model(idx, None, return_attn=True, ablation=ablation)
    assert out.attentions is not None
    # Layer by layer into the array written, each forward map let go once copied: the peak is
    # the forward's maps and the array, not twice the maps and the array.
    att = np.empty((cfg.n_layer, cfg.n_head, T, T), np.float32)  # (L, H, T, T)
    for layer in range(cfg.n_layer):
        att[layer] = out.attentions[layer][0].float().cpu().numpy()
        out.attentions[layer] = None
    probs = torch.softmax(out.logits[0].float(), dim=-1)  # (T, V)
    return {
        "token_ids": np.asarray(ids, dtype=np.int64),
        "tokens": np.asarray([display(t) for t in ids], dtype=np.str_),
        "attention": att,
        "probs": probs.cpu().numpy(),
        "prompt_len": np.asarray(max(0, prompt_len - ws), dtype=np.int64),
        "window_start": np.asarray(ws, dtype=np.int64),
        "config": np.asarray(json.dumps(cfg.to_dict())),
    }


class WindowReads:
    """What a :class:`~gptviz.engine.session.Session` reads from its context window (mixed
    into it): the next-token distribution at the cursor, the attention a head, a layer, a
    row or the whole window at a time, the final
    activations, a copy of the KV cache, the fine-tuning head's probabilities."""

    _window: ContextWindow
    top_k_report: int

    def next_distribution(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Top-k ids ``(k,)`` int64, their probabilities ``(k,)`` float32, and the entropy in
        bits of the unfiltered next-token distribution at the cursor."""
        nxt = self._window.next_candidates(self.top_k_report)
        return nxt.ids.copy(), nxt.probs.copy(), nxt.entropy

    def next_probs(self) -> np.ndarray:
        """The full unfiltered next-token distribution ``(V,)`` float32 at the cursor."""
        nxt = self._window.next_candidates(self.top_k_report)
        return nxt.distribution.float().cpu().numpy().copy()

    def attention(self, copy: bool = False) -> np.ndarray:
        """Attention of the window ``(L, H, T, T)`` float32, lower-triangular.

        Unpacked from the window's compact history (:mod:`gptviz.engine.attention_store`):
        a new array each call, read-only unless ``copy``: ``4 L H T^2`` bytes (604 MB at GPT-2
        small's shape and 1,024 tokens). To read less, use :meth:`packed_attention` (a layer
        at a time), :meth:`attention_head`, :meth:`attention_layer` or :meth:`attention_row`.
        """
        return attention(self._window, copy)

    def attention_head(self, layer: int, head: int) -> np.ndarray:
        """Attention of one head over the window ``(T, T)`` float32 (read-only)."""
        return attention_head(self._window, layer, head)

    def attention_layer(self, layer: int) -> np.ndarray:
        """Attention of every head of ``layer`` over the window ``(H, T, T)`` float32
        (read-only)."""
        return attention_layer(self._window, layer)

    def packed_attention(self, copy: bool = False) -> PackedAttention:
        """The window's attention ``(L, H, T, T)`` to be read a layer or a head at a time
        (:class:`~gptviz.engine.attention_store.PackedAttention`: ``layer(l)``, ``layers()``,
        ``head(l, h)``), without unpacking the whole window as :meth:`attention` does. Reads
        the live history (valid until the session changes) unless ``copy``: then it keeps a
        copy of the packed rows (float16 for big models: a quarter of :meth:`attention`)."""
        return packed_attention(self._window, copy)

    def attention_row(self, query: int | None = None) -> np.ndarray:
        """The attention of the query at window position ``query`` (default: the newest)
        in every layer and head, ``(L, H, query + 1)`` float32."""
        return attention_row(self._window, query)

    def final_hidden(self, copy: bool = False) -> torch.Tensor:
        """The final activations of the window ``(T, C)`` on the model's device: the logits of
        every window position without a forward pass (:func:`gptviz.engine.final_hidden`;
        a view into the session's buffer unless ``copy``)."""
        return final_hidden(self._window, copy)

    def kv_cache_snapshot(self, length: int | None = None, room: int = 1) -> KVCache:
        """A new :class:`~gptviz.model.gpt.KVCache` holding a copy of the keys and values of
        the first ``length`` window positions (default: all) and room for ``room`` more, to
        run one more position for the cost of one step
        (:func:`gptviz.engine.kv_cache_snapshot`; ``ValueError`` on a bad size)."""
        return kv_cache_snapshot(self._window, length, room)

    def class_probs(self) -> np.ndarray | None:
        """``(n_classes,)`` softmax of the fine-tuning head W_y at the last token, or ``None``
        when the model has no head."""
        return class_probs(self._window)
