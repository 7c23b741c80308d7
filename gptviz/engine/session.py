"""The token-by-token engine: a generation session that keeps every attention map.

A :class:`Session` encodes a prompt and runs it through the model once (prefill), then
:meth:`Session.step` appends one token at a time with a KV cache and returns a
:class:`StepResult` of plain numpy data: the new token, the distribution it was drawn from,
its entropy and the new query's attention row for every layer and head.

Because the model is causal, the attention rows of earlier positions never change when tokens
are appended. The session keeps one lower-triangular buffer ``(L, H, cap, cap)`` that gets one
row per step (``cap`` doubles up to ``block_size``), so the whole ``(L, H, T, T)`` attention
of any moment is available without recomputation (:meth:`Session.attention`).

History
-------
``undo`` only moves the KV cache's ``length`` back (keys and values at position ``p`` depend
only on tokens ``<= p``, so the rows stay valid), and ``redo`` of the same token moves it
forward again, returning the stored :class:`StepResult` with bit-identical attention and
distributions. Any new step (sampled or forced) after an undo starts a branch and clears the
redo stack. Sampling at global position ``t`` uses a generator seeded from ``(seed, t)``
(:func:`gptviz.engine.sampling.step_generator`), so replays are reproducible whatever the path.

Context window
--------------
The model sees at most ``B = block_size`` tokens. The window over the ``n`` tokens of the
session starts at ``window_start(n) = 0 if n <= B else ceil((n - B) / S) * S`` with the
stride ``S = B // 2``: a pure function of ``n``. When a step crosses a stride boundary the
window slides: the cache, the attention buffer and the next distribution are recomputed for
the new window with one full forward, the step reports ``slid=True`` and its
``window_start``, and positions (learned position embeddings, attention indices) restart at 0
at ``window_start``. A prompt longer than ``B`` simply starts with a slid window (the whole
prompt is kept in :attr:`Session.tokens`). Undo/redo across a slide recompute the window of
the target length (values then agree with the incremental ones to float rounding, ~1e-7).

Ablation
--------
:meth:`Session.set_ablation` removes heads (:class:`gptviz.model.gpt.Ablation`): the window is
recomputed with the heads removed and every later step runs ablated; ``None`` restores the
normal path. Steps on the redo stack are replayed (same tokens, recomputed numbers).

Reading the buffers
-------------------
Besides the attention and the next-token distribution, analyses can read the window's final
activations (:meth:`Session.final_hidden`: logits of any window position without a forward
pass), copy the KV cache up to a position (:meth:`Session.kv_cache_snapshot`: run one more
position for the cost of one step) and run the model with the session's ablation
(:attr:`Session.device_ablation`), without touching the session.

Examples
--------
>>> from gptviz import load_model
>>> from gptviz.engine.session import Session
>>> s = Session(load_model(), "Once upon a time")     # doctest: +SKIP
>>> r = s.step(); r.token, r.prob, r.attention_row.shape   # doctest: +SKIP
>>> s.attention().shape   # (L, H, T, T)                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import numbers
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from gptviz.io.checkpoint import ModelBundle
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import Ablation, KVCache
from gptviz.engine.sampling import SamplingSettings, choose

__all__ = ["StepResult", "Session", "window_start_for"]

_LN2 = math.log(2.0)


def window_start_for(n: int, block_size: int) -> int:
    """First token of the model's window when the session holds ``n`` tokens.

    ``0`` while ``n <= block_size``, else ``ceil((n - B) / S) * S`` with ``S = B // 2``
    (at least 1), so the window always holds between ``B - S + 1`` and ``B`` tokens.
    """
    if n <= block_size:
        return 0
    stride = max(1, block_size // 2)
    return -(-(n - block_size) // stride) * stride


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
        that same unfiltered distribution, most probable first.
    entropy
        Entropy of that distribution in bits.
    attention_row
        ``(L, H, S)`` float32: the new token's attention over the keys of its window,
        ``S = index - window_start + 1`` (computed when the token is fed into the model).
    window_start
        Global position of the window's first token after this step.
    slid
        Whether this step slid the window (cache and attention recomputed).
    elapsed_ms
        Wall time of the step (choice + forward + bookkeeping).
    settings
        The :class:`~gptviz.engine.sampling.SamplingSettings` in force when the token was chosen
        (for a forced token: the settings in force at that step; ``None`` when unknown).
    """

    index: int
    token_id: int
    token: str
    forced: bool
    prob: float
    topk_ids: np.ndarray
    topk_probs: np.ndarray
    entropy: float
    attention_row: np.ndarray
    window_start: int
    slid: bool
    elapsed_ms: float
    settings: SamplingSettings | None = None

    @property
    def window_pos(self) -> int:
        """Position of the token inside its window (its row in :meth:`Session.attention`)."""
        return self.index - self.window_start


