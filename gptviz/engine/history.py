"""A session's timeline: its tokens, the steps that generated them, and the undone steps.

History
-------
``undo`` only moves the KV cache's ``length`` back (keys and values at position ``p`` depend
only on tokens ``<= p``, so the rows stay valid), and ``redo`` of the same token moves it
forward again, returning the stored :class:`StepResult` with bit-identical attention and
distributions. Any new step (sampled or forced) after an undo starts a branch and clears the
redo stack. :meth:`Timeline.put_aside` (a Reset) keeps what it takes off the timeline until the
next step, so that it can be brought back whole. Sampling at global position ``t`` uses a
generator seeded from ``(seed, t)``
(:func:`gptviz.engine.sampling.step_generator`), so replays are reproducible whatever the path.

:class:`Timeline` is the bookkeeping of that (lists only, no model);
:class:`~gptviz.engine.session.Session` moves the window's buffers along with it.
"""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gptviz.engine.rows import RowSource
from gptviz.engine.sampling import SamplingSettings

__all__ = ["PutAside", "StepResult", "Timeline"]

#: Changes of the token list a :class:`Timeline` remembers (:meth:`Timeline.changed_since`).
CHANGE_LOG = 512
_TIMELINES = itertools.count(1)


@dataclass(eq=False)  # holds arrays: compare fields, not results
class StepResult:
    """One generated token and everything the model computed around it.

    Attributes
    ----------
    index
        Global position of the new token in :attr:`Session.tokens`.
    token_id, token
        The token's id and readable display string.
    forced
        Whether the token was chosen by the user instead of sampled.
    prob
        Probability of the token under the unfiltered softmax (temperature 1, no top-k/p) of
        the distribution it was chosen from.
    topk_ids, topk_probs
        ``(k,)`` int64 / float32: the ``k = Session.top_k_report`` most probable tokens of
        that same unfiltered distribution, most probable first
        (:func:`gptviz.engine.candidates.next_token_candidates`).
    entropy
        Entropy of that distribution in bits.
    attention_row
        ``(L, H, S)`` float32 (a property): the new token's attention over the keys of its
        window, ``S = index - window_start + 1``, as computed when the token was fed into the
        model. Not stored with the step: read from the window's attention history while it
        holds the row, else recomputed (:mod:`gptviz.engine.rows`).
    window_start
        Global position of the window's first token after this step.
    slid
        Whether this step slid the window (cache and attention recomputed).
    elapsed_ms
        Wall time of the step (choice + forward + bookkeeping).
    settings
        The :class:`~gptviz.engine.sampling.SamplingSettings` in force when the token was chosen
        (for a forced token: the settings in force at that step; ``None`` when unknown).
    source
        Where :attr:`attention_row` is read from (:class:`~gptviz.engine.rows.RowSource`;
        ``None``: the step has no row, e.g. one built by hand).

    Notes
    -----
    A step keeps only these few numbers (about 1 KB with ``k = 20``), so that long runs stay
    small; the session's window holds the attention.
    """

    index: int
    token_id: int
    token: str
    forced: bool
    prob: float
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    entropy: float
    window_start: int
    slid: bool
    elapsed_ms: float
    settings: SamplingSettings | None = None
    source: RowSource | None = field(default=None, repr=False)

    @property
    def attention_row(self) -> np.ndarray:
        """``(L, H, S)`` float32, a new array (see the class notes); ``ValueError`` when the
        step has no :attr:`source`."""
        if self.source is None:
            raise ValueError("this step has no attention row (it was not computed by a session)")
        return self.source.row(self.index, self.window_start)

    @property
    def window_pos(self) -> int:
        """Position of the token inside its window (its row in :meth:`Session.attention`)."""
        return self.index - self.window_start


@dataclass(eq=False)
class PutAside:
    """What :meth:`Timeline.put_aside` took off the timeline: the steps up to the cursor and
    the undone ones (next to redo LAST), and ``extra``, the caller's own state at that moment."""

    steps: list[StepResult] = field(default_factory=list)
    undone: list[StepResult] = field(default_factory=list)
    extra: Any = None

    @property
    def n_tokens(self) -> int:
        """Generated tokens it holds (history and redo stack)."""
        return len(self.steps) + len(self.undone)


