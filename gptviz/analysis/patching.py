"""Activation patching: which activations carry the difference between two prompts.

Run a *clean* prompt and a *corrupted* one of the same token length, and a metric
M = logit(target) - logit(vs) at the last position. Then run the corrupted prompt again with
one activation replaced by its value in the clean run; the patched run's metric, normalised
as

    (M_patched - M_corrupt) / (M_clean - M_corrupt),

is 1 where that activation alone restores the clean behaviour and 0 where it does nothing
(Meng et al. 2022, "causal tracing"; Heimersheim & Nanda 2024 on how to use and read it).
Patched here:

* every head's output z (before the output projection) at every position: an L x H map;
* the residual stream entering each block at one token: an L x T map;
* one head's output at one position (:func:`patch_head_positions`): a T vector.

The model's forward has no hook points, so the blocks are run here, from the model's own
modules, with the same operations as :meth:`gptviz.model.gpt.GPT.forward` (an unpatched run
gives its numbers bit for bit, tested). Patched runs are batched: the rows patching layer l
share the corrupted run below l and go through blocks l .. L-1 as one batch, and the last
block computes only the last position, the only one the metric reads. Positions before the
first token where the prompts differ are the same in every run (the model is causal): patched
runs start there, reading the corrupted run's keys and values of the shared prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gptviz.model.gpt import (
    GPT,
    Ablation,
    _ablate,
    apply_rotary,
    causal_mask,
    key_window,
    window_mask,
)

__all__ = ["Cancelled", "PatchRun", "PatchingResult", "run_traced", "prepare",
           "patch_heads", "patch_residual", "patch_head_positions", "activation_patching"]

#: ``progress(done, total)``; returning ``False`` cancels (raises :class:`Cancelled`).
Progress = Callable[[int, int], Any]
#: ``patch(layer, z)``: head outputs ``(B, nh, T', hd)`` of ``layer`` -> patched ones.
ZPatch = Callable[[int, torch.Tensor], torch.Tensor]


class Cancelled(Exception):
    """The progress callback asked to stop."""


@dataclass
class PatchRun:
    """One traced run: the residual stream entering every block ``(L + 1)`` x ``(B, T, C)``,
    every layer's head outputs ``(B, nh, T, hd)``, and the metric ``(B,)`` at the last
    position."""

    resid: list[torch.Tensor]
    z: list[torch.Tensor]
    metric: torch.Tensor


@dataclass
class PatchingResult:
    """Metrics of the clean and corrupted runs, and the normalised patching maps."""

    clean_metric: float
    corrupt_metric: float
    heads: np.ndarray | None = None    # (L, H)
    resid: np.ndarray | None = None    # (L, T)
    note: str | None = None            # e.g. "the metric is the same on both prompts"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON (NaN as null)."""
        def grid(a: np.ndarray | None) -> Any:
            return None if a is None else [[None if not np.isfinite(v) else float(v)
                                            for v in row] for row in a]
        return {"clean_metric": self.clean_metric, "corrupt_metric": self.corrupt_metric,
                "heads": grid(self.heads), "resid": grid(self.resid), "note": self.note}


def _rope(model: GPT, T: int) -> tuple[torch.Tensor, torch.Tensor] | None:
    if model.config.positional_embedding_type != "rotary":
        return None
    return model.rope_cos[:T].unsqueeze(1), model.rope_sin[:T].unsqueeze(1)  # (T, 1, rd)


