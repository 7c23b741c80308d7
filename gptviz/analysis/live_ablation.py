"""Head ablation of a live session: which heads are switched off, and how (session state).

:class:`HeadAblation` toggles heads on a :class:`~gptviz.engine.Session` (``toggle_head``,
``set_heads``, ``clear``, ``set_mode``) by giving it a new
:class:`~gptviz.model.gpt.Ablation`, and reads the ablated heads back from
``session.ablation`` before every use: the session is the single source of truth (a restored
session file or an ablation set directly show up the same way).

For mean-ablation the heads' mean outputs are measured on the clean model, causally: over the
window's positions up to the one whose prediction the step shows (:func:`effect_position`),
or over a reference text the user picks (``set_reference``); once per text. When the text
moved on since the ablation was set, the ablated distribution the effect compares is
recomputed with the means the definition asks for (:meth:`HeadAblation.ablated_logits_at`),
so a later token never changes the effect at an earlier position. The clean model's
next-token logits, which the ablation effect compares
against, are kept from the moment an ablation is switched on, and come afterwards from a
clean run with a KV cache of its own (:class:`~gptviz.analysis.ablation.PrefixRunner`: a new
step costs one more step, not a forward pass over the window). Every generated step is
labelled with the ablation it was computed under, so that a caller can tell when the
distribution a token was drawn from no longer matches the heads.
"""

from __future__ import annotations

import weakref
from typing import Any, cast

import numpy as np
import torch

from gptviz.analysis.ablation import (
    AblationMode,
    PrefixRunner,
    head_output_means,
    make_ablation,
    read_ablation,
)
from gptviz.analysis.caching import LRUCache, text_key

__all__ = ["ABLATION_MODES", "HeadAblation", "effect_position", "logits_at"]

ABLATION_MODES = ("zero", "mean")
#: The commands :meth:`HeadAblation.command` runs.
ABLATION_OPS = ("toggle_head", "set_heads", "clear", "set_mode", "set_reference")


def effect_position(session: Any, T: int) -> int:
    """Window position whose next-token distribution the current step shows: the one the
    newest token was drawn from once tokens were generated, else the one after the prompt."""
    return T - 2 if (session.n_generated > 0 and T >= 2) else T - 1


def logits_at(session: Any, rel: int) -> torch.Tensor:
    """float64 logits ``[V]`` of the session's model (with its ablation) after window
    position ``rel``, on the CPU: read from the session's final activations, which the engine
    keeps for every window position (:meth:`~gptviz.engine.Session.final_hidden`, no forward
    pass); a forward pass for a position they do not hold."""
    s = session
    with torch.inference_mode():
        hidden = s.final_hidden()  # [T, C]
        if 0 <= rel < hidden.shape[0]:
            h = hidden[rel].view(1, 1, -1)
            return s.model.lm_head(h)[0, 0].double().cpu()
        ids = torch.tensor([s.window_tokens[:rel + 1]], dtype=torch.long,
                           device=s.model.wte.weight.device)  # [1, rel + 1]
        out = s.model(ids, ablation=s.device_ablation, last_only=True)
        return out.logits[0, -1].double().cpu()


