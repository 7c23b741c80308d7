"""Worker-side analyses for the app's analysis panels (numpy/torch, no Qt).

The :class:`AnalysisBuilder` lives on the worker thread next to the
:class:`~gptviz_app.runtime.snapshots.SnapshotBuilder`. After every snapshot is built it adds an
:class:`AnalysisResult` as ``snap.extra["analysis"]`` (:meth:`AnalysisBuilder.extend`), and it
runs the ``analysis`` worker command (:meth:`AnalysisBuilder.command`): the panels' settings
(:class:`AnalysisSpec`: which panels are visible, rollout options, lens width, comparison
source), head ablation (toggle / set / clear / mode) and pinning a state for comparisons.

What is computed, and when
--------------------------
Only what a visible panel shows, and only when its inputs changed (each result is cached by
the text in the model's window, the ablation, and the query where it matters):

* head diagnostics: :func:`gptviz.analysis.head_scores` on ``session.attention()`` and the
  window's ids (+ the probe induction score, once per model, on the clean model);
* logit lens at the selected query: the same numbers as :func:`gptviz.analysis.logit_lens`
  with the session's ablation, from one single-token pass over a copy of the session's KV
  cache up to the query (``Session.kv_cache_snapshot``);
* attention rollout (Abnar & Zuidema) of the window, heads averaged without the ablated ones
  (an ablated head moves nothing between positions); the query's row shades the token strip;
* ablation effect: the next-token distribution at the current step with and without the
  ablated heads, the same numbers as :func:`gptviz.analysis.ablation_effect`. The ablated
  logits are read from the session's own final activations (``Session.final_hidden``, no
  forward pass); the clean logits are kept from the moment the ablation was switched on, and
  after the text changes come from a clean run with a KV cache of its own
  (:class:`gptviz.analysis.ablation.PrefixRunner`: a new step costs one more step, not a forward pass
  over the window);
* comparisons of the selected head: a pinned state A against the current state B, or the
  clean model (A) against the ablated one (B), and their difference on aligned positions
  (:func:`gptviz.analysis.attention_difference`).

The ablated heads themselves are read back from ``session.ablation`` on every snapshot (the
session is the single source of truth: a restored session file or a ``set_ablation`` command
show up the same way).

When an ablation is switched on or off after tokens were generated, the distribution the
newest token was drawn from (the next-token panel's "last" candidates) is recomputed under the
current heads, so that panel updates at once too.
"""

from __future__ import annotations

import math
import time
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gptviz_app.runtime.snapshots import head_map, masked_map
from gptviz_app.runtime.snapshot import Candidates, Snapshot

#: Scores of the diagnostics panel, in display order: (key, label).
SCORES: tuple[tuple[str, str], ...] = (
    ("prev_token", "Previous token"),
    ("first_token", "First token (sink)"),
    ("induction", "Induction (this text)"),
    ("probe_induction", "Induction (probe)"),
    ("duplicate_token", "Duplicate token"),
    ("entropy", "Mean entropy (bits)"),
)
ABLATION_MODES = ("zero", "mean")
COMPARE_SOURCES = ("pinned", "ablation")
ALIGNS = ("prefix", "position")

#: Probe of the induction score (see gptviz.analysis.heads.induction_scores).
PROBE_N, PROBE_BATCH, PROBE_SEED = 50, 4, 0


@dataclass(frozen=True)
class AnalysisSpec:
    """What the analysis panels want computed (sent by the window with ``op="spec"``).

    Attributes
    ----------
    heads
        The head-diagnostics panel is visible: compute the per-head scores.
    lens, lens_k
        The logit-lens panel is visible; how many top tokens per layer.
    rollout_map
        The rollout panel is visible: the whole ``[T, T]`` rollout.
    rollout_strip
        Shade the token strip with the query's rollout row instead of the head's attention.
    rollout_residual
        Model the residual connection (``0.5 A + 0.5 I``) as in the paper.
    ablation
        The ablation panel is visible: compute the effect of the ablated heads.
    compare, compare_source, compare_align
        The comparison panel is visible; ``"pinned"`` (pinned A vs current B) or
        ``"ablation"`` (clean A vs ablated B); ``"prefix"`` or ``"position"`` alignment.
    """

    heads: bool = False
    lens: bool = False
    lens_k: int = 5
    rollout_map: bool = False
    rollout_strip: bool = False
    rollout_residual: bool = True
    ablation: bool = False
    compare: bool = False
    compare_source: str = "pinned"
    compare_align: str = "prefix"


