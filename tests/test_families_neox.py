"""Hugging Face GPT-NeoX folders (Pythia's architecture) opened by gptviz: tiny random
``transformers`` models saved with ``save_pretrained``, compared with ``transformers`` (eager)
on logits and every attention map (<= 1e-4), one-token KV-cache steps (<= 1e-5), partial
rotary, parallel and sequential residuals, the untied ``embed_out``, the per-head fused
q/k/v layout, rope_scaling, head ablation, the logit lens and every live analysis."""

from __future__ import annotations

import json

import pytest
import torch
from family_checks import (
    compare_ablation,
    compare_forward,
    compare_lens,
    compare_steps,
    ids_of,
    load,
    randomise,
    run_every_analysis,
    save,
)

from gptviz import CheckpointError
from gptviz.families.neox import per_head_to_blocks

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()


def _hf(vocab: int, **extra):
    base = dict(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5,
                rotary_emb_base=1000, use_parallel_residual=True, tie_word_embeddings=False,
                hidden_act="gelu", layer_norm_eps=1e-5, attn_implementation="eager")
    base.update(extra)
    model = transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(**base))
    randomise(model.eval())
    return model


def _open(tmp_path, tiny_tokenizer, **extra):
    hf = _hf(tiny_tokenizer.vocab_size, **extra)
    return hf, load(save(hf, tmp_path / "neox", tiny_tokenizer))


CASES = {
    "Pythia (parallel, rotary 50%)": {},
    "rotary 25%, sequential": dict(rotary_pct=0.25, use_parallel_residual=False),
    "whole-head rotary, tied, gelu_new": dict(rotary_pct=1.0, tie_word_embeddings=True,
                                              hidden_act="gelu_new"),
    "rope linear": dict(rope_scaling={"rope_type": "linear", "factor": 2.0}),
}


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_logits_maps_and_steps_match_transformers(tmp_path, tiny_tokenizer, extra):
    hf, bundle = _open(tmp_path, tiny_tokenizer, **extra)
    cfg = bundle.config
    assert bundle.kind == "hf-gpt-neox" and cfg.positional_embedding_type == "rotary"
    assert cfg.rotary_width == int(8 * hf.config.rope_parameters["partial_rotary_factor"])
    assert cfg.parallel_attn == hf.config.use_parallel_residual
    assert cfg.tie_word_embeddings == hf.config.tie_word_embeddings
    if not cfg.tie_word_embeddings:  # embed_out is its own matrix
        assert torch.equal(bundle.model.unembed.weight, hf.get_output_embeddings().weight.detach())
    idx = ids_of(bundle)
    compare_forward(bundle, hf, idx)
    compare_steps(bundle.model, idx)


def test_the_fused_q_k_v_rows_are_reordered_from_per_head(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer)
    theirs = hf.gpt_neox.layers[1].attention.query_key_value.weight.detach()  # (3C, C)
    ours = bundle.model.h[1].attn.c_attn.weight  # (3C, C)
    hd = 8
    for h in range(4):  # their head h: rows [q_h | k_h | v_h] of 3 * hd
        for part in range(3):  # ours: all q, all k, all v
            want = theirs[(3 * h + part) * hd:(3 * h + part + 1) * hd]
            assert torch.equal(ours[(part * 4 + h) * hd:(part * 4 + h + 1) * hd], want)
    assert per_head_to_blocks(torch.arange(12), 2).tolist() == [0, 1, 6, 7, 2, 3, 8, 9, 4, 5,
                                                                10, 11]


def test_ablating_a_query_head_and_the_lens_match_transformers(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer)
    idx = ids_of(bundle)
    for layer, head in ((0, 3), (1, 1)):
        compare_ablation(bundle, hf, lambda m, i: m.gpt_neox.layers[i].attention.dense, idx,
                         layer, head)
    compare_lens(bundle, hf, hf.gpt_neox.final_layer_norm, hf.get_output_embeddings(), idx)


def test_every_live_analysis_runs(tmp_path, tiny_tokenizer):
    _, bundle = _open(tmp_path, tiny_tokenizer)
    run_every_analysis(bundle)


def test_legacy_config_spellings_are_read(tmp_path, tiny_tokenizer):
    """Pythia's config.json on the Hub: rotary_pct and rotary_emb_base at the top level."""
    hf, bundle = _open(tmp_path, tiny_tokenizer, rotary_pct=0.25)
    path = tmp_path / "neox" / "config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("rope_parameters")
    cfg |= {"rotary_pct": 0.25, "rotary_emb_base": 1000}
    path.write_text(json.dumps(cfg))
    again = load(tmp_path / "neox")
    assert again.config == bundle.config and again.config.rotary_dim == 2
    compare_forward(again, hf, ids_of(again))


@pytest.mark.parametrize(("change", "message"), [
    ({"attention_bias": False}, "attention_bias is false"),
    ({"rope_parameters": {"rope_theta": 1e3, "partial_rotary_factor": 0.1}},
     "rotates 0 of the 8 dimensions"),
    ({"rope_parameters": {"rope_theta": 1e3, "partial_rotary_factor": 0.5,
                          "rope_type": "longrope"}}, "rope scaling 'longrope' is not supported"),
    ({"hidden_act": "quick_gelu"}, "hidden_act 'quick_gelu' is not supported"),
    ({"num_attention_heads": 5}, "not divisible by num_attention_heads 5"),
])
def test_unsupported_variants_are_refused_in_one_line(tmp_path, tiny_tokenizer, change,
                                                      message):
    _open(tmp_path, tiny_tokenizer)
    path = tmp_path / "neox" / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(CheckpointError, match=message) as e:
        load(tmp_path / "neox")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_sharded_checkpoint_opens(tmp_path, tiny_tokenizer):
    hf = _hf(tiny_tokenizer.vocab_size)
    d = tmp_path / "sharded"
    hf.save_pretrained(d, safe_serialization=True, max_shard_size="20KB")
    tiny_tokenizer.save(d / "tokenizer.json")
    assert (d / "model.safetensors.index.json").is_file()
    bundle = load(d)
    compare_forward(bundle, hf, ids_of(bundle))


def test_buffers_of_older_checkpoints_are_ignored_and_unknown_tensors_refused(tmp_path,
                                                                              tiny_tokenizer):
    """Pythia's files carry each layer's causal mask and rotary inv_freq: rebuilt, not read."""
    from safetensors.torch import load_file, save_file

    hf, _ = _open(tmp_path, tiny_tokenizer)
    f = tmp_path / "neox" / "model.safetensors"
    state = load_file(f)
    for i in range(2):
        p = f"gpt_neox.layers.{i}.attention."
        state |= {p + "bias": torch.ones(1, 1, 64, 64, dtype=torch.bool),
                  p + "masked_bias": torch.tensor(-1e9), p + "rotary_emb.inv_freq": torch.ones(2)}
    save_file(state, f)
    bundle = load(tmp_path / "neox")
    compare_forward(bundle, hf, ids_of(bundle))
    state["gpt_neox.layers.0.attention.extra_proj.weight"] = torch.ones(2, 2)
    save_file(state, f)
    with pytest.raises(CheckpointError, match="tensors gptviz does not know how to use"):
        load(tmp_path / "neox")
