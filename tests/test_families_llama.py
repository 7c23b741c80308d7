"""Hugging Face Llama and Qwen2 folders opened by gptviz: tiny random ``transformers``
models saved with ``save_pretrained`` and compared with ``transformers`` (eager attention)
on logits and every attention map (<= 1e-4), one-token KV-cache steps against one forward
(<= 1e-5), grouped-query maps per query head, rope_scaling variants, q/k/v biases, sliding
windows, head ablation, the logit lens through the final RMSNorm, and every live analysis."""

from __future__ import annotations

import json
import math

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
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import rotary_frequencies

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

LLAMA3 = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
          "high_freq_factor": 4.0, "original_max_position_embeddings": 16}


def _hf(kind: str, vocab: int, **extra):
    """A tiny random Llama (``kind="llama"``) or Qwen2 in eager attention."""
    base = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                rms_norm_eps=1e-6, tie_word_embeddings=False, attn_implementation="eager")
    base.update(extra)
    if kind == "llama":
        model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**base))
    else:
        model = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**base))
    randomise(model.eval())
    return model


def _open(tmp_path, tiny_tokenizer, kind="llama", **extra):
    hf = _hf(kind, tiny_tokenizer.vocab_size, **extra)
    bundle = load(save(hf, tmp_path / kind, tiny_tokenizer))
    return hf, bundle


CASES = {
    "llama GQA untied": ("llama", {}),
    "llama MHA tied, biases": ("llama", dict(num_key_value_heads=4, tie_word_embeddings=True,
                                             attention_bias=True, mlp_bias=True)),
    "llama multi-query": ("llama", dict(num_key_value_heads=1)),
    "llama rope linear": ("llama", dict(rope_parameters={"rope_type": "linear", "factor": 4.0,
                                                         "rope_theta": 100.0})),
    "llama rope dynamic": ("llama", dict(rope_parameters={"rope_type": "dynamic", "factor": 2.0,
                                                          "rope_theta": 100.0})),
    "llama rope llama3": ("llama", dict(rope_parameters={**LLAMA3, "rope_theta": 100.0})),
    "qwen2 GQA": ("qwen2", {}),
    "qwen2 tied": ("qwen2", dict(tie_word_embeddings=True)),
}


@pytest.mark.parametrize(("kind", "extra"), CASES.values(), ids=CASES.keys())
def test_logits_maps_and_steps_match_transformers(tmp_path, tiny_tokenizer, kind, extra):
    hf, bundle = _open(tmp_path, tiny_tokenizer, kind, **extra)
    cfg = bundle.config
    assert bundle.kind == "hf-llama"
    assert (cfg.norm_type, cfg.mlp_type, cfg.positional_embedding_type) == (
        "rmsnorm", "gated", "rotary")
    assert cfg.kv_heads == hf.config.num_key_value_heads
    assert cfg.tie_word_embeddings == hf.config.tie_word_embeddings
    idx = ids_of(bundle)
    compare_forward(bundle, hf, idx)
    compare_steps(bundle.model, idx)


def test_qwen2_biases_q_k_v_alone(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer, "qwen2")
    m, cfg = bundle.model, bundle.config
    assert (cfg.bias, cfg.qkv_bias) == (False, True)
    attn = m.h[0].attn
    assert attn.c_attn.bias is not None and attn.c_proj.bias is None
    assert m.h[0].mlp.c_fc.bias is None
    sa = hf.model.layers[0].self_attn
    want = torch.cat([sa.q_proj.bias, sa.k_proj.bias, sa.v_proj.bias])
    assert torch.equal(attn.c_attn.bias, want.detach()) and float(want.detach().abs().max()) > 0


def test_grouped_query_maps_are_per_query_head(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer, "llama", num_key_value_heads=1)
    idx = ids_of(bundle)
    with torch.inference_mode():
        att = bundle.model(idx, return_attn=True).attentions[1][0]  # (nh, T, T)
    assert att.shape[0] == 4 and bundle.model.new_cache().k.shape[2] == 1
    # one key/value head, yet four different patterns (the queries differ)
    assert min(float((att[0] - att[h]).abs().max()) for h in (1, 2, 3)) > 1e-2


