"""Feed-forward neurons at the selected query of a live session, and one neuron over the text.

Every layer's most active neurons at the query (:func:`~gptviz.analysis.neurons.
top_neurons_from`, from one single-token pass over a copy of the session's KV cache with a
hook on each feed-forward output projection), each with the tokens its value vector promotes;
with a neuron selected (``settings.neuron``), its activation at every window position (one
forward pass over the window, cached per text, ablation and neuron) to shade the token chips.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.neurons import (
    NeuronsAtPosition,
    mlp_inputs,
    neuron_activations,
    top_neurons_from,
)
from gptviz.analysis.query_run import capture_inputs, run_at_query

__all__ = ["NeuronSettings", "NeuronsView", "NeuronsAtQuery"]


@dataclass(frozen=True)
class NeuronSettings:
    """``k`` neurons per layer, ``m`` promoted tokens per neuron; ``neuron``: ``(layer,
    index)`` whose activation over the window is wanted, or ``None``."""

    k: int = 5
    m: int = 5
    neuron: tuple[int, int] | None = None


@dataclass
class NeuronsView:
    """The neurons at the query with strings; ``shading`` is the selected neuron's activation
    over the window ``[T]`` (``None`` without one)."""

    position: int
    token: str
    top: NeuronsAtPosition
    promoted_tokens: list[list[list[str]]]  # [L][k][m]
    neuron: tuple[int, int] | None = None
    shading: np.ndarray | None = None


class NeuronsAtQuery(LiveAnalysis):
    """``"neurons"``: a :class:`NeuronsView` at the selected query."""

    name = "neurons"
    settings_type = NeuronSettings

    def reset(self) -> None:
        self._tops = LRUCache(4)
        self._rows = LRUCache(4)

    def compute(self, inputs: AnalysisInputs, settings: NeuronSettings) -> NeuronsView:
        s, wids, q = inputs.session, inputs.ids, inputs.query
        k, m = max(1, int(settings.k)), max(1, int(settings.m))
        key = (inputs.text_key, q, k, m, inputs.ablation.key)
        view = self._tops.get(key)
        if view is None:
            with capture_inputs(mlp_inputs(s.model)) as got:
                run_at_query(s, wids, q)
            with torch.inference_mode():
                acts = torch.stack([g[-1][0, -1] for g in got])  # (L, d_ff)
                top = top_neurons_from(s.model, acts, k=k, m=m, position=q,
                                       token=int(wids[q]))
            view = NeuronsView(
                position=inputs.window_start + q, token=s.display(int(wids[q])), top=top,
                promoted_tokens=[[[s.display(int(i)) for i in row] for row in layer]
                                 for layer in top.promoted_ids])
            self._tops.put(key, view)
        shading = None
        if settings.neuron is not None:
            layer, n = (int(v) for v in settings.neuron)
            rkey = (inputs.text_key, inputs.ablation.key, layer, n)
            shading = self._rows.get(rkey)
            if shading is None:
                with torch.inference_mode():
                    shading = neuron_activations(s.model, wids, layer, n, s.device_ablation)
                self._rows.put(rkey, shading)
        return NeuronsView(position=view.position, token=view.token, top=view.top,
                           promoted_tokens=view.promoted_tokens,
                           neuron=settings.neuron, shading=shading)
