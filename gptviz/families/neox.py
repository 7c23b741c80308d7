"""The Hugging Face GPT-NeoX family (``GPTNeoXForCausalLM``; EleutherAI's Pythia and
GPT-NeoX-20B): ``config.json`` with ``model_type: "gpt_neox"``.

Rotary positions on the first ``rotary_pct`` of each head (Pythia: 25%, the rotate-half
convention), LayerNorms with bias, a parallel block x + attn(ln_1(x)) + mlp(ln_2(x)) when
``use_parallel_residual`` (else GPT-2's two residual steps), and an untied output head
``embed_out``. The fused ``query_key_value`` projection is stored **per head**
(``[q_0, k_0, v_0, q_1, ...]``); its rows are re-ordered onto our ``[all q, all k, all v]``.
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
from gptviz.families.hf_decoder import bundle, model_type, output_head, rope_settings, take
from gptviz.io.checkpoint import CheckpointError, ModelBundle, read_json
from gptviz.io.tensor_files import read_hf_weights

#: ``hidden_act`` values and the identical function of ours (``ACT2FN`` in transformers).
NEOX_ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_fast": "gelu_tanh",
                    "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu", "silu": "silu"}


def load_hf_neox(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``GPTNeoXForCausalLM`` directory (``config.json``, safetensors or
    ``pytorch_model.bin``, single or sharded, and ``tokenizer.json``).

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant (no attention biases, an unsupported
        rotary scaling), or weights that do not fit the config.
    """
    d = require_dir(directory)
    cfg_path = d / "config.json"
    cfg = read_json(cfg_path)
    if cfg.get("model_type") != "gpt_neox":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, "
                              "not 'gpt_neox'")
    if not config_bool(cfg, cfg_path, "attention_bias", True):
        raise CheckpointError(f"{cfg_path}: attention_bias is false (attention without biases "
                              "but a feed-forward layer with them) is not supported")
    act_name = config_choice(cfg, cfg_path, "hidden_act", "gelu", NEOX_ACTIVATIONS)
    n_layer = config_int(cfg, cfg_path, "num_hidden_layers")
    n_head = config_int(cfg, cfg_path, "num_attention_heads")
    n_embd = config_int(cfg, cfg_path, "hidden_size")
    assert n_layer is not None and n_head is not None and n_embd is not None  # required
    if n_embd % n_head:
        raise CheckpointError(f"{cfg_path}: hidden_size {n_embd} is not divisible by "
                              f"num_attention_heads {n_head}")
    base, rotary_dim, scaling = rope_settings(
        cfg, cfg_path, n_embd // n_head, base_keys=("rotary_emb_base",),
        pct_keys=("rotary_pct",), default_pct=0.25)
    tied = config_bool(cfg, cfg_path, "tie_word_embeddings", False)
    kwargs: dict[str, Any] = dict(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        block_size=config_int(cfg, cfg_path, "max_position_embeddings"),
        vocab_size=config_int(cfg, cfg_path, "vocab_size"),
        n_inner=config_int(cfg, cfg_path, "intermediate_size", optional=True),
        activation=NEOX_ACTIVATIONS[act_name], bias=True,
        layer_norm_eps=config_float(cfg, cfg_path, "layer_norm_eps", 1e-5),
        positional_embedding_type="rotary", rotary_dim=rotary_dim, rotary_base=base,
        rope_scaling=scaling,
        parallel_attn=config_bool(cfg, cfg_path, "use_parallel_residual", True),
        tie_word_embeddings=tied,
    )
    state, weights_path = read_hf_weights(d)
    mapped = _map_weights(state, n_layer, n_head, weights_path)
    output_head(state, "embed_out.weight", tied, mapped, weights_path)
    metadata = {"source_format": "huggingface GPTNeoXForCausalLM",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "hidden_act": act_name}
    return bundle(d, kwargs, mapped, state, weights_path, "hf-gpt-neox", "GPT-NeoX", metadata)


def per_head_to_blocks(w: torch.Tensor, n_head: int) -> torch.Tensor:
    """GPT-NeoX's fused q/k/v rows ``(3C, ...)``, ordered per head ``[q_h, k_h, v_h]``, as
    ours: ``[q_0 .. q_{nh-1}, k_0 .., v_0 ..]``."""
    hd = w.size(0) // (3 * n_head)
    blocks = w.reshape(n_head, 3, hd, *w.shape[1:]).transpose(0, 1)  # (3, nh, hd, ...)
    return blocks.reshape(w.shape).contiguous()


def _map_weights(state: dict[str, torch.Tensor], n_layer: int, n_head: int, path: Path
                 ) -> dict[str, torch.Tensor]:
    """Our state dict from GPT-NeoX's; what it takes leaves ``state``."""
    p = "gpt_neox."
    out = {"wte.weight": take(state, p + "embed_in.weight", path)}
    for kind in ("weight", "bias"):
        out[f"ln_f.{kind}"] = take(state, f"{p}final_layer_norm.{kind}", path)
    names = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm",
             "attn.c_proj": "attention.dense", "mlp.c_fc": "mlp.dense_h_to_4h",
             "mlp.c_proj": "mlp.dense_4h_to_h"}
    for i in range(n_layer):
        layer = f"{p}layers.{i}."
        for ours, theirs in names.items():
            for kind in ("weight", "bias"):
                out[f"h.{i}.{ours}.{kind}"] = take(state, f"{layer}{theirs}.{kind}", path)
        for kind in ("weight", "bias"):
            w = take(state, f"{layer}attention.query_key_value.{kind}", path)
            if w.dim() == 0 or w.size(0) % (3 * n_head):
                raise CheckpointError(f"{path}: {layer}attention.query_key_value.{kind} has "
                                      f"shape {tuple(w.shape)}, not 3 x {n_head} heads")
            out[f"h.{i}.attn.c_attn.{kind}"] = per_head_to_blocks(w, n_head)
    return out


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` says ``model_type: "gpt_neox"``."""
    return model_type(path) == "gpt_neox"
