"""The engine layer: a generation session that steps one token at a time with a KV cache.

:class:`Session` keeps every attention map of its window; :mod:`gptviz.engine.sampling` turns
logits into the next token (greedy, temperature, top-k, top-p, seeds).
"""

from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session, StepResult, window_start_for

__all__ = ["Session", "StepResult", "SamplingSettings", "window_start_for"]
