"""The ablation effect at a live session's current step.

The next-token distribution the next-token panel shows (the one the newest token was drawn
from once tokens were generated, else the one after the prompt), with and without the ablated
heads: :func:`~gptviz.analysis.ablation.effect_from_logprobs`, the numbers of
:func:`~gptviz.analysis.ablation.ablation_effect` (mean-ablation with causal means, or a
reference text's). The ablated logits are read from the session's own final activations (no
forward pass) unless the means should be other ones than the session's
(:meth:`~gptviz.analysis.live_ablation.HeadAblation.ablated_logits_at`), the clean ones come
from
:meth:`~gptviz.analysis.live_ablation.HeadAblation.clean_logits_at` (kept from the moment
the ablation was switched on, then one step of a clean KV cache per new step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gptviz.analysis.ablation import effect_from_logprobs
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.live_ablation import effect_position

__all__ = ["EffectSettings", "AblationEffectAtStep", "step_effect"]


@dataclass(frozen=True)
class EffectSettings:
    """``k``: how many top tokens to list with and without the heads."""

    k: int = 10


def step_effect(inputs: AnalysisInputs, k: int = 10) -> dict[str, Any]:
    """The ablation effect at the current step: the keys of
    :func:`~gptviz.analysis.ablation.ablation_effect` (natural-log changes, KL in bits, total
    variation; ``position`` global) plus ``step``, ``top_token_str``, ``chosen_token_str``
    and a ``token`` string in every top-k entry.

    The chosen token is the one after the step's position, or the one a redo would take.
    """
    s, wids, abl = inputs.session, inputs.ids, inputs.ablation
    T = inputs.T
    p = effect_position(s, T)
    chosen: int | None = None
    if p + 1 < T:
        chosen = int(wids[p + 1])
    else:
        redo = s.redo_stack
        if redo:
            chosen = int(redo[0].token_id)
    before = abl.clean_logits_at(s, inputs.text_key, wids, p).log_softmax(-1)  # [V] float64
    after = abl.ablated_logits_at(s, inputs.text_key, wids, p).log_softmax(-1)  # [V] float64
    out = effect_from_logprobs(before, after, abl.heads, abl.active_mode or abl.mode,
                               inputs.window_start + p, chosen=chosen, k=k)
    for d in out["top_before"] + out["top_after"]:
        d["token"] = s.display(d["id"])
    out["step"] = int(s.n_generated)
    out["top_token_str"] = s.display(out["top_token"])
    out["chosen_token_str"] = None if chosen is None else s.display(chosen)
    return out


class AblationEffectAtStep(LiveAnalysis):
    """``"effect"``: the dict of :func:`step_effect` (only while heads are ablated)."""

    name = "effect"
    settings_type = EffectSettings
    needs_ablation = True

    def reset(self) -> None:
        self._effects = LRUCache(4)

    def compute(self, inputs: AnalysisInputs, settings: EffectSettings) -> dict[str, Any]:
        s = inputs.session
        redo = s.redo_stack
        key = (inputs.text_key, inputs.ablation.key, s.n_generated > 0,
               int(redo[0].token_id) if redo else -1, int(settings.k))
        eff = self._effects.get(key)
        if eff is None:
            eff = step_effect(inputs, k=settings.k)
            self._effects.put(key, eff)
        return eff
