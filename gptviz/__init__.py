"""gptviz: see inside a GPT while it writes.

The Qt-free core: the model, tokenizer, checkpoints and loaders, the stepping engine,
analysis and training. The GUI lives in ``app/`` and imports this package, never the reverse.
"""

from .checkpoint import CheckpointError, ModelBundle, load_model, save_checkpoint
from .config import GPTConfig
from .model import GPT, Ablation, GPTOutput, KVCache
from .tokenizer import Tokenizer

__all__ = [
    "GPT", "GPTConfig", "GPTOutput", "KVCache", "Ablation", "Tokenizer",
    "ModelBundle", "CheckpointError", "load_model", "save_checkpoint",
]
__version__ = "0.1.0"
