"""What a head writes: the tokens each attention head's output promotes and suppresses.

At one position, head ``h`` of layer ``l`` outputs ``z`` (``[hd]``, its attention-weighted
values, before the layer's output projection). Its share of what the layer adds to the
residual stream is ``z`` through its slice of the output projection,
``w = W_O[:, h hd:(h + 1) hd] · z`` (``[C]``; the projection's bias belongs to no head and is
left out). Read through the rest of the model's direct path:

``logits_h = W_U · (γ ⊙ N(w) / s)``

where ``W_U`` is the unembedding (W_e with a tied head, else the untied head), ``γ`` the
final norm's gain and ``s`` its scale *frozen at that position* (computed from the final
residual stream there, so that the heads' terms add up: ``Σ_h logits_h`` plus the other
components' terms plus the bias term is the model's logits): for LayerNorm
``N(w) = w − mean(w)``, ``s = sqrt(var(x) + ε)``; for RMSNorm ``N(w) = w``,
``s = sqrt(mean(x²) + ε)``; without a final norm ``γ = 1``, ``s = 1``. The norm's bias is no
head's either. This is the *direct logit attribution* of the head (Elhage et al., 2021, "A
Mathematical Framework for Transformer Circuits"; TransformerLens' ``decompose_resid`` /
``apply_ln_to_stack`` with the final scale cached).

A post-LN model (GPT-1) has no such direct path (every block's output goes through its
LayerNorms), so it is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn as nn

from gptviz.analysis.query_run import blocks, check_position, run_prefix

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT, Ablation

__all__ = ["HeadWrites", "frozen_final_norm", "head_write_vectors", "head_write_logits",
           "head_writes", "head_writes_from", "check_direct_path"]


def check_direct_path(model: GPT) -> None:
    """ValueError for a model whose blocks' outputs do not reach the head directly (post-LN)."""
    if model.config.ln_placement != "pre":
        raise ValueError("a post-LN model (GPT-1 style) has no direct path from a head or a "
                         "neuron to the output: every block's output passes through its "
                         "LayerNorms")


def frozen_final_norm(model: GPT, x_final: torch.Tensor
                      ) -> Callable[[torch.Tensor], torch.Tensor]:
    """The final norm as a linear map, its scale frozen at the residual vector ``x_final``
    (``[C]``, the stream entering the final norm at that position): ``v -> γ ⊙ N(v) / s``
    (see the module docstring); applied to ``(..., C)`` vectors."""
    ln = model.ln_f
    x = x_final.double()
    if isinstance(ln, nn.LayerNorm):
        s = torch.sqrt(x.var(unbiased=False) + ln.eps)
        g = ln.weight.double() if ln.weight is not None else torch.ones_like(x)
        return lambda v: (v.double() - v.double().mean(-1, keepdim=True)) / s * g
    if isinstance(ln, nn.RMSNorm):
        eps = ln.eps if ln.eps is not None else torch.finfo(x_final.dtype).eps
        s = torch.sqrt((x * x).mean() + eps)
        g = ln.weight.double() if ln.weight is not None else torch.ones_like(x)
        return lambda v: v.double() / s * g
    return lambda v: v.double()


