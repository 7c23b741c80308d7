"""Model configuration: one frozen dataclass that describes every GPT variant we run.

The same fields reproduce three families exactly:

* our own bundled model and nanoGPT checkpoints (pre-LayerNorm, exact GELU),
* GPT-2 (pre-LayerNorm, final LayerNorm, tanh-approximated GELU),
* GPT-1 (post-LayerNorm as in the original paper, no final LayerNorm, and, as implemented by
  Hugging Face's OpenAIGPT, the tanh-approximated GELU).

Further fields, whose defaults are the GPT-2 choices, describe later decoder-only families:
an untied output head, rotary or no position embedding, RMSNorm, a gated feed-forward
layer, grouped-query attention, parallel attention and feed-forward, another attention
scale (e.g. Llama: rotary, RMSNorm, gated SiLU, grouped-query; GPT-NeoX: partial rotary,
parallel block; GPT-Neo: attention unscaled).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

LNPlacement = Literal["pre", "post"]
Activation = Literal["gelu", "gelu_tanh", "relu", "silu"]
PositionalEmbedding = Literal["learned", "rotary", "none"]
NormType = Literal["layernorm", "rmsnorm"]
MLPType = Literal["standard", "gated"]


def _positive_number(x: Any) -> bool:
    """A finite number > 0 (not a bool, not a string)."""
    return (isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
            and x > 0)


@dataclass(frozen=True)
class GPTConfig:
    """Hyper-parameters of a decoder-only GPT.

    Parameters
    ----------
    n_layer, n_head, n_embd
        Depth, heads per layer and residual width. ``n_embd`` must divide by ``n_head``.
    block_size
        Longest context (rows of the learned position embedding, or of the rotary tables).
    vocab_size
        Rows of the token embedding W_e, and the output size.
    dropout
        Dropout probability used only while training.
    ln_placement
        ``"pre"`` (GPT-2: LayerNorm at the input of each sub-layer) or ``"post"``
        (GPT-1: LayerNorm after each residual addition).
    final_ln
        Whether a LayerNorm follows the last block (GPT-2: yes, GPT-1: no).
    activation
        Feed-forward non-linearity: ``"gelu"`` (exact), ``"gelu_tanh"`` (GPT-2's approximation),
        ``"relu"`` or ``"silu"`` (x * sigmoid(x), Llama's).
    bias
        Whether linear layers and LayerNorms carry a bias (RMSNorm never has one).
    layer_norm_eps
        Epsilon of every norm (LayerNorm or RMSNorm).
    n_inner
        Hidden width of the feed-forward layer; ``None`` means ``4 * n_embd``.
    n_classes, class_names
        The fine-tuning head W_y (reference stage 2). ``n_classes == 0`` means no head.
    name
        A short display name for the model.
    tie_word_embeddings
        ``True``: the output head is W_e^T (tied). ``False``: the model has its own output
        matrix ``unembed`` (``(vocab_size, n_embd)``, no bias; state-dict key
        ``unembed.weight``).
    positional_embedding_type
        ``"learned"``: h_0 = U W_e + W_p (module ``wpe``). ``"rotary"``: no ``wpe``; queries
        and keys are rotated by their position (rotary embedding, the "rotate_half"
        convention of GPT-NeoX/Llama) after the projection, and the cache holds rotated keys.
        ``"none"``: no position information at all.
    rotary_dim
        With rotary: how many leading dimensions of each head are rotated (even, at most
        ``head_dim``; GPT-NeoX's partial rotary); ``None`` = all of them.
    rotary_base
        With rotary: the base θ of the frequencies θ^(-2i/rotary_dim).
    norm_type
        ``"layernorm"`` or ``"rmsnorm"`` (x / sqrt(mean(x²) + eps) * weight, no bias), for
        every norm of the model (ln_1, ln_2, ln_f).
    mlp_type
        ``"standard"``: c_proj(act(c_fc(x))). ``"gated"`` (Llama):
        c_proj(act(c_gate(x)) * c_fc(x)), ``c_fc`` being the "up" projection.
    n_kv_head
        Key/value heads (grouped-query attention): each serves ``n_head // n_kv_head``
        consecutive query heads and must divide ``n_head``; ``None`` = ``n_head`` (ordinary
        multi-head attention). The KV cache holds this many heads; attention patterns stay
        one per query head.
    parallel_attn
        GPT-NeoX/GPT-J block: x + attn(ln_1(x)) + mlp(ln_2(x)) instead of two residual
        steps; pre-LN only.
    attn_scale
        Factor applied to q·k before the softmax; ``None`` = 1/sqrt(head_dim) (GPT-Neo: 1.0).
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
    tie_word_embeddings: bool = True
    positional_embedding_type: PositionalEmbedding = "learned"
    rotary_dim: int | None = None
    rotary_base: float = 10000.0
    norm_type: NormType = "layernorm"
    mlp_type: MLPType = "standard"
    n_kv_head: int | None = None
    parallel_attn: bool = False
    attn_scale: float | None = None

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
        if self.activation not in ("gelu", "gelu_tanh", "relu", "silu"):
            problems.append(f"unknown activation {self.activation!r}")
        problems += self._family_problems()
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

    def _family_problems(self) -> list[str]:
        """What is wrong with the fields that later families added (see the class doc)."""
        problems = []
        for key in ("tie_word_embeddings", "parallel_attn"):
            if not isinstance(getattr(self, key), bool):
                problems.append(f"{key} must be true or false (got {getattr(self, key)!r})")
        for key in ("rotary_dim", "n_kv_head"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                problems.append(f"{key} must be a whole number or None (got {value!r})")
        if problems:
            return problems
        choices = {"positional_embedding_type": ("learned", "rotary", "none"),
                   "norm_type": ("layernorm", "rmsnorm"), "mlp_type": ("standard", "gated")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                problems.append(f"{key} must be one of {', '.join(map(repr, allowed))} "
                                f"(got {getattr(self, key)!r})")
        if self.rotary_dim is not None:
            hd = self.n_embd // self.n_head if self.n_head > 0 else 0
            if self.positional_embedding_type != "rotary":
                problems.append(f"rotary_dim is set ({self.rotary_dim}) but "
                                f"positional_embedding_type is {self.positional_embedding_type!r}")
            elif not (0 < self.rotary_dim <= hd and self.rotary_dim % 2 == 0):
                problems.append(f"rotary_dim must be even and in 2..head_dim ({hd}) "
                                f"(got {self.rotary_dim!r})")
        if not _positive_number(self.rotary_base):
            problems.append(f"rotary_base must be a positive number (got {self.rotary_base!r})")
        if self.n_kv_head is not None:
            if self.n_kv_head <= 0:
                problems.append(f"n_kv_head must be positive (got {self.n_kv_head!r})")
            elif self.n_head > 0 and self.n_head % self.n_kv_head:
                problems.append(f"n_head ({self.n_head}) must be divisible by n_kv_head "
                                f"({self.n_kv_head})")
        if self.parallel_attn and self.ln_placement != "pre":
            problems.append("parallel_attn needs ln_placement 'pre' (GPT-NeoX/GPT-J are pre-LN)")
        if self.attn_scale is not None and not _positive_number(self.attn_scale):
            problems.append(f"attn_scale must be a positive number (got {self.attn_scale!r})")
        return problems

    @property
    def head_dim(self) -> int:
        """Width of one attention head."""
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads per layer: ``n_kv_head``, or ``n_head`` when it is ``None``."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def rotary_width(self) -> int:
        """Dimensions of each head that rotary rotates (0 without rotary)."""
        if self.positional_embedding_type != "rotary":
            return 0
        return self.head_dim if self.rotary_dim is None else self.rotary_dim

    @property
    def scale(self) -> float:
        """The factor on q·k: ``attn_scale``, or 1/sqrt(head_dim) when it is ``None``."""
        return 1.0 / math.sqrt(self.head_dim) if self.attn_scale is None else self.attn_scale

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
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
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
    def from_json_file(cls, path: str | Path) -> GPTConfig:
        """Read a ``config.json`` written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
