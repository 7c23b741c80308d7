"""Gradient saliency of the prediction after the selected query of a live session.

:func:`~gptviz.analysis.saliency.saliency` of the session's model (under its ablation) over
the window up to the query, explaining the token after it (the next token of the text, else
the model's most probable one, unless ``settings.target`` names one). Autograd runs on the
worker thread, outside inference mode; cached per text, query, ablation and settings.
"""

from __future__ import annotations

from dataclasses import dataclass

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.saliency import METHODS, Saliency, saliency

__all__ = ["SaliencySettings", "SaliencyView", "SaliencyAtQuery"]


@dataclass(frozen=True)
class SaliencySettings:
    """``method`` ``"grad"`` (input × gradient) or ``"ig"``; ``steps`` for ``"ig"``;
    ``target`` a token id, ``None``: the next token (or the top prediction)."""

    method: str = "grad"
    steps: int = 32
    target: int | None = None


@dataclass
class SaliencyView:
    """A :class:`~gptviz.analysis.saliency.Saliency` with strings (``position`` global)."""

    position: int
    result: Saliency
    tokens: list[str]        # the window's tokens up to the query
    target_token: str


class SaliencyAtQuery(LiveAnalysis):
    """``"saliency"``: a :class:`SaliencyView` for the prediction after the query."""

    name = "saliency"
    settings_type = SaliencySettings

    def reset(self) -> None:
        self._views = LRUCache(4)

    def compute(self, inputs: AnalysisInputs, settings: SaliencySettings) -> SaliencyView:
        if settings.method not in METHODS:
            raise ValueError(f"saliency method must be one of {', '.join(METHODS)}")
        s, wids, q = inputs.session, inputs.ids, inputs.query
        steps = int(settings.steps) if settings.method == "ig" else 0
        key = (inputs.text_key, q, inputs.ablation.key, settings.method, steps, settings.target)
        view = self._views.get(key)
        if view is None:
            r = saliency(s.model, wids, position=q, target=settings.target,
                         method=settings.method, steps=max(1, steps),
                         ablation=s.device_ablation)
            view = SaliencyView(position=inputs.window_start + q, result=r,
                                tokens=[s.display(int(t)) for t in wids[:q + 1]],
                                target_token=s.display(r.target))
            self._views.put(key, view)
        return view