@dataclass
class LensView:
    """The logit lens at one query, with display strings (see :class:`gptviz.analysis.lens.LensResult`)."""

    position: int                  # global position of the query
    token: str                     # its display string
    layers: list[str]              # n_layer + 1 names
    top_ids: np.ndarray            # int64 [L+1, k]
    top_probs: np.ndarray          # float32 [L+1, k]
    top_tokens: list[list[str]]
    target: int | None             # the actually-next token id, when known
    target_token: str | None
    target_probs: np.ndarray | None  # float32 [L+1]
    target_ranks: np.ndarray | None  # int64 [L+1], 0 = top
    n_ablated: int = 0


@dataclass
class CompareView:
    """Maps of the selected head for the two sides of a comparison and their difference."""

    source: str
    align: str
    layer: int
    head: int
    average: bool
    label_a: str = ""
    label_b: str = ""
    a: np.ndarray | None = None     # float32 [Ta, Ta], NaN above the diagonal
    b: np.ndarray | None = None     # float32 [Tb, Tb]
    diff: np.ndarray | None = None  # float32 [n, n] = A - B on aligned positions
    n: int = 0                      # aligned positions
    tokens_a: list[str] = field(default_factory=list)
    tokens_b: list[str] = field(default_factory=list)
    message: str = ""               # why a side is missing, or a note


@dataclass
class AnalysisResult:
    """What ``snap.extra["analysis"]`` holds. ``None`` fields were not asked for."""

    spec: AnalysisSpec
    ablated: tuple[tuple[int, int], ...] = ()
    ablation_mode: str = "zero"    # mode of the active ablation, else the one new toggles use
    means_tokens: int = 0          # mean-ablation: tokens the means were measured over
    heads: Any = None              # gptviz.analysis.heads.HeadScores (with probe_induction)
    heads_key: Any = None          # changes whenever the scores change
    lens: LensView | None = None
    rollout_row: np.ndarray | None = None   # float32 [T] over the window (0 after the query)
    rollout_map: np.ndarray | None = None   # float32 [T, T], NaN above the diagonal
    rollout_query: int = -1                 # global position of the rollout row's query
    effect: dict[str, Any] | None = None    # ablation effect (see AnalysisBuilder.effect)
    compare: CompareView | None = None
    pinned: str = ""                        # description of the pinned state A, "" if none
    errors: dict[str, str] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)  # ms per analysis this time


