"""The model layer: the config that says what varies, and the one GPT class.

:mod:`gptviz.model.config` holds :class:`GPTConfig`; :mod:`gptviz.model.gpt` the reference
model (``forward``) and its bit-identical one-token path (``decode_step``).
"""

from gptviz.model.config import GPTConfig, RopeScaling
from gptviz.model.gpt import GPT, Ablation, GPTOutput, KVCache, attention_mask, key_window

__all__ = ["GPT", "GPTConfig", "GPTOutput", "KVCache", "Ablation", "RopeScaling", "attention_mask",
           "key_window"]


def __getattr__(name: str) -> object:
    """Names of the flat ``gptviz.model`` module of earlier releases (now in ``gpt``)."""
    import importlib

    module = importlib.import_module("gptviz.model.gpt")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'gptviz.model' has no attribute {name!r}") from None