def test_sliding_window_layers_match_transformers(tmp_path, tiny_tokenizer):
    from gptviz.analysis.maps import layer_windows, masked_map

    hf, bundle = _open(tmp_path, tiny_tokenizer, "qwen2", use_sliding_window=True,
                       sliding_window=4, max_window_layers=1)
    cfg = bundle.config
    assert cfg.attention_layers == ("global", "local") and cfg.window_size == 4
    idx = ids_of(bundle)
    compare_forward(bundle, hf, idx)
    compare_steps(bundle.model, idx)
    with torch.inference_mode():
        att = bundle.model(idx, return_attn=True).attentions[1][0].numpy()  # (nh, T, T)
    i, j = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    outside = ((i - j >= 4) | (j > i)).numpy()
    assert (att[:, outside] == 0).all() and (att[:, ~outside] > 0).all()
    shown = masked_map(att[0], layer_windows(cfg)[1])
    assert (torch.isnan(torch.from_numpy(shown)).numpy() == outside).all()


@pytest.mark.parametrize("rope", [{"rope_type": "linear", "factor": 4.0},
                                  {"rope_type": "dynamic", "factor": 2.0}, LLAMA3],
                         ids=["linear", "dynamic", "llama3"])
def test_rope_scaling_frequencies_equal_transformers(rope):
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    hf_cfg = transformers.LlamaConfig(hidden_size=256, num_attention_heads=2,
                                      max_position_embeddings=64,
                                      rope_parameters={**rope, "rope_theta": 500000.0})
    want, scale = ROPE_INIT_FUNCTIONS[rope["rope_type"]](hf_cfg, "cpu")
    ours = GPTConfig(n_layer=1, n_head=2, n_embd=256, block_size=64, vocab_size=10,
                     positional_embedding_type="rotary", rotary_base=500000.0,
                     rope_scaling=rope)
    got = rotary_frequencies(ours)
    assert scale == 1.0 and torch.equal(got, want)
    if rope["rope_type"] != "dynamic":  # the scaling really changed something
        assert not torch.equal(got, rotary_frequencies(GPTConfig(**{
            **ours.to_dict(), "rope_scaling": None})))


def test_legacy_config_spellings_are_read(tmp_path, tiny_tokenizer):
    """Hub checkpoints spell the rotary settings rope_theta + rope_scaling {"type": ...}."""
    hf, bundle = _open(tmp_path, tiny_tokenizer, "llama",
                       rope_parameters={"rope_type": "linear", "factor": 4.0,
                                        "rope_theta": 100.0})
    path = tmp_path / "llama" / "config.json"
    cfg = json.loads(path.read_text())
    cfg.pop("rope_parameters")
    cfg |= {"rope_theta": 100.0, "rope_scaling": {"type": "linear", "factor": 4.0}}
    path.write_text(json.dumps(cfg))
    again = load(tmp_path / "llama")
    assert again.config.rotary_base == 100.0
    assert again.config.rope_scaling == bundle.config.rope_scaling
    assert again.config.rope_scaling.rope_type == "linear"
    compare_forward(again, hf, ids_of(again))


def test_ablating_a_query_head_and_the_lens_match_transformers(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer, "llama")
    idx = ids_of(bundle)
    for layer, head in ((0, 1), (1, 3)):
        compare_ablation(bundle, hf, lambda m, i: m.model.layers[i].self_attn.o_proj, idx,
                         layer, head)
    compare_lens(bundle, hf, hf.model.norm, hf.lm_head, idx)


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_every_live_analysis_runs(tmp_path, tiny_tokenizer, kind):
    _, bundle = _open(tmp_path, tiny_tokenizer, kind)
    run_every_analysis(bundle)


def test_a_loaded_model_round_trips_through_our_checkpoint(tmp_path, tiny_tokenizer):
    from gptviz.io.checkpoint import save_checkpoint

    hf, bundle = _open(tmp_path, tiny_tokenizer, "qwen2", use_sliding_window=True,
                       sliding_window=4, max_window_layers=1,
                       rope_parameters={**LLAMA3, "rope_theta": 100.0})
    cfg = bundle.config
    assert GPTConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    again = load(save_checkpoint(tmp_path / "ours", bundle.model, bundle.tokenizer))
    assert again.config == cfg
    compare_forward(again, hf, ids_of(again))


