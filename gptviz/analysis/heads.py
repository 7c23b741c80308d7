"""Per-head diagnostic scores: what each attention head does on a text.

Every score is computed from an attention array ``att`` of shape ``[..., T, T]`` (usually
``[L, H, T, T]``: layer, head, query, key; rows are the softmax probabilities, zero above the
diagonal) and, where tokens matter, the token ids ``[T]``. All of them are vectorised over the
leading axes (no Python loop over layers or heads), so the scores of a 12 × 12 model at 512
tokens take a few tens of milliseconds.

Definitions (``i`` is the query position, ``k`` the key position, positions start at 0; the
precise text, with the corner cases, is in ``docs/analysis.md``):

``prev_token``
    mean over ``i >= 1`` of ``att[i, i-1]``.
``first_token`` (attention sink)
    mean over ``i >= 1`` of ``att[i, 0]``.
``induction`` (on the current text)
    for each query ``i``, the *induction targets* are the keys ``k = j + 1`` with
    ``ids[j] == ids[i]`` and ``k <= i - 2`` (the token right after an earlier copy of the
    current token, never the previous token itself); score of a query = attention mass on its
    targets; mean over the queries that have at least one target; ``NaN`` when none does.
``duplicate_token``
    attention mass on keys ``k < i`` with ``ids[k] == ids[i]``; mean over the queries that
    have an earlier copy; ``NaN`` when none does.
``entropy``
    mean over ``i >= 1`` of ``-sum_k att[i, k] log2 att[i, k]`` in bits (row 0 always has
    entropy 0 and is left out).

:func:`induction_scores` is the probe version used for training reports: random distinct
tokens repeated twice, run through the model, mean attention from each token of the second
copy to the token right after its first occurrence.

:func:`head_scores` also takes a source read a layer at a time (a session's
:meth:`~gptviz.engine.session.Session.packed_attention`): it then scores one layer's
``[H, T, T]`` after the other (every score of a head depends on that head's map only), so
that it never holds the whole window's float32 at once.

``convention="transformer_lens"`` (:func:`head_scores`) computes ``prev_token``,
``duplicate_token`` and ``induction`` as TransformerLens' ``detect_head`` does (its defaults,
``error_measure="mul"``, no excluded positions): ``sum(att * pattern) / sum(att)`` over the
whole ``[T, T]`` map, i.e. the attention mass on the pattern averaged over *all* ``T`` queries
(a query without a target counts 0; row 0 counts for the previous-token score), with TL's
patterns: previous token ``k = i - 1``; duplicate ``k < i``, same token; induction the
duplicate pattern shifted one key to the right, ``k = j + 1`` for an earlier copy ``j < i``,
so ``k = i`` (when ``ids[i-1] == ids[i]``) and ``k = i - 1`` count too. ``first_token`` and
``entropy`` have no TransformerLens detector and are the same in both conventions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.sources import AttentionSource, as_array, is_source

if TYPE_CHECKING:  # torch is only needed by the model-based probe
    from gptviz.model.gpt import GPT

__all__ = [
    "SCORE_NAMES", "HeadScores", "head_scores",
    "previous_token_scores", "first_token_scores", "induction_text_scores",
    "duplicate_token_scores", "attention_entropy", "mean_attention_entropy",
    "induction_target_mask", "duplicate_token_mask",
    "repeated_random_tokens", "induction_scores", "probe_induction_from_attention",
    "CONVENTIONS", "previous_token_mask", "tl_induction_mask", "pattern_fraction",
]

#: The score conventions of :func:`head_scores` (see the module docstring).
CONVENTIONS: tuple[str, ...] = ("gptviz", "transformer_lens")

#: Names of the per-head scores, in display order (the fields of :class:`HeadScores`).
SCORE_NAMES: tuple[str, ...] = ("prev_token", "first_token", "induction", "duplicate_token",
                                "entropy")

_LN2 = math.log(2.0)
# The entropy is computed in blocks of this many query rows (a block only reads the keys up
# to its last query: half the work on causal rows) and of as many heads as fit _CHUNK_BYTES.
_ROW_BLOCK = 64
_CHUNK_BYTES = 2 << 20


def _as_float(att: np.ndarray) -> np.ndarray:
    """``att`` as float32/float64 without copying when it already is one."""
    att = np.asarray(att)
    if att.ndim < 2 or att.shape[-1] != att.shape[-2]:
        raise ValueError(f"attention must have shape [..., T, T], got {att.shape}")
    if att.dtype not in (np.float32, np.float64):
        att = att.astype(np.float32)
    return att


def _as_ids(ids: Sequence[int] | np.ndarray, t: int) -> np.ndarray:
    ids = np.asarray(ids).reshape(-1)
    if ids.shape[0] != t:
        raise ValueError(f"{ids.shape[0]} token ids for attention over {t} positions")
    return ids


def _reshaped_view(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """``a`` reshaped without copying, or ``None`` when that needs a copy."""
    try:
        return np.reshape(a, shape, copy=False)  # numpy >= 2.1: ValueError instead of a copy
    except ValueError:
        return None
    except TypeError:  # older numpy: no copy= argument
        view = a.view()
        try:
            view.shape = shape
        except AttributeError:
            return None
        return view


def _head_stacks(att: np.ndarray, out: np.ndarray
                 ) -> list[tuple[np.ndarray, np.ndarray]]:
    """``att`` ``[..., T, T]`` and ``out`` ``[..., T]`` as pairs of ``[N, T, T]`` / ``[N, T]``
    views, without copying: one pair when the leading axes merge (contiguous input), else
    one per index of all leading axes but the last (e.g. per layer of a strided
    ``[L, H, T, T]`` slice of a larger buffer)."""
    t = att.shape[-1]
    src = _reshaped_view(att, (-1, t, t))
    dst = _reshaped_view(out, (-1, t))
    if src is not None and dst is not None:
        return [(src, dst)]
    if att.ndim == 2:
        return [(att[None], out[None])]
    return [(att[idx], out[idx]) for idx in np.ndindex(att.shape[:-3])]


def _mask_mass(att: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``sum_{i,k} att[..., i, k] * mask[i, k]`` -> ``[...]`` float64.

    A sparse mask (the usual case: a text repeats a token a few times) is gathered; a dense
    one is one BLAS matrix-vector product over all heads, ``[prod(...), T*T] @ [T*T]``.
    """
    t = att.shape[-1]
    sparse = np.count_nonzero(mask) * 32 <= mask.size
    flat = _reshaped_view(att, (-1, t * t))  # [prod(...), T*T]
    if flat is None:  # a strided view (e.g. a slice of a larger buffer)
        if sparse:
            qi, ki = np.nonzero(mask)
            return att[..., qi, ki].sum(axis=-1, dtype=np.float64)
        return np.asarray(np.tensordot(att, mask.astype(att.dtype), axes=([-2, -1], [0, 1])),
                          dtype=np.float64)
    if sparse:
        mass = np.take(flat, np.flatnonzero(mask), axis=1).sum(axis=1, dtype=np.float64)
    else:
        mass = (flat @ mask.reshape(-1).astype(att.dtype)).astype(np.float64)
    return mass.reshape(att.shape[:-2])


