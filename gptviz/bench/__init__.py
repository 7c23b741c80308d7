"""The benchmark layer: ms per generated token beside ``transformers``
(:mod:`~gptviz.bench.speed`) and the analyses' costs (:mod:`~gptviz.bench.analysis`). Speed
targets live here, never in a timed test."""


def __getattr__(name: str) -> object:
    """Names of the flat ``gptviz.bench`` module of earlier releases (now in ``speed``)."""
    import importlib

    module = importlib.import_module("gptviz.bench.speed")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'gptviz.bench' has no attribute {name!r}") from None
