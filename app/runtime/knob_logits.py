"""The next-token chart's knob view on the worker thread: what the sampling settings do to
the distribution the chart shows (:func:`gptviz.engine.knobs.knob_effect`).

Nothing is computed while the settings change nothing (temperature 1, no cut): the bars are
then the distribution drawn from. Otherwise the chart's distribution is read back: the one at
the cursor from the session's cached next-token distribution (its log, which softmax takes as
it takes the logits), the one the newest token was drawn from from the stored final activation
(:func:`~gptviz.analysis.live_ablation.logits_at`, one ``lm_head``), kept until the session
moves or its heads change.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gptviz.analysis.live_ablation import logits_at
from gptviz.engine.knobs import KnobEffect, knob_effect, knobs_change_nothing

__all__ = ["candidate_knobs"]

_cache: dict[int, tuple[tuple, torch.Tensor]] = {}  # id(session) -> (key, logits)


def candidate_knobs(session: Any, kind: str, ids: np.ndarray,
                    logits: torch.Tensor | None = None) -> KnobEffect | None:
    """The current settings' effect on the chart's distribution (``kind`` ``"last"``: the one
    the newest token was drawn from, ``"next"``: the one at the cursor) at ``ids``; ``None``
    when the settings change nothing. ``logits``: that distribution's logits when the caller
    has them already."""
    s = session.settings
    if knobs_change_nothing(s):
        return None
    if logits is None:
        logits = _logits(session, kind)
    return knob_effect(logits, s, ids)


def _logits(session: Any, kind: str) -> torch.Tensor:
    if kind != "last":
        return torch.log(torch.from_numpy(session.next_probs()))  # (V,) log p: softmax's input
    T = session.window_len
    ab = session.ablation
    key = (session.window_start, tuple(session.window_tokens), id(ab),
           None if ab is None else ab.keep.detach().cpu().numpy().tobytes(),
           None if ab is None else id(ab.fill))
    hit = _cache.get(id(session))
    if hit is not None and hit[0] == key:
        return hit[1]
    z = logits_at(session, T - 2)  # (V,) the distribution the newest token was drawn from
    _cache.clear()  # one session at a time
    _cache[id(session)] = (key, z)
    return z
