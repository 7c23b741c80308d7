"""The Hugging Face Llama and Qwen2 families (``LlamaForCausalLM``, ``Qwen2ForCausalLM``;
Llama 2/3, TinyLlama, SmolLM, Qwen2/2.5): ``config.json`` with ``model_type`` ``"llama"``
or ``"qwen2"``.

Pre-RMSNorm blocks with rotary positions on the whole head (the rotate-half convention,
``rope_scaling`` linear, dynamic or llama3 folded into the tables), a gated SiLU
feed-forward layer (``down(silu(gate(x)) * up(x))``), grouped-query attention
(``num_key_value_heads``), and a tied or untied output head. Llama has biases nowhere, or
(``attention_bias`` and ``mlp_bias``) everywhere; Qwen2 has them on q, k and v alone
(``qkv_bias``), and optionally sliding-window attention on its upper layers (our local
layers). The separate q/k/v projections are stacked into our ``c_attn`` (q rows, then k, then
v), gate/up/down become ``c_gate``/``c_fc``/``c_proj``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptviz.families.hf_common import (
    config_bool,
    config_choice,
    config_float,
    config_int,
    require_dir,
)
from gptviz.families.hf_decoder import (
    bundle,
    model_type,
    output_head,
    rope_settings,
    stack_rows,
    take,
)
from gptviz.io.checkpoint import CheckpointError, ModelBundle, read_json
from gptviz.io.tensor_files import read_hf_weights

#: ``model_type`` values this module opens and the class that writes them.
MODEL_TYPES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}

#: ``hidden_act`` values and the identical function of ours (``ACT2FN`` in transformers).
LLAMA_ACTIVATIONS = {"silu": "silu", "swish": "silu", "gelu": "gelu",
                     "gelu_pytorch_tanh": "gelu_tanh", "gelu_new": "gelu_tanh", "relu": "relu"}


def load_hf_llama(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``LlamaForCausalLM`` or ``Qwen2ForCausalLM`` directory
    (``config.json``, safetensors or ``pytorch_model.bin``, single or sharded, and
    ``tokenizer.json``).

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant (a head width other than
        hidden_size / heads, attention biases without feed-forward ones, an unsupported
        rotary scaling or layer type), or weights that do not fit the config.
    """
    d = require_dir(directory)
    cfg_path = d / "config.json"
    cfg = read_json(cfg_path)
    kind = cfg.get("model_type")
    if not isinstance(kind, str) or kind not in MODEL_TYPES:
        raise CheckpointError(f"{cfg_path}: model_type is {kind!r}, not 'llama' or 'qwen2'")
    act_name = config_choice(cfg, cfg_path, "hidden_act", "silu", LLAMA_ACTIVATIONS)
    n_layer = config_int(cfg, cfg_path, "num_hidden_layers")
    n_head = config_int(cfg, cfg_path, "num_attention_heads")
    n_embd = config_int(cfg, cfg_path, "hidden_size")
    assert n_layer is not None and n_head is not None and n_embd is not None  # required
    n_kv = config_int(cfg, cfg_path, "num_key_value_heads", default=n_head)
    if n_embd % n_head:
        raise CheckpointError(f"{cfg_path}: hidden_size {n_embd} is not divisible by "
                              f"num_attention_heads {n_head}")
    hd = n_embd // n_head
    head_dim = config_int(cfg, cfg_path, "head_dim", default=hd)
    if head_dim != hd:
        raise CheckpointError(f"{cfg_path}: head_dim {head_dim} differs from hidden_size / "
                              f"num_attention_heads ({hd}); such models are not supported")
    base, rotary_dim, scaling = rope_settings(cfg, cfg_path, hd)
    if rotary_dim is not None:  # transformers' Llama and Qwen2 rotate whole heads only
        raise CheckpointError(f"{cfg_path}: partial_rotary_factor below 1 (rotating {rotary_dim} "
                              f"of {hd} dimensions) is not supported for {kind}")
    tied = config_bool(cfg, cfg_path, "tie_word_embeddings", False)
    kwargs: dict[str, Any] = dict(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, n_kv_head=n_kv,
        block_size=config_int(cfg, cfg_path, "max_position_embeddings"),
        vocab_size=config_int(cfg, cfg_path, "vocab_size"),
        n_inner=config_int(cfg, cfg_path, "intermediate_size"),
        activation=LLAMA_ACTIVATIONS[act_name], mlp_type="gated", norm_type="rmsnorm",
        layer_norm_eps=config_float(cfg, cfg_path, "rms_norm_eps", 1e-6),
        positional_embedding_type="rotary", rotary_dim=rotary_dim, rotary_base=base,
        rope_scaling=scaling, tie_word_embeddings=tied, **_biases(cfg, cfg_path, kind),
        **_windows(cfg, cfg_path, kind, n_layer),
    )
    state, weights_path = read_hf_weights(d)
    mapped = _map_weights(state, n_layer, kwargs, weights_path)
    output_head(state, "lm_head.weight", tied, mapped, weights_path)
    metadata = {"source_format": f"huggingface {MODEL_TYPES[kind]}",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"), "hidden_act": act_name}
    return bundle(d, kwargs, mapped, state, weights_path, "hf-llama",
                  "Qwen2" if kind == "qwen2" else "Llama", metadata)


def _biases(cfg: dict[str, Any], path: Path, kind: str) -> dict[str, Any]:
    """Our ``bias``/``qkv_bias``: Qwen2 biases q/k/v only; Llama all or nothing."""
    if kind == "qwen2":
        return {"bias": False, "qkv_bias": True}
    attn = config_bool(cfg, path, "attention_bias", False)
    mlp = config_bool(cfg, path, "mlp_bias", False)
    if attn != mlp:
        raise CheckpointError(f"{path}: attention_bias {str(attn).lower()} with mlp_bias "
                              f"{str(mlp).lower()} is not supported (only both or neither)")
    return {"bias": attn}


def _windows(cfg: dict[str, Any], path: Path, kind: str, n_layer: int) -> dict[str, Any]:
    """Qwen2's sliding-window layers as our local layers (``{}`` when every layer is full):
    ``layer_types`` when given, else the layers from ``max_window_layers`` on when
    ``use_sliding_window``."""
    types = cfg.get("layer_types")
    sliding = config_bool(cfg, path, "use_sliding_window", False) if kind == "qwen2" else False
    window = config_int(cfg, path, "sliding_window", optional=True) if sliding else None
    if types is None:
        start = config_int(cfg, path, "max_window_layers", default=n_layer) if sliding else 0
        assert start is not None
        types = ["sliding_attention" if window is not None and i >= start else "full_attention"
                 for i in range(n_layer)]
    if (not isinstance(types, list) or len(types) != n_layer
            or not all(t in ("full_attention", "sliding_attention") for t in types)):
        raise CheckpointError(f"{path}: layer_types must list 'full_attention' or "
                              f"'sliding_attention' for each of the {n_layer} layers")
    if "sliding_attention" not in types:
        return {}
    if window is None:
        raise CheckpointError(f"{path}: layer_types has sliding-window layers but "
                              "use_sliding_window/sliding_window do not set a window")
    return {"attention_layers": tuple("local" if t == "sliding_attention" else "global"
                                      for t in types), "window_size": window}


def _map_weights(state: dict[str, torch.Tensor], n_layer: int, kwargs: dict[str, Any],
                 path: Path) -> dict[str, torch.Tensor]:
    """Our state dict from Llama's or Qwen2's; what it takes leaves ``state``."""
    out = {"wte.weight": take(state, "model.embed_tokens.weight", path),
           "ln_f.weight": take(state, "model.norm.weight", path)}
    qkv_bias = kwargs.get("qkv_bias", kwargs["bias"])
    for i in range(n_layer):
        p, q = f"model.layers.{i}.", f"h.{i}."
        out[q + "ln_1.weight"] = take(state, p + "input_layernorm.weight", path)
        out[q + "ln_2.weight"] = take(state, p + "post_attention_layernorm.weight", path)
        att = p + "self_attn."
        out[q + "attn.c_attn.weight"] = stack_rows(  # ((nh + 2 nkv) hd, C)
            [take(state, f"{att}{n}_proj.weight", path) for n in "qkv"],
            q + "attn.c_attn.weight", path)
        if qkv_bias:
            out[q + "attn.c_attn.bias"] = stack_rows(
                [take(state, f"{att}{n}_proj.bias", path) for n in "qkv"],
                q + "attn.c_attn.bias", path)
        names = {"attn.c_proj": att + "o_proj", "mlp.c_gate": p + "mlp.gate_proj",
                 "mlp.c_fc": p + "mlp.up_proj", "mlp.c_proj": p + "mlp.down_proj"}
        for ours, theirs in names.items():
            out[f"{q}{ours}.weight"] = take(state, theirs + ".weight", path)
            if kwargs["bias"]:
                out[f"{q}{ours}.bias"] = take(state, theirs + ".bias", path)
    return out


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` says ``model_type`` ``"llama"`` or ``"qwen2"``."""
    kind = model_type(path)
    return isinstance(kind, str) and kind in MODEL_TYPES  # a list is unhashable: no error