class Timeline:
    """Token ids up to the cursor, the generated steps up to it, and the undone steps.

    ``tokens[i]`` for ``i >= len(tokens) - len(steps)`` is ``steps[j].token_id`` of the
    matching step; the earlier tokens are the prompt. ``undone`` is a stack: the next step to
    redo is its LAST element.

    Every change of :attr:`tokens` gets a new :attr:`version` and is logged with the first
    position it touched, so that a reader (a view of a 400,000-token text) can ask what changed
    since the version it last saw (:meth:`changed_since`) instead of comparing everything.
    """

    def __init__(self) -> None:
        self.tokens: list[int] = []
        self.steps: list[StepResult] = []
        self.undone: list[StepResult] = []
        #: What the last :meth:`put_aside` took off, until a new step or prompt (``None``).
        self.aside: PutAside | None = None
        #: ``(timeline id, change count)``: different whenever :attr:`tokens` changed.
        self.version: tuple[int, int] = (next(_TIMELINES), 0)
        self._changes: deque[tuple[int, int]] = deque(maxlen=CHANGE_LOG)  # (count, position)

    def _changed(self, position: int) -> None:
        """The tokens from ``position`` on changed (or were removed)."""
        tid, n = self.version
        self.version = (tid, n + 1)
        self._changes.append((n + 1, position))

    def changed_since(self, version: tuple[int, int] | None) -> int:
        """How many leading tokens are the same as at ``version`` (a :attr:`version` read
        earlier): ``len(tokens)`` when nothing changed, 0 when unknown (another timeline, or
        older than the last :data:`CHANGE_LOG` changes)."""
        if version is None or version[0] != self.version[0]:
            return 0
        n = version[1]
        if n == self.version[1]:
            return len(self.tokens)
        if not self._changes or self._changes[0][0] > n + 1:
            return 0
        return min([len(self.tokens)] + [p for c, p in self._changes if c > n])

    def start(self, ids: list[int]) -> None:
        """Begin again from the prompt ``ids``: no steps, nothing to redo."""
        self.tokens = ids
        self._changed(0)
        self.steps.clear()
        self.undone.clear()
        self.aside = None

    def append(self, token: int) -> None:
        """Put a new token after the cursor (its step is recorded with :meth:`record`)."""
        self._changed(len(self.tokens))
        self.tokens.append(token)

    def drop_last(self) -> None:
        """Take the newest token back (it was appended, but its step could not be taken)."""
        self.tokens.pop()
        self._changed(len(self.tokens))

    def record(self, step: StepResult) -> None:
        """Record the step that produced the newest token."""
        self.steps.append(step)

    def undo(self, n: int) -> int:
        """Move up to ``n`` generated steps onto the undone stack; returns how many."""
        k = min(n, len(self.steps))
        for _ in range(k):
            self.undone.append(self.steps.pop())
            self.tokens.pop()
        if k:
            self._changed(len(self.tokens))
        return k

    def pop_undone(self) -> StepResult:
        """Take the next step to redo off the undone stack."""
        return self.undone.pop()

    def put_back(self, step: StepResult) -> None:
        """Redo ``step`` as it was recorded: its token and its result come back."""
        self._changed(len(self.tokens))
        self.tokens.append(step.token_id)
        self.steps.append(step)

    def branch(self) -> None:
        """A new step after the cursor: the undone steps can no longer be redone, nor what
        :meth:`put_aside` took be brought back."""
        self.undone.clear()
        self.aside = None

    def put_aside(self, keep: int, extra: Any = None) -> None:
        """Back to the first ``keep`` tokens (the prompt) with nothing to redo, keeping the
        steps and undone steps in :attr:`aside` (with ``extra``) for :meth:`take_back`. With
        nothing to put aside, an earlier :attr:`aside` stays."""
        if self.steps or self.undone:
            self.aside = PutAside(list(self.steps), list(self.undone), extra)
        if keep < len(self.tokens):
            self._changed(keep)
        del self.tokens[keep:]
        self.steps.clear()
        self.undone.clear()

    def take_back(self) -> PutAside:
        """Empty :attr:`aside` and return it; the undone steps come back at once, the caller
        puts the steps back (:meth:`put_back`, or :meth:`append` and :meth:`record` when it
        computes them again). ``ValueError`` when nothing was put aside."""
        if self.aside is None:
            raise ValueError("nothing was put aside")
        rec, self.aside = self.aside, None
        self.undone = list(rec.undone)
        return rec

    def truncate(self, keep: int) -> None:
        """Keep the first ``keep`` tokens (the prompt) and no steps; the undone stack stays
        (the caller decides whether it still applies)."""
        if keep < len(self.tokens):
            self._changed(keep)
        del self.tokens[keep:]
        self.steps.clear()
