"""Direct logit attribution: how much each part of the model writes the logit of a token.

In a pre-norm transformer the residual stream at the last block's output is a sum,

    x_L = x_0 + sum_l (sum_h W_O^{l,h} z^{l,h} + b_O^l + m^l)

(x_0 the token and position embedding, z^{l,h} head h's output before the output projection,
W_O^{l,h} its columns of ``attn.c_proj``, b_O^l that projection's bias, m^l the feed-forward
layer's output; a parallel block, GPT-NeoX's x + attn(ln_1(x)) + mlp(ln_2(x)), is the same
sum). The final norm is not linear, but with its scale *frozen* at the position read (the
usual convention, Elhage et al. 2021) it is: for LayerNorm

    logit_t = u_t . (w * (x_L - mean(x_L)) / sigma + b) = c . x_L + u_t . b,
    c = centre(w * u_t) / sigma,

(centring a piece is the same as centring the direction it is read along), for RMSNorm
c = (w * u_t) / rms(x_L) and no shift. So every piece contributes c . piece, and the pieces
add up to the logit exactly. ``u_t`` is the token's row of the output matrix (W_e when tied,
``unembed`` otherwise), or u_t - u_v for a difference "target minus other".

A post-norm model (GPT-1: ``ln_placement == "post"``) normalises the residual stream after
every sub-layer, so no such sum exists: :func:`not_additive_reason` says so and the
functions here raise ``ValueError`` rather than show numbers that do not add up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation

__all__ = ["Attribution", "not_additive_reason", "readout_direction", "attribute_parts",
           "direct_logit_attribution"]


@dataclass
class Attribution:
    """The direct contributions to one logit (or logit difference) at one position.

    ``embed + heads.sum() + mlps.sum() + rest == logit`` (to float rounding).

    Attributes
    ----------
    position
        Position whose logits are attributed (the prediction of the token after it).
    target_id, vs_id
        The token, and the other token of a difference (``None``: a plain logit).
    logit
        The model's logit of ``target_id`` (minus that of ``vs_id``).
    embed
        Token + position embedding.
    heads
        ``(n_layer, n_head)`` float64: each head's output through its slice of W_O.
    mlps
        ``(n_layer,)`` float64: each feed-forward layer's output.
    rest
        Attention-projection biases and the final norm's shift.
    """

    position: int
    target_id: int
    vs_id: int | None
    logit: float
    embed: float
    heads: np.ndarray
    mlps: np.ndarray
    rest: float

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``python -m gptviz attribute --json`` prints)."""
        return {"position": self.position, "target_id": self.target_id, "vs_id": self.vs_id,
                "logit": self.logit, "embed": self.embed, "heads": self.heads.tolist(),
                "mlps": self.mlps.tolist(), "rest": self.rest}


def not_additive_reason(config: GPTConfig) -> str | None:
    """Why the direct contributions of ``config``'s model cannot add up to a logit, or
    ``None`` when they do."""
    if config.ln_placement == "post":
        return ("a post-LayerNorm model (GPT-1) normalises the residual stream in every "
                "block, so per-head and per-layer contributions cannot add up to a logit")
    return None


def _unembed_row(model: GPT, target: int, vs: int | None) -> torch.Tensor:
    """``(C,)``: the output matrix's row of ``target`` (minus that of ``vs``)."""
    V = model.config.vocab_size
    for name, t in (("target", target), ("vs", vs)):
        if t is not None and not 0 <= int(t) < V:
            raise ValueError(f"{name} token id {t} is outside the vocabulary (0..{V - 1})")
    w = model.unembed_weight  # (V, C)
    u = w[int(target)]
    return u - w[int(vs)] if vs is not None else u


def readout_direction(model: GPT, x_final: torch.Tensor, u: torch.Tensor
                      ) -> tuple[torch.Tensor, float]:
    """``(c, shift)`` with ``u . final_norm(x) == c . x + shift`` for ``x`` the pieces of
    ``x_final`` ``(C,)`` (the final norm's scale frozen at ``x_final``).

    ``c`` is float64 ``(C,)``; without a final norm it is ``u`` and the shift 0.
    """
    cfg = model.config
    x, u = x_final.double(), u.double()
    ln: Any = model.ln_f
    if not cfg.final_ln:
        return u, 0.0
    w = ln.weight.double() if getattr(ln, "weight", None) is not None else torch.ones_like(u)
    wu = w * u  # (C,)
    if cfg.norm_type == "rmsnorm":
        eps = ln.eps if ln.eps is not None else torch.finfo(x_final.dtype).eps
        rms = torch.sqrt((x * x).mean() + eps)
        return wu / rms, 0.0
    sigma = torch.sqrt(x.var(unbiased=False) + ln.eps)
    c = (wu - wu.mean()) / sigma  # (x - mean(x)) . v == x . (v - mean(v))
    bias = getattr(ln, "bias", None)
    return c, float(u @ bias.double()) if bias is not None else 0.0


