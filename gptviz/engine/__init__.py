"""The engine layer: a generation session that steps one token at a time with a KV cache.

:class:`Session` (:mod:`gptviz.engine.session`) keeps every attention map of its window and
puts together parts with one job each:

* :mod:`gptviz.engine.history`: the timeline: tokens, the stored :class:`StepResult` of every
  step, undo/redo/goto and branches;
* :mod:`gptviz.engine.window`: the context window (:func:`window_start_for`, slides) and its
  buffers: KV cache, attention history, final activations, residual stream;
* :mod:`gptviz.engine.reruns`: ablation: checking removed heads and re-running the window
  from the first layer they change;
* :mod:`gptviz.engine.readout`: reading the buffers without changing the session (attention,
  final activations, KV-cache copies, trace arrays);
* :mod:`gptviz.engine.candidates`: the next-token candidates (top-k ids, probabilities,
  entropy in bits) of a distribution, :func:`next_token_candidates`;
* :mod:`gptviz.engine.sampling`: turning logits into the next token (greedy, temperature,
  top-k, top-p, seeds);
* :mod:`gptviz.engine.validation`: checks of what callers pass in.
"""

from gptviz.engine.candidates import NextTokenCandidates, include_token, next_token_candidates
from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session, StepResult, window_start_for

__all__ = ["Session", "StepResult", "SamplingSettings", "window_start_for",
           "NextTokenCandidates", "next_token_candidates", "include_token"]
