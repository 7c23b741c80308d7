"""The Hugging Face GPT-2 family (``GPT2LMHeadModel``): ``config.json`` with
``model_type: "gpt2"``.

Activations: ``activation_function`` ``"gelu_new"`` (and ``gelu_pytorch_tanh``,
``gelu_fast``) is the tanh approximation, our ``"gelu_tanh"``; plain ``"gelu"`` is the exact
erf GELU.
"""

from __future__ import annotations

import math
from pathlib import Path

from gptviz.families.hf_common import (
    config_bool,
    config_choice,
    config_float,
    config_int,
    hf_model,
    make_config,
    require_dir,
)
from gptviz.io.checkpoint import CheckpointError, ModelBundle, read_json
from gptviz.io.tensor_files import read_hf_weights
from gptviz.io.tokenizer_files import check_tokenizer, gpt2_tokenizer

#: GPT-2 ``activation_function`` values and the identical function in :mod:`gptviz.model.gpt`.
GPT2_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}


def load_hf_gpt2(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``GPT2LMHeadModel`` directory.

    Reads ``config.json``, weights from ``model.safetensors`` (preferred) or
    ``pytorch_model.bin`` (``weights_only``), and ``tokenizer.json`` or ``vocab.json`` +
    ``merges.txt``. Keys may carry the ``transformer.`` prefix or not; the tied ``lm_head``
    is ignored, an untied one (``tie_word_embeddings: false``, a head that differs from
    ``wte``) becomes our ``unembed.weight``; sharded weights
    (``model.safetensors.index.json``) are read shard by shard.
    ``scale_attn_by_inverse_layer_idx`` and ``scale_attn_weights=False`` are supported by
    folding the extra factor into the query projection;
    ``reorder_and_upcast_attn`` only changes mixed-precision numerics and is the same
    function in float32. Cross-attention variants are refused.

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant, or weights that do not fit the config.
    """
    d = require_dir(directory)
    cfg_path = d / "config.json"
    cfg = read_json(cfg_path)
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, not 'gpt2'")
    if config_bool(cfg, cfg_path, "add_cross_attention", False):
        raise CheckpointError(f"{cfg_path}: add_cross_attention is true (an encoder-decoder "
                              "GPT-2); gptviz opens decoder-only GPT-2 models")
    act_name = config_choice(cfg, cfg_path, "activation_function", "gelu_new",
                             GPT2_ACTIVATIONS)
    n_layer = config_int(cfg, cfg_path, "n_layer", "num_hidden_layers")
    n_head = config_int(cfg, cfg_path, "n_head", "num_attention_heads")
    n_embd = config_int(cfg, cfg_path, "n_embd", "hidden_size")
    config = make_config(
        cfg_path,
        n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        block_size=config_int(cfg, cfg_path, "n_positions", "n_ctx", "max_position_embeddings"),
        vocab_size=config_int(cfg, cfg_path, "vocab_size"),
        dropout=0.0, ln_placement="pre", final_ln=True,
        activation=GPT2_ACTIVATIONS[act_name], bias=True,
        layer_norm_eps=config_float(cfg, cfg_path, "layer_norm_epsilon", 1e-5),
        n_inner=config_int(cfg, cfg_path, "n_inner", optional=True),
        name=d.resolve().name,
    )
    scale_weights = config_bool(cfg, cfg_path, "scale_attn_weights", True)
    by_layer = config_bool(cfg, cfg_path, "scale_attn_by_inverse_layer_idx", False)
    tied = config_bool(cfg, cfg_path, "tie_word_embeddings", True)
    q_scale = None
    if not scale_weights or by_layer:
        hd = config.head_dim

        def q_scale(i: int) -> float:
            s = (hd ** -0.5 if scale_weights else 1.0) / (float(i + 1) if by_layer else 1.0)
            return s * math.sqrt(hd)

    state, weights_path = read_hf_weights(d)
    model = hf_model(config, state, weights_path, rename={}, tie_word_embeddings=tied,
                     q_scale=q_scale, config_path=cfg_path)
    found = gpt2_tokenizer(d)
    if found is None:
        raise CheckpointError(f"{d}: no tokenizer found: put tokenizer.json, or vocab.json and "
                              "merges.txt (GPT-2 byte-level BPE), in the model directory")
    tokenizer, tok_path = found
    check_tokenizer(tokenizer, tok_path, config)
    metadata = {"source_format": "huggingface GPT2LMHeadModel",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "activation_function": act_name}
    if q_scale is not None:
        metadata["attention_scale_folded_into_query"] = True
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(d),
                       kind="hf-gpt2")


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` says ``model_type: "gpt2"``."""
    return _model_type(path) == "gpt2"


def _model_type(path: Path) -> object:
    try:
        return read_json(path / "config.json").get("model_type") if path.is_dir() else None
    except CheckpointError:
        return None
