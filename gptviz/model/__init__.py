"""The model layer: the config that says what varies, and the one GPT class.

:mod:`gptviz.model.config` holds :class:`GPTConfig`; :mod:`gptviz.model.gpt` the reference
model (``forward``) and its bit-identical one-token path (``decode_step``).
"""

from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation, GPTOutput, KVCache

__all__ = ["GPT", "GPTConfig", "GPTOutput", "KVCache", "Ablation"]
