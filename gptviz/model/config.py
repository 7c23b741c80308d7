"""Model configuration: one frozen dataclass that describes every GPT variant we run.

The same fields reproduce three families exactly:

* our own bundled model and nanoGPT checkpoints (pre-LayerNorm, exact GELU),
* GPT-2 (pre-LayerNorm, final LayerNorm, tanh-approximated GELU),
* GPT-1 (post-LayerNorm as in the original paper, no final LayerNorm, and, as implemented by
  Hugging Face's OpenAIGPT, the tanh-approximated GELU).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LNPlacement = Literal["pre", "post"]
Activation = Literal["gelu", "gelu_tanh", "relu"]


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a decoder-only GPT.

    Parameters
    ----------
    n_layer, n_head, n_embd
        Depth, heads per layer and residual width. ``n_embd`` must divide by ``n_head``.
    block_size
        Longest context the learned position embedding covers.
    vocab_size
        Rows of the token embedding W_e (also the output size: the head is W_e^T).
    dropout
        Dropout probability used only while training.
    ln_placement
        ``"pre"`` (GPT-2: LayerNorm at the input of each sub-layer) or ``"post"``
        (GPT-1: LayerNorm after each residual addition).
    final_ln
        Whether a LayerNorm follows the last block (GPT-2: yes, GPT-1: no).
    activation
        Feed-forward non-linearity: ``"gelu"`` (exact), ``"gelu_tanh"`` (GPT-2's approximation)
        or ``"relu"``.
    bias
        Whether linear layers and LayerNorms carry a bias.
    layer_norm_eps
        LayerNorm epsilon.
    n_inner
        Hidden width of the feed-forward layer; ``None`` means ``4 * n_embd``.
    n_classes, class_names
        The fine-tuning head W_y (reference stage 2). ``n_classes == 0`` means no head.
    name
        A short display name for the model.
    """

    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 256
    vocab_size: int = 4096
    dropout: float = 0.0
    ln_placement: LNPlacement = "pre"
    final_ln: bool = True
    activation: Activation = "gelu"
    bias: bool = True
    layer_norm_eps: float = 1e-5
    n_inner: int | None = None
    n_classes: int = 0
    class_names: tuple[str, ...] = field(default_factory=tuple)
    name: str = "gpt"

    def __post_init__(self) -> None:
        problems = []
        for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
            if int(getattr(self, key)) <= 0:
                problems.append(f"{key} must be positive (got {getattr(self, key)!r})")
        if self.n_head > 0 and self.n_embd % self.n_head:
            problems.append(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        if not 0.0 <= self.dropout < 1.0:
            problems.append(f"dropout must be in [0, 1) (got {self.dropout!r})")
        if self.ln_placement not in ("pre", "post"):
            problems.append(f"ln_placement must be 'pre' or 'post' (got {self.ln_placement!r})")
        if self.activation not in ("gelu", "gelu_tanh", "relu"):
            problems.append(f"unknown activation {self.activation!r}")
        if self.n_classes < 0:
            problems.append("n_classes must be >= 0")
        if self.class_names and len(self.class_names) != self.n_classes:
            problems.append(
                f"class_names has {len(self.class_names)} names but n_classes is {self.n_classes}"
            )
        if problems:
            raise ValueError("invalid GPTConfig: " + "; ".join(problems))
        # Keep class_names a tuple even when built from JSON lists (frozen: use object.__setattr__).
        object.__setattr__(self, "class_names", tuple(self.class_names))

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def d_ff(self) -> int:
        """Hidden width of the feed-forward layer."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``config.json`` holds)."""
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "GPTConfig":
        """Build from a dict, ignoring unknown keys so newer files still open."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "class_names" in kwargs:
            kwargs["class_names"] = tuple(kwargs["class_names"])
        return cls(**kwargs)

    def to_json(self) -> str:
        """JSON string of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json_file(cls, path: str | Path) -> "GPTConfig":
        """Read a ``config.json`` written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