def _masked_mean(att: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the queries that have any key in ``mask`` of the attention mass on them.

    ``att`` ``[..., T, T]``, ``mask`` ``[T, T]`` bool -> ``[...]``; NaN when no query does.
    """
    n_queries = int(mask.any(axis=1).sum())
    if n_queries == 0:
        return np.full(att.shape[:-2], np.nan)
    return _mask_mass(att, mask) / n_queries


# ---------------------------------------------------------------------------- masks

def induction_target_mask(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Which keys are induction targets of which query.

    Parameters
    ----------
    ids
        ``[T]`` token ids.

    Returns
    -------
    np.ndarray
        ``[T, T]`` bool, ``M[i, k]`` true when ``k >= 1``, ``ids[k-1] == ids[i]`` and
        ``k <= i - 2``: key ``k`` is the token right after an earlier copy of token ``i``,
        and it is not ``i``'s previous token (that is the previous-token score's job).
    """
    ids = np.asarray(ids).reshape(-1)
    t = ids.shape[0]
    eq = ids[:, None] == ids[None, :]  # [T, T] eq[i, j]: same token
    mask = np.zeros((t, t), dtype=bool)
    mask[:, 1:] = eq[:, :-1]  # mask[i, k] = eq[i, k-1]
    mask &= np.tri(t, t, -2, dtype=bool)  # k <= i - 2
    return mask


def duplicate_token_mask(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """``[T, T]`` bool: ``M[i, k]`` true when ``k < i`` and ``ids[k] == ids[i]``."""
    ids = np.asarray(ids).reshape(-1)
    t = ids.shape[0]
    return (ids[:, None] == ids[None, :]) & np.tri(t, t, -1, dtype=bool)


def previous_token_mask(t: int) -> np.ndarray:
    """``[T, T]`` bool: ``M[i, i - 1]`` true for ``i >= 1``."""
    return np.eye(t, t, -1, dtype=bool)


def tl_induction_mask(ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """TransformerLens' induction pattern: the duplicate-token pattern shifted one key to the
    right, ``M[i, k]`` true when ``k >= 1``, ``ids[k-1] == ids[i]`` and ``k - 1 < i``
    (``k <= i``: unlike :func:`induction_target_mask`, the previous token and the query itself
    can be targets)."""
    ids = np.asarray(ids).reshape(-1)
    t = ids.shape[0]
    mask = np.zeros((t, t), dtype=bool)
    mask[:, 1:] = duplicate_token_mask(ids)[:, :-1]  # M[i, k] = dup[i, k - 1]
    return mask


def pattern_fraction(att: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """TransformerLens' score: ``sum(att * mask) / sum(att)`` over the last two axes, ``[...]``
    float64 (the mass on the pattern averaged over all queries, each row summing to 1)."""
    att = _as_float(att)
    total = att.sum(axis=(-2, -1), dtype=np.float64)
    return _mask_mass(att, mask) / np.where(total > 0, total, np.nan)


# ---------------------------------------------------------------------------- scores

def previous_token_scores(att: np.ndarray) -> np.ndarray:
    """Mean over queries ``i >= 1`` of ``att[..., i, i-1]``.

    Parameters
    ----------
    att
        ``[..., T, T]`` attention probabilities.

    Returns
    -------
    np.ndarray
        ``[...]`` float64; NaN when ``T == 1``.
    """
    att = _as_float(att)
    t = att.shape[-1]
    if t < 2:
        return np.full(att.shape[:-2], np.nan)
    i = np.arange(1, t)
    return att[..., i, i - 1].mean(axis=-1, dtype=np.float64)  # [...]


def first_token_scores(att: np.ndarray) -> np.ndarray:
    """Attention-sink score: mean over queries ``i >= 1`` of ``att[..., i, 0]``.

    Parameters
    ----------
    att
        ``[..., T, T]`` attention probabilities.

    Returns
    -------
    np.ndarray
        ``[...]`` float64; NaN when ``T == 1``.
    """
    att = _as_float(att)
    if att.shape[-1] < 2:
        return np.full(att.shape[:-2], np.nan)
    return att[..., 1:, 0].mean(axis=-1, dtype=np.float64)  # [...]


def induction_text_scores(att: np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Induction score on the current text (see :func:`induction_target_mask`).

    Parameters
    ----------
    att
        ``[..., T, T]`` attention probabilities.
    ids
        ``[T]`` token ids of the text.

    Returns
    -------
    np.ndarray
        ``[...]`` float64: mean over queries with at least one induction target of the
        attention mass on their targets; NaN when the text repeats no token in a way that
        gives a target.
    """
    att = _as_float(att)
    ids = _as_ids(ids, att.shape[-1])
    return _masked_mean(att, induction_target_mask(ids))


def duplicate_token_scores(att: np.ndarray, ids: Sequence[int] | np.ndarray) -> np.ndarray:
    """Attention mass on earlier copies of the query's own token.

    Parameters
    ----------
    att
        ``[..., T, T]`` attention probabilities.
    ids
        ``[T]`` token ids of the text.

    Returns
    -------
    np.ndarray
        ``[...]`` float64: mean over queries that have an earlier copy; NaN when none does.
    """
    att = _as_float(att)
    ids = _as_ids(ids, att.shape[-1])
    return _masked_mean(att, duplicate_token_mask(ids))


def attention_entropy(att: np.ndarray, causal: bool = True) -> np.ndarray:
    """Entropy in bits of every attention row.

    Parameters
    ----------
    att
        ``[..., T, T]`` attention probabilities.
    causal
        Whether ``att`` is zero above the diagonal (as the model produces); then only the
        keys ``<= i`` are read, which halves the work. Pass ``False`` for full matrices.

    Returns
    -------
    np.ndarray
        ``[..., T]`` float32/float64 (the dtype of ``att``): ``-sum_k p log2 p`` per query,
        with ``0 log 0 = 0``. A row that attends to one key has entropy 0; a uniform row over
        ``i + 1`` keys has ``log2(i + 1)``.
    """
    att = _as_float(att)
    t = att.shape[-1]
    out = np.empty(att.shape[:-1], dtype=att.dtype)  # [..., T]
    tiny = np.finfo(att.dtype).tiny
    rows = min(_ROW_BLOCK, t)
    # Work in chunks of a few heads × a few rows so the temporary stays in cache (~2 MB);
    # with causal rows, a row block only reads the keys up to its last query.
    chunk = max(1, _CHUNK_BYTES // (rows * t * att.dtype.itemsize))
    buf = np.empty((chunk, rows, t), dtype=att.dtype)
    for src, dst in _head_stacks(att, out):  # [N, T, T] and [N, T] views, no copy
        for h0 in range(0, src.shape[0], chunk):
            h1 = min(src.shape[0], h0 + chunk)
            for r0 in range(0, t, rows):
                r1 = min(t, r0 + rows)
                kmax = r1 if causal else t
                p = src[h0:h1, r0:r1, :kmax]  # [heads, rows, keys]
                lg = buf[: h1 - h0, : r1 - r0, :kmax]
                # log(max(p, tiny)) keeps 0 log 0 = 0; natural log is SIMD-fast, log2 is not.
                np.maximum(p, tiny, out=lg)
                np.log(lg, out=lg)
                dst[h0:h1, r0:r1] = np.einsum("...k,...k->...", p, lg)
    out *= -1.0 / _LN2
    np.maximum(out, 0.0, out=out)  # rounding can give -0.0 or -1e-8 for one-hot rows
    return out


def mean_attention_entropy(att: np.ndarray, causal: bool = True) -> np.ndarray:
    """Mean over queries ``i >= 1`` of the row entropy in bits (:func:`attention_entropy`).

    Returns
    -------
    np.ndarray
        ``[...]`` float64; NaN when ``T == 1``.
    """
    att = _as_float(att)
    if att.shape[-1] < 2:
        return np.full(att.shape[:-2], np.nan)
    return attention_entropy(att, causal=causal)[..., 1:].mean(axis=-1, dtype=np.float64)


# ---------------------------------------------------------------------------- all at once

def _json_grid(a: np.ndarray | None) -> Any:
    """Nested lists with NaN -> None (valid JSON)."""
    if a is None:
        return None
    return [[None if not np.isfinite(v) else float(v) for v in row]
            for row in np.asarray(a, dtype=np.float64)]


@dataclass
class HeadScores:
    """All per-head diagnostics of one text, each ``[L, H]`` float64 (NaN = undefined).

    Attributes
    ----------
    prev_token, first_token, induction, duplicate_token, entropy
        See the module docstring / ``docs/analysis.md``. ``entropy`` is in bits.
    n_tokens
        Length ``T`` of the text the scores were computed on.
    induction_queries, duplicate_queries
        How many queries the induction / duplicate-token means are over (0 -> NaN scores).
    probe_induction
        ``[L, H]`` probe induction scores (:func:`induction_scores`), when computed.
    convention
        ``"gptviz"`` or ``"transformer_lens"`` (:func:`head_scores`).
    """

    prev_token: np.ndarray
    first_token: np.ndarray
    induction: np.ndarray
    duplicate_token: np.ndarray
    entropy: np.ndarray
    n_tokens: int = 0
    induction_queries: int = 0
    duplicate_queries: int = 0
    probe_induction: np.ndarray | None = None
    convention: str = "gptviz"

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_layer, n_head)``."""
        n_layer, n_head = self.prev_token.shape
        return int(n_layer), int(n_head)

    def get(self, name: str) -> np.ndarray:
        """The ``[L, H]`` array of a score by name (one of :data:`SCORE_NAMES` or
        ``"probe_induction"``)."""
        if name not in SCORE_NAMES and name != "probe_induction":
            raise ValueError(f"unknown score {name!r}; one of {', '.join(SCORE_NAMES)}")
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} was not computed")
        return value

    def ranking(self, name: str, descending: bool = True) -> list[tuple[int, int, float]]:
        """``(layer, head, score)`` of every head sorted by a score, NaN last."""
        grid = self.get(name)
        flat = grid.reshape(-1)
        key = np.where(np.isnan(flat), -np.inf if descending else np.inf, flat)
        order = np.argsort(-key if descending else key, kind="stable")
        n_head = grid.shape[1]
        return [(int(o // n_head), int(o % n_head), float(flat[o])) for o in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: ``{"n_tokens", "induction_queries", "duplicate_queries",
        "scores": {name: [[...] per layer]}, "probe_induction": [[...]] | None}``
        with NaN written as ``None``."""
        return {
            "n_tokens": int(self.n_tokens),
            "convention": self.convention,
            "induction_queries": int(self.induction_queries),
            "duplicate_queries": int(self.duplicate_queries),
            "scores": {name: _json_grid(getattr(self, name)) for name in SCORE_NAMES},
            "probe_induction": _json_grid(self.probe_induction),
        }


def _scores_by_layer(att: AttentionSource, ids: Sequence[int] | np.ndarray, causal: bool,
                     probe_induction: np.ndarray | None, convention: str) -> HeadScores:
    """:func:`head_scores` of a source, one layer's ``[H, T, T]`` at a time, stacked."""
    parts = [head_scores(att.layer(layer), ids, causal, None, convention)
             for layer in range(att.shape[0])]
    first = parts[0]
    grids = {name: np.stack([getattr(p, name) for p in parts]) for name in SCORE_NAMES}
    return HeadScores(**grids, n_tokens=first.n_tokens,
                      induction_queries=first.induction_queries,
                      duplicate_queries=first.duplicate_queries,
                      probe_induction=probe_induction, convention=convention)


def head_scores(att: np.ndarray | AttentionSource, ids: Sequence[int] | np.ndarray,
                causal: bool = True, probe_induction: np.ndarray | None = None,
                convention: str = "gptviz") -> HeadScores:
    """Every per-head score of one text.

    Parameters
    ----------
    att
        ``[L, H, T, T]`` attention probabilities (any ``[..., T, T]`` works; the score arrays
        then have shape ``[...]``), or a source read a layer at a time
        (:class:`~gptviz.analysis.maps.AttentionSource`, e.g.
        :meth:`Session.packed_attention <gptviz.engine.session.Session.packed_attention>`).
    ids
        ``[T]`` token ids.
    causal
        ``att`` is zero above the diagonal (see :func:`attention_entropy`).
    probe_induction
        Optional ``[L, H]`` probe scores to carry along (from :func:`induction_scores`).
    convention
        ``"gptviz"`` (means over the queries a score is defined for) or
        ``"transformer_lens"`` (TransformerLens' ``detect_head``: over all queries, its
        induction pattern); see the module docstring.

    Returns
    -------
    HeadScores
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"score convention must be one of {', '.join(CONVENTIONS)} "
                         f"(got {convention!r})")
    if is_source(att):
        return _scores_by_layer(att, ids, causal, probe_induction, convention)
    att = _as_float(as_array(att))
    t = att.shape[-1]
    ids = _as_ids(ids, t)
    tl = convention == "transformer_lens"
    ind_mask = tl_induction_mask(ids) if tl else induction_target_mask(ids)  # [T, T]
    dup_mask = duplicate_token_mask(ids)  # [T, T]
    if tl:
        prev = pattern_fraction(att, previous_token_mask(t))
        ind, dup = pattern_fraction(att, ind_mask), pattern_fraction(att, dup_mask)
    else:
        prev = previous_token_scores(att)
        ind, dup = _masked_mean(att, ind_mask), _masked_mean(att, dup_mask)
    return HeadScores(
        prev_token=prev,
        first_token=first_token_scores(att),
        induction=ind,
        duplicate_token=dup,
        entropy=mean_attention_entropy(att, causal=causal),
        n_tokens=int(t),
        induction_queries=int(ind_mask.any(axis=1).sum()),
        duplicate_queries=int(dup_mask.any(axis=1).sum()),
        probe_induction=probe_induction,
        convention=convention,
    )


# ---------------------------------------------------------------------------- probe

def repeated_random_tokens(n: int, batch: int = 1, vocab: int = 50257,
                           seed: int = 0) -> np.ndarray:
    """The induction probe: ``batch`` sequences of ``n`` random tokens, each repeated twice.

    Parameters
    ----------
    n
        Length of one copy (the sequence is ``2 n`` long).
    batch
        Number of sequences.
    vocab
        Tokens are drawn from ``0 .. vocab - 1``.
    seed
        Seed of ``numpy.random.default_rng``; the same arguments give the same tokens.

    Returns
    -------
    np.ndarray
        ``[batch, 2 n]`` int64. Within one copy the tokens are distinct (drawn without
        replacement when ``n <= vocab``), so each token of the second copy has exactly one
        earlier occurrence and one induction target.
    """
    if n < 1 or batch < 1 or vocab < 1:
        raise ValueError("n, batch and vocab must be positive")
    rng = np.random.default_rng(seed)
    if n <= vocab:
        first = np.stack([rng.choice(vocab, size=n, replace=False) for _ in range(batch)])
    else:
        first = rng.integers(0, vocab, size=(batch, n))
    first = first.astype(np.int64)  # [batch, n]
    return np.concatenate([first, first], axis=1)  # [batch, 2n]


def probe_induction_from_attention(att: np.ndarray, n: int) -> np.ndarray:
    """Probe induction score from the attention on :func:`repeated_random_tokens`.

    Parameters
    ----------
    att
        ``[..., 2n, 2n]`` attention (e.g. ``[B, L, H, 2n, 2n]``; leading axes other than the
        last two are averaged only if you do so: the result keeps them).
    n
        Length of one copy.

    Returns
    -------
    np.ndarray
        ``[...]``: mean over the queries of the second copy, ``i = n .. 2n - 1``, of
        ``att[..., i, i - n + 1]`` (the token right after the first occurrence of token ``i``).
    """
    att = _as_float(att)
    if att.shape[-1] != 2 * n:
        raise ValueError(f"attention over {att.shape[-1]} positions, expected 2n = {2 * n}")
    i = np.arange(n, 2 * n)
    return att[..., i, i - n + 1].mean(axis=-1, dtype=np.float64)


def induction_scores(model: GPT, n: int = 50, seed: int = 0, batch: int = 4,
                     vocab: int | None = None) -> np.ndarray:
    """Induction score of every head on the built-in probe (random tokens repeated twice).

    This is the score of the training report: the model reads ``batch`` sequences of ``n``
    random distinct tokens each repeated twice (:func:`repeated_random_tokens`), and each
    head's score is the mean attention from a token of the second copy to the token right
    after its first occurrence (:func:`probe_induction_from_attention`), averaged over the
    batch. A perfect induction head scores 1; a head that ignores the repeat scores about
    ``1 / (position + 1)``, i.e. a few percent.

    Parameters
    ----------
    model
        The GPT. It is run without gradients in eval mode (its training flag is restored).
    n
        Length of one copy; clipped to ``block_size // 2``. Must be at least 2.
    seed
        Seed of the random tokens.
    batch
        Number of random sequences averaged.
    vocab
        Draw tokens from ``0 .. vocab - 1``; default the model's ``vocab_size``. Pass the
        tokenizer's vocabulary size when the embedding has unused padding rows.

    Returns
    -------
    np.ndarray
        ``[n_layer, n_head]`` float64.
    """
    import torch

    cfg = model.config
    n = min(int(n), cfg.block_size // 2)
    if n < 2:
        raise ValueError(f"probe length must be at least 2 (block_size {cfg.block_size})")
    vocab = int(vocab) if vocab is not None else cfg.vocab_size
    tokens = repeated_random_tokens(n, batch=batch, vocab=vocab, seed=seed)  # [B, 2n]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.from_numpy(tokens).to(device), return_attn=True, last_only=True)
            att = torch.stack(out.attentions, dim=0)  # [L, B, H, 2n, 2n]
            i = torch.arange(n, 2 * n, device=device)
            stripe = att[..., i, i - n + 1]  # [L, B, H, n]
            scores = stripe.double().mean(dim=(1, 3))  # [L, H]
    finally:
        model.train(was_training)
    return scores.cpu().numpy()
