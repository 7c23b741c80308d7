"""Comparing the attention of two texts (two branches, two prompts) for one head.

Two attention maps can only be subtracted where their positions mean the same thing. The
default alignment is the *common prefix*: the longest ``n`` with ``ids_a[:n] == ids_b[:n]``;
the difference is ``att_a[:n, :n] - att_b[:n, :n]``. Because attention is causal, rows in the
common prefix depend only on the prefix, so for the *same* model and settings this difference
is exactly zero; it is informative when the two sides differ in something else (ablated heads,
another checkpoint). To compare two prompts that differ in a few tokens (minimal pairs of the
same length), use ``align="position"``: the first ``min(T_a, T_b)`` positions are compared
position by position, whatever the tokens.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["common_prefix_len", "attention_difference"]


def common_prefix_len(ids_a: Sequence[int] | np.ndarray, ids_b: Sequence[int] | np.ndarray
                      ) -> int:
    """Length of the longest common prefix of two token sequences."""
    a = np.asarray(ids_a).reshape(-1)
    b = np.asarray(ids_b).reshape(-1)
    n = min(a.shape[0], b.shape[0])
    differ = np.nonzero(a[:n] != b[:n])[0]
    return int(differ[0]) if differ.size else n


def attention_difference(att_a: np.ndarray, ids_a: Sequence[int] | np.ndarray,
                         att_b: np.ndarray, ids_b: Sequence[int] | np.ndarray,
                         align: str = "prefix") -> tuple[np.ndarray, int]:
    """Difference map ``A - B`` of two attention maps over their aligned positions.

    Parameters
    ----------
    att_a, att_b
        ``[..., T_a, T_a]`` and ``[..., T_b, T_b]`` attention (one head ``[T, T]``, or any
        matching leading axes such as ``[L, H]``).
    ids_a, ids_b
        The token ids of each side.
    align
        ``"prefix"``: the common prefix of the token ids (see the module docstring);
        ``"position"``: the first ``min(T_a, T_b)`` positions, tokens or not.

    Returns
    -------
    diff, aligned_len
        ``diff`` ``[..., n, n]`` float = ``att_a[..., :n, :n] - att_b[..., :n, :n]`` and
        ``n``; ``n`` may be 0 (an empty map) when the first tokens already differ.
    """
    a = np.asarray(att_a)
    b = np.asarray(att_b)
    for name, att, ids in (("a", a, ids_a), ("b", b, ids_b)):
        if att.ndim < 2 or att.shape[-1] != att.shape[-2]:
            raise ValueError(f"att_{name} must have shape [..., T, T], got {att.shape}")
        if att.shape[-1] != np.asarray(ids).reshape(-1).shape[0]:
            raise ValueError(f"att_{name} covers {att.shape[-1]} positions but ids_{name} "
                             f"has {np.asarray(ids).reshape(-1).shape[0]}")
    if a.shape[:-2] != b.shape[:-2]:
        raise ValueError(f"leading axes differ: {a.shape[:-2]} vs {b.shape[:-2]}")
    if align == "prefix":
        n = common_prefix_len(ids_a, ids_b)
    elif align == "position":
        n = min(a.shape[-1], b.shape[-1])
    else:
        raise ValueError(f"align must be 'prefix' or 'position', got {align!r}")
    dtype = np.result_type(a.dtype, b.dtype, np.float32)
    diff = a[..., :n, :n].astype(dtype) - b[..., :n, :n].astype(dtype)
    return diff, n
