"""The config's later-family options, each checked against an independent computation: a
formula written out here, an equivalent model built by hand, or ``transformers``' GPT-NeoX and
Llama with the same random weights. (KV-cache and decode-step equality for every option are in
test_model.py.)"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, apply_rotary, rotary_tables

TINY = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=120)
LLAMA_LIKE = dict(positional_embedding_type="rotary", norm_type="rmsnorm", mlp_type="gated",
                  activation="silu", n_kv_head=2, tie_word_embeddings=False, bias=False)
NEOX_LIKE = dict(positional_embedding_type="rotary", rotary_dim=4, parallel_attn=True,
                 tie_word_embeddings=False)


def _model(seed: int = 0, **overrides) -> GPT:
    """A tiny GPT with weights drawn larger than the init, so patterns are far from uniform."""
    torch.manual_seed(seed)
    model = GPT(GPTConfig(**{**TINY, **overrides}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
            elif "ln" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
    return model.eval()


def _ids(n: int = 12, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, TINY["vocab_size"], (1, n), generator=gen)


# ---------------------------------------------------------------------- the config


OLD_CONFIG_JSON = {  # a config.json as written before the later-family fields existed
    "n_layer": 2, "n_head": 4, "n_embd": 32, "block_size": 64, "vocab_size": 120,
    "dropout": 0.0, "ln_placement": "pre", "final_ln": True, "activation": "gelu",
    "bias": True, "layer_norm_eps": 1e-5, "n_inner": None, "n_classes": 0,
    "class_names": [], "name": "old",
}


def test_an_old_config_json_loads_with_the_reference_defaults():
    cfg = GPTConfig.from_dict(OLD_CONFIG_JSON)
    assert (cfg.tie_word_embeddings, cfg.positional_embedding_type, cfg.rotary_dim,
            cfg.rotary_base, cfg.norm_type, cfg.mlp_type, cfg.n_kv_head, cfg.parallel_attn,
            cfg.attn_scale) == (True, "learned", None, 10000.0, "layernorm", "standard", None,
                                False, None)
    assert cfg.kv_heads == 4 and cfg.rotary_width == 0 and cfg.scale == 1 / math.sqrt(8)


def test_the_default_model_has_todays_modules_and_shapes():
    model = GPT(GPTConfig(**TINY))
    C, V = 32, 120
    want = {"wte.weight": (V, C), "wpe.weight": (64, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(2):
        want |= {f"h.{i}.ln_1.weight": (C,), f"h.{i}.ln_1.bias": (C,),
                 f"h.{i}.attn.c_attn.weight": (3 * C, C), f"h.{i}.attn.c_attn.bias": (3 * C,),
                 f"h.{i}.attn.c_proj.weight": (C, C), f"h.{i}.attn.c_proj.bias": (C,),
                 f"h.{i}.ln_2.weight": (C,), f"h.{i}.ln_2.bias": (C,),
                 f"h.{i}.mlp.c_fc.weight": (4 * C, C), f"h.{i}.mlp.c_fc.bias": (4 * C,),
                 f"h.{i}.mlp.c_proj.weight": (C, 4 * C), f"h.{i}.mlp.c_proj.bias": (C,)}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == want
    assert model.unembed is None and model.unembed_weight is model.wte.weight
    assert model.new_cache().k.shape == (2, 1, 4, 64, 8)


def test_every_option_round_trips_through_to_dict_and_json():
    cfg = GPTConfig(**TINY, positional_embedding_type="rotary", rotary_dim=6, rotary_base=500.0,
                    norm_type="rmsnorm", mlp_type="gated", activation="silu", n_kv_head=2,
                    parallel_attn=True, tie_word_embeddings=False, attn_scale=0.5, n_inner=48)
    assert GPTConfig.from_dict(cfg.to_dict()) == cfg
    assert GPTConfig.from_dict(json.loads(cfg.to_json())) == cfg
    assert (cfg.kv_heads, cfg.rotary_width, cfg.scale, cfg.head_dim) == (2, 6, 0.5, 8)


@pytest.mark.parametrize(("overrides", "message"), [
    (dict(positional_embedding_type="alibi"), "positional_embedding_type must be one of"),
    (dict(rotary_dim=4), "rotary_dim is set .* but positional_embedding_type is 'learned'"),
    (dict(positional_embedding_type="rotary", rotary_dim=3), "rotary_dim must be even"),
    (dict(positional_embedding_type="rotary", rotary_dim=10), r"rotary_dim .*head_dim \(8\)"),
    (dict(positional_embedding_type="rotary", rotary_dim=0), "rotary_dim must be even"),
    (dict(rotary_base=0.0), "rotary_base must be a positive number"),
    (dict(rotary_base=float("nan")), "rotary_base must be a positive number"),
    (dict(norm_type="batchnorm"), "norm_type must be one of"),
    (dict(mlp_type="moe"), "mlp_type must be one of"),
    (dict(activation="swish"), "unknown activation"),
    (dict(n_kv_head=3), r"n_head \(4\) must be divisible by n_kv_head \(3\)"),
    (dict(n_kv_head=0), "n_kv_head must be positive"),
    (dict(n_kv_head=2.0), "n_kv_head must be a whole number"),
    (dict(parallel_attn=True, ln_placement="post"), "parallel_attn needs ln_placement 'pre'"),
    (dict(attn_scale=0.0), "attn_scale must be a positive number"),
    (dict(attn_scale=float("inf")), "attn_scale must be a positive number"),
    (dict(tie_word_embeddings="no"), "tie_word_embeddings must be true or false"),
])
def test_invalid_options_are_refused_with_clear_messages(overrides, message):
    with pytest.raises(ValueError, match="invalid GPTConfig: .*" + message):
        GPTConfig(**{**TINY, **overrides})


@pytest.mark.parametrize("overrides", [{}, LLAMA_LIKE, NEOX_LIKE], ids=["GPT-2", "Llama", "NeoX"])
def test_a_text_run_in_chunks_through_the_cache_equals_one_forward(overrides):
    """Several new tokens after cached ones: each sees the cached keys and the new ones up to
    itself (the mask of a chunk is not the square one)."""
    model = _model(**overrides).double()
    idx = _ids(14)
    with torch.inference_mode():
        full = model(idx, return_attn=True)
        cache = model.new_cache()
        parts = [model(idx[:, a:b], cache, return_attn=True) for a, b in ((0, 3), (3, 9), (9, 14))]
    assert torch.allclose(torch.cat([o.logits for o in parts], 1), full.logits, atol=1e-10)
    last = parts[-1].attentions[0][0]  # (nh, 5, 14): queries 9..13 over keys 0..13
    assert torch.allclose(last, full.attentions[0][0, :, 9:], atol=1e-10)
    assert (last[:, 0, 10:] == 0).all() and (last[:, 0, :10] > 0).all()


# ---------------------------------------------------------------------- RMSNorm, gated MLP


def test_rmsnorm_is_the_written_out_formula_for_every_norm():
    model = _model(norm_type="rmsnorm")
    norms = [m for b in model.h for m in (b.ln_1, b.ln_2)] + [model.ln_f]
    x = torch.randn(3, 5, 32) * 2 + 0.5
    for norm in norms:
        assert [n for n, _ in norm.named_parameters()] == ["weight"]  # no bias
        w = norm.weight.detach()
        want = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5) * w
        assert torch.allclose(norm(x), want, atol=1e-6, rtol=0)
        assert not torch.allclose(norm(x), F.layer_norm(x, (32,), w), atol=1e-2)


def test_gated_mlp_is_the_written_out_formula():
    model = _model(mlp_type="gated", activation="silu", n_inner=48)
    mlp = model.h[1].mlp
    x = torch.randn(2, 7, 32)

    def lin(m, v):
        return v @ m.weight.detach().T + m.bias.detach()

    gate = lin(mlp.c_gate, x)
    want = lin(mlp.c_proj, gate * torch.sigmoid(gate) * lin(mlp.c_fc, x))  # silu(g) * up
    assert mlp.c_gate.weight.shape == mlp.c_fc.weight.shape == (48, 32)
    with torch.no_grad():
        assert torch.allclose(mlp(x), want, atol=1e-5, rtol=0)


# ---------------------------------------------------------------------- grouped-query attention


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_grouped_query_attention_is_multi_head_with_the_kv_heads_repeated(n_kv_head):
    gqa = _model(n_kv_head=n_kv_head)
    mha = _model(seed=5)  # same shapes but for c_attn; every weight is overwritten below
    nh, hd, C = 4, 8, 32
    g = nh // n_kv_head
    state = dict(gqa.state_dict())
    for i in range(2):
        for kind in ("weight", "bias"):
            w = state[f"h.{i}.attn.c_attn.{kind}"]  # [q: nh*hd | k: nkv*hd | v: nkv*hd]
            assert w.shape[0] == (nh + 2 * n_kv_head) * hd
            q, k, v = w.split((nh * hd, n_kv_head * hd, n_kv_head * hd))

            def repeat(t):  # kv head j serves query heads j*g .. j*g + g - 1
                heads = t.reshape(n_kv_head, hd, *t.shape[1:])
                return heads.repeat_interleave(g, 0).reshape(C, *t.shape[1:])

            state[f"h.{i}.attn.c_attn.{kind}"] = torch.cat([q, repeat(k), repeat(v)])
    mha.load_state_dict(state)
    idx = _ids()
    with torch.inference_mode():
        a = gqa(idx, return_attn=True, return_head_out=True)
        b = mha(idx, return_attn=True, return_head_out=True)
        cache = gqa.new_cache()
        gqa(idx, cache)
    assert torch.allclose(a.logits, b.logits, atol=1e-5, rtol=0)
    for x, y in zip(a.attentions + a.head_outputs, b.attentions + b.head_outputs):
        assert x.shape == y.shape and torch.allclose(x, y, atol=1e-5, rtol=0)
    assert a.attentions[0].shape == (1, nh, 12, 12)  # one map per query head
    assert cache.k.shape == cache.v.shape == (2, 1, n_kv_head, 64, hd)
    # The heads of one group differ (their queries do), so the check is not trivial.
    assert not torch.allclose(a.attentions[0][0, 0], a.attentions[0][0, 1], atol=1e-3)


# ---------------------------------------------------------------------- rotary positions


def _rotate_written_out(x: torch.Tensor, positions: torch.Tensor, rd: int, base: float
                        ) -> torch.Tensor:
    """Rotate pairs (i, i + rd/2) of the last dimension of ``x`` ``(T, heads, hd)`` by angle
    position * base^(-2i/rd) (the "rotate_half" pairing), in float64, one pair at a time."""
    out = x.double().clone()
    half = rd // 2
    for i in range(half):
        angle = positions.double() * base ** (-2.0 * i / rd)  # (T,)
        c, s = angle.cos()[:, None], angle.sin()[:, None]  # (T, 1)
        a, b = x[..., i].double(), x[..., i + half].double()  # (T, heads)
        out[..., i] = a * c - b * s
        out[..., i + half] = b * c + a * s
    return out


@pytest.mark.parametrize("rotary_dim", [None, 4])
def test_rotary_attention_is_the_written_out_rotation(rotary_dim):
    base = 500.0
    model = _model(n_layer=1, positional_embedding_type="rotary", rotary_dim=rotary_dim,
                   rotary_base=base)
    assert model.wpe is None and "wpe.weight" not in model.state_dict()
    assert not any("rope" in k for k in model.state_dict())  # tables are not saved
    idx = _ids(10)
    T, nh, hd, C = 10, 4, 8, 32
    rd = rotary_dim or hd
    with torch.inference_mode():
        cache = model.new_cache()
        out = model(idx, cache, return_attn=True)
        blk = model.h[0]
        x = model.wte.weight[idx[0]].double()  # (T, C): no position added
        h = F.layer_norm(x, (C,), blk.ln_1.weight.double(), blk.ln_1.bias.double(), 1e-5)
        qkv = h @ blk.attn.c_attn.weight.double().T + blk.attn.c_attn.bias.double()  # (T, 3C)
        q, k, _ = qkv.view(T, 3, nh, hd).unbind(1)  # (T, nh, hd)
        pos = torch.arange(T)
        q, k = _rotate_written_out(q, pos, rd, base), _rotate_written_out(k, pos, rd, base)
        scores = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)  # (nh, T, T)
        scores = scores.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), -math.inf)
        want = scores.softmax(-1)
    assert torch.allclose(out.attentions[0][0].double(), want, atol=1e-5, rtol=0)
    # The cache holds the keys already rotated.
    assert torch.allclose(cache.k[0, 0, :, :T].double(), k.transpose(0, 1), atol=1e-5, rtol=0)
    if rotary_dim is not None:  # partial: dimensions past rd are the projection's own
        assert torch.allclose(cache.k[0, 0, :, :T, rd:].double(),
                              qkv.view(T, 3, nh, hd)[:, 1, :, rd:].transpose(0, 1), atol=1e-5)


def test_rotary_tables_and_rotation_follow_the_transformers_convention():
    cfg = GPTConfig(**TINY, positional_embedding_type="rotary", rotary_dim=6, rotary_base=777.0)
    cos, sin = rotary_tables(cfg)
    assert cos.shape == sin.shape == (64, 6) and cos.dtype == torch.float32
    inv_freq = 777.0 ** (-torch.arange(0, 6, 2, dtype=torch.float64) / 6)  # (3,)
    angles = torch.arange(64, dtype=torch.float64)[:, None] * inv_freq  # (64, 3)
    assert torch.allclose(cos.double(), torch.cat([angles.cos()] * 2, -1), atol=1e-6)
    assert torch.allclose(sin.double(), torch.cat([angles.sin()] * 2, -1), atol=1e-6)
    x = torch.randn(64, 3, 8)  # (T, heads, hd)
    got = apply_rotary(x, cos[:, None], sin[:, None])
    want = _rotate_written_out(x, torch.arange(64), 6, 777.0)
    assert torch.allclose(got.double(), want, atol=1e-4, rtol=0)
    assert torch.equal(got[..., 6:], x[..., 6:])


def test_rotary_scores_depend_only_on_the_relative_position():
    cfg = GPTConfig(**TINY, positional_embedding_type="rotary")
    cos, sin = rotary_tables(cfg)
    q, k = torch.randn(8), torch.randn(8)

    def score(m, n):
        return float(apply_rotary(q, cos[m], sin[m]) @ apply_rotary(k, cos[n], sin[n]))

    for m, n in [(5, 2), (9, 9), (20, 3)]:
        for shift in (1, 7, 30):
            assert score(m + shift, n + shift) == pytest.approx(score(m, n), abs=1e-4)
    assert abs(score(5, 2) - score(5, 4)) > 1e-3  # but the offset itself matters
    # The whole model: the same residual stream at positions 0.. or 7.. or 30.. (attending
    # among itself) gives the same attention, unlike without positions.
    model = _model(positional_embedding_type="rotary")
    plain = _model(positional_embedding_type="none")
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 9, 32)
    with torch.inference_mode():
        att = [model.forward_from(x, 0, None, p, return_attn=True).attentions for p in (0, 7, 30)]
        att_plain = plain.forward_from(x, 0, None, 0, return_attn=True).attentions
    for other in att[1:]:
        for a, b in zip(att[0], other):
            assert torch.allclose(a, b, atol=1e-5, rtol=0)
    assert not torch.allclose(att[0][0], att_plain[0], atol=1e-3)


def test_without_positions_one_layer_ignores_the_order_of_earlier_tokens():
    """No position information: one causal layer's last output depends only on the last token
    and the multiset of earlier ones."""
    idx = _ids(10)
    perm = torch.cat([torch.randperm(9, generator=torch.Generator().manual_seed(3)),
                      torch.tensor([9])])
    assert not torch.equal(idx[0, perm], idx[0])
    for kind, invariant in (("none", True), ("learned", False)):
        model = _model(n_layer=1, positional_embedding_type=kind)
        with torch.inference_mode():
            a = model(idx).logits[0, -1]
            b = model(idx[:, perm]).logits[0, -1]
        assert torch.allclose(a, b, atol=1e-5, rtol=0) == invariant


# ---------------------------------------------------------------------- parallel block, head


def test_parallel_block_is_the_written_out_formula():
    model = _model(parallel_attn=True)
    blk = model.h[0]
    x = torch.randn(1, 6, 32)
    with torch.inference_mode():
        got, _, _ = blk(x, 0, None, 0, None)
        a = blk.attn(blk.ln_1(x), 0)[0]
        want = x + a + blk.mlp(blk.ln_2(x))  # x + attn(ln_1(x)) + mlp(ln_2(x))
        sequential = x + a + blk.mlp(blk.ln_2(x + a))
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    assert not torch.allclose(got, sequential, atol=1e-3)


def test_untied_head_has_its_own_matrix(tmp_path, tiny_tokenizer):
    from gptviz import load_model, save_checkpoint
    from gptviz.analysis.lens import lens_readout
    from gptviz.io.checkpoint import ModelBundle

    model = _model(**{**NEOX_LIKE, "vocab_size": tiny_tokenizer.vocab_size})
    W = model.unembed.weight
    assert W.shape == (tiny_tokenizer.vocab_size, 32) and model.unembed.bias is None
    assert model.unembed_weight is W
    idx = _ids(9)
    with torch.inference_mode():
        out = model(idx, return_resid=True)
        assert torch.allclose(out.logits[0], out.hidden[0] @ W.T, atol=1e-5, rtol=0)
        assert not torch.allclose(out.logits[0], out.hidden[0] @ model.wte.weight.T, atol=1e-2)
        top, _, _, _ = lens_readout(model, out.residuals[-1][0], k=1)  # the lens reads W
        assert (top[:, 0] == out.logits[0].argmax(-1).numpy()).all()
    state = model.state_dict()
    assert "unembed.weight" in state and "wpe.weight" not in state
    d = save_checkpoint(tmp_path / "ck", model, tiny_tokenizer, {})
    reloaded = load_model(d)
    assert isinstance(reloaded, ModelBundle) and reloaded.config == model.config
    with torch.inference_mode():
        assert torch.equal(reloaded.model(idx).logits, out.logits)


@pytest.mark.parametrize("overrides", [
    dict(tie_word_embeddings=False), dict(positional_embedding_type="rotary"),
    dict(positional_embedding_type="none"), dict(norm_type="rmsnorm"),
    dict(mlp_type="gated"), dict(n_kv_head=2), dict(parallel_attn=True), dict(attn_scale=1.0),
], ids=lambda d: next(iter(d)))
def test_nanogpt_export_refuses_what_nanogpt_cannot_express(overrides):
    from gptviz.families.nanogpt import to_nanogpt_state_dict

    assert "transformer.wte.weight" in to_nanogpt_state_dict(_model())
    with pytest.raises(ValueError, match="cannot be written as nanoGPT"):
        to_nanogpt_state_dict(_model(**overrides))


def test_mean_ablation_means_are_per_query_head_with_grouped_query_attention():
    from gptviz.analysis.ablation import head_output_means, make_ablation

    model = _model(**LLAMA_LIKE)
    ids = _ids(10)[0]
    with torch.inference_mode():
        means = head_output_means(model, ids)
        abl = make_ablation(model.config, [(1, 3)], "mean", model, ids)
        out = model(ids[None], return_head_out=True, ablation=abl)
    assert means.shape == (2, 4, 8)
    assert torch.allclose(out.head_outputs[1][0, 3], means[1, 3].expand(10, 8), atol=1e-6)


# ---------------------------------------------------------------------- against transformers


def _randomise(hf_model) -> None:
    """Weights larger than the init (far from uniform attention); norm weights near 1."""
    torch.manual_seed(11)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
            elif "norm" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)


def _compare(ours: GPT, hf_model, idx: torch.Tensor) -> None:
    with torch.inference_mode():
        want = hf_model(idx, output_attentions=True)
        got = ours(idx, return_attn=True)
        cache = ours.new_cache()
        ours(idx[:, :4], cache)
        steps = [ours.decode_step(int(t), cache)[0] for t in idx[0, 4:]]
    assert want.logits.std() > 0.5  # not a near-constant output
    assert torch.allclose(got.logits, want.logits, atol=1e-4, rtol=0)
    assert torch.allclose(torch.stack(steps), want.logits[0, 4:], atol=1e-4, rtol=0)
    assert len(got.attentions) == len(want.attentions)
    for a, b in zip(got.attentions, want.attentions):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=0)


def test_llama_like_options_match_transformers_llama():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.LlamaConfig(
        vocab_size=120, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        rms_norm_eps=1e-6, tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
        hidden_act="silu", rope_parameters={"rope_type": "default", "rope_theta": 500.0},
        attn_implementation="eager")
    hf = transformers.LlamaForCausalLM(hf_cfg).eval()
    _randomise(hf)
    ours = GPT(GPTConfig(**TINY, **{**LLAMA_LIKE, "n_inner": 48, "layer_norm_eps": 1e-6,
                                    "rotary_base": 500.0})).eval()
    sd = hf.state_dict()
    state = {"wte.weight": sd["model.embed_tokens.weight"], "ln_f.weight": sd["model.norm.weight"],
             "unembed.weight": sd["lm_head.weight"]}
    for i in range(2):
        p = f"model.layers.{i}."
        state |= {
            f"h.{i}.ln_1.weight": sd[p + "input_layernorm.weight"],
            f"h.{i}.attn.c_attn.weight": torch.cat([sd[p + f"self_attn.{n}_proj.weight"]
                                                    for n in "qkv"]),
            f"h.{i}.attn.c_proj.weight": sd[p + "self_attn.o_proj.weight"],
            f"h.{i}.ln_2.weight": sd[p + "post_attention_layernorm.weight"],
            f"h.{i}.mlp.c_gate.weight": sd[p + "mlp.gate_proj.weight"],
            f"h.{i}.mlp.c_fc.weight": sd[p + "mlp.up_proj.weight"],
            f"h.{i}.mlp.c_proj.weight": sd[p + "mlp.down_proj.weight"],
        }
    ours.load_state_dict(state)
    _compare(ours, hf, _ids(14))


def test_neox_like_options_match_transformers_gpt_neox():
    transformers = pytest.importorskip("transformers")
    hf_cfg = transformers.GPTNeoXConfig(
        vocab_size=120, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5,
        rotary_emb_base=1000, use_parallel_residual=True, tie_word_embeddings=False,
        hidden_act="gelu", layer_norm_eps=1e-5, attn_implementation="eager")
    hf = transformers.GPTNeoXForCausalLM(hf_cfg).eval()
    _randomise(hf)
    ours = GPT(GPTConfig(**TINY, **{**NEOX_LIKE, "rotary_base": 1000.0})).eval()
    sd = hf.state_dict()
    state = {"wte.weight": sd["gpt_neox.embed_in.weight"],
             "ln_f.weight": sd["gpt_neox.final_layer_norm.weight"],
             "ln_f.bias": sd["gpt_neox.final_layer_norm.bias"],
             "unembed.weight": sd["lm_head.weight"]}
    names = {"ln_1": "input_layernorm", "ln_2": "post_attention_layernorm",
             "attn.c_proj": "attention.dense", "mlp.c_fc": "mlp.dense_h_to_4h",
             "mlp.c_proj": "mlp.dense_4h_to_h"}
    for i in range(2):
        p = f"gpt_neox.layers.{i}."
        for ours_name, hf_name in names.items():
            for kind in ("weight", "bias"):
                state[f"h.{i}.{ours_name}.{kind}"] = sd[f"{p}{hf_name}.{kind}"]
        for kind in ("weight", "bias"):
            # GPT-NeoX's fused rows are per head [q, k, v]; ours are [all q, all k, all v].
            w = sd[f"{p}attention.query_key_value.{kind}"]  # (3C, ...)
            w = w.reshape(4, 3, 8, *w.shape[1:]).transpose(0, 1)  # (3, nh, hd, ...)
            state[f"h.{i}.attn.c_attn.{kind}"] = w.reshape(96, *w.shape[3:])
    ours.load_state_dict(state)
    _compare(ours, hf, _ids(14))