class _Cache:
    """A tiny LRU dict."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.d: OrderedDict = OrderedDict()

    def get(self, key):
        if key in self.d:
            self.d.move_to_end(key)
            return self.d[key]
        return None

    def put(self, key, value) -> None:
        self.d[key] = value
        self.d.move_to_end(key)
        while len(self.d) > self.size:
            self.d.popitem(last=False)

    def clear(self) -> None:
        self.d.clear()


def _keep_array(ablation) -> np.ndarray:
    import torch

    keep = ablation.keep
    if torch.is_tensor(keep):
        return keep.detach().float().cpu().numpy()
    return np.asarray(keep, dtype=np.float32)


def _fill_array(ablation) -> np.ndarray | None:
    import torch

    fill = ablation.fill
    if fill is None:
        return None
    if torch.is_tensor(fill):
        return fill.detach().float().cpu().numpy()
    return np.asarray(fill, dtype=np.float32)


class AnalysisBuilder:
    """Computes the analysis panels' data on the worker thread (see the module docstring)."""

    def __init__(self) -> None:
        self.spec = AnalysisSpec()
        self.mode = "zero"          # mode of the next ablation change
        self._session = None
        self._reset()

    # ------------------------------------------------------------------ state
    def _reset(self) -> None:
        self._abl_obj: Any = _UNSET
        self._abl_key: Any = None
        self._abl_heads: tuple[tuple[int, int], ...] = ()
        self._abl_mode: str | None = None
        self._keep: np.ndarray | None = None
        self._means_cache = _Cache(2)
        self._means_tokens = 0
        self._heads = _Cache(2)
        self._probe: np.ndarray | None = None
        self._lens = _Cache(4)
        self._rollout = _Cache(2)
        self._rollout_rows = _Cache(8)
        self._rollout_prev: tuple | None = None  # the last map, to extend by one row
        self._clean_logits = _Cache(8)
        # The clean model's own KV cache: after a step, its distribution costs one step.
        self._clean_runner: Any = None
        self._clean_att = _Cache(2)
        self._effect = _Cache(4)
        self._labels: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()
        self.pinned: dict[str, Any] | None = None

    def _attach(self, session) -> None:
        if session is not self._session:
            self._session = session
            self._reset()
            self._sync_ablation(session)  # an ablation it already runs with (session file)

    def _sync_ablation(self, s) -> None:
        """Read the ablated heads back from the session (when its ablation object changed)."""
        abl = s.ablation
        if abl is self._abl_obj:
            return
        self._abl_obj = abl
        if abl is None:
            self._abl_key, self._abl_heads, self._abl_mode, self._keep = None, (), None, None
            return
        keep = _keep_array(abl)  # [L, H]
        heads = tuple((int(a), int(b)) for a, b in np.argwhere(keep < 1))
        fill = _fill_array(abl)
        mode = "zero"
        fill_key = None
        if fill is not None and np.any(fill[keep < 1] != 0):
            mode = "mean"
            fill_key = hash(fill.tobytes())
        if not heads:
            self._abl_key, self._abl_heads, self._abl_mode, self._keep = None, (), None, None
            return
        self._abl_key = (heads, mode, fill_key, hash(keep.tobytes()))
        self._abl_heads, self._abl_mode, self._keep = heads, mode, keep

    def _label_steps(self, s) -> None:
        """Remember under which ablation each generated step was computed."""
        for r in s.history:
            if r not in self._labels:
                self._labels[r] = self._abl_key

    @staticmethod
    def _text_key(s) -> tuple:
        wids = np.asarray(s.window_tokens, dtype=np.int64)
        return (int(s.window_start), int(wids.shape[0]), hash(wids.tobytes())), wids

    # ------------------------------------------------------------------ commands
    def command(self, session, op: str, **kw: Any) -> bool:
        """Run one ``analysis`` command; True when the session changed (a jump).

        Ops: ``spec(spec)``, ``toggle_head(layer, head)``, ``set_heads(heads)``, ``clear()``,
        ``set_mode(mode)``, ``pin()``, ``unpin()``.
        """
        if op == "spec":
            spec = kw["spec"]
            if not isinstance(spec, AnalysisSpec):
                raise ValueError("analysis spec must be an AnalysisSpec")
            self.spec = spec
            return False
        if op == "set_mode" and session is None:
            self._set_mode(kw["mode"])
            return False
        if session is None:
            raise ValueError("no model is loaded")
        self._attach(session)
        self._label_steps(session)
        self._sync_ablation(session)
        heads = set(self._abl_heads)
        if op == "toggle_head":
            cfg = session.config
            lh = (int(kw["layer"]), int(kw["head"]))
            if not (0 <= lh[0] < cfg.n_layer and 0 <= lh[1] < cfg.n_head):
                raise ValueError(f"no head {lh}")
            heads ^= {lh}
            return self._apply(session, heads)
        if op == "set_heads":
            return self._apply(session, {(int(a), int(b)) for a, b in kw["heads"]})
        if op == "clear":
            return self._apply(session, set())
        if op == "set_mode":
            changed = self._set_mode(kw["mode"])
            if heads and (changed or self._abl_mode != self.mode):
                return self._apply(session, heads)
            return False
        if op == "pin":
            self._pin(session)
            return False
        if op == "unpin":
            self.pinned = None
            return False
        raise ValueError(f"unknown analysis command {op!r}")

    def _set_mode(self, mode: str) -> bool:
        if mode not in ABLATION_MODES:
            raise ValueError(f"ablation mode must be one of {ABLATION_MODES} (got {mode!r})")
        changed = mode != self.mode
        self.mode = mode
        return changed

    def _effect_position(self, s, T: int) -> int:
        """Window position whose next-token distribution the current step shows."""
        return T - 2 if (s.n_generated > 0 and T >= 2) else T - 1

    def _apply(self, s, heads: set[tuple[int, int]]) -> bool:
        from gptviz.analysis import make_ablation

        heads_sorted = sorted(heads)
        if tuple(heads_sorted) == self._abl_heads and (not heads or self._abl_mode == self.mode):
            return False
        tk, wids = self._text_key(s)
        if self._abl_key is None and heads_sorted:
            # Keep the last clean distribution: the deltas then cost nothing at this state.
            p = self._effect_position(s, len(wids))
            self._clean_logits.put((tk, p), self._logits_at(s, p))
        if not heads_sorted:
            abl = None
        else:
            means = None
            if self.mode == "mean":
                means = self._means(s, tk, wids)
            abl = make_ablation(s.config, heads_sorted, self.mode, model=s.model, means=means)
        s.set_ablation(abl)
        self._sync_ablation(s)
        return True

    def _means(self, s, tk, wids: np.ndarray):
        from gptviz.analysis import head_output_means

        m = self._means_cache.get(tk)
        if m is None:
            m = head_output_means(s.model, wids)  # [L, H, hd], clean model
            self._means_cache.put(tk, m)
        self._means_tokens = int(wids.shape[0])
        return m

    def _pin(self, s) -> None:
        tk, wids = self._text_key(s)
        toks = s.display_tokens()[s.window_start:]
        tail = "".join(toks[-4:])
        abl = f", {len(self._abl_heads)} head(s) ablated" if self._abl_heads else ""
        self.pinned = {
            "ids": wids.copy(), "att": s.attention(copy=True), "tokens": toks,
            "label": f"{len(wids)} tokens …{tail!r}{abl}",
        }

    # ------------------------------------------------------------------ model reads
    @staticmethod
    def _logits_at(s, rel: int):
        """float64 logits ``[V]`` of the session's model (with its ablation) after window
        position ``rel``: read from the session's final activations, which the engine keeps
        for every window position (:meth:`~gptviz.engine.session.Session.final_hidden`, no forward
        pass); a forward pass for a position they do not hold."""
        import torch

        with torch.inference_mode():
            hidden = s.final_hidden()
            if 0 <= rel < hidden.shape[0]:
                h = hidden[rel].view(1, 1, -1)
                return s.model.lm_head(h)[0, 0].double().cpu()
            ids = torch.tensor([s.window_tokens[:rel + 1]], dtype=torch.long,
                               device=s.model.wte.weight.device)
            out = s.model(ids, ablation=s.device_ablation, last_only=True)
            return out.logits[0, -1].double().cpu()

    def _clean_logits_at(self, s, tk, wids: np.ndarray, p: int):
        key = (tk, p)
        got = self._clean_logits.get(key)
        if got is not None:
            return got
        if self._abl_key is None:
            got = self._logits_at(s, p)
        else:
            from gptviz.analysis.ablation import PrefixRunner

            if self._clean_runner is None:  # one per session (_reset drops it)
                self._clean_runner = PrefixRunner(s.model)
            got = self._clean_runner.logits_after(wids[:p + 1]).double().cpu()
        self._clean_logits.put(key, got)
        return got

    # ------------------------------------------------------------------ extend
    def extend(self, snap: Snapshot, session) -> AnalysisResult:
        """Add ``snap.extra["analysis"]`` for ``session`` (called right after the build)."""
        res = AnalysisResult(spec=self.spec, ablation_mode=self.mode)
        snap.extra["analysis"] = res
        if session is None:
            return res
        self._attach(session)
        s = session
        self._label_steps(s)
        self._sync_ablation(s)
        res.ablated = self._abl_heads
        res.ablation_mode = self._abl_mode or self.mode
        res.means_tokens = self._means_tokens if self._abl_mode == "mean" else 0
        res.pinned = self.pinned["label"] if self.pinned else ""
        spec = self.spec
        tk, wids = self._text_key(s)
        ws = int(s.window_start)
        T = int(wids.shape[0])
        q_rel = min(max(0, snap.query - ws), T - 1)

        def run(name: str, fn) -> None:
            t0 = time.perf_counter()
            try:
                fn()
            except Exception as e:  # shown in the panel, never raised into the worker
                res.errors[name] = f"{type(e).__name__}: {e}"
            res.timings[name] = (time.perf_counter() - t0) * 1e3

        run("candidates", lambda: self._fix_candidates(snap, s, T))
        if spec.heads:
            run("heads", lambda: self._head_scores(res, s, tk, wids))
        if spec.lens:
            run("lens", lambda: self._lens_view(res, s, tk, wids, q_rel))
        if spec.rollout_map or spec.rollout_strip:
            run("rollout", lambda: self._rollout_view(res, s, tk, q_rel))
            res.rollout_query = ws + q_rel
        if self._abl_heads and (spec.ablation or spec.heads):
            # the diagnostics' one-line summary never pays for a clean forward pass
            run("effect", lambda: self._effect_view(res, s, tk, wids, forward=spec.ablation))
        if spec.compare:
            run("compare", lambda: self._compare_view(res, snap, s, tk, wids))
        return res

    # ------------------------------------------------------------------ the analyses
    def _fix_candidates(self, snap: Snapshot, s, T: int) -> None:
        """Recompute the newest step's distribution when the heads changed since it was
        drawn (the next-token panel must show the current model)."""
        import torch

        hist = s.history
        if not hist or T < 2 or snap.candidates.kind != "last":
            return
        last = hist[-1]
        if self._labels.get(last, self._abl_key) == self._abl_key:
            return
        logits = self._logits_at(s, T - 2)
        probs = torch.softmax(logits.float(), dim=-1)  # as the engine: float32 softmax
        entropy = float(torch.special.entr(probs).sum() / math.log(2.0))
        k = min(int(s.top_k_report), probs.shape[0])
        vals, ids = torch.topk(probs, k)
        ids_np = ids.numpy().astype(np.int64)
        probs_np = vals.numpy().astype(np.float32)
        tok = int(last.token_id)
        hit = np.flatnonzero(ids_np == tok)
        p_tok = float(probs[tok])
        if hit.size:
            chosen = int(hit[0])
        else:
            ids_np = np.append(ids_np, np.int64(tok))
            probs_np = np.append(probs_np, np.float32(p_tok))
            chosen = len(ids_np) - 1
        snap.candidates = Candidates(
            kind="last", ids=ids_np, tokens=[s.display(i) for i in ids_np], probs=probs_np,
            entropy=entropy, chosen=chosen, chosen_id=tok, chosen_prob=p_tok,
            chosen_forced=bool(last.forced), step=len(hist))

    def _head_scores(self, res: AnalysisResult, s, tk, wids: np.ndarray) -> None:
        from gptviz.analysis import head_scores, induction_scores

        if self._probe is None:
            t0 = time.perf_counter()
            self._probe = induction_scores(s.model, n=PROBE_N, seed=PROBE_SEED,
                                           batch=PROBE_BATCH, vocab=s.n_choosable)
            res.timings["probe"] = (time.perf_counter() - t0) * 1e3
        key = (tk, self._abl_key)
        hs = self._heads.get(key)
        if hs is None:
            hs = head_scores(s.attention(), wids, probe_induction=self._probe)
            self._heads.put(key, hs)
        res.heads, res.heads_key = hs, key

    def _lens_view(self, res: AnalysisResult, s, tk, wids: np.ndarray, q_rel: int) -> None:
        from gptviz.analysis import logit_lens

        k = max(1, min(int(self.spec.lens_k), s.config.vocab_size))
        key = (tk, q_rel, k, self._abl_key)
        lv = self._lens.get(key)
        if lv is None:
            r = _lens_from_cache(s, wids, q_rel, k)
            if r is None:  # no usable cache: run the prefix (one forward pass)
                r = logit_lens(s.model, wids, position=q_rel, k=k, ablation=s.device_ablation)
            ws = s.window_start
            lv = LensView(
                position=ws + q_rel, token=s.display(int(wids[q_rel])), layers=list(r.layers),
                top_ids=r.top_ids, top_probs=np.asarray(r.top_probs, np.float32),
                top_tokens=[[s.display(int(i)) for i in row] for row in r.top_ids],
                target=r.target, target_token=None if r.target is None else s.display(r.target),
                target_probs=None if r.target_probs is None else
                np.asarray(r.target_probs, np.float32),
                target_ranks=r.target_ranks, n_ablated=len(self._abl_heads))
            self._lens.put(key, lv)
        res.lens = lv

    def _rollout_view(self, res: AnalysisResult, s, tk, q_rel: int) -> None:
        from gptviz.analysis import attention_rollout, rollout_row

        residual = bool(self.spec.rollout_residual)
        mask = self._keep
        key = (tk, self._abl_key, residual)
        if self.spec.rollout_map:
            m = self._rollout.get(key)
            if m is None:
                att = s.attention()
                T = att.shape[-1]
                prev = self._rollout_prev
                ws, _, _ = tk
                if (prev is not None and prev[0] == (ws, T - 1, self._abl_key, residual)
                        and prev[1] == hash(np.asarray(s.window_tokens[:-1], np.int64).tobytes())):
                    # causal: appending a token adds a row and changes none of the others
                    m = np.full((T, T), np.nan, np.float32)
                    m[:T - 1, :T - 1] = prev[2]
                    m[T - 1] = rollout_row(att, T - 1, residual=residual, head_mask=mask)
                else:
                    full = attention_rollout(att, residual=residual, head_mask=mask)
                    m = masked_map(full.astype(np.float32))
                m.flags.writeable = False
                self._rollout.put(key, m)
                self._rollout_prev = ((ws, T, self._abl_key, residual), tk[2], m)
            res.rollout_map = m
            row = np.nan_to_num(m[q_rel])
        else:
            row = self._rollout_rows.get(key + (q_rel,))
            if row is None:
                row = rollout_row(s.attention(), q_rel, residual=residual, head_mask=mask)
                row = np.asarray(row, np.float32)
                self._rollout_rows.put(key + (q_rel,), row)
        res.rollout_row = np.asarray(row, np.float32)

    def effect(self, s, tk=None, wids=None, k: int = 10) -> dict[str, Any]:
        """The ablation effect at the current step, with the keys of
        :func:`gptviz.analysis.ablation_effect` (natural-log changes, KL in bits, total
        variation) plus ``step``, ``position`` (global), ``top_token_str``,
        ``chosen_token_str`` and a ``token`` string in every top-k entry.

        The current step is the distribution the next-token panel shows: the one the newest
        token was drawn from (window position ``T - 2``) once tokens were generated, else the
        one after the prompt (``T - 1``; the chosen token is then the one a redo would take).
        """
        import torch

        if tk is None or wids is None:
            tk, wids = self._text_key(s)
        T = int(wids.shape[0])
        p = self._effect_position(s, T)
        chosen: int | None = None
        if p + 1 < T:
            chosen = int(wids[p + 1])
        else:
            redo = s.redo_stack
            if redo:
                chosen = int(redo[0].token_id)
        before = self._clean_logits_at(s, tk, wids, p).log_softmax(-1)  # [V] float64
        after = self._logits_at(s, p).log_softmax(-1)
        k = max(1, min(int(k), before.shape[0]))

        def summary(logp) -> list[dict[str, Any]]:
            top_lp, top_i = torch.topk(logp, k)
            return [{"id": int(i), "token": s.display(int(i)), "prob": float(lp.exp()),
                     "logprob": float(lp)} for i, lp in zip(top_i, top_lp)]

        top = int(before.argmax())
        p_before = before.exp()
        kl = float((p_before * (before - after)).sum() / math.log(2.0))
        out: dict[str, Any] = {
            "heads": [list(h) for h in self._abl_heads], "mode": self._abl_mode,
            "position": int(s.window_start) + p, "step": int(s.n_generated),
            "top_before": summary(before), "top_after": summary(after),
            "top_token": top, "top_token_str": s.display(top),
            "top_logprob_before": float(before[top]), "top_logprob_after": float(after[top]),
            "top_logprob_change": float(after[top] - before[top]),
            "chosen_token": None, "chosen_token_str": None, "chosen_logprob_before": None,
            "chosen_logprob_after": None, "chosen_logprob_change": None,
            "kl_bits": max(kl, 0.0),
            "total_variation": float(0.5 * (p_before - after.exp()).abs().sum()),
        }
        if chosen is not None:
            out.update(chosen_token=chosen, chosen_token_str=s.display(chosen),
                       chosen_logprob_before=float(before[chosen]),
                       chosen_logprob_after=float(after[chosen]),
                       chosen_logprob_change=float(after[chosen] - before[chosen]))
        return out

    def _effect_view(self, res: AnalysisResult, s, tk, wids: np.ndarray,
                     forward: bool = True) -> None:
        redo = s.redo_stack
        key = (tk, self._abl_key, s.n_generated > 0, int(redo[0].token_id) if redo else -1)
        eff = self._effect.get(key)
        if eff is None:
            p = self._effect_position(s, int(wids.shape[0]))
            if not forward and self._clean_logits.get((tk, p)) is None:
                return
            eff = self.effect(s, tk, wids)
            self._effect.put(key, eff)
        res.effect = eff

    def _clean_attention(self, s, tk, wids: np.ndarray) -> np.ndarray:
        from gptviz.analysis import attention_array

        att = self._clean_att.get(tk)
        if att is None:
            att = attention_array(s.model, wids)  # [L, H, T, T], clean model
            att.flags.writeable = False
            self._clean_att.put(tk, att)
        return att

    def _compare_view(self, res: AnalysisResult, snap: Snapshot, s, tk, wids) -> None:
        from gptviz.analysis import attention_difference

        v = snap.view
        spec = self.spec
        cv = CompareView(source=spec.compare_source, align=spec.compare_align, layer=v.layer,
                         head=v.head, average=v.average)
        toks = s.display_tokens()[s.window_start:]
        cur = s.attention()
        if spec.compare_source == "ablation":
            if self._abl_key is None:
                a_att, note = cur, "No head is ablated: A and B are the same model."
            else:
                a_att, note = self._clean_attention(s, tk, wids), ""
            ids_a, toks_a = wids, toks
            cv.label_a = "clean model"
            cv.label_b = (f"{len(self._abl_heads)} head(s) ablated" if self._abl_heads
                          else "clean model")
            cv.message = note
        else:
            if self.pinned is None:
                cv.message = "Pin a state as A first (Pin current as A), then change the text."
                cv.b = masked_map(head_map(cur, v.layer, v.head, v.average))
                cv.tokens_b = toks
                cv.label_b = "current"
                res.compare = cv
                return
            if self.pinned["att"].shape[:2] != cur.shape[:2]:
                self.pinned = None
                res.pinned = ""
                cv.message = "The pinned state was for another model: pin again."
                res.compare = cv
                return
            a_att, ids_a, toks_a = self.pinned["att"], self.pinned["ids"], self.pinned["tokens"]
            cv.label_a = "pinned: " + self.pinned["label"]
            cv.label_b = "current"
        a = head_map(a_att, v.layer, v.head, v.average)
        b = head_map(cur, v.layer, v.head, v.average)
        diff, n = attention_difference(a, ids_a, b, wids, align=spec.compare_align)
        cv.a, cv.b = masked_map(a), masked_map(b)
        cv.diff, cv.n = masked_map(diff.astype(np.float32)), int(n)
        cv.tokens_a, cv.tokens_b = list(toks_a), toks
        if n == 0 and not cv.message:
            cv.message = ("No aligned positions: the texts differ from the first token "
                          "(try aligning by position).")
        res.compare = cv


