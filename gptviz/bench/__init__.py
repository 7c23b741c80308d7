"""The benchmark layer: ms per generated token beside ``transformers``
(:mod:`~gptviz.bench.speed`) and the analyses' costs. Speed targets live here, never in a
timed test."""
