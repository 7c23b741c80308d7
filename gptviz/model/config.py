"""Model configuration: one frozen dataclass that describes every GPT variant we run.

The same fields reproduce three families exactly:

* our own bundled model and nanoGPT checkpoints (pre-LayerNorm, exact GELU),
* GPT-2 (pre-LayerNorm, final LayerNorm, tanh-approximated GELU),
* GPT-1 (post-LayerNorm as in the original paper, no final LayerNorm, and, as implemented by
  Hugging Face's OpenAIGPT, the tanh-approximated GELU).

Further fields, whose defaults are the GPT-2 choices, describe later decoder-only families:
an untied output head, rotary or no position embedding, RMSNorm, a gated feed-forward
layer, grouped-query attention, parallel attention and feed-forward, another attention
scale, biases on q/k/v alone, local attention windows on some layers, and rotary
frequencies rescaled for long contexts (e.g. Llama: rotary, RMSNorm, gated SiLU,
grouped-query, ``rope_scaling``; Qwen2: the same with q/k/v biases; GPT-NeoX: partial rotary,
parallel block; GPT-Neo: attention unscaled, local windows on every other layer).
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
AttentionKind = Literal["global", "local"]
RopeType = Literal["linear", "dynamic", "llama3"]


# Longest context a rope_scaling may name (LIMITS["block_size"] of gptviz.io.config_checks).
_MAX_CONTEXT = 1 << 20


def _positive_number(x: Any) -> bool:
    """A finite number > 0 (not a bool, not a string)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x) and x > 0
    except OverflowError:  # an integer too large for a float (10**400 in a config.json)
        return False


