"""What happens inside an attention head: queries, keys and values, the raw scores q·k/√d,
the causal mask, and the value-weighted attention ‖α_ij · v_j W_O^h‖.

Everything is recomputed from the residual stream entering a block with the model's own
pieces (``block.ln_1``, ``attn.c_attn``, :func:`~gptviz.model.gpt.apply_rotary` with the
model's rotary tables, ``config.scale``, ``config.kv_heads``, :func:`masked_cells`), so the
numbers are the ones the model used: ``softmax(scores)`` is the model's attention.

:class:`WindowStream` holds the residual stream of a session's window, extended by one
single-token pass per new token (a copy of the session's KV cache up to the first new
position), sliced when the timeline is scrubbed back.

Shapes: T query positions, S key positions, nh query heads, nkv key/value heads, hd head
width, C = n_embd, L layers.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gptviz.model.gpt import GPT, apply_rotary, attention_mask

__all__ = ["HeadProjections", "attention_input", "head_projections", "kv_head_of",
           "masked_cells", "raw_scores", "masked_scores", "value_norms", "value_weighted",
           "window_scores", "window_value_weighted", "window_residuals", "trace_extras",
           "WindowStream", "scale_text", "score_formula"]


@dataclass
class HeadProjections:
    """Queries, keys and values of one layer over T positions.

    Attributes
    ----------
    q
        ``(nh, T, hd)`` queries, rotated by their positions with rotary embeddings.
    k, v
        ``(nkv, T, hd)`` keys (rotated likewise) and values.
    q_plain, k_plain
        The queries and keys before the rotation (the same tensors without rotary).
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    q_plain: torch.Tensor
    k_plain: torch.Tensor


def attention_input(model: GPT, layer: int, x: torch.Tensor) -> torch.Tensor:
    """What block ``layer``'s attention reads from the residual stream ``x`` ``(..., C)``:
    ``ln_1(x)`` in a pre-LN block (GPT-2, parallel blocks), ``x`` itself in a post-LN one
    (GPT-1)."""
    block: Any = model.h[layer]
    return block.ln_1(x) if block.pre_ln else x


def head_projections(model: GPT, layer: int, x: torch.Tensor, pos: int = 0) -> HeadProjections:
    """q, k, v of block ``layer`` from the residual stream ``x`` ``(T, C)`` entering it, at
    window positions ``pos .. pos + T - 1`` (they decide the rotary angles)."""
    cfg = model.config
    attn: Any = model.h[layer].attn
    nh, nkv, hd = cfg.n_head, cfg.kv_heads, cfg.head_dim
    T = x.shape[0]
    qkv = attn.c_attn(attention_input(model, layer, x)).view(T, nh + 2 * nkv, hd)
    qkv = qkv.transpose(0, 1)  # (nh + 2 nkv, T, hd)
    q_plain, k_plain, v = qkv.split((nh, nkv, nkv), dim=0)
    if cfg.positional_embedding_type != "rotary":
        return HeadProjections(q_plain, k_plain, v, q_plain, k_plain)
    cos = model.rope_cos.narrow(0, pos, T).to(x.dtype)  # (T, rd): broadcast over the heads
    sin = model.rope_sin.narrow(0, pos, T).to(x.dtype)
    return HeadProjections(apply_rotary(q_plain, cos, sin), apply_rotary(k_plain, cos, sin), v,
                           q_plain, k_plain)


def kv_head_of(model: GPT, head: int) -> int:
    """The key/value head that query head ``head`` reads (grouped-query attention: each
    serves ``n_head // kv_heads`` consecutive query heads)."""
    cfg = model.config
    return head // (cfg.n_head // cfg.kv_heads)


def _per_query_head(model: GPT, t: torch.Tensor) -> torch.Tensor:
    """``(nkv, ...)`` keys or values repeated for the query heads they serve: ``(nh, ...)``."""
    groups = model.config.n_head // model.config.kv_heads
    return t if groups == 1 else t.repeat_interleave(groups, dim=0)


def masked_cells(model: GPT, layer: int, T: int, S: int | None = None) -> torch.Tensor:
    """``(T, S)`` bool, True where layer ``layer`` puts -inf before the softmax: keys after
    the query and, in a layer with a local window, keys outside it
    (:func:`~gptviz.model.gpt.attention_mask`; the T queries are the last T of the S keys)."""
    S = T if S is None else S
    return attention_mask(model.config, layer, T, S, model.wte.weight.device)