def _lens_from_cache(s, wids: np.ndarray, q_rel: int, k: int):
    """The logit lens at window position ``q_rel`` from one single-token forward pass over a
    copy of the session's KV cache up to that position (the keys/values of the earlier
    positions, under the session's ablation: :meth:`~gptviz.engine.session.Session.kv_cache_snapshot`),
    instead of running the whole prefix: the cost of one step. ``None`` when the session cannot
    give the cache for that position."""
    import torch

    from gptviz.analysis.lens import LensResult, layer_names, lens_readout

    T = int(wids.shape[0])
    target = int(wids[q_rel + 1]) if q_rel + 1 < T else None
    with torch.inference_mode():
        try:
            cache = s.kv_cache_snapshot(q_rel)  # positions 0 .. q_rel - 1, room for q_rel
        except ValueError:
            return None
        idx = torch.tensor([[int(wids[q_rel])]], dtype=torch.long, device=cache.k.device)
        out = s.model(idx, cache, return_resid=True, ablation=s.device_ablation,
                      last_only=True)
        resid = torch.stack([r[0, -1] for r in out.residuals], dim=0)  # [L+1, C]
        top_i, top_p, t_probs, t_ranks = lens_readout(s.model, resid, k=k, target=target)
    return LensResult(position=q_rel, token=int(wids[q_rel]),
                      layers=layer_names(s.config.n_layer), top_ids=top_i, top_probs=top_p,
                      target=target, target_probs=t_probs, target_ranks=t_ranks)


class _Unset:
    pass


_UNSET = _Unset()
