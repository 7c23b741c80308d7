"""Comparisons of the selected head in a live session: two states and their difference.

Sources: a pinned state A (``compare.pin`` keeps the current text and attention) against the
current state B, the clean model (A) against the ablated one (B) on the current text, or
another branch of the branch tree (A, :mod:`gptviz.engine.branches`: one forward of that
branch's window with the session's ablation) against the current branch (B). The
difference ``A - B`` is taken on aligned positions
(:func:`~gptviz.analysis.compare.attention_difference`: the common token prefix, or position
by position). Every side is read a head (or a layer) at a time: the current one from the
session's packed history, the pinned one from a copy of it (float16 rows for big models), the
clean and branch ones from a forward kept packed
(:func:`~gptviz.analysis.sources.forward_attention`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gptviz.analysis.compare import attention_difference
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.maps import head_map, layer_windows, masked_map
from gptviz.analysis.sources import forward_attention

__all__ = ["COMPARE_SOURCES", "ALIGNS", "CompareSettings", "CompareView", "HeadComparison"]

COMPARE_SOURCES = ("pinned", "ablation", "branch")
ALIGNS = ("prefix", "position")


@dataclass(frozen=True)
class CompareSettings:
    """``source``: ``"pinned"`` (pinned A vs current B), ``"ablation"`` (clean A vs
    ablated B) or ``"branch"`` (branch ``branch`` A vs the current branch B); ``align``:
    ``"prefix"`` or ``"position"``."""

    source: str = "pinned"
    align: str = "prefix"
    branch: int = -1


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
    pinned: str = ""                # description of the pinned state A, "" if none


class HeadComparison(LiveAnalysis):
    """``"compare"``: a :class:`CompareView`; commands ``pin`` and ``unpin``."""

    name = "compare"
    settings_type = CompareSettings

    def reset(self) -> None:
        #: The pinned state A: ``ids``, ``att`` (a copy of the session's packed
        #: attention, [L, H, T, T] read a head at a time), ``tokens``, ``label``.
        self.pinned: dict[str, Any] | None = None
        self._clean_att = LRUCache(2)
        self._branch_att = LRUCache(2)

    def command(self, inputs: AnalysisInputs, op: str, **kw: Any) -> bool:
        if op == "pin":
            s, abl = inputs.session, inputs.ablation
            toks = s.display_tokens()[s.window_start:]
            tail = "".join(toks[-4:])
            note = f", {len(abl.heads)} head(s) ablated" if abl.heads else ""
            self.pinned = {"ids": inputs.ids.copy(), "att": s.packed_attention(copy=True),
                           "tokens": toks, "label": f"{inputs.T} tokens …{tail!r}{note}"}
            return False
        if op == "unpin":
            self.pinned = None
            return False
        return super().command(inputs, op, **kw)

    def _clean_attention(self, inputs: AnalysisInputs) -> Any:
        att = self._clean_att.get(inputs.text_key)
        if att is None:
            att = forward_attention(inputs.session.model, inputs.ids)  # [L, H, T, T], clean
            self._clean_att.put(inputs.text_key, att)
        return att

    def _branch_side(self, inputs: AnalysisInputs, bid: int
                     ) -> tuple[Any, np.ndarray, list[str], str] | str:
        """Attention ``[L, H, T, T]``, window ids, tokens and label of branch ``bid``, from
        one forward of its window (the window the session would hold at its length); or why
        not (a message)."""
        from gptviz.engine.branches import tree_for
        from gptviz.engine.window import window_start_for

        s = inputs.session
        tree = tree_for(s)
        try:
            b = tree.branch(bid)
        except ValueError:
            return "Choose a branch as A (Branches panel: Compare)."
        if b.id == tree.current:
            return "A is the current branch: choose another branch as A."
        ids = s.tokens_from(0)[:s.prompt_len] + list(b.ids)
        ids = ids[window_start_for(len(ids), s.block_size):]
        key = (tuple(ids), inputs.ablation.key)
        att = self._branch_att.get(key)
        if att is None:
            att = forward_attention(s.model, ids, ablation=s.device_ablation)  # [L, H, T, T]
            self._branch_att.put(key, att)
        toks = [s.display(t) for t in ids]
        return att, np.asarray(ids, np.int64), toks, f"branch #{b.id} ({len(b)} tokens)"

    def compute(self, inputs: AnalysisInputs, settings: CompareSettings) -> CompareView:
        s, wids, abl = inputs.session, inputs.ids, inputs.ablation
        layer, head, average = inputs.layer, inputs.head, inputs.average
        win = layer_windows(s.config)[layer]  # a local layer's cells outside its window: masked
        cv = CompareView(source=settings.source, align=settings.align, layer=layer,
                         head=head, average=average)
        toks = s.display_tokens()[s.window_start:]
        cur = s.packed_attention()  # [L, H, T, T], read a head or a layer at a time
        if settings.source == "ablation":
            if abl.key is None:
                a_att, note = cur, "No head is ablated: A and B are the same model."
            else:
                a_att, note = self._clean_attention(inputs), ""
            ids_a, toks_a = wids, toks
            cv.label_a = "clean model"
            cv.label_b = f"{len(abl.heads)} head(s) ablated" if abl.heads else "clean model"
            cv.message = note
        elif settings.source == "branch":
            side = self._branch_side(inputs, settings.branch)
            if isinstance(side, str):
                cv.message = side
                cv.b = masked_map(head_map(cur, layer, head, average), win)
                cv.tokens_b, cv.label_b = toks, "current branch"
                return cv
            a_att, ids_a, toks_a, cv.label_a = side
            cv.label_b = "current branch"
        else:
            pinned = self.pinned
            if pinned is not None and pinned["att"].shape[:2] != cur.shape[:2]:
                self.pinned = None
                cv.message = "The pinned state was for another model: pin again."
                return cv
            if pinned is None:
                cv.message = "Pin a state as A first (Pin current as A), then change the text."
                cv.b = masked_map(head_map(cur, layer, head, average), win)
                cv.tokens_b = toks
                cv.label_b = "current"
                return cv
            a_att, ids_a, toks_a = pinned["att"], pinned["ids"], pinned["tokens"]
            cv.label_a = "pinned: " + pinned["label"]
            cv.label_b = "current"
        cv.pinned = self.pinned["label"] if self.pinned else ""
        a = head_map(a_att, layer, head, average)
        b = head_map(cur, layer, head, average)
        diff, n = attention_difference(a, ids_a, b, wids, align=settings.align)
        cv.a, cv.b = masked_map(a, win), masked_map(b, win)
        cv.diff, cv.n = masked_map(diff.astype(np.float32), win), int(n)
        cv.tokens_a, cv.tokens_b = list(toks_a), toks
        if n == 0 and not cv.message:
            cv.message = ("No aligned positions: the texts differ from the first token "
                          "(try aligning by position).")
        return cv