def raw_scores(model: GPT, p: HeadProjections) -> torch.Tensor:
    """``(nh, T, T)`` q·k times the family's scale (1/√d unless ``config.attn_scale``), for
    every query and key, the future included (before the mask)."""
    k = _per_query_head(model, p.k)  # (nh, T, hd)
    return (p.q @ k.transpose(-2, -1)) * model.config.scale  # (nh, T, T)


def masked_scores(model: GPT, layer: int, raw: torch.Tensor) -> torch.Tensor:
    """``raw`` scores ``(nh, T, S)`` with -inf where :func:`masked_cells` masks: their softmax
    over the keys is the attention."""
    T, S = raw.shape[-2:]
    return raw.masked_fill(masked_cells(model, layer, T, S), float("-inf"))


def value_norms(model: GPT, layer: int, v: torch.Tensor) -> torch.Tensor:
    """``(nh, S)``: ‖v_j W_O^h‖, the length of what key j's value adds to the residual stream
    through head h's slice of the output projection (``attn.c_proj``, no bias).

    As sqrt(v_j G_h v_j) with the Gram matrix G_h = W_O^h W_O^h^T ``(hd, hd)``: hd² instead of
    hd·C products per position and head (at GPT-2 small 64 vs 768).
    """
    cfg = model.config
    nh, hd = cfg.n_head, cfg.head_dim
    attn: Any = model.h[layer].attn
    w = attn.c_proj.weight.to(v.dtype)  # (C, nh * hd): y = z W^T
    w_heads = w.view(cfg.n_embd, nh, hd).permute(1, 2, 0)  # (nh, hd, C)
    gram = w_heads @ w_heads.transpose(1, 2)  # (nh, hd, hd)
    vh = _per_query_head(model, v)  # (nh, S, hd)
    sq = ((vh @ gram) * vh).sum(-1)  # (nh, S)
    return sq.clamp_min(0).sqrt()


