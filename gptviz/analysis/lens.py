"""Logit lens: what the model would predict if it stopped after each layer.

At one position, the residual stream is read at ``n_layer + 1`` points (after the embedding,
after every block) and each is pushed through the model's own output head:

``p_l = softmax(lm_head(ln_f(h_l)))``,  ``lm_head(x) = x · W_e^T``.

``ln_f`` is the model's final LayerNorm. A model without one (GPT-1: post-LN, no final LN) has
``ln_f`` = identity, and every block's output is then already the output of a LayerNorm, so it
is read directly; only the embedding point (``h_0 = W_e[u] + W_p``) is un-normalised there.
For the last point this is exactly the model's output distribution.

With ``mid=True`` the lens also reads the points between each block's attention and its
feed-forward layer (TransformerLens' ``resid_mid``): the stream after the attention's output
is added, ``h_l + attn_l(LN_1(h_l))`` (a parallel block: the same sum, before the
feed-forward's output is added; post-LN: ``LN_1(h_l + attn_l(h_l))``, which is what the
feed-forward layer reads), read out the same way.

The points are named 0-based like the layers: ``"embed"``, then per layer ``l``
``"L{l} mid"`` (with ``mid``) and ``"L{l} out"`` (the block's output; the last is the model's).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gptviz.analysis.query_run import blocks, capture_inputs
from gptviz.model.gpt import Ablation

if TYPE_CHECKING:
    from gptviz.io.tokenizer import Tokenizer
    from gptviz.model.gpt import GPT

__all__ = ["LensResult", "logit_lens", "lens_readout", "layer_names", "with_mid_points"]


def layer_names(n_layer: int, mid: bool = False) -> list[str]:
    """Names of the read-out points: ``"embed"``, ``"L0 out"``, ..., ``"L{n_layer-1} out"``
    (``n_layer + 1``); with ``mid`` ``"L{l} mid"`` before each ``"L{l} out"``
    (``2 n_layer + 1``)."""
    names = ["embed"]
    for i in range(n_layer):
        names += [f"L{i} mid", f"L{i} out"] if mid else [f"L{i} out"]
    return names


def with_mid_points(model: GPT, resid: Sequence[torch.Tensor],
                    attn_out: Sequence[torch.Tensor]) -> torch.Tensor:
    """The read-out points with the ``resid_mid`` ones interleaved: ``resid`` the
    ``n_layer + 1`` residual vectors ``[C]`` (embedding, every block's output), ``attn_out``
    each block's attention output ``[C]`` (after ``c_proj``) -> ``[2 n_layer + 1, C]``."""
    points = [resid[0]]
    for layer, block in enumerate(blocks(model)):
        mid = resid[layer] + attn_out[layer]
        if model.config.ln_placement != "pre":  # post-LN: the feed-forward reads LN_1(x + a)
            mid = block.ln_1(mid)
        points += [mid, resid[layer + 1]]
    return torch.stack(points)


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
        Names of the read-out points (:func:`layer_names`): ``n_layer + 1``, or
        ``2 n_layer + 1`` with the ``resid_mid`` points; ``P`` below.
    top_ids
        ``[P, k]`` int64: the top-k token ids after each point, most probable first.
    top_probs
        ``[P, k]`` float32: their probabilities.
    target
        The actually-next token (``ids[position + 1]``) or the one passed in, else ``None``.
    target_probs
        ``[P]`` float32: its probability after each point (``None`` without target).
    target_ranks
        ``[P]`` int64: its rank after each point (0 = top), or ``None``.
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
               target: int | None = None, mid: bool = False) -> LensResult:
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
    mid
        Also read the points between attention and feed-forward (module docstring).

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
    with capture_inputs([b.attn for b in blocks(model)] if mid else [], outputs=True) as got:
        out = model(ids_t[None, : pos + 1].to(device), return_resid=True, ablation=ablation,
                    last_only=True)
    assert out.residuals is not None
    vectors = [r[0, -1] for r in out.residuals]  # n_layer + 1 of [C]
    resid = (with_mid_points(model, vectors, [g[-1][0, -1] for g in got]) if mid
             else torch.stack(vectors, dim=0))  # [points, C]
    top_i, top_p, t_probs, t_ranks = lens_readout(model, resid, k=k, target=target)
    return LensResult(position=pos, token=int(ids_t[pos]),
                      layers=layer_names(model.config.n_layer, mid), top_ids=top_i,
                      top_probs=top_p, target=target, target_probs=t_probs,
                      target_ranks=t_ranks)