@dataclass(frozen=True)
class RopeScaling:
    """How the rotary frequencies are rescaled, as ``rope_scaling`` in a Llama ``config.json``
    (and ``transformers``' ``ROPE_INIT_FUNCTIONS``).

    Parameters
    ----------
    rope_type
        ``"linear"``: every frequency divided by ``factor`` (position interpolation).
        ``"dynamic"``: dynamic NTK, which changes the base only past the context the model
        was trained on (``max_position_embeddings``, our ``block_size``): inside it the
        frequencies are the unscaled ones. ``"llama3"``: low frequencies (wavelength above
        ``original_max_position_embeddings / low_freq_factor``) divided by ``factor``, high
        ones (below ``... / high_freq_factor``) kept, the band between interpolated.
    factor
        The scaling factor (> 0).
    low_freq_factor, high_freq_factor, original_max_position_embeddings
        Llama 3 only (required there; ``high_freq_factor > low_freq_factor``).
    """

    rope_type: RopeType
    factor: float
    low_freq_factor: float | None = None
    high_freq_factor: float | None = None
    original_max_position_embeddings: int | None = None

    @classmethod
    def from_dict(cls, d: Any) -> RopeScaling:
        """From a ``rope_scaling`` object; ``type`` (older configs) names ``rope_type`` too,
        other keys are ignored. Raises ValueError when ``d`` is not an object."""
        if isinstance(d, RopeScaling):
            return d
        if not isinstance(d, dict):
            raise ValueError(f"rope_scaling must be an object or null (got {d!r:.60})")
        kwargs = {f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d}
        if "rope_type" not in kwargs and "type" in d:
            kwargs["rope_type"] = d["type"]
        if "rope_type" not in kwargs or "factor" not in kwargs:
            raise ValueError("rope_scaling needs 'rope_type' and 'factor'")
        return cls(**kwargs)

    def problems(self) -> list[str]:
        """What is wrong with these values (empty: nothing)."""
        if self.rope_type not in ("linear", "dynamic", "llama3"):
            return [f"rope_scaling type {self.rope_type!r} is not supported (supported: "
                    "'linear', 'dynamic', 'llama3')"]
        if not _positive_number(self.factor):
            return [f"rope_scaling factor must be a positive number (got {self.factor!r})"]
        if self.rope_type != "llama3":
            return []
        low, high = self.low_freq_factor, self.high_freq_factor
        old = self.original_max_position_embeddings
        if low is None or high is None or not (_positive_number(low) and _positive_number(high)):
            return ["rope_scaling 'llama3' needs positive low_freq_factor and high_freq_factor "
                    f"(got {low!r}, {high!r})"]
        if not high > low:
            return [f"rope_scaling high_freq_factor ({high!r}) must exceed low_freq_factor "
                    f"({low!r})"]
        if isinstance(old, bool) or not isinstance(old, int) or old <= 0:
            return ["rope_scaling 'llama3' needs original_max_position_embeddings, a positive "
                    f"whole number (got {old!r})"]
        if old > _MAX_CONTEXT:
            return [f"rope_scaling original_max_position_embeddings {old!r:.40} is beyond any "
                    f"real context (at most {_MAX_CONTEXT:,} accepted)"]
        return []


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
    qkv_bias
        Whether the q/k/v projection ``c_attn`` has a bias; ``None`` follows ``bias``
        (Qwen2: true with ``bias`` false; GPT-Neo: false with ``bias`` true).
    attention_layers
        Per layer ``"global"`` (every earlier key) or ``"local"`` (query i sees key j only
        when i - window_size < j <= i; GPT-Neo); empty = every layer global.
    window_size
        Keys a local layer's query sees (itself included); set exactly when a layer is
        local. :func:`gptviz.model.gpt.key_window` reads the two fields.
    rope_scaling
        With rotary: a :class:`RopeScaling` (or its dict) folded into the rotary tables;
        ``None`` = unscaled.
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
    qkv_bias: bool | None = None
    attention_layers: tuple[AttentionKind, ...] = field(default_factory=tuple)
    window_size: int | None = None
    rope_scaling: RopeScaling | None = None

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
        problems += self._attention_problems()
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

    def _attention_problems(self) -> list[str]:
        """What is wrong with qkv_bias, the local windows and rope_scaling; normalises
        ``attention_layers`` to a tuple and ``rope_scaling`` to a :class:`RopeScaling`."""
        problems = []
        if self.qkv_bias is not None and not isinstance(self.qkv_bias, bool):
            problems.append(f"qkv_bias must be true, false or None (got {self.qkv_bias!r})")
        kinds = self.attention_layers
        if isinstance(kinds, str) or not isinstance(kinds, (list, tuple)):
            problems.append(f"attention_layers must be a list of 'global'/'local' "
                            f"(got {kinds!r:.60})")
            kinds = ()
        object.__setattr__(self, "attention_layers", tuple(kinds))
        bad = [k for k in kinds if k not in ("global", "local")]
        if bad:
            problems.append(f"attention_layers may hold only 'global' and 'local' "
                            f"(got {bad[0]!r:.40})")
        elif kinds and len(kinds) != self.n_layer:
            problems.append(f"attention_layers names {len(kinds)} layers but n_layer is "
                            f"{self.n_layer}")
        w = self.window_size
        if w is not None and (isinstance(w, bool) or not isinstance(w, int) or w <= 0):
            problems.append(f"window_size must be a positive whole number (got {w!r})")
        elif "local" in kinds and w is None:
            problems.append("attention_layers has local layers but window_size is not set")
        elif w is not None and "local" not in kinds:
            problems.append(f"window_size is set ({w}) but no layer of attention_layers is "
                            "'local'")
        if self.rope_scaling is not None:
            try:
                scaling = RopeScaling.from_dict(self.rope_scaling)
            except (TypeError, ValueError) as e:
                return problems + [str(e)]
            object.__setattr__(self, "rope_scaling", scaling)
            problems += scaling.problems()
            if self.positional_embedding_type != "rotary":
                problems.append("rope_scaling is set but positional_embedding_type is "
                                f"{self.positional_embedding_type!r}")
        return problems

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
    def has_qkv_bias(self) -> bool:
        """Whether ``c_attn`` has a bias: ``qkv_bias``, or ``bias`` when it is ``None``."""
        return self.bias if self.qkv_bias is None else self.qkv_bias

    @property
    def d_ff(self) -> int:
        """Hidden width of the feed-forward layer."""
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (what ``config.json`` holds)."""
        d = dataclasses.asdict(self)
        d["class_names"] = list(self.class_names)
        d["attention_layers"] = list(self.attention_layers)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GPTConfig:
        """Build from a dict, ignoring unknown keys so newer files still open."""
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in known}
        if "class_names" in kwargs:
            kwargs["class_names"] = tuple(kwargs["class_names"])
        return cls(**kwargs)  # attention_layers and rope_scaling are normalised there

    def to_json(self) -> str:
        """JSON string of :meth:`to_dict`."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json_file(cls, path: str | Path) -> GPTConfig:
        """Read a ``config.json`` written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