def attribute_parts(model: GPT, resid: torch.Tensor, z: torch.Tensor, target: int,
                    vs: int | None = None, position: int = 0,
                    logit: float | None = None) -> Attribution:
    """The attribution from one position's residual stream and head outputs.

    Parameters
    ----------
    model
        A pre-norm :class:`~gptviz.model.gpt.GPT`.
    resid
        ``(n_layer + 1, C)``: the residual stream entering every block and after the last.
    z
        ``(n_layer, n_head, head_dim)``: every head's output (after ablation) before W_O.
    target, vs
        Token ids (``vs``: the other token of a difference, or ``None``).
    position
        Recorded in the result.
    logit
        The model's logit (difference), when the caller has it; else read off ``resid``.

    Returns
    -------
    Attribution

    Raises
    ------
    ValueError
        A post-norm model, or a token id outside the vocabulary.
    """
    cfg = model.config
    reason = not_additive_reason(cfg)
    if reason is not None:
        raise ValueError(f"no direct logit attribution: {reason}")
    L, H, hd = cfg.n_layer, cfg.n_head, cfg.head_dim
    u = _unembed_row(model, target, vs)  # (C,)
    with torch.no_grad():
        c, shift = readout_direction(model, resid[-1], u)  # (C,) float64
        cf = c.to(resid.dtype)
        r = resid.double() @ c  # (L+1,): c . x_l
        heads = np.zeros((L, H))
        mlps = np.zeros(L)
        bias_sum = 0.0
        block: Any
        for layer, block in enumerate(model.h):
            proj = block.attn.c_proj
            d = (cf @ proj.weight).view(H, hd)  # (H, hd): W_O^{l,h}^T c for every head
            per_head = (d.double() * z[layer].double()).sum(-1)  # (H,)
            b = float(c @ proj.bias.double()) if proj.bias is not None else 0.0
            heads[layer] = per_head.cpu().numpy()
            # The feed-forward layer: what the block added beyond its attention.
            mlps[layer] = float(r[layer + 1] - r[layer]) - float(per_head.sum()) - b
            bias_sum += b
        embed = float(r[0])
        if logit is None:
            logit = float(r[-1]) + shift
    return Attribution(position=int(position), target_id=int(target),
                       vs_id=None if vs is None else int(vs), logit=float(logit),
                       embed=embed, heads=heads, mlps=mlps, rest=bias_sum + shift)


def _check_position(position: int, T: int) -> int:
    p = int(position)
    q = p + T if p < 0 else p
    if not 0 <= q < T:
        raise ValueError(f"position {p} is outside the text (0..{T - 1})")
    return q


def direct_logit_attribution(model: GPT, ids: Any, target: int, vs: int | None = None,
                             position: int = -1, ablation: Ablation | None = None
                             ) -> Attribution:
    """Direct logit attribution of ``target`` (minus ``vs``) at ``position`` of ``ids``.

    One forward pass over ``ids[:position + 1]`` with the residual stream and head outputs
    kept (under ``ablation``, device tensors as the model takes them).

    Parameters
    ----------
    model
        A pre-norm :class:`~gptviz.model.gpt.GPT` in eval mode.
    ids
        ``(T,)`` token ids.
    target, vs
        Token ids; ``vs`` makes it the difference logit(target) - logit(vs).
    position
        0-based position whose logits are attributed (negative counts from the end).
    ablation
        Heads removed (their ``fill`` is what they contribute).

    Returns
    -------
    Attribution

    Raises
    ------
    ValueError
        A post-norm model, a position outside the text, a token outside the vocabulary.
    """
    reason = not_additive_reason(model.config)
    if reason is not None:
        raise ValueError(f"no direct logit attribution: {reason}")
    dev = model.wte.weight.device
    idx = torch.as_tensor(np.asarray(ids, dtype=np.int64), device=dev).view(1, -1)
    p = _check_position(position, idx.shape[1])
    with torch.no_grad():
        out = model(idx[:, :p + 1], return_resid=True, return_head_out=True,
                    ablation=ablation, last_only=True)
        assert out.residuals is not None and out.head_outputs is not None
        resid = torch.stack([x[0, -1] for x in out.residuals])  # (L+1, C)
        z = torch.stack([h[0, :, -1] for h in out.head_outputs])  # (L, H, hd)
        logits = out.logits[0, -1].double()  # (V,)
        _unembed_row(model, target, vs)  # refuse bad ids before indexing
        logit = float(logits[int(target)] - (logits[int(vs)] if vs is not None else 0.0))
    return attribute_parts(model, resid, z, target, vs, position=p, logit=logit)
