"""Head diagnostics of a live session: every head's scores on the text in the model's window.

:func:`~gptviz.analysis.heads.head_scores` of the window's attention (read a layer at a time,
:meth:`~gptviz.engine.session.Session.packed_attention`) and its ids,
plus the probe induction score (:func:`~gptviz.analysis.heads.induction_scores`, measured once
per session on the clean model), in the chosen convention (gptviz's or TransformerLens').
Recomputed only when the text, the ablation or the convention changed.

Examples
--------
>>> from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec   # doctest: +SKIP
>>> runner = AnalysisRunner(AnalysisSpec({"heads": None}))           # doctest: +SKIP
>>> runner.run(session).get("heads").ranking("induction")[:3]       # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gptviz.analysis.heads import HeadScores, head_scores, induction_scores
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache

__all__ = ["SCORES", "CONVENTION_LABELS", "HeadSettings", "HeadDiagnostics"]

#: The scores in display order: (key, label).
SCORES: tuple[tuple[str, str], ...] = (
    ("prev_token", "Previous token"),
    ("first_token", "First token (sink)"),
    ("induction", "Induction (this text)"),
    ("probe_induction", "Induction (probe)"),
    ("duplicate_token", "Duplicate token"),
    ("entropy", "Mean entropy (bits)"),
)

#: The score conventions in display order: (key, label); see :func:`head_scores`.
CONVENTION_LABELS: tuple[tuple[str, str], ...] = (
    ("gptviz", "gptviz"),
    ("transformer_lens", "TransformerLens"),
)


@dataclass(frozen=True)
class HeadSettings:
    """``convention``: ``"gptviz"`` or ``"transformer_lens"`` (:func:`head_scores`)."""

    convention: str = "gptviz"


#: The probe of the induction score: random tokens of this length, batch and seed.
PROBE_N, PROBE_BATCH, PROBE_SEED = 50, 4, 0


class HeadDiagnostics(LiveAnalysis):
    """``"heads"``: a :class:`~gptviz.analysis.heads.HeadScores` (with ``probe_induction``);
    the same object again while the text, the ablation and the convention stay the same."""

    name = "heads"
    settings_type = HeadSettings

    def reset(self) -> None:
        self.probe: Any = None  # [L, H], once per session
        self._scores = LRUCache(2)

    def compute(self, inputs: AnalysisInputs, settings: HeadSettings) -> HeadScores:
        s = inputs.session
        if self.probe is None:
            t0 = time.perf_counter()
            self.probe = induction_scores(s.model, n=PROBE_N, seed=PROBE_SEED,
                                          batch=PROBE_BATCH, vocab=s.n_choosable)
            inputs.timings["probe"] = (time.perf_counter() - t0) * 1e3
        key = (inputs.text_key, inputs.ablation.key, settings.convention)
        hs = self._scores.get(key)
        if hs is None:
            hs = head_scores(s.packed_attention(), inputs.ids, probe_induction=self.probe,
                             convention=settings.convention)
            self._scores.put(key, hs)
        return hs