class HeadAblation:
    """The ablated heads of one session (see the module docstring).

    Attributes
    ----------
    mode
        The mode of the next change (``"zero"`` or ``"mean"``).
    heads
        The ablated ``(layer, head)`` pairs, sorted (``()``: the clean model).
    active_mode
        Mode of the ablation in force, ``None`` without one.
    key
        Changes whenever the ablation does (``None``: the clean model): part of every cache
        key of the analyses.
    keep
        ``[L, H]`` float64 (1 keeps a head), ``None`` without an ablation.
    means_tokens
        Mean-ablation: tokens the means were last measured over.
    clean_runner
        The clean model's :class:`~gptviz.analysis.ablation.PrefixRunner` (once needed).
    """

    def __init__(self) -> None:
        self.mode: AblationMode = "zero"
        #: Mean-ablation over this text instead of the window's prefix (``None``: the prefix).
        self.reference_text: str | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the session (the next one starts without a known ablation)."""
        self._obj: Any = _UNSET  # the session's ablation object last read
        self.heads: tuple[tuple[int, int], ...] = ()
        self.active_mode: AblationMode | None = None
        self.key: Any = None
        self.keep: np.ndarray | None = None
        self.means_tokens = 0
        self._means = LRUCache(4)
        self._reference_ids: Any = None  # (text, ids [R]) of the reference, per session
        self.fill_source: Any = None  # what the session's mean fill was measured over
        self._ablated_logits = LRUCache(4)
        self._clean_logits = LRUCache(8)
        self.clean_runner: PrefixRunner | None = None
        self._labels: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ reading back
    def sync(self, session: Any, label: bool = True) -> None:
        """Label the steps generated since the last call with the ablation in force (unless
        ``label`` is false), then read the ablated heads back from ``session.ablation`` (when
        that object changed)."""
        if label:
            for r in session.history:
                if r not in self._labels:
                    self._labels[r] = self.key
        abl = session.ablation
        if abl is self._obj:
            return
        self._obj = abl
        self.fill_source = None  # set by apply() when the ablation is its own
        parts = read_ablation(abl)
        if parts is None or not parts.heads:
            self.key, self.heads, self.active_mode, self.keep = None, (), None, None
            return
        fill_key = None
        if parts.mode == "mean" and parts.fill is not None:
            fill_key = hash(parts.fill.tobytes())
        self.key = (parts.heads, parts.mode, fill_key, hash(parts.keep.tobytes()))
        self.heads, self.active_mode, self.keep = parts.heads, parts.mode, parts.keep

    def is_current(self, step: Any) -> bool:
        """Whether ``step`` (a StepResult of the session) was computed under the heads
        ablated now."""
        return self._labels.get(step, self.key) == self.key

    # ------------------------------------------------------------------ commands
    def set_mode(self, mode: str) -> bool:
        """The mode of the next change; True when it changed."""
        if mode not in ABLATION_MODES:
            raise ValueError(f"ablation mode must be one of {ABLATION_MODES} (got {mode!r})")
        changed = mode != self.mode
        self.mode = cast(AblationMode, mode)
        return changed

    def command(self, session: Any, op: str, **kw: Any) -> bool:
        """Run ``toggle_head(layer, head)``, ``set_heads(heads)``, ``clear()`` or
        ``set_mode(mode)``; True when the session changed (an ablation was set)."""
        if op == "set_mode" and session is None:
            self.set_mode(kw["mode"])
            return False
        if op == "set_reference" and session is None:
            self.reference_text = _reference_text(kw.get("text"))
            return False
        if session is None:
            raise ValueError("no model is loaded")
        self.sync(session)
        heads = set(self.heads)
        if op == "toggle_head":
            cfg = session.config
            lh = (int(kw["layer"]), int(kw["head"]))
            if not (0 <= lh[0] < cfg.n_layer and 0 <= lh[1] < cfg.n_head):
                raise ValueError(f"no head {lh}")
            return self.apply(session, heads ^ {lh})
        if op == "set_heads":
            return self.apply(session, {(int(a), int(b)) for a, b in kw["heads"]})
        if op == "clear":
            return self.apply(session, set())
        if op == "set_mode":
            changed = self.set_mode(kw["mode"])
            if heads and (changed or self.active_mode != self.mode):
                return self.apply(session, heads)
            return False
        if op == "set_reference":
            text = _reference_text(kw.get("text"))
            if text is not None:
                self.reference_ids(session, text)  # refuse a bad text before keeping it
            self.reference_text = text
            if heads and self.active_mode == "mean":
                return self.apply(session, heads, force=True)
            return False
        raise ValueError(f"unknown analysis command {op!r}")

    def apply(self, session: Any, heads: set[tuple[int, int]], force: bool = False) -> bool:
        """Run ``session`` with ``heads`` ablated in :attr:`mode`; True when that changed it
        (``force``: set it again, e.g. after the reference text changed)."""
        s = session
        heads_sorted = sorted(heads)
        if (not force and tuple(heads_sorted) == self.heads
                and (not heads or self.active_mode == self.mode)):
            return False
        tk, wids = text_key(s)
        if self.key is None and heads_sorted:
            # Keep the last clean distribution: the deltas then cost nothing at this state.
            p = effect_position(s, len(wids))
            self._clean_logits.put((tk, p), logits_at(s, p))
        abl, source = None, None
        if heads_sorted:
            means = None
            if self.mode == "mean":
                source = self.means_source(s, wids, effect_position(s, len(wids)))
                means = self.means(s, tk, wids)
            abl = make_ablation(s.config, heads_sorted, self.mode, model=s.model, means=means)
        s.set_ablation(abl)
        self.sync(s)
        self.fill_source = source
        return True

    # ------------------------------------------------------------------ the means
    def reference_ids(self, session: Any, text: str | None = None) -> np.ndarray | None:
        """The reference text's token ids ``[R]`` (``None`` without one); ValueError when it
        encodes to nothing or more than the model reads."""
        text = self.reference_text if text is None else text
        if text is None:
            return None
        got = self._reference_ids
        if got is not None and got[0] == text:
            return got[1]
        ids = np.asarray(session.tokenizer.encode(text), dtype=np.int64)
        n, cap = int(ids.shape[0]), int(session.config.block_size)
        if not 0 < n <= cap:
            raise ValueError(f"the reference text is {n} tokens; mean-ablation needs 1..{cap}")
        self._reference_ids = (text, ids)
        return ids

    def means_source(self, session: Any, wids: np.ndarray, p: int) -> tuple[Any, ...]:
        """What the means of the prediction after window position ``p`` are taken over: the
        reference text, else the window's positions ``0 .. p`` (a hashable key)."""
        ref = self.reference_ids(session)
        if ref is not None:
            return ("reference", int(ref.shape[0]), hash(ref.tobytes()))
        prefix = np.ascontiguousarray(wids[:p + 1])
        return ("prefix", int(prefix.shape[0]), hash(prefix.tobytes()))

    def means(self, session: Any, tk: Any, wids: np.ndarray, p: int | None = None
              ) -> torch.Tensor:
        """Every head's mean output on the clean model over the reference text, else over the
        window's positions ``0 .. p`` (default the step's :func:`effect_position`); cached."""
        if p is None:
            p = effect_position(session, len(wids))
        source = self.means_source(session, wids, p)
        m = self._means.get(source)
        ref = self.reference_ids(session)
        over = ref if ref is not None else wids[:p + 1]
        if m is None:
            m = head_output_means(session.model, over)  # [L, H, hd], clean model
            self._means.put(source, m)
        self.means_tokens = int(over.shape[0])
        return m

    def ablated_logits_at(self, session: Any, tk: Any, wids: np.ndarray, p: int
                          ) -> torch.Tensor:
        """float64 logits ``[V]`` of the ablated model after window position ``p``: the
        session's own (no forward pass) unless mean-ablation's means should now be other
        ones (the text moved on, or the ablation was set elsewhere), then one forward pass
        over ``wids[:p + 1]`` with the causal means (or the reference's)."""
        s = session
        if self.active_mode != "mean" or not self.heads:
            return logits_at(s, p)
        source = self.means_source(s, wids, p)
        if source == self.fill_source:
            return logits_at(s, p)
        key = (tk, p, self.key, source)
        got = self._ablated_logits.get(key)
        if got is None:
            means = self.means(s, tk, wids, p)
            abl = make_ablation(s.config, list(self.heads), "mean", model=s.model, means=means)
            with torch.inference_mode():
                idx = torch.as_tensor(wids[None, :p + 1], dtype=torch.long,
                                      device=s.model.wte.weight.device)  # [1, p + 1]
                got = s.model(idx, ablation=abl, last_only=True).logits[0, -1].double().cpu()
            self._ablated_logits.put(key, got)
        return got

    # ------------------------------------------------------------------ the clean model
    def clean_logits_at(self, session: Any, tk: Any, wids: np.ndarray, p: int) -> torch.Tensor:
        """float64 logits ``[V]`` of the clean model after window position ``p``."""
        key = (tk, p)
        got = self._clean_logits.get(key)
        if got is not None:
            return got
        if self.key is None:
            got = logits_at(session, p)
        else:
            if self.clean_runner is None:  # one per session (reset drops it)
                self.clean_runner = PrefixRunner(session.model)
            got = self.clean_runner.logits_after(wids[:p + 1]).double().cpu()
        self._clean_logits.put(key, got)
        return got


def _reference_text(text: Any) -> str | None:
    """A reference text from a command (``None`` or an empty one: the prefix)."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ValueError("the reference text must be a string")
    return text if text.strip() else None


class _Unset:
    pass


_UNSET = _Unset()
