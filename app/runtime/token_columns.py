"""The per-token arrays of the snapshots (ids, display strings, chosen probabilities, forced
and greedy flags), kept between snapshots and updated only from where the tokens changed.

With a 400,000-token prompt, building them afresh for every snapshot (and the views comparing
them) cost about a second a step. :class:`TokenColumns` asks the session how many leading
tokens are unchanged since it last looked (:meth:`Session.tokens_same_since
<gptviz.engine.session.Session.tokens_same_since>`) and fills in the rest. Snapshots get
read-only views: a step only writes past what earlier snapshots hold, and anything else (an
undo, a new prompt) starts new buffers, so a snapshot's arrays never change under a view.

Each change of the token list gets a revision (:attr:`TokenColumns.rev`, carried by the
snapshot as ``tokens_rev``) and is logged with how many tokens it kept
(``tokens_log``), so that a view can tell how much of what it drew still stands
(:func:`gptviz_app.runtime.snapshot.tokens_kept`), whatever snapshots it skipped.
"""

from __future__ import annotations

import itertools
from collections import deque
from typing import Any

import numpy as np

__all__ = ["TokenColumns"]

#: Revisions a snapshot's log reaches back.
LOG_LENGTH = 64
_BUILDERS = itertools.count(1)


def _greedy(step: Any) -> bool:
    """Whether a step's token was taken greedily (not forced, settings in greedy mode)."""
    return not step.forced and step.settings is not None and bool(step.settings.greedy)


class TokenColumns:
    """Per-token arrays of one session, updated incrementally (see the module notes)."""

    def __init__(self) -> None:
        self.uid = next(_BUILDERS)
        self.rev: tuple[int, int] = (self.uid, 0)
        self.log: deque[tuple[int, int]] = deque(maxlen=LOG_LENGTH)  # (revision, kept)
        self.n = 0
        self.display: list[str] = []
        self._version: Any = None
        self._prompt_len = -1
        self._ids = np.zeros(0, np.int64)
        self._probs = np.zeros(0, np.float32)
        self._forced = np.zeros(0, bool)
        self._greedy = np.zeros(0, bool)

    def update(self, s: Any) -> None:
        """Bring the arrays to the session ``s`` (a :class:`gptviz.engine.session.Session`)."""
        keep = min(self.n, s.tokens_same_since(self._version))
        if s.prompt_len != self._prompt_len:
            keep = 0
        N = s.n_tokens
        if keep == self.n == N:
            self._version = s.token_version
            return
        self._resize(keep, N)
        new = s.tokens_from(keep)  # (N - keep) ids
        self._ids[keep:N] = new
        del self.display[keep:]
        self.display.extend(s.display(t) for t in new)
        pl = s.prompt_len
        lo = max(keep, pl)
        self._probs[keep:lo] = np.nan
        self._forced[keep:lo] = False
        self._greedy[keep:lo] = False
        if lo < N:
            steps = s.history[lo - pl:]
            self._probs[lo:N] = [r.prob for r in steps]
            self._forced[lo:N] = [r.forced for r in steps]
            self._greedy[lo:N] = [_greedy(r) for r in steps]
        self.n, self._prompt_len, self._version = N, pl, s.token_version
        self.rev = (self.uid, self.rev[1] + 1)
        self.log.append((self.rev[1], keep))

    def _resize(self, keep: int, total: int) -> None:
        """Room for ``total`` tokens; new buffers (the first ``keep`` copied) when earlier
        snapshots' views would otherwise see their tokens change."""
        cap = self._ids.shape[0]
        if keep == self.n and cap >= total:
            return  # only writes past every earlier snapshot's tokens
        size = cap if cap >= total else max(total, 64, 2 * cap)
        for name in ("_ids", "_probs", "_forced", "_greedy"):
            old = getattr(self, name)
            buf = np.zeros(size, old.dtype)
            buf[:keep] = old[:keep]
            setattr(self, name, buf)

    def arrays(self) -> dict[str, Any]:
        """The snapshot's fields: read-only views of the first ``n`` tokens, a copy of the
        display list, the revision and its log."""
        def view(a: np.ndarray) -> np.ndarray:
            v = a[:self.n]
            v.flags.writeable = False
            return v

        return {"ids": view(self._ids), "tokens": list(self.display),
                "chosen_probs": view(self._probs), "forced": view(self._forced),
                "greedy": view(self._greedy), "tokens_rev": self.rev,
                "tokens_log": tuple(self.log)}