def _first_changed_layer(a: Ablation | None, b: Ablation | None, n_layer: int) -> int:
    """Lowest layer whose heads are removed differently by ``a`` and ``b`` (``n_layer``: none).

    Both hold tensors on the same device; ``None`` keeps every head. A removed head's output
    is ``fill`` (zeros when ``fill`` is None), so fills only matter where ``keep < 1``.
    """
    ref = a if a is not None else b
    if ref is None:
        return n_layer
    ones = torch.ones_like(ref.keep)  # (L, H): "None" keeps every head
    ka = a.keep if a is not None else ones
    kb = b.keep if b is not None else ones
    fa = a.fill if a is not None else None
    fb = b.fill if b is not None else None
    for layer in range(n_layer):
        if not torch.equal(ka[layer], kb[layer]):
            return layer
        if (fa is None and fb is None) or not bool((ka[layer] < 1).any()):
            continue
        za = fa[layer] if fa is not None else torch.zeros_like(fb[layer])
        zb = fb[layer] if fb is not None else torch.zeros_like(fa[layer])
        if not torch.equal(za, zb):
            return layer
    return n_layer


def _check_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer (got {value!r})")
    return int(value)


class Session:
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

    Raises
    ------
    ValueError
        Empty prompt, token ids outside the vocabulary, bad settings or ``top_k_report``.

    Notes
    -----
    Not thread-safe: drive one session from one thread at a time. All numpy arrays returned
    are float32 / int64 on the CPU, whatever device the model is on. The reads meant for
    analyses that run the model themselves (:meth:`final_hidden`, :meth:`kv_cache_snapshot`,
    :attr:`device_ablation`) are torch tensors on the model's device.
    """

    def __init__(self, bundle: ModelBundle, prompt: str | Sequence[int],
                 settings: SamplingSettings = SamplingSettings(), top_k_report: int = 20) -> None:
        self.bundle = bundle
        self.model = bundle.model
        self.tokenizer = bundle.tokenizer
        if self.model.training:
            self.model.eval()
        self.model.use_decoding_layout()  # faster one-token steps; values unchanged
        cfg = self.config
        self._check_settings(settings)
        k = _check_int(top_k_report, "top_k_report")
        if k < 1:
            raise ValueError(f"top_k_report must be >= 1 (got {k})")
        self.top_k_report = min(k, cfg.vocab_size)
        self._settings = settings
        #: Token ids that may be sampled or forced: the model's and the tokenizer's vocabulary.
        self.n_choosable = min(cfg.vocab_size, self.tokenizer.vocab_size)
        param = self.model.wte.weight
        self._device = param.device
        self._ablation: Ablation | None = None  # as given by the user
        self._ablation_t: Ablation | None = None  # tensors on the model's device
        #: Number of tokens when the ablation in force was switched on (``None``: no ablation).
        #: Lowered when a branch or a reset drops the tokens it was switched on after
        #: (session files restore the ablation at this point, see gptviz.io.session_file).
        self.ablation_applied_at: int | None = None
        with torch.inference_mode():
            self._cache = self.model.new_cache()
            self._hidden = torch.zeros(cfg.block_size, cfg.n_embd, device=param.device,
                                       dtype=param.dtype)  # (B, C) final activation per window pos
            # The residual stream entering every block (and after the last), per window
            # position: toggling a head in layer l re-runs only blocks >= l from row l.
            self._resid = torch.zeros(cfg.n_layer + 1, cfg.block_size, cfg.n_embd,
                                      device=param.device, dtype=param.dtype)  # (L+1, B, C)
        self._attn = np.zeros((cfg.n_layer, cfg.n_head, 0, 0), dtype=np.float32)  # (L, H, cap, cap)
        self._tokens: list[int] = []
        self._history: list[StepResult] = []
        self._redo: list[StepResult] = []  # next to redo is the LAST element
        self._ws = 0  # window start of the buffers
        self._valid = 0  # window rows of cache/attention/hidden valid for tokens + redo stack
        self._next_logits: torch.Tensor | None = None  # (V,) at the cursor, None = stale
        self._next_probs: torch.Tensor | None = None  # (V,)
        self._next_stats: tuple[np.ndarray, np.ndarray, float] | None = None
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
        return list(self._tokens)

    @property
    def n_tokens(self) -> int:
        """Number of tokens up to the cursor."""
        return len(self._tokens)

    @property
    def n_generated(self) -> int:
        """Number of generated tokens up to the cursor."""
        return len(self._tokens) - self.prompt_len

    @property
    def window_start(self) -> int:
        """Global position of the first token in the model's window."""
        return self._ws

    @property
    def window_len(self) -> int:
        """Number of tokens in the window (T of :meth:`attention`)."""
        return len(self._tokens) - self._ws

    @property
    def window_tokens(self) -> list[int]:
        """Token ids of the window."""
        return self._tokens[self._ws:]

    @property
    def history(self) -> list[StepResult]:
        """Generated steps up to the cursor, oldest first (a copy of the list)."""
        return list(self._history)

    @property
    def redo_stack(self) -> list[StepResult]:
        """Undone steps that :meth:`redo` would replay, next one first."""
        return self._redo[::-1]

    @property
    def can_undo(self) -> bool:
        """Whether there is a generated token to undo."""
        return bool(self._history)

    @property
    def can_redo(self) -> bool:
        """Whether there is an undone token to redo."""
        return bool(self._redo)

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
        return [self.display(t) for t in self._tokens]

    def text(self) -> str:
        """The decoded text of :attr:`tokens` (prompt + generated)."""
        return self.tokenizer.decode(self._tokens)

    def generated_text(self) -> str:
        """The decoded text of the generated tokens only."""
        return self.tokenizer.decode(self._tokens[self.prompt_len:])

    # ------------------------------------------------------------------ setup
    def _check_settings(self, s: object) -> SamplingSettings:
        if not isinstance(s, SamplingSettings):
            raise ValueError(f"settings must be a SamplingSettings (got {type(s).__name__})")
        s.validate()
        return s

    def _check_token(self, token_id: object, what: str = "token id") -> int:
        t = _check_int(token_id, what)
        if not 0 <= t < self.n_choosable:
            raise ValueError(f"{what} {t} is outside the vocabulary (0..{self.n_choosable - 1})")
        return t

    def _encode_prompt(self, prompt: str | Sequence[int]) -> tuple[str, list[int]]:
        if isinstance(prompt, str):
            ids = self.tokenizer.encode(prompt)
            if not ids:
                raise ValueError("prompt is empty: it must contain text that encodes to at "
                                 "least one token")
            text = prompt
        elif isinstance(prompt, (Sequence, np.ndarray)):
            ids = [self._check_token(t, "prompt token id") for t in list(prompt)]
            if not ids:
                raise ValueError("prompt is empty: it must hold at least one token id")
            text = self.tokenizer.decode(ids)
        else:
            raise ValueError(f"prompt must be text or a list of token ids "
                             f"(got {type(prompt).__name__})")
        bad = [t for t in ids if not 0 <= t < self.config.vocab_size]
        if bad:
            raise ValueError(f"prompt encodes to token id {bad[0]}, outside the model's "
                             f"vocabulary of {self.config.vocab_size}")
        return text, list(ids)

    def set_prompt(self, prompt: str | Sequence[int]) -> None:
        """Start over from a new prompt (prefill); history and redo are cleared.

        On a bad prompt the ``ValueError`` leaves the session unchanged.
        """
        text, ids = self._encode_prompt(prompt)
        self.prompt = text
        self._tokens = ids
        self.prompt_len = len(ids)
        self._history.clear()
        self._redo.clear()
        if self._ablation is not None:  # the new prompt is prefilled with the heads removed
            self.ablation_applied_at = len(ids)
        self._recompute()

    def set_settings(self, s: SamplingSettings) -> None:
        """Change how the next tokens are chosen (history and cache are untouched)."""
        self._settings = self._check_settings(s)

    # ------------------------------------------------------------------ internals
    def _ensure_capacity(self, T: int) -> None:
        cap = self._attn.shape[-1]
        if T <= cap:
            return
        B = self.config.block_size
        new = min(B, max(64, 2 * cap, 1 << (T - 1).bit_length()))
        L, H = self._attn.shape[:2]
        buf = np.zeros((L, H, new, new), dtype=np.float32)  # (L, H, cap, cap)
        buf[:, :, :cap, :cap] = self._attn
        self._attn = buf

    def _stale_next(self) -> None:
        self._next_logits = None
        self._next_probs = None
        self._next_stats = None

    @torch.inference_mode()
    def _recompute(self) -> None:
        """One full forward over the window of the current tokens: cache, attention, hidden."""
        n = len(self._tokens)
        ws = window_start_for(n, self.config.block_size)
        window = self._tokens[ws:]
        T = len(window)
        idx = torch.tensor([window], dtype=torch.long, device=self._device)  # (1, T)
        self._cache.length = 0
        out = self.model(idx, self._cache, return_attn=True, return_resid=True,
                         ablation=self._ablation_t, last_only=True)
        self._resid[:, :T] = torch.stack(out.residuals)[:, 0]  # (L+1, T, C)
        # Room to grow a little before the first doubling, so steps rarely reallocate.
        self._ensure_capacity(min(self.config.block_size, T + 16))
        self._store_attention(0, out.attentions, T)
        self._hidden[:T] = out.hidden[0]
        self._ws = ws
        self._valid = T
        self._stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    @torch.inference_mode()
    def _sync(self) -> None:
        """Bring the cache/buffers to the current tokens after undo or a fast redo."""
        n = len(self._tokens)
        ws = window_start_for(n, self.config.block_size)
        if ws != self._ws or n - ws > self._valid:
            self._recompute()
        else:
            self._cache.length = n - ws
            self._stale_next()

    @torch.inference_mode()
    def _ensure_next(self) -> None:
        """Next-token logits, probabilities and report statistics at the cursor."""
        if self._next_logits is None:
            T = len(self._tokens) - self._ws
            h = self._hidden[T - 1].view(1, 1, -1)  # (1, 1, C)
            self._next_logits = self.model.lm_head(h)[0, 0]  # (V,)
        if self._next_stats is None:
            logp = torch.log_softmax(self._next_logits.float(), dim=-1)  # (V,)
            probs = logp.exp()  # (V,)
            # H = -sum p log p as one dot product: half the time of entr().sum() for 4k ids.
            entropy = float(-torch.dot(probs, logp)) / _LN2
            if not math.isfinite(entropy):  # -inf logits: 0 * -inf; entr() defines it as 0
                entropy = float(torch.special.entr(probs).sum()) / _LN2
            vals, ids = torch.topk(probs, self.top_k_report)
            self._next_probs = probs
            self._next_stats = (ids.cpu().numpy().astype(np.int64, copy=False),
                                vals.cpu().numpy().astype(np.float32, copy=False),
                                entropy)

    @torch.inference_mode()
    def _advance(self, token: int, forced: bool, t0: float,
                 settings: SamplingSettings | None = None) -> StepResult:
        """Feed ``token`` after the cursor; the redo stack is the caller's business."""
        self._ensure_next()
        assert self._next_probs is not None and self._next_stats is not None
        topk_ids, topk_probs, entropy = self._next_stats
        prob = float(self._next_probs[token])
        n = len(self._tokens)  # index of the new token
        self._tokens.append(token)
        B = self.config.block_size
        slid = window_start_for(n + 1, B) != self._ws
        if slid:
            self._recompute()
            T = n + 1 - self._ws
            row = self._attn[:, :, T - 1, :T].copy()  # (L, H, T)
        else:
            pos = n - self._ws
            T = pos + 1
            self._cache.length = pos
            self._ensure_capacity(T)
            on_cpu = self._device.type == "cpu"
            # On the CPU the step writes its attention rows straight into the history buffer.
            rows = (torch.from_numpy(self._attn)[:, :, pos] if on_cpu  # (L, H, cap) view
                    else torch.empty(self._attn.shape[:2] + (T,), device=self._device))
            logits, hidden = self.model.decode_step(token, self._cache, attn_out=rows,
                                                    resid_out=self._resid[:, pos],
                                                    ablation=self._ablation_t)
            if not on_cpu:
                self._attn[:, :, pos, :T] = rows.cpu().numpy()
            row = self._attn[:, :, pos, :T].copy()  # (L, H, T)
            self._hidden[pos] = hidden
            self._valid = T
            self._stale_next()
            self._next_logits = logits  # (V,)
        return StepResult(
            index=n, token_id=token, token=self.display(token), forced=forced, prob=prob,
            topk_ids=topk_ids, topk_probs=topk_probs, entropy=entropy, attention_row=row,
            window_start=self._ws, slid=slid, elapsed_ms=(time.perf_counter() - t0) * 1e3,
            settings=self._settings if settings is None else settings,
        )

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
            token = self._check_token(force, "forced token id")
        else:
            self._ensure_next()
            assert self._next_logits is not None
            logits = self._next_logits[:self.n_choosable]
            token = choose(logits, self._settings, len(self._tokens))
        self._branch()
        flag = (force is not None) if forced is None else bool(forced)
        result = self._advance(token, flag, t0)
        self._history.append(result)
        return result

    def _branch(self) -> None:
        """A new step after the cursor: the redo stack goes, and an ablation switched on
        after the cursor now counts from the cursor."""
        self._redo.clear()
        if self.ablation_applied_at is not None:
            self.ablation_applied_at = min(self.ablation_applied_at, len(self._tokens))

    @torch.inference_mode()
    def replay(self, token_id: int, forced: bool = False,
               settings: SamplingSettings | None = None) -> StepResult:
        """Append ``token_id`` as recorded elsewhere (a saved session): like
        ``step(force=token_id)`` but the result keeps the given ``forced`` flag and
        ``settings`` (default: the current settings). Clears the redo stack."""
        t0 = time.perf_counter()
        token = self._check_token(token_id, "replayed token id")
        if settings is not None:
            self._check_settings(settings)
        self._branch()
        result = self._advance(token, bool(forced), t0, settings)
        self._history.append(result)
        return result

    def generate(self, n: int) -> list[StepResult]:
        """Take ``n`` sampled steps; returns their results."""
        n = _check_int(n, "number of steps")
        if n < 0:
            raise ValueError(f"number of steps must be >= 0 (got {n})")
        return [self.step() for _ in range(n)]

    def undo(self, n: int = 1) -> int:
        """Take back up to ``n`` generated tokens (never the prompt); returns how many."""
        n = _check_int(n, "undo count")
        if n < 0:
            raise ValueError(f"undo count must be >= 0 (got {n})")
        k = min(n, len(self._history))
        for _ in range(k):
            self._redo.append(self._history.pop())
            self._tokens.pop()
        if k:
            self._sync()
        return k

    def redo(self, n: int = 1) -> int:
        """Replay up to ``n`` undone tokens; returns how many.

        While the cached rows are still valid (same window, same ablation) this only moves the
        cache length and returns the stored results; otherwise the token is fed again.
        """
        n = _check_int(n, "redo count")
        if n < 0:
            raise ValueError(f"redo count must be >= 0 (got {n})")
        k = min(n, len(self._redo))
        B = self.config.block_size
        for _ in range(k):
            r = self._redo.pop()
            m = len(self._tokens) + 1
            if window_start_for(m, B) == self._ws and m - self._ws <= self._valid:
                self._tokens.append(r.token_id)
                self._history.append(r)
                self._cache.length = m - self._ws
                self._stale_next()
            else:
                self._history.append(self._advance(r.token_id, r.forced, time.perf_counter(),
                                                   r.settings))
        return k

    def goto(self, n_generated: int) -> None:
        """Move the cursor to ``n_generated`` generated tokens (undo or redo as needed)."""
        target = _check_int(n_generated, "timeline position")
        top = self.n_generated + len(self._redo)
        if not 0 <= target <= top:
            raise ValueError(f"timeline position {target} is outside 0..{top}")
        if target < self.n_generated:
            self.undo(self.n_generated - target)
        elif target > self.n_generated:
            self.redo(target - self.n_generated)

    def reset(self) -> None:
        """Back to the prompt; history and redo stack cleared."""
        del self._tokens[self.prompt_len:]
        self._history.clear()
        self._branch()
        self._sync()
        self._valid = min(self._valid, len(self._tokens) - self._ws)

    # ------------------------------------------------------------------ ablation
    def set_ablation(self, ablation: Ablation | None) -> None:
        """Run with heads removed from now on (``None``: the normal model).

        The window is recomputed at once (cache, attention, next distribution).

        Raises
        ------
        ValueError
            ``keep`` is not ``(n_layer, n_head)`` or ``fill`` not ``(n_layer, n_head,
            head_dim)``, or they hold non-finite values.
        """
        if ablation is None:
            converted = None
        else:
            if not isinstance(ablation, Ablation):
                raise ValueError(f"ablation must be an Ablation or None "
                                 f"(got {type(ablation).__name__})")
            cfg = self.config
            param = self.model.wte.weight
            keep = torch.as_tensor(np.asarray(ablation.keep) if not torch.is_tensor(ablation.keep)
                                   else ablation.keep).to(param.device, param.dtype)
            if tuple(keep.shape) != (cfg.n_layer, cfg.n_head):
                raise ValueError(f"ablation keep must have shape ({cfg.n_layer}, {cfg.n_head}) "
                                 f"(got {tuple(keep.shape)})")
            fill = None
            if ablation.fill is not None:
                fill = torch.as_tensor(np.asarray(ablation.fill) if not torch.is_tensor(ablation.fill)
                                       else ablation.fill).to(param.device, param.dtype)
                want = (cfg.n_layer, cfg.n_head, cfg.head_dim)
                if tuple(fill.shape) != want:
                    raise ValueError(f"ablation fill must have shape {want} "
                                     f"(got {tuple(fill.shape)})")
            if not torch.isfinite(keep).all() or (fill is not None and not torch.isfinite(fill).all()):
                raise ValueError("ablation keep/fill must hold finite values")
            converted = Ablation(keep=keep, fill=fill)
        previous = self._ablation_t
        self._ablation = ablation
        self._ablation_t = converted
        self.ablation_applied_at = None if ablation is None else len(self._tokens)
        layer = _first_changed_layer(previous, converted, self.config.n_layer)
        T = len(self._tokens) - self._ws
        if layer == self.config.n_layer:
            return  # the same heads removed the same way: every number stays as it is
        if 0 < layer and self._valid >= T and self._ws == window_start_for(
                len(self._tokens), self.config.block_size):
            self._rerun_from(layer)
        else:
            self._recompute()

    def _store_attention(self, first: int, attentions: list[torch.Tensor], T: int) -> None:
        """Copy layers ``first ..`` of a forward's attention, each ``(1, H, T, T)``, into the
        history buffer: one copy per layer, no stacked intermediate (at 12 x 12 heads and
        512 tokens the stack alone was 150 MB)."""
        buf = torch.from_numpy(self._attn)  # (L, H, cap, cap) view of the numpy buffer
        for i, att in enumerate(attentions, start=first):
            buf[i, :, :T, :T] = att[0]  # (H, T, T), to float32 on the CPU

    @torch.inference_mode()
    def _rerun_from(self, layer: int) -> None:
        """Re-run blocks ``layer ..`` over the window; the blocks below are unchanged (the
        heads they remove, if any, are the same), and so are their keys and values."""
        T = len(self._tokens) - self._ws
        x = self._resid[layer, :T].unsqueeze(0)  # (1, T, C) entering block `layer`
        out = self.model.forward_from(x, layer, self._cache, return_attn=True,
                                      return_resid=True, ablation=self._ablation_t,
                                      last_only=True)
        for i, r in enumerate(out.residuals[1:], start=layer + 1):
            self._resid[i, :T] = r[0]
        self._store_attention(layer, out.attentions, T)
        self._hidden[:T] = out.hidden[0]
        self._valid = T
        self._stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    # ------------------------------------------------------------------ reading
    def next_distribution(self) -> tuple[np.ndarray, np.ndarray, float]:
        """Top-k ids ``(k,)`` int64, their probabilities ``(k,)`` float32, and the entropy in
        bits of the unfiltered next-token distribution at the cursor."""
        self._ensure_next()
        assert self._next_stats is not None
        ids, probs, ent = self._next_stats
        return ids.copy(), probs.copy(), ent

    def next_probs(self) -> np.ndarray:
        """The full unfiltered next-token distribution ``(V,)`` float32 at the cursor."""
        self._ensure_next()
        assert self._next_probs is not None
        return self._next_probs.float().cpu().numpy().copy()

    def attention(self, copy: bool = False) -> np.ndarray:
        """Attention of the window ``(L, H, T, T)`` float32, lower-triangular.

        A read-only view into the session's buffer unless ``copy``; the view is valid until
        the next call that changes the session (step, undo, ...).
        """
        T = len(self._tokens) - self._ws
        view = self._attn[:, :, :T, :T]
        if copy:
            return view.copy()
        view.flags.writeable = False
        return view

    def attention_head(self, layer: int, head: int) -> np.ndarray:
        """Attention of one head over the window ``(T, T)`` (a read-only view)."""
        cfg = self.config
        layer, head = _check_int(layer, "layer"), _check_int(head, "head")
        if not 0 <= layer < cfg.n_layer or not 0 <= head < cfg.n_head:
            raise ValueError(f"no head ({layer}, {head}): the model has {cfg.n_layer} layers "
                             f"of {cfg.n_head} heads")
        T = len(self._tokens) - self._ws
        view = self._attn[layer, head, :T, :T]
        view.flags.writeable = False
        return view

    def final_hidden(self, copy: bool = False) -> torch.Tensor:
        """The final activations of the window ``(T, C)`` (after the last layer norm, before
        the output projection), one row per window position, on the model's device.

        ``model.lm_head(final_hidden()[t])`` are the logits of the token after window position
        ``t`` (under the session's ablation) without a forward pass. A view into the session's
        buffer unless ``copy``: do not modify it; it is valid until the next call that changes
        the session (step, undo, ...).
        """
        T = len(self._tokens) - self._ws
        view = self._hidden[:T]
        return view.clone() if copy else view

    def kv_cache_snapshot(self, length: int | None = None, room: int = 1) -> KVCache:
        """A copy of the keys and values of the first ``length`` window positions (default:
        the whole window), as a new batch-1 :class:`~gptviz.model.gpt.KVCache` with ``length`` set
        and room for ``room`` more positions.

        Feeding the token at window position ``length`` into it
        (``model(idx, cache, ablation=session.device_ablation)``) runs that position like the
        session did, at the cost of one step instead of the whole prefix (e.g. the logit lens
        at an earlier query). The session's own cache is not touched.

        Raises
        ------
        ValueError
            ``length`` outside ``0 .. window_len``, ``room < 0``, or ``length + room`` beyond
            ``block_size``.
        """
        cached = len(self._tokens) - self._ws  # window positions whose keys/values are valid
        n = cached if length is None else _check_int(length, "length")
        extra = _check_int(room, "room")
        if not 0 <= n <= cached:
            raise ValueError(f"the cache holds window positions 0..{cached - 1} (asked for the "
                             f"first {n})")
        if extra < 0 or n + extra > self.config.block_size or n + extra == 0:
            raise ValueError(f"room must be >= 0 with length + room in 1..{self.config.block_size}"
                             f" (got length {n}, room {extra})")
        p = self.model.wte.weight
        with torch.no_grad():
            snap = KVCache(self.config, batch=1, device=p.device, dtype=p.dtype,
                           capacity=n + extra)
            snap.k[:, :, :, :n] = self._cache.k[:, :1, :, :n]
            snap.v[:, :, :, :n] = self._cache.v[:, :1, :, :n]
        snap.length = n
        return snap

    @torch.inference_mode()
    def class_probs(self) -> np.ndarray | None:
        """``(n_classes,)`` softmax of the fine-tuning head W_y at the last token, or ``None``
        when the model has no head."""
        if self.config.n_classes <= 0:
            return None
        T = len(self._tokens) - self._ws
        h = self._hidden[T - 1].view(1, 1, -1)  # (1, 1, C)
        return torch.softmax(self.model.classify(h).float(), dim=-1)[0].cpu().numpy()

    @torch.inference_mode()
    def trace_arrays(self) -> dict[str, np.ndarray]:
        """The window as the arrays of a trace NPZ file.

        One full forward (with the current ablation) over the window gives

        * ``token_ids`` int64 ``(T,)``, ``tokens`` unicode ``(T,)`` display strings,
        * ``attention`` float32 ``(L, H, T, T)``,
        * ``probs`` float32 ``(T, V)``: row t is the softmax distribution of the token after
          position t, before any sampling filter,
        * ``prompt_len`` int64 scalar: prompt tokens inside the window,
        * ``window_start`` int64 scalar: global position of the window's first token,
        * ``config`` the model config as a JSON string.
        """
        window = self._tokens[self._ws:]
        T = len(window)
        idx = torch.tensor([window], dtype=torch.long, device=self._device)  # (1, T)
        out = self.model(idx, None, return_attn=True, ablation=self._ablation_t)
        L, H = self.config.n_layer, self.config.n_head
        att = torch.stack(out.attentions).reshape(L, H, T, T)  # (L, H, T, T)
        probs = torch.softmax(out.logits[0].float(), dim=-1)  # (T, V)
        return {
            "token_ids": np.asarray(window, dtype=np.int64),
            "tokens": np.asarray([self.display(t) for t in window], dtype=np.str_),
            "attention": att.float().cpu().numpy(),
            "probs": probs.cpu().numpy(),
            "prompt_len": np.asarray(max(0, self.prompt_len - self._ws), dtype=np.int64),
            "window_start": np.asarray(self._ws, dtype=np.int64),
            "config": np.asarray(json.dumps(self.config.to_dict())),
        }