@pytest.mark.parametrize(("change", "message"), [
    ({"head_dim": 16}, "head_dim 16 differs"),
    ({"attention_bias": True, "mlp_bias": False}, "attention_bias true with mlp_bias false"),
    ({"rope_parameters": {"rope_type": "yarn", "factor": 2.0, "rope_theta": 1e4}},
     "rope scaling 'yarn' is not supported"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 2.0, "rope_theta": 1e4}},
     "llama3' needs positive low_freq_factor"),
    ({"rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.5}},
     "partial_rotary_factor below 1 .rotating 4 of 8 dimensions. is not supported"),
    ({"rope_parameters": {"rope_theta": 1e4, "partial_rotary_factor": 0.2}},
     "rotates 1 of the 8 dimensions"),
    ({"hidden_act": "gelu_10"}, "hidden_act 'gelu_10' is not supported"),
])
def test_unsupported_variants_are_refused_in_one_line(tmp_path, tiny_tokenizer, change,
                                                      message):
    _open(tmp_path, tiny_tokenizer, "llama")
    path = tmp_path / "llama" / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(CheckpointError, match=message) as e:
        load(tmp_path / "llama")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_a_missing_tokenizer_and_a_missing_tensor_are_named(tmp_path, tiny_tokenizer):
    from safetensors.torch import load_file, save_file

    _open(tmp_path, tiny_tokenizer, "llama")
    d = tmp_path / "llama"
    state = load_file(d / "model.safetensors")
    state.pop("model.layers.1.mlp.up_proj.weight")
    save_file(state, d / "model.safetensors")
    with pytest.raises(CheckpointError, match="missing tensor model.layers.1.mlp.up_proj"):
        load(d)
    (d / "tokenizer.json").unlink()
    _open(tmp_path / "b", tiny_tokenizer, "llama")
    (tmp_path / "b" / "llama" / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer found"):
        load(tmp_path / "b" / "llama")


@pytest.mark.parametrize(("scaling", "message"), [
    ({"rope_type": "yarn", "factor": 2.0}, "type 'yarn' is not supported"),
    ({"rope_type": "linear", "factor": -1.0}, "factor must be a positive number"),
    ({"rope_type": "linear", "factor": math.inf}, "factor must be a positive number"),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 4.0, "high_freq_factor": 1.0,
      "original_max_position_embeddings": 16}, "must exceed low_freq_factor"),
    ({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0},
     "needs original_max_position_embeddings"),
    ({"factor": 2.0}, "needs 'rope_type' and 'factor'"),
    ("linear", "must be an object"),
])
def test_bad_rope_scaling_is_refused_by_the_config(scaling, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10,
                  positional_embedding_type="rotary", rope_scaling=scaling)
    with pytest.raises(ValueError, match="rope_scaling is set but"):
        GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10,
                  rope_scaling={"rope_type": "linear", "factor": 2.0})
    with pytest.raises(ValueError, match="qkv_bias must be"):
        GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=8, vocab_size=10, qkv_bias="no")


@pytest.mark.parametrize(("change", "message"), [
    ({"rope_scaling": "linear"}, "rope_scaling must be an object"),
    ({"rope_scaling": {"rope_type": "linear", "factor": float("inf")}},
     "rope_scaling must hold finite numbers"),
    ({"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, "type 'yarn' is not supported"),
    ({"attention_layers": 5}, "attention_layers must be a list of strings"),
    ({"attention_layers": ["local", "global"], "window_size": -1},
     "window_size must be positive"),
    ({"attention_layers": ["local", "global"], "window_size": 1 << 30},
     "window_size is beyond any real GPT"),
    ({"qkv_bias": "yes"}, "qkv_bias must be true or false"),
])
def test_hostile_new_fields_in_our_own_config_are_refused(tmp_path, tiny_bundle_factory, change,
                                                         message):
    from gptviz.io.checkpoint import save_checkpoint

    b = tiny_bundle_factory(positional_embedding_type="rotary")
    d = save_checkpoint(tmp_path / "ours", b.model, b.tokenizer)
    path = d / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(CheckpointError, match=message) as e:
        load(d)
    assert "\n" not in str(e.value)
