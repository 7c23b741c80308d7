"""gptviz: see inside a GPT while it writes.

The Qt-free core: the model, tokenizer, checkpoints and loaders, the stepping engine,
analysis and training. The GUI lives in ``app/`` and imports this package, never the reverse.
"""

from gptviz.families import load_model
from gptviz.io.checkpoint import CheckpointError, ModelBundle, save_checkpoint
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation, GPTOutput, KVCache
from gptviz.io.tokenizer import Tokenizer

__all__ = [
    "GPT", "GPTConfig", "GPTOutput", "KVCache", "Ablation", "Tokenizer",
    "ModelBundle", "CheckpointError", "load_model", "save_checkpoint",
]
__version__ = "0.1.0"
