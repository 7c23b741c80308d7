"""The training layer: the corpus (:mod:`~gptviz.train.data`), the stages that reproduce the
bundled model (:mod:`~gptviz.train.stages`) and held-out evaluation
(:mod:`~gptviz.train.evaluate`)."""


def __getattr__(name: str) -> object:
    """Names of the flat ``gptviz.train`` module of earlier releases (now in ``stages``)."""
    import importlib

    module = importlib.import_module("gptviz.train.stages")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'gptviz.train' has no attribute {name!r}") from None