def value_weighted(model: GPT, layer: int, att: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``(nh, T, S)`` value-weighted attention ‖α_ij · v_j W_O^h‖ = α_ij ‖v_j W_O^h‖
    (Kobayashi et al., 2020): the attention ``att`` ``(nh, T, S)`` weighted by how much each
    value moves the residual stream (α ≥ 0, so the norm factors out)."""
    return att * value_norms(model, layer, v).unsqueeze(1)  # (nh, T, S)


@torch.inference_mode()
def window_residuals(model: GPT, ids: torch.Tensor, ablation: Any = None) -> torch.Tensor:
    """``(L + 1, T, C)`` residual stream entering every block (and after the last) for the
    token ids ``(T,)``, from one forward pass (under ``ablation``)."""
    out = model(ids.view(1, -1), None, return_resid=True, ablation=ablation, last_only=True)
    assert out.residuals is not None
    return torch.stack(out.residuals)[:, 0]  # (L + 1, T, C)


@torch.inference_mode()
def window_scores(model: GPT, resid: torch.Tensor) -> np.ndarray:
    """``(L, H, T, T)`` float32 masked scores of every layer and head from the residual
    stream ``resid`` ``(L + 1, T, C)``: the scaled q·k, -inf where masked (softmax over the
    last axis gives the attention)."""
    out = []
    for layer in range(model.config.n_layer):
        p = head_projections(model, layer, resid[layer])
        out.append(masked_scores(model, layer, raw_scores(model, p)).float().cpu().numpy())
    return np.stack(out).astype(np.float32)


@torch.inference_mode()
def window_value_weighted(model: GPT, resid: torch.Tensor) -> np.ndarray:
    """``(L, H, T, T)`` float32 ‖α_ij · v_j W_O^h‖ of every layer and head from ``resid``
    ``(L + 1, T, C)``; 0 where masked."""
    out = []
    for layer in range(model.config.n_layer):
        p = head_projections(model, layer, resid[layer])
        att = torch.softmax(masked_scores(model, layer, raw_scores(model, p)).float(), dim=-1)
        out.append(value_weighted(model, layer, att, p.v.float()).cpu().numpy())
    return np.stack(out).astype(np.float32)


def trace_extras(session: Any, scores: bool = False, value_weighted: bool = False
                 ) -> dict[str, np.ndarray]:
    """The optional arrays of a trace file for the session's window, under its ablation:
    ``scores`` and/or ``value_weighted``, each float32 ``(L, H, T, T)`` (see
    :func:`window_scores`, :func:`window_value_weighted`); one forward pass for both."""
    if not (scores or value_weighted):
        return {}
    model = session.model
    with torch.inference_mode():
        ids = torch.tensor(session.window_tokens, dtype=torch.long, device=model.wte.weight.device)
        resid = window_residuals(model, ids, session.device_ablation)
    out: dict[str, np.ndarray] = {}
    if scores:
        out["scores"] = window_scores(model, resid)
    if value_weighted:
        out["value_weighted"] = window_value_weighted(model, resid)
    return out


def scale_text(model: GPT) -> str:
    """The family's factor on q·k as written in the formula: ``1/√d``, ``1`` or a number."""
    cfg = model.config
    if cfg.attn_scale is None:
        return f"1/√{cfg.head_dim}"
    return "1" if cfg.attn_scale == 1.0 else f"{cfg.attn_scale:g}"


def score_formula(model: GPT) -> str:
    """One line: how this family scores key j for query i."""
    cfg = model.config
    if cfg.positional_embedding_type == "rotary":
        qk = "(R_i q_i)·(R_j k_j)"
    else:
        qk = "q_i·k_j"
    if cfg.attn_scale is None:
        return f"s_ij = {qk} / √d"
    if cfg.attn_scale == 1.0:
        return f"s_ij = {qk}"
    return f"s_ij = {cfg.attn_scale:g} · {qk}"


_STREAMS: weakref.WeakKeyDictionary[Any, WindowStream] = weakref.WeakKeyDictionary()


class WindowStream:
    """The residual stream of a session's window ``(L + 1, T, C)``, kept up to date cheaply.

    A new token costs one single-token pass over a copy of the session's KV cache
    (:meth:`~gptviz.engine.Session.kv_cache_snapshot`) under the session's ablation; going
    back on the timeline slices what is held. Another window start, ablation or text runs
    the whole window once.
    """

    def __init__(self) -> None:
        # (weak reference to the session, window start, its ablation object)
        self._owner: tuple[Any, int, Any] | None = None
        self._ids = np.zeros(0, np.int64)
        self._resid: torch.Tensor | None = None  # (L + 1, n, C)

    def reset(self) -> None:
        self.__init__()  # type: ignore[misc]

    @staticmethod
    def shared(session: Any) -> WindowStream:
        """The one stream of ``session`` that every reader on its thread uses (the inside-head
        analysis and the map's stages pay for a new token once)."""
        stream = _STREAMS.get(session)
        if stream is None:
            stream = _STREAMS[session] = WindowStream()
        return stream

    @torch.inference_mode()
    def get(self, session: Any, ids: np.ndarray) -> torch.Tensor:
        """``(L + 1, T, C)`` for the window ``ids`` ``[T]`` of ``session`` as it is now."""
        owner = (weakref.ref(session), int(session.window_start), session.device_ablation)
        T = int(ids.shape[0])
        held = self._ids
        last = self._owner
        same = (last is not None and last[0]() is session and last[1] == owner[1]
                and last[2] is owner[2])
        n = 0
        if same and self._resid is not None:
            m = min(T, held.shape[0])
            n = m if np.array_equal(held[:m], ids[:m]) else 0
            if n == T:
                return self._resid[:, :T]
        model = session.model
        cache = session.kv_cache_snapshot(n, room=T - n)  # keys/values of positions < n
        idx = torch.as_tensor(ids[n:], dtype=torch.long, device=cache.k.device).view(1, -1)
        out = model(idx, cache, return_resid=True, ablation=session.device_ablation,
                    last_only=True)
        assert out.residuals is not None
        new = torch.stack(out.residuals)[:, 0]  # (L + 1, T - n, C)
        resid = new if n == 0 or self._resid is None else torch.cat(
            (self._resid[:, :n], new), dim=1)
        self._owner, self._ids, self._resid = owner, np.array(ids, np.int64), resid
        return resid

