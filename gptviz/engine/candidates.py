"""The next-token candidates: the most probable tokens of one distribution and its entropy.

:func:`next_token_candidates` is the one place that turns next-token logits into what a
:class:`~gptviz.engine.session.StepResult` and the next-token panel report: the ``k`` most
probable token ids, their probabilities and the entropy in bits, all of the unfiltered
float32 softmax (temperature 1, no top-k/p). :func:`include_token` adds the token actually
chosen when it came from outside the top ``k``.

Examples
--------
>>> import torch
>>> c = next_token_candidates(torch.tensor([2.0, 1.0, 0.0, -1.0]), k=2)
>>> c.ids.tolist(), round(c.entropy, 4)
([0, 1], 1.367)
>>> ids, probs, chosen = include_token(c.ids, c.probs, 3, c.prob(3))
>>> ids.tolist(), chosen
([0, 1, 3], 2)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["NextTokenCandidates", "next_token_candidates", "include_token"]

_LN2 = math.log(2.0)


@dataclass(frozen=True, eq=False)  # holds arrays: compare fields, not instances
class NextTokenCandidates:
    """The most probable next tokens of one distribution.

    Attributes
    ----------
    ids
        ``(k,)`` int64: the ``k`` most probable token ids, most probable first (ties in the
        order ``torch.topk`` gives them).
    probs
        ``(k,)`` float32: their probabilities.
    entropy
        Entropy of the whole distribution in bits (``-sum p log2 p``, ``0 log 0 = 0``).
    distribution
        ``(V,)`` float32: the whole distribution, on the device of the logits it came from.
    """

    ids: np.ndarray
    probs: np.ndarray
    entropy: float
    distribution: torch.Tensor

    def prob(self, token_id: int) -> float:
        """Probability of ``token_id`` (any id of the vocabulary, in the top ``k`` or not)."""
        return float(self.distribution[token_id])


def next_token_candidates(logits: torch.Tensor, k: int) -> NextTokenCandidates:
    """The ``k`` most probable tokens of ``softmax(logits)`` and its entropy.

    Parameters
    ----------
    logits
        ``(V,)`` next-token logits of one position, any float dtype and device (computed in
        float32, as the session does; ``-inf`` entries are tokens of probability 0).
    k
        How many candidates (>= 1; clipped to ``V``).

    Returns
    -------
    NextTokenCandidates
        ``ids``/``probs`` as numpy on the CPU, ``distribution`` on the logits' device.

    Raises
    ------
    ValueError
        ``logits`` is not 1-d or ``k < 1``.

    Notes
    -----
    The probabilities are ``exp(log_softmax(logits))`` and the entropy ``-p . log p`` as one
    dot product (half the time of summing ``torch.special.entr`` over 4k ids); where that is
    not finite (``-inf`` logits give ``0 * -inf``), ``entr``, which defines ``0 log 0 = 0``.
    These are exactly the numbers of :attr:`StepResult.prob`, ``topk_*`` and ``entropy``.
    """
    if logits.dim() != 1:
        raise ValueError(f"logits must be 1-d (V,) (got shape {tuple(logits.shape)})")
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    logp = torch.log_softmax(logits.detach().float(), dim=-1)  # (V,)
    probs = logp.exp()  # (V,)
    entropy = float(-torch.dot(probs, logp)) / _LN2
    if not math.isfinite(entropy):
        entropy = float(torch.special.entr(probs).sum()) / _LN2
    vals, ids = torch.topk(probs, min(int(k), probs.shape[0]))  # (k,), (k,)
    # numpy copies, not views of torch's (k,) tensors: steps keep them, and thousands of tiny
    # torch blocks left between the per-step (V,) buffers fragment the heap (~100 KB of
    # resident memory a step at GPT-2 small's vocabulary, measured with `bench --soak`).
    return NextTokenCandidates(ids=ids.cpu().numpy().astype(np.int64),  # copies
                               probs=vals.cpu().numpy().astype(np.float32),
                               entropy=entropy, distribution=probs)


def include_token(ids: np.ndarray, probs: np.ndarray, token_id: int,
                  prob: float) -> tuple[np.ndarray, np.ndarray, int]:
    """Candidates that show the chosen token: ``(ids, probs, index of token_id)``.

    Where ``token_id`` is among ``ids`` the arrays come back as given (copies, int64 /
    float32) with its first index; where it was drawn from the tail of the distribution it is
    appended as one more candidate with probability ``prob`` (index ``len(ids)``).
    """
    ids = np.asarray(ids, dtype=np.int64).copy()  # (k,)
    probs = np.asarray(probs, dtype=np.float32).copy()  # (k,)
    hit = np.flatnonzero(ids == int(token_id))
    if hit.size:
        return ids, probs, int(hit[0])
    ids = np.append(ids, np.int64(token_id))  # (k + 1,)
    probs = np.append(probs, np.float32(prob))  # (k + 1,)
    return ids, probs, len(ids) - 1
