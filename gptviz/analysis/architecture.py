"""The block diagram of a model, from its :class:`~gptviz.model.config.GPTConfig`.

:func:`architecture` turns a config into a :class:`Diagram`: the embedding at the bottom
(h_0 = U W_e + W_p with learned positions; rotary or no positions otherwise), then ``n_layer``
decoder blocks whose parts (:func:`block_parts`) stand in the order the model runs them
(:class:`~gptviz.model.gpt.Block`): pre-LN ``x + attn(LN(x))`` (GPT-2), post-LN
``LN(x + attn(x))`` (GPT-1), or the parallel block ``x + attn(LN_1(x)) + mlp(LN_2(x))``
(GPT-NeoX); the final norm when there is one; the output through W_e^T (tied) or a matrix of
its own; and the fine-tuning head W_y (``P(y | x) = softmax(h_l^m W_y)``) when the model has
one. The GPT of the paper stacks 12 decoder blocks; :attr:`Diagram.notes` says so when the
model has another depth. The window's block diagram panel draws it
(``"architecture"`` analysis, :mod:`gptviz.analysis.live_architecture`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gptviz.model.config import GPTConfig

__all__ = ["PAPER_LAYERS", "DiagramBlock", "Diagram", "block_parts", "architecture"]

#: Decoder blocks of the paper's GPT ("Improving Language Understanding by Generative
#: Pre-Training", 2018).
PAPER_LAYERS = 12


@dataclass(frozen=True)
class DiagramBlock:
    """One box of the diagram.

    Attributes
    ----------
    kind
        ``"tokens"``, ``"embedding"``, ``"positions"``, ``"norm"``, ``"attention"``,
        ``"mlp"``, ``"add"``, ``"output"``, ``"classifier"``.
    label
        Short text in the box.
    detail
        One line on what it computes (shapes, options): the tooltip.
    branch
        In a parallel block, which side the box stands on (``"attn"`` or ``"mlp"``);
        ``""`` on the main path.
    name
        The module it stands for in :class:`~gptviz.model.gpt.GPT` (``"ln_1"``, ``"attn"``,
        ``"wte"``...), ``""`` for a residual addition or the input.
    """

    kind: str
    label: str
    detail: str = ""
    branch: str = ""
    name: str = ""


@dataclass(frozen=True)
class Diagram:
    """A model's block diagram, bottom (input) to top (output).

    Attributes
    ----------
    bottom
        The input and embedding boxes, in data order.
    block
        The parts of one decoder block, in the order the model runs them (the same for every
        layer).
    top
        What follows the last block: final norm, output head, fine-tuning head W_y.
    n_layer, n_head, n_kv_head
        Decoder blocks; query heads per block; key/value heads per block.
    parallel, ln_placement, norm
        The block's form: parallel attention and feed-forward; ``"pre"``/``"post"``;
        ``"LayerNorm"``/``"RMSNorm"``.
    tied
        The output projection is W_e^T.
    layer_kinds
        ``"global"`` or ``"local"`` per layer.
    notes
        Lines shown under the diagram (the paper's depth when it differs).
    """

    bottom: tuple[DiagramBlock, ...]
    block: tuple[DiagramBlock, ...]
    top: tuple[DiagramBlock, ...]
    n_layer: int
    n_head: int
    n_kv_head: int
    parallel: bool
    ln_placement: str
    norm: str
    tied: bool
    layer_kinds: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def kinds(self) -> list[str]:
        """Every box's kind, bottom to top, with the block's parts once per layer."""
        return ([b.kind for b in self.bottom] + [b.kind for b in self.block] * self.n_layer
                + [b.kind for b in self.top])


def _norm_name(config: GPTConfig) -> str:
    return "RMSNorm" if config.norm_type == "rmsnorm" else "LayerNorm"


def _attention_box(config: GPTConfig, branch: str = "") -> DiagramBlock:
    nh, nkv, hd = config.n_head, config.kv_heads, config.head_dim
    heads = f"{nh} heads × {hd}" + (f", {nkv} key/value heads (grouped)" if nkv != nh else "")
    pos = ", rotary q·k" if config.positional_embedding_type == "rotary" else ""
    return DiagramBlock("attention", "Masked multi-head attention",
                        f"softmax(q·kᵀ·scale + causal mask) v; {heads}{pos}", branch, "attn")


def _mlp_box(config: GPTConfig, branch: str = "") -> DiagramBlock:
    act = config.activation
    if config.mlp_type == "gated":
        what = f"W_down({act}(W_gate x) ⊙ W_up x)"
    else:
        what = f"W_2 {act}(W_1 x)"
    return DiagramBlock("mlp", "Feed-forward", f"{what}; {config.n_embd} → {config.d_ff} → "
                        f"{config.n_embd}", branch, "mlp")


def block_parts(config: GPTConfig) -> tuple[DiagramBlock, ...]:
    """The parts of one decoder block in the order :class:`~gptviz.model.gpt.Block` runs them.

    Returns
    -------
    tuple of DiagramBlock
        pre-LN: norm, attention, add, norm, feed-forward, add; post-LN: attention, add,
        norm, feed-forward, add, norm; parallel: norm and attention (``branch="attn"``),
        norm and feed-forward (``branch="mlp"``), one add.
    """
    norm = _norm_name(config)

    def ln(name: str, branch: str = "") -> DiagramBlock:
        return DiagramBlock("norm", norm, f"{name}: normalise each position's vector "
                            f"({config.n_embd} wide)", branch, name)

    def add(what: str) -> DiagramBlock:
        return DiagramBlock("add", "+", f"residual: {what}")

    if config.parallel_attn:
        return (ln("ln_1", "attn"), _attention_box(config, "attn"), ln("ln_2", "mlp"),
                _mlp_box(config, "mlp"), add("x + attn(ln_1(x)) + mlp(ln_2(x))"))
    if config.ln_placement == "pre":
        return (ln("ln_1"), _attention_box(config), add("x + attn(ln_1(x))"),
                ln("ln_2"), _mlp_box(config), add("x + mlp(ln_2(x))"))
    return (_attention_box(config), add("x + attn(x)"), ln("ln_1"),
            _mlp_box(config), add("x + mlp(x)"), ln("ln_2"))


def _bottom(config: GPTConfig) -> tuple[DiagramBlock, ...]:
    v, c = config.vocab_size, config.n_embd
    boxes = [DiagramBlock("tokens", "Tokens U", f"up to {config.block_size} token ids"),
             DiagramBlock("embedding", "Token embedding W_e", f"U·W_e: [{v} × {c}]",
                          name="wte")]
    kind = config.positional_embedding_type
    if kind == "learned":
        boxes.append(DiagramBlock("positions", "+ position embedding W_p",
                                  f"h_0 = U·W_e + W_p: W_p [{config.block_size} × {c}]",
                                  name="wpe"))
    elif kind == "rotary":
        boxes.append(DiagramBlock("positions", "Rotary positions (in attention)",
                                  f"no W_p: q and k rotated by position "
                                  f"({config.rotary_width} of {config.head_dim} dims)"))
    else:
        boxes.append(DiagramBlock("positions", "No position embedding",
                                  "h_0 = U·W_e: order only through the causal mask"))
    return tuple(boxes)


def _top(config: GPTConfig) -> tuple[DiagramBlock, ...]:
    v, c = config.vocab_size, config.n_embd
    boxes = []
    if config.final_ln:
        boxes.append(DiagramBlock("norm", f"Final {_norm_name(config)}",
                                  "ln_f: after the last block", name="ln_f"))
    if config.tie_word_embeddings:
        boxes.append(DiagramBlock("output", "Output h_n·W_eᵀ (tied)",
                                  f"P(u) = softmax(h_n·W_eᵀ): the token embedding reused, "
                                  f"[{c} × {v}]", name="wte"))
    else:
        boxes.append(DiagramBlock("output", "Output h_n·W_out (own matrix)",
                                  f"P(u) = softmax(h_n·W_out): untied, [{c} × {v}]",
                                  name="unembed"))
    if config.n_classes:
        names = ", ".join(config.class_names) or f"{config.n_classes} classes"
        boxes.append(DiagramBlock("classifier", "Fine-tuning head W_y",
                                  f"P(y|x) = softmax(h_l^m·W_y) at the last token: {names}",
                                  name="classifier"))
    return tuple(boxes)


def architecture(config: GPTConfig) -> Diagram:
    """The block diagram of a model with ``config`` (see the module docstring)."""
    kinds: Any = getattr(config, "attention_layers", ()) or ()
    layer_kinds = tuple(str(k) for k in kinds) or ("global",) * config.n_layer
    notes = []
    if config.n_layer != PAPER_LAYERS:
        notes.append(f"The paper's GPT has {PAPER_LAYERS} blocks; this one has "
                     f"{config.n_layer}.")
    if "local" in layer_kinds:
        notes.append(f"Local layers see the last {getattr(config, 'window_size', None)} "
                     f"tokens only.")
    return Diagram(bottom=_bottom(config), block=block_parts(config), top=_top(config),
                   n_layer=config.n_layer, n_head=config.n_head, n_kv_head=config.kv_heads,
                   parallel=bool(config.parallel_attn), ln_placement=config.ln_placement,
                   norm=_norm_name(config), tied=bool(config.tie_word_embeddings),
                   layer_kinds=layer_kinds, notes=tuple(notes))
