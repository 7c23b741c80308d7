"""The token-by-token engine: a generation session that keeps every attention map.

A :class:`Session` encodes a prompt and runs it through the model once (prefill), then
:meth:`Session.step` appends one token at a time with a KV cache and returns a
:class:`StepResult` of plain numpy data: the new token, the distribution it was drawn from,
its entropy and the new query's attention row for every layer and head. The whole
``(L, H, T, T)`` attention of any moment is available without recomputation
(:meth:`Session.attention`).

The session puts together parts that each document their own rules:

* :mod:`gptviz.engine.history`: the timeline (tokens, the stored :class:`StepResult` of
  every step, undo/redo and branches);
* :mod:`gptviz.engine.window`: the context window (where it starts, how it slides) and the
  buffers of what the model computed there (KV cache, attention history, activations);
* :mod:`gptviz.engine.reruns`: ablation (removed heads) and re-running the window from the
  first layer it changes;
* :mod:`gptviz.engine.readout`: reading the buffers without changing the session;
* :mod:`gptviz.engine.candidates`: the top-k candidates and entropy of a distribution;
* :mod:`gptviz.engine.sampling`: choosing the next token;
* :mod:`gptviz.engine.validation`: checks of what callers pass in.

Examples
--------
>>> from gptviz import load_model
>>> from gptviz.engine.session import Session
>>> s = Session(load_model(), "Once upon a time")     # doctest: +SKIP
>>> r = s.step(); r.token, r.prob, r.attention_row.shape   # doctest: +SKIP
>>> s.attention().shape   # (L, H, T, T)                   # doctest: +SKIP
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

import gptviz.engine.readout as readout
from gptviz.engine.history import StepResult, Timeline
from gptviz.engine.memory import limit_heap_fragmentation
from gptviz.engine.reruns import device_ablation, rerun_window
from gptviz.engine.rows import StepRows, TokenPath, prompt_path
from gptviz.engine.sampling import SamplingSettings, choose
from gptviz.engine.validation import check_int, check_settings, check_token, encode_prompt
from gptviz.engine.window import ContextWindow, window_start_for
from gptviz.io.checkpoint import ModelBundle
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import Ablation

__all__ = ["StepResult", "Session", "window_start_for"]

_DEFAULT_SETTINGS = SamplingSettings()
#: What a StepResult keeps besides its top-k arrays, in bytes (measured with sys.getsizeof:
#: the object, its floats, strings, arrays' headers, token path and row source).
_STEP_BYTES = 900


class Session(readout.WindowReads):
    """A generation session on one model: prefill, step, undo/redo, force, ablate.

    Parameters
    ----------
    bundle
        The loaded model (:class:`~gptviz.io.checkpoint.ModelBundle`).
    prompt
        Prompt text (or a sequence of token ids); must encode to at least one token.
    settings
        How tokens are sampled; can be changed at any time with :meth:`set_settings`.
    top_k_report
        How many of the most probable tokens each :class:`StepResult` reports (>= 1;
        clipped to the vocabulary size).
    attention_dtype
        How the attention history is stored (``numpy.float16`` or ``numpy.float32``;
        default: float16 for models whose full window would take over 64 MB in float32,
        :func:`gptviz.engine.attention_store.history_dtype`). Reads are float32 either way.

    Raises
    ------
    ValueError
        Empty prompt, token ids outside the vocabulary, bad settings or ``top_k_report``;
        :class:`~gptviz.engine.memory.NotEnoughMemory` (a ``ValueError``) when the prompt's
        window would not fit in memory (also from :meth:`step` and the others that grow it).

    Notes
    -----
    Not thread-safe: drive one session from one thread at a time. All numpy arrays returned
    are float32 / int64 on the CPU, whatever device the model is on. The reads meant for
    analyses that run the model themselves (:meth:`final_hidden`, :meth:`kv_cache_snapshot`,
    :attr:`device_ablation`) are torch tensors on the model's device.
    """

    def __init__(self, bundle: ModelBundle, prompt: str | Sequence[int],
                 settings: SamplingSettings = _DEFAULT_SETTINGS, top_k_report: int = 20,
                 *, attention_dtype: np.dtype | type | None = None) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        if self.model.training:
            self.model.eval()
        self.model.use_decoding_layout()  # faster one-token steps; values unchanged
        cfg = self.config
        check_settings(settings)
        k = check_int(top_k_report, "top_k_report")
        if k < 1:
            raise ValueError(f"top_k_report must be >= 1 (got {k})")
        self.top_k_report = min(k, cfg.vocab_size)
        self._settings = settings
        #: Token ids that may be sampled or forced: the model's and the tokenizer's vocabulary.
        self.n_choosable = min(cfg.vocab_size, self.tokenizer.vocab_size)
        self._ablation: Ablation | None = None  # as given by the user
        self._ablation_t: Ablation | None = None  # tensors on the model's device
        #: Number of tokens when the ablation in force was switched on (``None``: no ablation).
        #: Lowered when a branch or a reset drops the tokens it was switched on after
        #: (session files restore the ablation at this point, see gptviz.io.session_file).
        self.ablation_applied_at: int | None = None
        self._timeline = Timeline()
        #: Called as ``listener(at, steps)`` when a step discards a continuation (the redo
        #: stack, or what a reset put aside): ``at`` generated tokens are kept, ``steps`` are
        #: the discarded StepResults in order (see :mod:`gptviz.engine.branches`).
        self.discard_listeners: list[Callable[[int, list[StepResult]], None]] = []
        limit_heap_fragmentation()  # long runs: see gptviz.engine.memory
        self._window = ContextWindow(self.model, attention_dtype)
        self._rows = StepRows(self._window)  # where the steps read their attention rows
        self._root: TokenPath = prompt_path([])
        self.prompt = ""
        self.prompt_len = 0
        self.set_prompt(prompt)

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> GPTConfig:
        """The model's configuration."""
        return self.model.config

    @property
    def block_size(self) -> int:
        """Longest window the model sees."""
        return self.config.block_size

    @property
    def tokens(self) -> list[int]:
        """All token ids up to the cursor (prompt + generated), a copy."""
        return list(self._timeline.tokens)

    @property
    def token_version(self) -> tuple[int, int]:
        """Changes whenever :attr:`tokens` change (compare with :meth:`tokens_same_since`)."""
        return self._timeline.version

    def tokens_same_since(self, version: tuple[int, int] | None) -> int:
        """How many leading :attr:`tokens` are what they were at ``version`` (a
        :attr:`token_version` read earlier; 0 when unknown): a view of a long text updates
        only what follows."""
        return self._timeline.changed_since(version)

    def tokens_from(self, start: int) -> list[int]:
        """Token ids from global position ``start`` to the cursor (a copy)."""
        return self._timeline.tokens[max(0, int(start)):]

    @property
    def n_tokens(self) -> int:
        """Number of tokens up to the cursor."""
        return len(self._timeline.tokens)

    @property
    def n_generated(self) -> int:
        """Number of generated tokens up to the cursor."""
        return len(self._timeline.tokens) - self.prompt_len

    @property
    def window_start(self) -> int:
        """Global position of the first token in the model's window."""
        return self._window.start

    @property
    def window_len(self) -> int:
        """Number of tokens in the window (T of :meth:`attention`)."""
        return len(self._timeline.tokens) - self._window.start

    @property
    def window_tokens(self) -> list[int]:
        """Token ids of the window."""
        return self._timeline.tokens[self._window.start:]

    @property
    def history(self) -> list[StepResult]:
        """Generated steps up to the cursor, oldest first (a copy of the list)."""
        return list(self._timeline.steps)

    @property
    def redo_stack(self) -> list[StepResult]:
        """Undone steps that :meth:`redo` would replay, next one first."""
        return self._timeline.undone[::-1]

    @property
    def can_undo(self) -> bool:
        """Whether there is a generated token to undo."""
        return bool(self._timeline.steps)

    @property
    def can_undo_reset(self) -> bool:
        """Whether :meth:`undo_reset` would bring back what :meth:`reset` discarded."""
        return self._timeline.aside is not None

    @property
    def n_put_aside(self) -> int:
        """Generated tokens (history and redo stack) :meth:`undo_reset` would bring back."""
        aside = self._timeline.aside
        return 0 if aside is None else aside.n_tokens

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone token to redo."""
        return bool(self._timeline.undone)

    @property
    def settings(self) -> SamplingSettings:
        """Current sampling settings (applied from the next step)."""
        return self._settings

    @settings.setter
    def settings(self, s: SamplingSettings) -> None:
        self.set_settings(s)

    @property
    def ablation(self) -> Ablation | None:
        """The ablation the session runs with (``None``: the normal model)."""
        return self._ablation

    @property
    def device_ablation(self) -> Ablation | None:
        """The ablation in force as the model takes it: ``keep``/``fill`` tensors on the
        model's device and dtype (``None``: the normal model). Pass it as ``ablation=`` to run
        the model the way the session does. Read-only: change it with :meth:`set_ablation`."""
        return self._ablation_t

    @property
    def class_names(self) -> tuple[str, ...]:
        """Names of the fine-tuning head's classes (empty without a head)."""
        cfg = self.config
        if cfg.n_classes <= 0:
            return ()
        return tuple(cfg.class_names) or tuple(f"class {i}" for i in range(cfg.n_classes))

    # ------------------------------------------------------------------ text
    def display(self, token_id: int) -> str:
        """Display string of a token; ids the tokenizer lacks (padded vocab) show as ``<id>``."""
        try:
            return self.tokenizer.display(int(token_id))
        except ValueError:
            return f"<{int(token_id)}>"

    def display_tokens(self) -> list[str]:
        """Display strings of :attr:`tokens`."""
        return [self.display(t) for t in self._timeline.tokens]

    def text(self) -> str:
        """The decoded text of :attr:`tokens` (prompt + generated)."""
        return self.tokenizer.decode(self._timeline.tokens)

    def generated_text(self) -> str:
        """The decoded text of the generated tokens only."""
        return self.tokenizer.decode(self._timeline.tokens[self.prompt_len:])

    # ------------------------------------------------------------------ setup
    def set_prompt(self, prompt: str | Sequence[int]) -> None:
        """Start over from a new prompt (prefill); history and redo are cleared.

        On a bad prompt the ``ValueError`` leaves the session unchanged.
        """
        text, ids = encode_prompt(prompt, self.tokenizer, self.n_choosable,
                                  self.config.vocab_size)
        self._window.check_room(len(ids))
        self.prompt = text
        self._root = prompt_path(ids)
        self.prompt_len = len(ids)
        self._timeline.start(ids)
        if self._ablation is not None:  # the new prompt is prefilled with the heads removed
            self.ablation_applied_at = len(ids)
        self._window.refill(self._timeline.tokens, self._ablation_t)

    def set_settings(self, s: SamplingSettings) -> None:
        """Change how the next tokens are chosen (history and cache are untouched)."""
        self._settings = check_settings(s)

    # ------------------------------------------------------------------ stepping
    @torch.inference_mode()
    def step(self, force: int | None = None, forced: bool | None = None) -> StepResult:
        """Append one token: sampled with the current settings, or ``force``.

        Parameters
        ----------
        force
            A token id to append instead of sampling (a branch).
        forced
            The :attr:`StepResult.forced` flag to record; ``None`` (default): whether
            ``force`` was given. Replaying a saved session passes ``forced=False`` for the
            tokens that were sampled (see also :meth:`replay`).

        Returns
        -------
        StepResult

        Raises
        ------
        ValueError
            ``force`` is not a token id of the vocabulary.

        Notes
        -----
        Any step clears the redo stack. Ids the tokenizer cannot decode (a model vocabulary
        padded beyond the tokenizer's) are never sampled.
        """
        t0 = time.perf_counter()
        if force is not None:
            token = check_token(force, self.n_choosable, "forced token id")
        else:
            logits = self._window.next_logits()[:self.n_choosable]
            token = choose(logits, self._settings, len(self._timeline.tokens))
        self._window.check_room(len(self._timeline.tokens) + 1)
        self._branch()
        flag = (force is not None) if forced is None else bool(forced)
        result = self._advance(token, flag, t0)
        self._timeline.record(result)
        return result

    @torch.inference_mode()
    def replay(self, token_id: int, forced: bool = False,
               settings: SamplingSettings | None = None) -> StepResult:
        """Append ``token_id`` as recorded elsewhere (a saved session): like
        ``step(force=token_id)`` but the result keeps the given ``forced`` flag and
        ``settings`` (default: the current settings). Clears the redo stack."""
        t0 = time.perf_counter()
        token = check_token(token_id, self.n_choosable, "replayed token id")
        if settings is not None:
            check_settings(settings)
        self._window.check_room(len(self._timeline.tokens) + 1)
        self._branch()
        result = self._advance(token, bool(forced), t0, settings)
        self._timeline.record(result)
        return result

    def generate(self, n: int) -> list[StepResult]:
        """Take ``n`` sampled steps; returns their results."""
        n = check_int(n, "number of steps")
        if n < 0:
            raise ValueError(f"number of steps must be >= 0 (got {n})")
        return [self.step() for _ in range(n)]

    def undo(self, n: int = 1) -> int:
        """Take back up to ``n`` generated tokens (never the prompt); returns how many."""
        n = check_int(n, "undo count")
        if n < 0:
            raise ValueError(f"undo count must be >= 0 (got {n})")
        k = self._timeline.undo(n)
        if k:
            self._window.sync(self._timeline.tokens, self._ablation_t)
        return k

    def redo(self, n: int = 1) -> int:
        """Replay up to ``n`` undone tokens; returns how many.

        While the cached rows are still valid (same window, same ablation) this only moves the
        cache length and returns the stored results; otherwise the token is fed again.
        """
        n = check_int(n, "redo count")
        if n < 0:
            raise ValueError(f"redo count must be >= 0 (got {n})")
        k = min(n, len(self._timeline.undone))
        for _ in range(k):
            m = len(self._timeline.tokens) + 1
            if not self._window.holds(m):  # refused before the step leaves the redo stack
                self._window.check_room(m)
            r = self._timeline.pop_undone()
            if self._window.holds(m):
                self._timeline.put_back(r)
                self._window.move_to(m)
            else:
                self._timeline.record(self._advance(r.token_id, r.forced, time.perf_counter(),
                                                    r.settings))
        return k

    def goto(self, n_generated: int) -> None:
        """Move the cursor to ``n_generated`` generated tokens (undo or redo as needed)."""
        target = check_int(n_generated, "timeline position")
        top = self.n_generated + len(self._timeline.undone)
        if not 0 <= target <= top:
            raise ValueError(f"timeline position {target} is outside 0..{top}")
        if target < self.n_generated:
            self.undo(self.n_generated - target)
        elif target > self.n_generated:
            self.redo(target - self.n_generated)

    def reset(self) -> None:
        """Back to the prompt with nothing to redo. What it discards stays aside until the next
        step or prompt: :meth:`undo_reset` brings it back."""
        applied = self.ablation_applied_at
        self._timeline.put_aside(self.prompt_len, (self._ablation_t, applied))
        if applied is not None:  # as for a branch: the ablation counts from the cursor
            self.ablation_applied_at = min(applied, self.prompt_len)
        # The rows past the cursor stay valid for the steps put aside (a step overwrites them,
        # and that step also forgets what was put aside).
        self._window.sync(self._timeline.tokens, self._ablation_t)

    def undo_reset(self) -> int:
        """Undo :meth:`reset`: the history, cursor and redo stack it discarded come back.

        With the same ablation as then, the stored steps come back as they were (tokens,
        distributions and attention rows bit for bit; the window's buffers too unless the
        window had slid); after a change of ablation the tokens are fed again, like
        :meth:`redo` does. Returns the number of tokens put back at the cursor (0: nothing to
        bring back, e.g. a token was generated since the reset).
        """
        if self._timeline.aside is None:
            return 0
        rec = self._timeline.take_back()
        ablation, applied = rec.extra
        if ablation is self._ablation_t:
            for r in rec.steps:
                self._timeline.put_back(r)
            self._window.sync(self._timeline.tokens, self._ablation_t)
            self.ablation_applied_at = applied
        else:
            for r in rec.steps:
                self._timeline.record(self._advance(r.token_id, r.forced, time.perf_counter(),
                                                    r.settings))
        return len(rec.steps)

    def _branch(self) -> None:
        """A new step after the cursor: the redo stack goes, and an ablation switched on
        after the cursor now counts from the cursor."""
        tl = self._timeline
        if self.discard_listeners and (tl.undone or tl.aside is not None):
            at, lost = ((self.n_generated, tl.undone[::-1]) if tl.undone else
                        (0, list(tl.aside.steps) + tl.aside.undone[::-1]))  # type: ignore[union-attr]
            for listener in list(self.discard_listeners):
                listener(at, lost)
        self._timeline.branch()
        if self.ablation_applied_at is not None:
            self.ablation_applied_at = min(self.ablation_applied_at, len(self._timeline.tokens))

    @torch.inference_mode()
    def _advance(self, token: int, forced: bool, t0: float,
                 settings: SamplingSettings | None = None) -> StepResult:
        """Feed ``token`` after the cursor; the redo stack is the caller's business."""
        nxt = self._window.next_candidates(self.top_k_report)  # what `token` was chosen from
        n = len(self._timeline.tokens)  # index of the new token
        steps = self._timeline.steps
        parent = steps[-1].source if steps else None
        path: TokenPath = (parent.path if parent is not None else self._root, token)
        self._timeline.append(token)
        try:
            slid = self._window.advance(self._timeline.tokens, self._ablation_t, owner=path)
        except BaseException:
            self._timeline.drop_last()  # the window did not take it: nor does the timeline
            raise
        return StepResult(
            index=n, token_id=token, token=self.display(token), forced=forced,
            prob=nxt.prob(token), topk_ids=nxt.ids, topk_probs=nxt.probs, entropy=nxt.entropy,
            window_start=self._window.start, slid=slid,
            elapsed_ms=(time.perf_counter() - t0) * 1e3,
            settings=self._settings if settings is None else settings,
            source=self._rows.source(path, self._ablation_t),
        )

    # ------------------------------------------------------------------ ablation
    def set_ablation(self, ablation: Ablation | None) -> None:
        """Run with heads removed from now on (``None``: the normal model).

        The window is recomputed at once (cache, attention, next distribution), from the
        first layer whose heads change (:func:`gptviz.engine.reruns.rerun_window`).

        Raises
        ------
        ValueError
            ``keep`` is not ``(n_layer, n_head)`` or ``fill`` not ``(n_layer, n_head,
            head_dim)``, or they hold non-finite values.
        """
        converted = device_ablation(ablation, self.config, self.model.wte.weight)
        previous = self._ablation_t
        self._ablation = ablation
        self._ablation_t = converted
        self.ablation_applied_at = None if ablation is None else len(self._timeline.tokens)
        rerun_window(self._window, self._timeline.tokens, previous, converted)

    # ------------------------------------------------------------------ reading
    def memory_bytes(self) -> dict[str, int]:
        """Bytes the session's buffers hold: ``attention`` (the history, in CPU memory),
        ``kv_cache``, ``residuals``, ``hidden`` (on the model's device), and ``steps``, an
        estimate of what the recorded steps keep (history, redo stack, put aside)."""
        out = self._window.nbytes()
        tl = self._timeline
        n = len(tl.steps) + len(tl.undone) + (tl.aside.n_tokens if tl.aside else 0)
        out["steps"] = n * (_STEP_BYTES + 12 * self.top_k_report)
        return out

    def trace_arrays(self) -> dict[str, np.ndarray]:
        """The window as the arrays of a trace NPZ file, from one full forward with the current
        ablation (:func:`gptviz.engine.readout.trace_arrays`). What they show (model, step,
        sampling, forced tokens, ablation) is added by
        :func:`gptviz.io.provenance.trace_file_arrays`."""
        return readout.trace_arrays(self._window, self._timeline.tokens, self.prompt_len,
                                    self.display, self._ablation_t)
