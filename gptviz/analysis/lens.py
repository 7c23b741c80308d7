"""Logit lens: what the model would predict if it stopped after each layer.

At one position, the residual stream is read at ``n_layer + 1`` points (after the embedding,
after every block) and each is pushed through the model's own output head:

``p_l = softmax(lm_head(ln_f(h_l)))``,  ``lm_head(x) = x · W_e^T``.

``ln_f`` is the model's final LayerNorm. A model without one (GPT-1: post-LN, no final LN) has
``ln_f`` = identity, and every block's output is then already the output of a LayerNorm, so it
is read directly; only the embedding point (``h_0 = W_e[u] + W_p``) is un-normalised there.
For the last point this is exactly the model's output distribution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gptviz.model.gpt import Ablation

if TYPE_CHECKING:
    from gptviz.io.tokenizer import Tokenizer
    from gptviz.model.gpt import GPT

__all__ = ["LensResult", "logit_lens", "lens_readout", "layer_names"]


def layer_names(n_layer: int) -> list[str]:
    """Names of the ``n_layer + 1`` read-out points: ``"embed"``, ``"block 1"``, ..."""
    return ["embed"] + [f"block {i}" for i in range(1, n_layer + 1)]


@dataclass
class LensResult:
    """The logit lens at one position.

    Attributes
    ----------
    position
        The (non-negative) position read.
    token
        The token id at that position.
    layers
        Names of the ``n_layer + 1`` read-out points (:func:`layer_names`).
    top_ids
        ``[n_layer + 1, k]`` int64: the top-k token ids after each point, most probable first.
    top_probs
        ``[n_layer + 1, k]`` float32: their probabilities.
    target
        The actually-next token (``ids[position + 1]``) or the one passed in, else ``None``.
    target_probs
        ``[n_layer + 1]`` float32: its probability after each point (``None`` without target).
    target_ranks
        ``[n_layer + 1]`` int64: its rank after each point (0 = top), or ``None``.
    """

    position: int
    token: int
    layers: list[str]
    top_ids: np.ndarray
    top_probs: np.ndarray
    target: int | None = None
    target_probs: np.ndarray | None = None
    target_ranks: np.ndarray | None = None

    def to_dict(self, tokenizer: Tokenizer | None = None) -> dict[str, Any]:
        """JSON-ready dict; with a tokenizer every id also gets its display string."""
        def tok(i: int) -> dict[str, Any]:
            d: dict[str, Any] = {"id": int(i)}
            if tokenizer is not None:
                d["token"] = tokenizer.display(int(i))
            return d

        rows = []
        for li, name in enumerate(self.layers):
            row: dict[str, Any] = {
                "layer": li, "name": name,
                "top": [tok(i) | {"prob": float(p)}
                        for i, p in zip(self.top_ids[li], self.top_probs[li])],
            }
            if self.target_probs is not None and self.target_ranks is not None:
                row["target_prob"] = float(self.target_probs[li])
                row["target_rank"] = int(self.target_ranks[li])
            rows.append(row)
        return {
            "position": int(self.position),
            "token": tok(self.token),
            "target": None if self.target is None else tok(self.target),
            "layers": rows,
        }


@torch.no_grad()
def lens_readout(model: GPT, resid: torch.Tensor, k: int = 10, target: int | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Top-k read-out of residual vectors through the model's final LN and head.

    Parameters
    ----------
    model
        The GPT.
    resid
        ``[P, C]`` residual vectors (e.g. one position's ``n_layer + 1`` points; the engine can
        pass the ones it kept instead of re-running the model).
    k
        How many top tokens.
    target
        A token id whose probability and rank are also returned.

    Returns
    -------
    top_ids, top_probs, target_probs, target_ranks
        ``[P, k]`` int64, ``[P, k]`` float32, ``[P]`` float32 or None, ``[P]`` int64 or None.
    """
    logits = model.lm_head(model.ln_f(resid)).float()  # [P, vocab]
    probs = torch.softmax(logits, dim=-1)  # [P, vocab]
    k = max(1, min(int(k), probs.shape[-1]))
    top_p, top_i = torch.topk(probs, k, dim=-1)  # [P, k]
    t_probs = t_ranks = None
    if target is not None:
        if not 0 <= int(target) < probs.shape[-1]:
            raise ValueError(f"target token {target} is outside the vocabulary")
        tp = probs[:, int(target)]  # [P]
        t_probs = tp.cpu().numpy()
        t_ranks = (probs > tp[:, None]).sum(dim=-1).cpu().numpy().astype(np.int64)
    return top_i.cpu().numpy().astype(np.int64), top_p.cpu().numpy(), t_probs, t_ranks


@torch.no_grad()
def logit_lens(model: GPT, ids: Sequence[int] | np.ndarray | torch.Tensor, position: int = -1,
               k: int = 10, ablation: Ablation | None = None,
               target: int | None = None) -> LensResult:
    """Top-k predictions after the embedding and after every block, at one position.

    Parameters
    ----------
    model
        The GPT (run without gradients; put it in eval mode yourself if it has dropout).
    ids
        ``[T]`` token ids of the text.
    position
        Which position to read (negative counts from the end; default the last). Only
        ``ids[:position + 1]`` is run: the model is causal.
    k
        How many top tokens per layer.
    ablation
        Heads to remove while reading (see :mod:`gptviz.analysis.ablation`).
    target
        The token whose probability is tracked; default ``ids[position + 1]`` when the text
        goes on, else none.

    Returns
    -------
    LensResult
    """
    ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(-1)
    t = ids_t.shape[0]
    if t == 0:
        raise ValueError("logit lens needs at least one token")
    pos = position + t if position < 0 else position
    if not 0 <= pos < t:
        raise ValueError(f"position {position} is outside the text of {t} tokens")
    if target is None and pos + 1 < t:
        target = int(ids_t[pos + 1])
    device = next(model.parameters()).device
    out = model(ids_t[None, : pos + 1].to(device), return_resid=True, ablation=ablation,
                last_only=True)
    resid = torch.stack([r[0, -1] for r in out.residuals], dim=0)  # [n_layer + 1, C]
    top_i, top_p, t_probs, t_ranks = lens_readout(model, resid, k=k, target=target)
    return LensResult(position=pos, token=int(ids_t[pos]),
                      layers=layer_names(model.config.n_layer), top_ids=top_i, top_probs=top_p,
                      target=target, target_probs=t_probs, target_ranks=t_ranks)
