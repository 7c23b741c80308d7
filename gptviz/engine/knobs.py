"""What the sampling knobs do to one distribution: before and after temperature, top-k, top-p.

:func:`knob_effect` takes the logits of one position and the
:class:`~gptviz.engine.sampling.SamplingSettings`, and gives, for a few token ids (the ones a
chart shows), the probability the model gives them (``softmax(logits)``, temperature 1), the
probability after the temperature (``softmax(logits / T)``), whether the top-k and top-p
cuts keep them, and the probability of the distribution a token is actually drawn from (the
kept tokens renormalised: exactly :func:`~gptviz.engine.sampling.filter_probs`), with the
share of the tempered mass the cuts keep.

The stages, in the order :func:`~gptviz.engine.sampling.filter_probs` applies them:

1. ``q = softmax(logits / T)``;
2. top-k keeps the ``k`` most probable tokens of ``q`` (ties broken by ``torch.topk``);
3. top-p keeps, of those, the smallest most-probable-first prefix whose mass (of the top-k
   renormalised distribution) reaches ``p`` (the most probable token always stays);
4. ``final = q * kept / sum(q * kept)``. Greedy is the one-hot at the argmax.

Examples
--------
>>> import torch
>>> from gptviz.engine.sampling import SamplingSettings
>>> e = knob_effect(torch.tensor([2.0, 1.0, 0.0, -1.0]), SamplingSettings(top_k=2),
...                 ids=[0, 1, 2])
>>> e.kept.tolist(), e.n_kept, round(float(e.final[0]), 4)
([True, True, False], 2, 0.7311)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gptviz.engine.sampling import SamplingSettings

__all__ = ["KnobEffect", "knob_effect", "knobs_change_nothing"]


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not instances
class KnobEffect:
    """The sampling knobs' effect on one distribution, at a few token ids.

    Attributes
    ----------
    ids
        ``(k,)`` int64: the token ids the other arrays describe, as given.
    raw
        ``(k,)`` float32: their probability under the model (temperature 1, no cut).
    tempered
        ``(k,)`` float32: after the temperature only (``softmax(logits / T)``).
    kept
        ``(k,)`` bool: whether top-k and top-p (or greedy) keep them.
    final
        ``(k,)`` float32: the distribution a token is drawn from (0 where cut).
    kept_mass
        Share of the tempered distribution's mass the cuts keep (1 when nothing is cut).
    n_kept
        How many tokens of the whole vocabulary are kept.
    settings
        The settings these numbers are for.
    """

    ids: np.ndarray
    raw: np.ndarray
    tempered: np.ndarray
    kept: np.ndarray
    final: np.ndarray
    kept_mass: float
    n_kept: int
    settings: SamplingSettings

    def describe(self, vocab_size: int | None = None) -> str:
        """One line, e.g. ``"T=0.5 · top-k 40: 40 tokens keep 93.1% of the mass"``."""
        s = self.settings
        if s.greedy:
            return "greedy: all the mass on the most probable token"
        parts = [f"T={s.temperature:g}"]
        if s.top_k:
            parts.append(f"top-k {s.top_k}")
        if s.top_p < 1.0:
            parts.append(f"top-p {s.top_p:g}")
        of = f" of {vocab_size}" if vocab_size else ""
        return (f"{' · '.join(parts)}: {self.n_kept}{of} tokens keep "
                f"{self.kept_mass:.1%} of the mass")


def knobs_change_nothing(s: SamplingSettings | None) -> bool:
    """Whether ``s`` draws from the model's own distribution (temperature 1, no cut)."""
    return s is None or (not s.greedy and s.temperature == 1.0 and s.top_k == 0
                         and s.top_p >= 1.0)


def knob_effect(logits: torch.Tensor | np.ndarray, settings: SamplingSettings,
                ids: Sequence[int] | np.ndarray) -> KnobEffect:
    """The knobs ``settings`` applied to ``logits``, read at the token ``ids``.

    Parameters
    ----------
    logits
        ``(V,)`` logits of one position (any float dtype; computed in float32 like the
        sampler; log-probabilities work as well, softmax ignores a shift).
    settings
        The sampling settings.
    ids
        Token ids to report (e.g. the candidates a chart shows).

    Returns
    -------
    KnobEffect

    Raises
    ------
    ValueError
        ``logits`` is not 1-d, or an id is outside the vocabulary.
    """
    z = torch.as_tensor(logits).detach().float().cpu()  # (V,)
    if z.dim() != 1:
        raise ValueError(f"logits must be 1-d (V,) (got shape {tuple(z.shape)})")
    V = z.shape[0]
    idx = torch.as_tensor(np.asarray(ids, dtype=np.int64))  # (k,)
    if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= V):
        raise ValueError(f"token ids must be in [0, {V}) (got {idx.tolist()})")
    raw = torch.softmax(z, dim=-1)  # (V,)
    s = settings
    if s.greedy:
        tempered = raw
        keep = torch.zeros(V, dtype=torch.bool)
        keep[int(torch.argmax(z))] = True  # the first maximum, as greedy decoding takes it
        final = keep.float()
    else:
        zt = z / float(s.temperature)  # (V,)
        tempered = torch.softmax(zt, dim=-1)  # (V,)
        keep, final = _cut(zt, s)
    mass = float(tempered[keep].sum())
    return KnobEffect(ids=idx.numpy().copy(), raw=raw[idx].numpy().copy(),
                      tempered=tempered[idx].numpy().copy(), kept=keep[idx].numpy().copy(),
                      final=final[idx].numpy().copy(), kept_mass=mass,
                      n_kept=int(keep.sum()), settings=s)


def _cut(zt: torch.Tensor, s: SamplingSettings) -> tuple[torch.Tensor, torch.Tensor]:
    """``(kept, final)``, both ``(V,)``: the tokens top-k and top-p keep of the tempered
    logits ``zt`` and the renormalised distribution over them, computed in the same steps as
    :func:`~gptviz.engine.sampling.filter_probs` (so that ties fall the same way)."""
    V = zt.shape[0]
    if 0 < s.top_k < V:
        vals, top = torch.topk(zt, int(s.top_k))
        zt = torch.full_like(zt, float("-inf")).scatter_(-1, top, vals)
    probs = torch.softmax(zt, dim=-1)  # (V,) 0 outside the top k
    keep = torch.isfinite(zt)
    if s.top_p < 1.0:
        sorted_p, order = torch.sort(probs, descending=True)
        before = torch.cumsum(sorted_p, dim=-1) - sorted_p  # mass strictly before each token
        drop = torch.zeros(V, dtype=torch.bool)
        drop[order] = before >= s.top_p  # the first token has 0 before it: always kept
        keep = keep & ~drop
        probs = probs.masked_fill(drop, 0.0)
        probs = probs / probs.sum()
    return keep, probs