def head_write_vectors(model: GPT, z: Sequence[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Every head's write into the residual stream: ``z`` ``[L, nh, hd]`` (one position)
    through each head's slice of its layer's output projection (no bias) -> ``[L, nh, C]``."""
    cfg = model.config
    nh, hd = cfg.n_head, cfg.head_dim
    out = []
    for layer, block in enumerate(blocks(model)):
        w = block.attn.c_proj.weight.double().view(cfg.n_embd, nh, hd)  # (C, nh, hd)
        zl = z[layer].double().reshape(nh, hd)  # (nh, hd)
        out.append(torch.einsum("chd,hd->hc", w, zl))  # (nh, C)
    return torch.stack(out)  # (L, nh, C)


def head_write_logits(model: GPT, z: Sequence[torch.Tensor] | torch.Tensor,
                      x_final: torch.Tensor) -> torch.Tensor:
    """Direct logit contribution of every head, ``[L, nh, V]`` float64 (module docstring):
    ``z`` ``[L, nh, hd]`` the heads' outputs at one position, ``x_final`` ``[C]`` the residual
    stream entering the final norm there."""
    check_direct_path(model)
    writes = head_write_vectors(model, z)  # (L, nh, C)
    normed = frozen_final_norm(model, x_final)(writes)  # (L, nh, C) float64
    # The product in the weights' own dtype: a float64 copy of a 50k-token unembedding, and a
    # float64 product, cost more than the pass that gave z.
    W_U = model.unembed_weight  # (V, C)
    return (normed.to(W_U.dtype) @ W_U.T).double()  # (L, nh, V)


@dataclass
class HeadWrites:
    """What every head writes at one position.

    Attributes
    ----------
    position
        The (non-negative) position read.
    token
        The token id there.
    promoted_ids, promoted
        ``[L, H, k]`` int64 / float32: the tokens whose logits the head raises most, and by
        how much (natural-log units, the direct logit contribution), largest first.
    suppressed_ids, suppressed
        ``[L, H, k]``: the tokens it lowers most, most negative first.
    write_norm
        ``[L, H]`` float32: the L2 norm of the head's write ``W_O^h z`` into the stream.
    target, target_logit
        A tracked token (the next one in the text, or the one passed in) and every head's
        direct contribution to its logit ``[L, H]``; ``None`` without one.
    """

    position: int
    token: int
    promoted_ids: np.ndarray
    promoted: np.ndarray
    suppressed_ids: np.ndarray
    suppressed: np.ndarray
    write_norm: np.ndarray
    target: int | None = None
    target_logit: np.ndarray | None = None

    def to_dict(self, display: Callable[[int], str] | None = None) -> dict[str, Any]:
        """JSON-ready: ``{"position", "token", "target", "heads": [{"layer", "head",
        "write_norm", "target_logit", "promoted": [{"id", "token"?, "logit"}],
        "suppressed": [...]}]}``."""
        def tok(i: int, v: float) -> dict[str, Any]:
            d: dict[str, Any] = {"id": int(i), "logit": float(v)}
            if display is not None:
                d["token"] = display(int(i))
            return d

        L, H, _ = self.promoted_ids.shape
        heads = []
        for layer in range(L):
            for head in range(H):
                heads.append({
                    "layer": layer, "head": head,
                    "write_norm": float(self.write_norm[layer, head]),
                    "target_logit": None if self.target_logit is None
                    else float(self.target_logit[layer, head]),
                    "promoted": [tok(i, v) for i, v in zip(self.promoted_ids[layer, head],
                                                           self.promoted[layer, head])],
                    "suppressed": [tok(i, v) for i, v in zip(self.suppressed_ids[layer, head],
                                                             self.suppressed[layer, head])],
                })
        return {"position": int(self.position), "token": int(self.token),
                "target": None if self.target is None else int(self.target), "heads": heads}


def head_writes_from(model: GPT, z: Sequence[torch.Tensor] | torch.Tensor,
                     x_final: torch.Tensor, k: int = 10, position: int = 0, token: int = 0,
                     target: int | None = None) -> HeadWrites:
    """:class:`HeadWrites` from the heads' outputs ``z`` ``[L, nh, hd]`` at one position and
    the residual stream ``x_final`` ``[C]`` entering the final norm there."""
    with torch.no_grad():
        logits = head_write_logits(model, z, x_final)  # (L, nh, V)
        V = logits.shape[-1]
        k = max(1, min(int(k), V))
        up_v, up_i = torch.topk(logits, k, dim=-1)  # (L, nh, k)
        dn_v, dn_i = torch.topk(-logits, k, dim=-1)  # (L, nh, k)
        norm = head_write_vectors(model, z).norm(dim=-1)  # (L, nh)
        t_logit = None
        if target is not None:
            if not 0 <= int(target) < V:
                raise ValueError(f"target token {target} is outside the vocabulary")
            t_logit = logits[..., int(target)].float().cpu().numpy()
    return HeadWrites(
        position=int(position), token=int(token),
        promoted_ids=up_i.cpu().numpy().astype(np.int64),
        promoted=up_v.float().cpu().numpy(),
        suppressed_ids=dn_i.cpu().numpy().astype(np.int64),
        suppressed=(-dn_v).float().cpu().numpy(),
        write_norm=norm.float().cpu().numpy(), target=target, target_logit=t_logit)


@torch.no_grad()
def head_writes(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor, position: int = -1,
                k: int = 10, ablation: Ablation | None = None,
                target: int | None = None) -> HeadWrites:
    """What every head writes at one position of a text (see the module docstring).

    Parameters
    ----------
    model
        The GPT (pre-LN; eval mode).
    ids
        ``[T]`` token ids; only ``ids[:position + 1]`` is run (the model is causal).
    position
        The position (negative counts from the end; default the last).
    k
        How many promoted and suppressed tokens per head.
    ablation
        Heads removed while reading (their outputs are then the ablation's fill).
    target
        A token whose logit contributions are also returned; default ``ids[position + 1]``
        when the text goes on, else none.

    Returns
    -------
    HeadWrites
    """
    check_direct_path(model)
    ids_t, pos = check_position(ids, position)
    if target is None and pos + 1 < ids_t.shape[0]:
        target = int(ids_t[pos + 1])
    out = run_prefix(model, ids_t, pos, ablation, return_head_out=True, return_resid=True)
    assert out.head_outputs is not None and out.residuals is not None
    z = torch.stack([zl[0, :, -1] for zl in out.head_outputs])  # (L, nh, hd)
    x_final = out.residuals[-1][0, -1]  # (C,)
    return head_writes_from(model, z, x_final, k=k, position=pos, token=int(ids_t[pos]),
                            target=target)
