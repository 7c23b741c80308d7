"""gptviz: see inside a GPT while it writes.

The Qt-free core, in layers (each a folder): ``model`` (the config and the one GPT class),
``io`` (our checkpoints, tokenizers, session files, exports, bundled resources), ``families``
(every model format, as plug-ins of one registry), ``engine`` (the stepping session),
``analysis`` (head scores, lens, rollout, ablation, comparisons, and their registry),
``train``, ``bench`` and ``cli``. The GUI (``gptviz_app``, the checkout's ``app/``) imports
this package, never the reverse. ``docs/architecture.md`` is the map.
"""

from gptviz import _legacy
from gptviz.families import load_model
from gptviz.io.checkpoint import CheckpointError, ModelBundle, save_checkpoint
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation, GPTOutput, KVCache

__all__ = [
    "GPT", "GPTConfig", "GPTOutput", "KVCache", "Ablation", "Tokenizer",
    "ModelBundle", "CheckpointError", "load_model", "save_checkpoint",
]
__version__ = "0.2.0"

_legacy.install()
