"""The Hugging Face GPT-Neo family (``GPTNeoForCausalLM``; EleutherAI's GPT-Neo, the
TinyStories models): ``config.json`` with ``model_type: "gpt_neo"``.

A GPT-2 block with three differences, each a config field of ours: attention scores are
**not** scaled by 1/sqrt(head_dim) (``attn_scale=1.0``), q/k/v projections have no bias while
the output projection has one (``qkv_bias=False``), and the layers alternate between global
and **local** attention (``attention_layers``, ``window_size``: a query sees only the last
``window_size`` positions, itself included). Its projections are ``nn.Linear`` (no transpose).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptviz.families.gpt2 import GPT2_ACTIVATIONS
from gptviz.families.hf_common import (
    config_bool,
    config_choice,
    config_float,
    config_int,
    require_dir,
)
from gptviz.families.hf_decoder import bundle, model_type, output_head, stack_rows, take
from gptviz.io.checkpoint import CheckpointError, ModelBundle, read_json
from gptviz.io.tensor_files import read_hf_weights, strip_prefixes


def attention_layers(cfg: dict[str, Any], path: Path, n_layer: int) -> tuple[str, ...]:
    """``"global"``/``"local"`` per layer, from ``attention_layers`` or the compact
    ``attention_types`` (``[[["global", "local"], 12]]`` = the pair repeated 12 times)."""
    kinds = cfg.get("attention_layers")
    if kinds is None:
        kinds = []
        types = cfg.get("attention_types", [[["global"], n_layer]])
        try:
            for pattern, repeat in types:
                if (not isinstance(pattern, list) or isinstance(repeat, bool)
                        or not isinstance(repeat, int) or repeat < 0):
                    raise ValueError
                if repeat * len(pattern) > 4 * n_layer + 4:  # a hostile count
                    raise ValueError
                kinds += list(pattern) * repeat
        except (TypeError, ValueError):
            raise CheckpointError(f"{path}: attention_types must be a list of [[kinds...], "
                                  "count] pairs") from None
    if not isinstance(kinds, list) or not all(k in ("global", "local") for k in kinds):
        raise CheckpointError(f"{path}: attention_layers may hold only 'global' and 'local'")
    if len(kinds) != n_layer:
        raise CheckpointError(f"{path}: attention_layers names {len(kinds)} layers but "
                              f"num_layers is {n_layer}")
    return tuple(kinds)


def load_hf_gpt_neo(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``GPTNeoForCausalLM`` directory (``config.json``, safetensors or
    ``pytorch_model.bin``, single or sharded, and ``tokenizer.json`` or ``vocab.json`` +
    ``merges.txt``).

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant, or weights that do not fit the config.
    """
    d = require_dir(directory)
    cfg_path = d / "config.json"
    cfg = read_json(cfg_path)
    if cfg.get("model_type") != "gpt_neo":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, "
                              "not 'gpt_neo'")
    act_name = config_choice(cfg, cfg_path, "activation_function", "gelu_new", GPT2_ACTIVATIONS)
    n_layer = config_int(cfg, cfg_path, "num_layers", "n_layer")
    n_embd = config_int(cfg, cfg_path, "hidden_size", "n_embd")
    assert n_layer is not None and n_embd is not None  # not optional: raised when missing
    kinds = attention_layers(cfg, cfg_path, n_layer)
    tied = config_bool(cfg, cfg_path, "tie_word_embeddings", True)
    kwargs: dict[str, Any] = dict(
        n_layer=n_layer, n_head=config_int(cfg, cfg_path, "num_heads", "n_head"), n_embd=n_embd,
        block_size=config_int(cfg, cfg_path, "max_position_embeddings"),
        vocab_size=config_int(cfg, cfg_path, "vocab_size"),
        activation=GPT2_ACTIVATIONS[act_name], bias=True, qkv_bias=False, attn_scale=1.0,
        layer_norm_eps=config_float(cfg, cfg_path, "layer_norm_epsilon", 1e-5),
        n_inner=config_int(cfg, cfg_path, "intermediate_size", optional=True),
        tie_word_embeddings=tied,
    )
    if "local" in kinds:
        kwargs |= dict(attention_layers=kinds,
                       window_size=config_int(cfg, cfg_path, "window_size", default=256))
    state, weights_path = read_hf_weights(d)
    state = strip_prefixes(state, ("transformer.",))
    mapped = _map_weights(state, n_layer, weights_path)
    output_head(state, "lm_head.weight", tied, mapped, weights_path)
    metadata = {"source_format": "huggingface GPTNeoForCausalLM",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "activation_function": act_name, "attention_layers": list(kinds)}
    return bundle(d, kwargs, mapped, state, weights_path, "hf-gpt-neo", "GPT-Neo", metadata)


def _map_weights(state: dict[str, torch.Tensor], n_layer: int, path: Path
                 ) -> dict[str, torch.Tensor]:
    """Our state dict from GPT-Neo's (prefix stripped); what it takes leaves ``state``."""
    out = {"wte.weight": take(state, "wte.weight", path),
           "wpe.weight": take(state, "wpe.weight", path)}
    for kind in ("weight", "bias"):
        out[f"ln_f.{kind}"] = take(state, f"ln_f.{kind}", path)
    for i in range(n_layer):
        p = f"h.{i}."
        qkv = [take(state, f"{p}attn.attention.{n}_proj.weight", path) for n in "qkv"]
        # (3C, C): all q, all k, all v
        out[f"{p}attn.c_attn.weight"] = stack_rows(qkv, f"{p}attn.c_attn.weight", path)
        if any(f"{p}attn.attention.{n}_proj.bias" in state for n in "qkv"):
            raise CheckpointError(f"{path}: layer {i} has q/k/v biases; GPT-Neo has none and "
                                  "gptviz does not read them")
        for ours, theirs in (("ln_1", "ln_1"), ("ln_2", "ln_2"), ("mlp.c_fc", "mlp.c_fc"),
                             ("mlp.c_proj", "mlp.c_proj"),
                             ("attn.c_proj", "attn.attention.out_proj")):
            for kind in ("weight", "bias"):
                out[f"{p}{ours}.{kind}"] = take(state, f"{p}{theirs}.{kind}", path)
    return out


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` says ``model_type: "gpt_neo"``."""
    return model_type(path) == "gpt_neo"