def _qkv(attn: Any, h: torch.Tensor, rope: Any
         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values ``(B, nh|nkv, T, hd)`` of ``attn`` on ``h`` ``(B, T, C)``."""
    B, T, _ = h.shape
    nh, nkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
    qkv = attn.c_attn(h).view(B, T, nh + 2 * nkv, hd)  # (B, T, nh + 2 nkv, hd)
    if rope is None:
        q, k, v = qkv.split((nh, nkv, nkv), dim=2)
    else:
        q, k = apply_rotary(qkv.narrow(2, 0, nh + nkv), *rope).split((nh, nkv), dim=2)
        v = qkv.narrow(2, nh + nkv, nkv)
    return q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)


def _attention_z(attn: Any, h: torch.Tensor, rope: Any, mask: torch.Tensor | None,
                 last_only: bool, prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
                 window: int | None = None) -> torch.Tensor:
    """Head outputs ``(B, nh, T', hd)`` of ``attn`` (a CausalSelfAttention) on its input
    ``h`` ``(B, T, C)``: as its forward, without a cache; T' = 1 with ``last_only``.
    ``prefix``: keys and values ``(1, nkv, P, hd)`` of P earlier positions (``h`` then holds
    positions P .. P + T - 1, and ``rope`` and ``mask`` are theirs). ``window``: a local
    layer's key window (:func:`~gptviz.model.gpt.key_window`), which replaces ``mask``."""
    B = h.size(0)
    nh, nkv, hd = attn.n_head, attn.n_kv_head, attn.head_dim
    q, k, v = _qkv(attn, h, rope)  # (B, nh|nkv, T, hd)
    if prefix is not None:  # the shared positions before the first differing token
        k = torch.cat([prefix[0].expand(B, -1, -1, -1), k], dim=2)  # (B, nkv, P + T, hd)
        v = torch.cat([prefix[1].expand(B, -1, -1, -1), v], dim=2)
    if last_only:
        q = q[:, :, -1:]  # (B, nh, 1, hd): the last query sees every key, no mask
    Tq, S = q.size(2), k.size(2)
    if attn.groups == 1:
        att = (q @ k.transpose(-2, -1)) * attn.scale  # (B, nh, Tq, S)
    else:
        att = (q.reshape(B, nkv, -1, hd) @ k.transpose(-2, -1)).view(B, nh, Tq, S) * attn.scale
    if window is not None:  # a local layer: even the last query sees only its window
        att = att.masked_fill(window_mask(Tq, S, window, att.device), float("-inf"))
    elif Tq > 1:
        att = att.masked_fill(mask if mask is not None else causal_mask(Tq, S, att.device),
                              float("-inf"))
    att = F.softmax(att, dim=-1)  # (B, nh, Tq, S)
    if attn.groups == 1:
        return att @ v  # (B, nh, Tq, hd)
    return (att.view(B, nkv, -1, S) @ v).view(B, nh, Tq, hd)


def _block(block: Any, layer: int, x: torch.Tensor, rope: Any, mask: torch.Tensor | None,
           ablation: Ablation | None, patch: ZPatch | None, last_only: bool = False,
           z: torch.Tensor | None = None,
           prefix: tuple[torch.Tensor, torch.Tensor] | None = None,
           window: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x_out, z)``: one block on ``x`` ``(B, T, C)`` as :class:`gptviz.model.gpt.Block`
    runs it, with ``patch`` applied to its head outputs (after ablation); ``last_only``:
    only the last position's output ``(B, 1, C)``. ``z``: the (unpatched) head outputs when
    the caller already has them (the attention is then not recomputed); ``prefix``: see
    :func:`_attention_z`."""
    pre = block.pre_ln
    attn = block.attn
    if z is None:
        h = block.ln_1(x) if pre else x  # (B, T, C)
        z = _attention_z(attn, h, rope, mask, last_only, prefix, window)  # (B, nh, T', hd)
        if ablation is not None:
            z = _ablate(z, layer, ablation, attn.n_head)
    if patch is not None:
        z = patch(layer, z)
    B, nh, Tz, hd = z.shape
    a = attn.c_proj(z.transpose(1, 2).contiguous().view(B, Tz, nh * hd))  # (B, T', C)
    xr = x[:, -Tz:] if Tz != x.size(1) else x
    if block.parallel:
        out = xr + a + block.mlp(block.ln_2(xr))
    elif pre:
        xa = xr + a
        out = xa + block.mlp(block.ln_2(xa))
    else:
        xa = block.ln_1(xr + a)
        out = block.ln_2(xa + block.mlp(xa))
    return out, z


def _metric(model: GPT, x_last: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``(B,)``: u . lm-head input at the last position of ``x_last`` ``(B, T, C)``."""
    return model.ln_f(x_last[:, -1]) @ u  # (B,)


def _direction(model: GPT, target: int, vs: int) -> torch.Tensor:
    V = model.config.vocab_size
    for name, t in (("target", target), ("vs", vs)):
        if not 0 <= int(t) < V:
            raise ValueError(f"{name} token id {t} is outside the vocabulary (0..{V - 1})")
    w = model.unembed_weight  # (V, C)
    return w[int(target)] - w[int(vs)]  # (C,)


def run_traced(model: GPT, idx: torch.Tensor, u: torch.Tensor,
               ablation: Ablation | None = None) -> PatchRun:
    """Run ``idx`` ``(B, T)`` block by block, keeping what patching reads."""
    T = idx.shape[1]
    x = model.wte(idx)  # (B, T, C)
    if model.wpe is not None:
        x = x + model.wpe(torch.arange(0, T, device=idx.device))
    x = model.drop(x)
    rope, mask = _rope(model, T), causal_mask(T, T, idx.device) if T > 1 else None
    resid, zs = [x], []
    for layer, block in enumerate(model.h):
        x, z = _block(block, layer, x, rope, mask, ablation, None,
                      window=key_window(model.config, layer))
        resid.append(x)
        zs.append(z)
    return PatchRun(resid=resid, z=zs, metric=_metric(model, x, u))


def _run_from(model: GPT, layer: int, x: torch.Tensor, u: torch.Tensor, rope: Any,
              mask: Any, ablation: Ablation | None, patch: ZPatch | None,
              z: torch.Tensor | None = None,
              prefix: Callable[[int], tuple[torch.Tensor, torch.Tensor] | None] | None = None
              ) -> torch.Tensor:
    """Metric ``(B,)`` of blocks ``layer ..`` run on ``x`` ``(B, T, C)`` (``patch`` at any
    of them; ``z``: block ``layer``'s head outputs, unpatched, when known; ``prefix(i)``:
    block i's keys and values of the positions before ``x``'s, see :func:`_attention_z`)."""
    L = model.config.n_layer
    for i in range(layer, L):
        x, _ = _block(model.h[i], i, x, rope, mask, ablation, patch, last_only=i == L - 1,
                      z=z if i == layer else None,
                      prefix=None if prefix is None else prefix(i),
                      window=key_window(model.config, i))
    return _metric(model, x, u)


@dataclass
class _Pair:
    model: GPT
    clean: PatchRun
    corrupt: PatchRun
    u: torch.Tensor
    rope: Any
    mask: Any
    ablation: Ablation | None
    T: int
    #: The first position where the prompts differ (at most T - 1). Before it every
    #: activation of the two runs is the same (the model is causal), so patched runs only
    #: compute the positions from here on, over the corrupted run's keys and values before.
    start: int = 0
    _prefix: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def tail(self) -> tuple[Any, torch.Tensor | None]:
        """``(rope, mask)`` of the positions ``start .. T - 1`` (queries) over all T keys."""
        n = self.T - self.start
        rope = None if self.rope is None else (self.rope[0][self.start:],
                                               self.rope[1][self.start:])
        return rope, (causal_mask(n, self.T, self.u.device) if n > 1 else None)

    def prefix(self, layer: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Block ``layer``'s keys and values ``(1, nkv, start, hd)`` of the positions before
        :attr:`start` (the same in every run), or ``None`` when ``start`` is 0."""
        if self.start == 0:
            return None
        if layer not in self._prefix:
            block: Any = self.model.h[layer]
            x = self.corrupt.resid[layer][:, :self.start]  # (1, P, C)
            h = block.ln_1(x) if block.pre_ln else x
            rope = None if self.rope is None else (self.rope[0][:self.start],
                                                   self.rope[1][:self.start])
            _, k, v = _qkv(block.attn, h, rope)
            self._prefix[layer] = (k, v)
        return self._prefix[layer]

    def normalise(self, m: torch.Tensor) -> np.ndarray:
        mc, mx = float(self.clean.metric[0]), float(self.corrupt.metric[0])
        d = mc - mx
        out = (m.double().cpu().numpy() - mx) / d if d != 0 else np.full(m.shape, np.nan)
        return np.asarray(out, dtype=np.float64)


def prepare(model: GPT, clean_ids: Any, corrupt_ids: Any, target: int, vs: int,
            ablation: Ablation | None = None) -> _Pair:
    """The clean and corrupted runs that every patching map starts from.

    Raises
    ------
    ValueError
        The prompts differ in length (in tokens), are empty or too long, or a token id is
        outside the vocabulary.
    """
    dev = model.wte.weight.device
    clean = torch.as_tensor(np.asarray(clean_ids, dtype=np.int64), device=dev).view(1, -1)
    corrupt = torch.as_tensor(np.asarray(corrupt_ids, dtype=np.int64), device=dev).view(1, -1)
    Tc, Tx = clean.shape[1], corrupt.shape[1]
    if Tc != Tx:
        raise ValueError(f"the clean prompt is {Tc} tokens and the corrupted one {Tx}: "
                         "patching needs prompts of the same token length")
    if Tc == 0 or Tc > model.config.block_size:
        raise ValueError(f"prompts must be 1..{model.config.block_size} tokens (got {Tc})")
    u = _direction(model, target, vs)
    differ = (clean[0] != corrupt[0]).nonzero()
    start = min(int(differ[0, 0]) if len(differ) else Tc, Tc - 1)
    return _Pair(model, run_traced(model, clean, u, ablation),
                 run_traced(model, corrupt, u, ablation), u, _rope(model, Tc),
                 causal_mask(Tc, Tc, dev) if Tc > 1 else None, ablation, Tc, start)


def _tick(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None and progress(done, total) is False:
        raise Cancelled("patching was cancelled")


def patch_heads(pair: _Pair, progress: Progress | None = None) -> np.ndarray:
    """``(L, H)``: each head's clean output (every position) patched into the corrupted run."""
    cfg = pair.model.config
    L, H = cfg.n_layer, cfg.n_head
    out = np.zeros((L, H))
    rows = torch.arange(H, device=pair.u.device)
    s = pair.start  # positions before it: the same in every run, not recomputed
    rope, mask = pair.tail()
    for layer in range(L):
        clean_z = pair.clean.z[layer][0]  # (nh, T, hd)

        def patch(i: int, z: torch.Tensor, layer: int = layer,
                  clean_z: torch.Tensor = clean_z) -> torch.Tensor:
            if i != layer:
                return z
            z = z.clone()  # row r patches head r: z[r, r] = clean z of head r
            z[rows, rows] = clean_z[:, -z.size(2):]
            return z

        x = pair.corrupt.resid[layer][:, s:].expand(H, -1, -1)  # (H, T - s, C)
        z0 = pair.corrupt.z[layer][:, :, s:].expand(H, -1, -1, -1)  # its attention, unchanged
        if layer == L - 1:
            z0 = z0[:, :, -1:]
        m = _run_from(pair.model, layer, x, pair.u, rope, mask, pair.ablation, patch, z=z0,
                      prefix=pair.prefix)
        out[layer] = pair.normalise(m)
        _tick(progress, layer + 1, L)
    return out


def patch_residual(pair: _Pair, progress: Progress | None = None) -> np.ndarray:
    """``(L, T)``: the clean residual stream entering block l at token t patched in."""
    L, T = pair.model.config.n_layer, pair.T
    s = pair.start
    n = T - s
    out = np.zeros((L, T))
    r = torch.arange(n, device=pair.u.device)
    rope, mask = pair.tail()
    same = pair.normalise(pair.corrupt.metric)[0]  # before s the patch changes nothing
    for layer in range(L):
        x = pair.corrupt.resid[layer][:, s:].expand(n, -1, -1).clone()  # (n, n, C)
        x[r, r] = pair.clean.resid[layer][0, s:]  # row r patches position s + r
        m = _run_from(pair.model, layer, x, pair.u, rope, mask, pair.ablation, None,
                      prefix=pair.prefix)
        out[layer, :s] = same
        out[layer, s:] = pair.normalise(m)
        _tick(progress, layer + 1, L)
    return out


def patch_head_positions(pair: _Pair, layer: int, head: int) -> np.ndarray:
    """``(T,)``: head (``layer``, ``head``)'s clean output at one position patched in."""
    cfg = pair.model.config
    if not (0 <= layer < cfg.n_layer and 0 <= head < cfg.n_head):
        raise ValueError(f"no head ({layer}, {head}): the model has {cfg.n_layer} layers of "
                         f"{cfg.n_head} heads")
    T, s = pair.T, pair.start
    n = T - s
    clean_z = pair.clean.z[layer][0, head]  # (T, hd)
    pos = torch.arange(s, T, device=pair.u.device)  # row r patches position s + r
    rows = torch.arange(n, device=pair.u.device)

    def patch(i: int, z: torch.Tensor) -> torch.Tensor:
        if i != layer:
            return z
        z = z.clone()  # z's columns are positions T - Tz .. T - 1 (a row before: nothing)
        first = T - z.size(2)
        keep = pos >= first
        z[rows[keep], head, pos[keep] - first] = clean_z[pos[keep]]
        return z

    x = pair.corrupt.resid[layer][:, s:].expand(n, -1, -1)  # (n, T - s, C)
    z0 = pair.corrupt.z[layer][:, :, s:].expand(n, -1, -1, -1)
    if layer == cfg.n_layer - 1:
        z0 = z0[:, :, -1:]
    rope, mask = pair.tail()
    m = _run_from(pair.model, layer, x, pair.u, rope, mask, pair.ablation, patch, z=z0,
                  prefix=pair.prefix)
    out = np.empty(T)
    out[:s] = pair.normalise(pair.corrupt.metric)[0]  # the same values patched: no change
    out[s:] = pair.normalise(m)
    return out


def activation_patching(model: GPT, clean_ids: Any, corrupt_ids: Any, target: int, vs: int,
                        heads: bool = True, resid: bool = True,
                        ablation: Ablation | None = None,
                        progress: Progress | None = None) -> PatchingResult:
    """Patch every head and every block input of the corrupted run with the clean one.

    Parameters
    ----------
    model
        A :class:`~gptviz.model.gpt.GPT` in eval mode.
    clean_ids, corrupt_ids
        Token ids of the two prompts, of the same length.
    target, vs
        The metric is logit(target) - logit(vs) at the last position.
    heads, resid
        Which maps to compute.
    ablation
        Heads removed in every run (device tensors).
    progress
        ``progress(done, total)`` after each layer's batch; return ``False`` to cancel.

    Returns
    -------
    PatchingResult

    Raises
    ------
    ValueError
        See :func:`prepare`.
    Cancelled
        ``progress`` returned ``False``.
    """
    L = model.config.n_layer
    total = L * (int(heads) + int(resid))
    with torch.inference_mode():
        pair = prepare(model, clean_ids, corrupt_ids, target, vs, ablation)
        res = PatchingResult(clean_metric=float(pair.clean.metric[0]),
                             corrupt_metric=float(pair.corrupt.metric[0]))
        if res.clean_metric == res.corrupt_metric:
            res.note = ("the metric is the same on both prompts: nothing to restore "
                        "(the maps are undefined)")
        if heads:
            res.heads = patch_heads(pair, None if progress is None else
                                    lambda d, _t: progress(d, total))
        if resid:
            done = L if heads else 0
            res.resid = patch_residual(pair, None if progress is None else
                                       lambda d, _t: progress(done + d, total))
    return res
