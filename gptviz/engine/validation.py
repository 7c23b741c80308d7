"""Checks of what callers hand a session: integers, token ids, settings, prompts.

Every check raises ``ValueError`` with a message meant for the user (the app shows it as is).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence

import numpy as np

from gptviz.engine.sampling import SamplingSettings
from gptviz.io.tokenizer import Tokenizer

__all__ = ["check_int", "check_settings", "check_token", "encode_prompt"]


def check_int(value: object, name: str) -> int:
    """``value`` as an ``int``; ``ValueError`` for anything but an integer (bools included)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer (got {value!r})")
    return int(value)


def check_settings(s: object) -> SamplingSettings:
    """``s`` if it is a valid :class:`~gptviz.engine.sampling.SamplingSettings`."""
    if not isinstance(s, SamplingSettings):
        raise ValueError(f"settings must be a SamplingSettings (got {type(s).__name__})")
    s.validate()
    return s


def check_token(token_id: object, n_choosable: int, what: str = "token id") -> int:
    """``token_id`` as an ``int`` in ``0 .. n_choosable - 1``."""
    t = check_int(token_id, what)
    if not 0 <= t < n_choosable:
        raise ValueError(f"{what} {t} is outside the vocabulary (0..{n_choosable - 1})")
    return t


def encode_prompt(prompt: str | Sequence[int], tokenizer: Tokenizer, n_choosable: int,
                  vocab_size: int) -> tuple[str, list[int]]:
    """The prompt's text and token ids, from text or from token ids.

    Parameters
    ----------
    prompt
        Text (encoded with ``tokenizer``) or a sequence of token ids (each checked against
        ``n_choosable``, decoded for the text).
    tokenizer
        The session's tokenizer.
    n_choosable
        Token ids that may be given: the model's and the tokenizer's vocabulary.
    vocab_size
        The model's vocabulary size.

    Raises
    ------
    ValueError
        An empty prompt, ids outside the vocabulary, or neither text nor ids.
    """
    if isinstance(prompt, str):
        ids = tokenizer.encode(prompt)
        if not ids:
            raise ValueError("prompt is empty: it must contain text that encodes to at "
                             "least one token")
        text = prompt
    elif isinstance(prompt, (Sequence, np.ndarray)):
        ids = [check_token(t, n_choosable, "prompt token id") for t in list(prompt)]
        if not ids:
            raise ValueError("prompt is empty: it must hold at least one token id")
        text = tokenizer.decode(ids)
    else:
        raise ValueError(f"prompt must be text or a list of token ids "
                         f"(got {type(prompt).__name__})")
    bad = [t for t in ids if not 0 <= t < vocab_size]
    if bad:
        raise ValueError(f"prompt encodes to token id {bad[0]}, outside the model's "
                         f"vocabulary of {vocab_size}")
    return text, list(ids)
