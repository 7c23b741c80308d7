"""The model: KV-cache decoding equals a full recompute, causal attention, ablation, tokenizer
round trips, and a Qt-free core."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from gptviz.model.gpt import GPT, Ablation

LN_CONFIGS = {
    "pre-LN (GPT-2)": dict(ln_placement="pre", final_ln=True, activation="gelu_tanh"),
    "post-LN (GPT-1)": dict(ln_placement="post", final_ln=False, activation="gelu"),
}

# The later families' options, each alone and in the combinations of two families (the tiny
# models have 4 heads of width 8).
OPTION_CONFIGS = {
    "rotary": dict(positional_embedding_type="rotary"),
    "partial rotary": dict(positional_embedding_type="rotary", rotary_dim=4, rotary_base=500.0),
    "no positions": dict(positional_embedding_type="none"),
    "RMSNorm": dict(norm_type="rmsnorm"),
    "gated SiLU": dict(mlp_type="gated", activation="silu"),
    "grouped-query": dict(n_kv_head=2),
    "multi-query": dict(n_kv_head=1),
    "parallel": dict(parallel_attn=True),
    "untied head": dict(tie_word_embeddings=False),
    "unscaled": dict(attn_scale=1.0),
    "Llama-like": dict(positional_embedding_type="rotary", norm_type="rmsnorm", mlp_type="gated",
                       activation="silu", n_kv_head=2, tie_word_embeddings=False, bias=False),
    "NeoX-like": dict(positional_embedding_type="rotary", rotary_dim=4, parallel_attn=True,
                      tie_word_embeddings=False),
    # unscaled: the token embedding alone (no W_p, no norm first) gives a flat first layer
    "post-LN, rotary, grouped": dict(ln_placement="post", final_ln=False, n_kv_head=2,
                                     positional_embedding_type="rotary", attn_scale=1.0),
    # GPT-Neo: a local layer whose window (3) is shorter than the texts, q/k/v unbiased
    "local windows": dict(attention_layers=("local", "global"), window_size=3, attn_scale=1.0,
                          qkv_bias=False),
    "both layers local": dict(attention_layers=("local", "local"), window_size=5),
    # Qwen2: q/k/v biases without any other bias; Llama 3 and linear rotary rescaling
    "Qwen2-like": dict(positional_embedding_type="rotary", norm_type="rmsnorm", mlp_type="gated",
                       activation="silu", n_kv_head=2, bias=False, qkv_bias=True),
    "rope linear": dict(positional_embedding_type="rotary",
                        rope_scaling={"rope_type": "linear", "factor": 4.0}),
    "rope llama3": dict(positional_embedding_type="rotary", rotary_base=50.0,
                        rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                      "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                      "original_max_position_embeddings": 16}),
}
CACHE_CONFIGS = {**LN_CONFIGS, **OPTION_CONFIGS}


def _ids(bundle, text="Once upon a time there was a little model, it said hello."):
    ids = bundle.tokenizer.encode(text)
    assert len(ids) >= 12
    return ids


@pytest.mark.parametrize("overrides", CACHE_CONFIGS.values(), ids=CACHE_CONFIGS.keys())
@pytest.mark.parametrize("prefill", [1, 5])
def test_kv_cache_steps_equal_full_forward(tiny_bundle_factory, overrides, prefill):
    bundle = tiny_bundle_factory(**overrides)
    model = bundle.model
    if overrides in OPTION_CONFIGS.values():
        # In float64: with these weights a gated feed-forward layer grows the residual stream
        # to ~50, where float32 rounding alone reaches 1e-5 in the logits; a wrong cached key
        # or position would still show as O(1).
        model.double()
    ids = _ids(bundle)
    T = len(ids)
    idx = torch.tensor([ids])
    with torch.inference_mode():
        full = model(idx, return_attn=True)
        cache = model.new_cache()
        out = model(idx[:, :prefill], cache, return_attn=True)
        logits = [out.logits[0]]
        rows = [[a[0] for a in out.attentions]]  # per layer (nh, prefill, prefill)
        for t in range(prefill, T):
            out = model(idx[:, t:t + 1], cache, return_attn=True, last_only=True)
            assert cache.length == t + 1
            logits.append(out.logits[0])
            rows.append([a[0] for a in out.attentions])  # (nh, 1, t + 1)
    inc_logits = torch.cat(logits)  # (T, V)
    assert inc_logits.shape == full.logits[0].shape
    assert torch.allclose(inc_logits, full.logits[0], atol=1e-5, rtol=0)
    # The distributions must be different from uniform, or the comparison proves little.
    assert full.logits[0].std(dim=-1).min() > 0.5
    for layer in range(model.config.n_layer):
        full_att = full.attentions[layer][0]  # (nh, T, T)
        assert torch.allclose(rows[0][layer], full_att[:, :prefill, :prefill], atol=1e-5, rtol=0)
        for k, per_layer in enumerate(rows[1:]):
            t = prefill + k
            got = per_layer[layer][:, 0]  # (nh, t + 1)
            assert torch.allclose(got, full_att[:, t, :t + 1], atol=1e-5, rtol=0)
        # Attention is not uniform either.
        assert full_att[:, -1].max() > 2.0 / T


DECODE_CONFIGS = {**LN_CONFIGS, "no bias": dict(bias=False)}
# Every config with each ablation; the later options with none and mean-ablation (zero-
# ablation is the same code without the fill), which keeps the count of cases down.
DECODE_CASES = {**{f"{name}-{ablate}": (overrides, ablate) for name, overrides in
                   DECODE_CONFIGS.items() for ablate in (None, "zero", "mean")},
                **{f"{name}-{ablate}": (overrides, ablate) for name, overrides in
                   OPTION_CONFIGS.items() for ablate in (None, "mean")}}


def _blocked_product(x, weight, bias, parts):
    """``x @ weight.T + bias`` as one batched product of ``parts`` column blocks (views of
    ``weight.T``, a multiple of 16 columns each) and one product over the last multiple of 16
    columns for the rest: the blocked product the step runs, written out here."""
    out, inp = weight.shape
    n = out // (parts * 16) * 16
    main = parts * n
    wb = weight[:main].t().reshape(inp, parts, n).permute(1, 0, 2)  # (P, in, n), a view
    xb = x.expand(parts, 1, inp)
    y = (torch.bmm(xb, wb) if bias is None
         else torch.baddbmm(bias[:main].view(parts, 1, n), xb, wb)).reshape(1, main)
    rest = out - main
    if rest:
        t = -(-rest // 16) * 16
        tail = F.linear(x, weight[out - t:], None if bias is None else bias[out - t:])
        y = torch.cat([y, tail[:, t - rest:]], dim=1)
    return y


def _split_where_the_sums_agree(model, parts):
    """Every matrix of ``model``'s one-token step is cut into ``parts`` column blocks of a
    multiple of 16 columns, except where that does not pay (too small) or where a blocked
    product does not give the whole product's sums bit for bit on this machine (the CPU's
    kernels decide: some shapes and thread counts sum in another order with AVX-512).
    Returns the blocks found."""
    import gptviz.model.gpt as model_mod

    blocks = model._decode_blocks()
    mats = []
    for block in model.h:
        lins = [block.attn.c_attn, block.attn.c_proj, block.mlp.c_fc, block.mlp.c_proj]
        if block.mlp.c_gate is not None:
            lins.append(block.mlp.c_gate)
        mats += [(lin.weight, lin.bias) for lin in lins]
    found = [b for layer in blocks[:-1] for b in layer] + [blocks[-1]]
    mats.append((model.unembed_weight, None))
    assert len(found) == len(mats)
    widest = max(w.size(1) for w, _b in mats)
    buf = torch.randn(1, widest, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        for got, (w, b) in zip(found, mats):
            eligible = (parts > 1 and w.size(0) >= parts * 16
                        and w.numel() >= model_mod.SPLIT_MIN_ELEMENTS)
            if got is not None:
                assert eligible and got.w.size(0) == parts and got.w.size(2) % 16 == 0
            elif eligible:  # kept whole: its blocks would have changed the last bits (a
                # row on its own allocation, as every row the step multiplies)
                x = buf[:, :w.size(1)].clone()
                assert not torch.equal(_blocked_product(x, w, b, parts), F.linear(x, w, b))
    return [b for b in found if b is not None]


@pytest.fixture(params=[1, 2, 3], ids=lambda n: f"{n}-blocks")
def column_blocks(request, monkeypatch):
    """Threads for the step (so column blocks per matrix), every matrix split when > 1."""
    import gptviz.model.gpt as model_mod

    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    monkeypatch.setattr(model_mod, "SPLIT_MIN_ELEMENTS", 0 if request.param > 1 else 1 << 62)
    yield request.param
    torch.set_num_threads(before)


@pytest.mark.parametrize("layout", ["row-major", "decoding"])
@pytest.mark.parametrize(("overrides", "ablate"), DECODE_CASES.values(), ids=DECODE_CASES.keys())
def test_decode_step_is_bit_identical_to_a_one_token_forward(tiny_bundle_factory, overrides,
                                                             ablate, layout, column_blocks):
    bundle = tiny_bundle_factory(**overrides)
    model = bundle.model.eval()
    if layout == "decoding":
        model.use_decoding_layout()
    # the products ran by blocks wherever blocks give the same sums here
    _split_where_the_sums_agree(model, column_blocks)
    cfg = model.config
    L, H, C = cfg.n_layer, cfg.n_head, cfg.n_embd
    ids = _ids(bundle)
    ablation = None
    if ablate is not None:
        keep = torch.ones(L, H)
        keep[0, 1] = keep[L - 1, 0] = 0
        fill = torch.randn(L, H, cfg.head_dim) if ablate == "mean" else None
        ablation = Ablation(keep, fill)
    with torch.inference_mode():
        a, b = model.new_cache(), model.new_cache()
        model(torch.tensor([ids[:6]]), a, ablation=ablation)
        model(torch.tensor([ids[:6]]), b, ablation=ablation)
        for t in range(6, len(ids)):
            ref = model(torch.tensor([[ids[t]]]), a, return_attn=True, return_resid=True,
                        ablation=ablation, last_only=True)
            attn = torch.full((L, H, cfg.block_size), -1.0)
            resid = torch.empty(L + 1, C)
            logits, hidden = model.decode_step(ids[t], b, attn_out=attn, resid_out=resid,
                                               ablation=ablation)
            assert b.length == a.length == t + 1
            assert torch.equal(logits, ref.logits[0, 0])
            assert torch.equal(hidden, ref.hidden[0, 0])
            assert torch.equal(attn[:, :, :t + 1], torch.stack(ref.attentions)[:, 0, :, 0])
            assert (attn[:, :, t + 1:] == -1).all()  # nothing written past the new key
            assert torch.equal(resid, torch.stack(ref.residuals)[:, 0, 0])
        assert torch.equal(a.k[:, :, :, :a.length], b.k[:, :, :, :b.length])
        assert torch.equal(a.v[:, :, :, :a.length], b.v[:, :, :, :b.length])
        if ablate is not None:  # the ablation really changed something
            plain = model(torch.tensor([ids]), last_only=True).logits[0, -1]
            assert not torch.allclose(plain, logits)


def _step_vs_forward(model: GPT, ids: list[int]) -> None:
    """decode_step from a 3-token prefix equals forward bit for bit, token by token."""
    cfg = model.config
    with torch.inference_mode():
        a, b = model.new_cache(), model.new_cache()
        model(torch.tensor([ids[:3]]), a)
        model(torch.tensor([ids[:3]]), b)
        for t in range(3, len(ids)):
            ref = model(torch.tensor([[ids[t]]]), a, return_attn=True, last_only=True)
            attn = torch.zeros(cfg.n_layer, cfg.n_head, cfg.block_size)
            logits, hidden = model.decode_step(ids[t], b, attn_out=attn)
            assert torch.equal(logits, ref.logits[0, 0])
            assert torch.equal(hidden, ref.hidden[0, 0])
            assert torch.equal(attn[:, :, :t + 1], torch.stack(ref.attentions)[:, 0, :, 0])


@pytest.mark.parametrize("vocab", [384, 362])
def test_decode_step_splits_only_into_blocks_of_multiples_of_16(column_blocks, vocab):
    """384 = 2 x 192 = 3 x 128 columns split evenly; 362 (odd, like GPT-1's 40,478 or
    GPT-2's 50,257) into blocks of a multiple of 16 plus a tail product over the last 16 or
    32 columns: products of other widths take another kernel and change the last bits."""
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT, _column_blocks

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=16, vocab_size=vocab,
                          dropout=0.0)).eval()
    model.use_decoding_layout()
    _split_where_the_sums_agree(model, column_blocks)
    # the cut itself, whether or not this machine's sums let the step use it
    head = _column_blocks(model.unembed_weight, None, column_blocks)
    assert (head is not None) == (column_blocks > 1)
    if head is not None:
        assert head.w.size(2) % 16 == 0 and (head.rest > 0) == (vocab == 362)
        assert head.rest == 0 or (head.tail_w.size(0) % 16 == 0 and head.rest < 16 * column_blocks)
        odd = _column_blocks(torch.zeros(34, 4), None, 2)  # not 2 x 17: 2 x 16, tail of 16
        assert odd.w.shape == (2, 4, 16) and odd.rest == 2 and odd.tail_w.shape == (16, 4)
    _step_vs_forward(model, torch.randint(0, vocab, (10,)).tolist())


def test_decode_step_keeps_up_with_changed_weights_grad_mode_and_copies(column_blocks):
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    torch.manual_seed(1)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=64, block_size=16, vocab_size=384,
                          dropout=0.0)).eval()
    ids = torch.randint(0, 384, (8,)).tolist()
    _step_vs_forward(model, ids)
    model.h[0].mlp.c_fc = torch.nn.Linear(64, 256)  # a new module: not the old blocks
    model.h[1].attn.c_attn.bias = torch.nn.Parameter(torch.randn(192))  # a new bias only
    _step_vs_forward(model, ids)
    model.use_decoding_layout()  # new storage for every matrix
    _step_vs_forward(model, ids)
    _step_vs_forward(copy.deepcopy(model), ids)
    # With autograd on (parameters requiring grad) the step runs, and without gradients.
    cache = model.new_cache()
    logits, _ = model.decode_step(ids[0], cache)
    assert not logits.requires_grad and cache.length == 1
    # Buffers of another dtype than the model's receive the values (cast).
    model.double()
    cfg = model.config
    attn = torch.zeros(cfg.n_layer, cfg.n_head, cfg.block_size)  # float32
    resid = torch.zeros(cfg.n_layer + 1, cfg.n_embd)
    with torch.inference_mode():
        a, b = model.new_cache(), model.new_cache()
        ref = model(torch.tensor([ids[:2]]), a, return_attn=True, return_resid=True)
        model.decode_step(ids[0], b, attn_out=attn, resid_out=resid)
        model.decode_step(ids[1], b, attn_out=attn, resid_out=resid)
    assert torch.equal(attn[:, :, :2], torch.stack(ref.attentions)[:, 0, :, 1].float())
    assert torch.equal(resid, torch.stack(ref.residuals)[:, 0, 1].float())


def test_decode_step_hidden_is_not_a_view_of_the_residual_buffer():
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=40,
                          final_ln=False)).eval()
    resid = torch.zeros(3, 16)
    with torch.inference_mode():
        _, hidden = model.decode_step(1, model.new_cache(), resid_out=resid)
        kept = hidden.clone()
        resid.zero_()  # the caller reuses its buffer
    assert torch.equal(hidden, kept) and hidden.abs().sum() > 0


def test_decode_step_writes_the_cache_in_and_out_of_inference_mode(tiny_bundle):
    """The step keeps per-layer views of the cache; views made in inference mode may not be
    written outside it (torch refuses), nor may a replaced ``k``/``v`` be missed."""
    model = tiny_bundle.model.eval()
    ids = _ids(tiny_bundle)[:8]
    cache = model.new_cache()
    modes = [torch.inference_mode, torch.no_grad, torch.inference_mode, torch.no_grad]
    for i, t in enumerate(ids[:4]):
        with modes[i]():
            model.decode_step(t, cache)
    old_k = cache.k
    cache.k, cache.v = cache.k.clone(), cache.v.clone()  # new storage, same object
    with torch.no_grad():
        for t in ids[4:]:
            model.decode_step(t, cache)
        ref = model.new_cache()
        model(torch.tensor([ids]), ref)
    n = len(ids)
    assert cache.length == n
    assert torch.allclose(cache.k[:, :, :, :n], ref.k[:, :, :, :n], atol=1e-5)
    assert torch.allclose(cache.v[:, :, :, :n], ref.v[:, :, :, :n], atol=1e-5)
    assert (old_k[:, :, :, 4:] == 0).all()  # the replaced storage was not written


def test_decode_step_refuses_a_full_cache_bad_ids_and_training_mode(tiny_bundle):
    model = tiny_bundle.model.eval()
    cache = model.new_cache()
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.decode_step(-1, cache)  # wte.weight[-1] would silently read the last row
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.decode_step(model.config.vocab_size, cache)
    model.train()
    with pytest.raises(RuntimeError, match="eval"):
        model.decode_step(1, cache)  # it has no dropout: results would not be forward's
    model.eval()
    assert cache.length == 0
    cache.length = cache.block_size
    with pytest.raises(ValueError, match="exceeds"):
        model.decode_step(1, cache)


def test_decoding_layout_changes_strides_not_values(tiny_bundle, tmp_path):
    from gptviz import load_model, save_checkpoint

    model = tiny_bundle.model.eval()
    cfg = model.config
    idx = torch.tensor([_ids(tiny_bundle)])
    with torch.inference_mode():
        before = model(idx, return_attn=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.use_decoding_layout() is model
    qkv = model.h[0].attn.c_attn.weight
    # Same [out, in] shape, stored [in, out]; the tied embedding is stored transposed too.
    assert qkv.shape == (3 * cfg.n_embd, cfg.n_embd) and qkv.stride() == (1, 3 * cfg.n_embd)
    assert model.wte.weight.stride() == (1, cfg.vocab_size)
    assert model.wte.weight.data_ptr() != state["wte.weight"].data_ptr()
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    model.use_decoding_layout()  # idempotent: a second call keeps the layout
    assert model.h[0].attn.c_attn.weight.stride() == (1, 3 * cfg.n_embd)
    with torch.inference_mode():
        after = model(idx, return_attn=True)
    assert torch.allclose(after.logits, before.logits, atol=1e-5, rtol=0)
    for a, b in zip(after.attentions, before.attentions):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    # A model in this layout still saves (contiguous on disk) and loads back the same values.
    reloaded = load_model(save_checkpoint(tmp_path / "ck", model, tiny_bundle.tokenizer, {}))
    assert all(torch.equal(v, state[k]) for k, v in reloaded.model.state_dict().items())


@pytest.mark.parametrize("overrides", LN_CONFIGS.values(), ids=LN_CONFIGS.keys())
def test_attention_is_causal_and_normalised(tiny_bundle_factory, overrides):
    bundle = tiny_bundle_factory(**overrides)
    ids = _ids(bundle)
    with torch.inference_mode():
        out = bundle.model(torch.tensor([ids]), return_attn=True)
    assert len(out.attentions) == bundle.config.n_layer
    T = len(ids)
    upper = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
    for att in out.attentions:
        assert att.shape == (1, bundle.config.n_head, T, T)
        assert torch.allclose(att.sum(-1), torch.ones(1, bundle.config.n_head, T), atol=1e-5)
        assert (att[..., upper] == 0).all()  # exactly zero above the diagonal
        assert (att[..., ~upper] > 0).all()


def test_future_tokens_do_not_change_the_past(tiny_bundle):
    """One-directional: logits at position t depend only on tokens <= t."""
    ids = _ids(tiny_bundle)
    other = list(ids)
    other[-1] = (other[-1] + 1) % tiny_bundle.config.vocab_size
    with torch.inference_mode():
        a = tiny_bundle.model(torch.tensor([ids])).logits[0]
        b = tiny_bundle.model(torch.tensor([other])).logits[0]
    assert torch.equal(a[:-1], b[:-1])
    assert not torch.allclose(a[-1], b[-1])


def test_ablation_all_ones_is_identical_to_none(tiny_bundle):
    cfg = tiny_bundle.config
    idx = torch.tensor([_ids(tiny_bundle)])
    ones = Ablation(keep=torch.ones(cfg.n_layer, cfg.n_head),
                    fill=torch.randn(cfg.n_layer, cfg.n_head, cfg.head_dim))
    with torch.inference_mode():
        a = tiny_bundle.model(idx, return_attn=True)
        b = tiny_bundle.model(idx, return_attn=True, ablation=ones)
    assert torch.equal(a.logits, b.logits)
    for x, y in zip(a.attentions, b.attentions):
        assert torch.equal(x, y)


def test_zero_ablation_equals_zeroing_the_head_in_the_output_projection(tiny_bundle):
    cfg = tiny_bundle.config
    model = tiny_bundle.model
    idx = torch.tensor([_ids(tiny_bundle)])
    layer, head, hd = 1, 2, cfg.head_dim
    keep = torch.ones(cfg.n_layer, cfg.n_head)
    keep[layer, head] = 0
    with torch.inference_mode():
        ablated = model(idx, ablation=Ablation(keep=keep)).logits
        normal = model(idx).logits
        w = model.h[layer].attn.c_proj.weight
        saved = w[:, head * hd:(head + 1) * hd].clone()
        w[:, head * hd:(head + 1) * hd] = 0
        try:
            surgery = model(idx).logits
        finally:
            w[:, head * hd:(head + 1) * hd] = saved
    assert torch.allclose(ablated, surgery, atol=1e-5)
    assert not torch.allclose(ablated, normal, atol=1e-3)


def test_mean_ablation_fill_replaces_the_head_output(tiny_bundle):
    cfg = tiny_bundle.config
    idx = torch.tensor([_ids(tiny_bundle)])
    keep = torch.ones(cfg.n_layer, cfg.n_head)
    keep[0, 1] = 0
    fill = torch.zeros(cfg.n_layer, cfg.n_head, cfg.head_dim)
    fill[0, 1] = torch.linspace(-1, 1, cfg.head_dim)
    with torch.inference_mode():
        out = tiny_bundle.model(idx, return_head_out=True, ablation=Ablation(keep=keep, fill=fill))
    z = out.head_outputs[0][0, 1]  # (T, hd)
    assert torch.allclose(z, fill[0, 1].expand_as(z))


UNICODE_TEXTS = [
    "plain ascii",
    "emoji 😀🧠👩‍👩‍👧‍👦 and flags 🇫🇷",
    "CJK 漢字かなカナ한국어",
    "control \x00\x01\x07\x1b[0m\x7f chars",
    "windows\r\nline\rends\n\n",
    "mixed: café naïve Ωμέγα Ελληνικά עברית العربية  \t tabs \u200b zero-width \ufeff",
    "  leading and trailing spaces  ",
    "\U0010ffff\U0001f600",
]


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_byte_level_tokenizer_round_trips_any_unicode(tiny_tokenizer, text):
    ids = tiny_tokenizer.encode(text)
    assert ids
    assert tiny_tokenizer.decode(ids) == text
    # Every token has a non-empty display string without raw control characters.
    for i in ids:
        shown = tiny_tokenizer.display(i)
        assert shown and not any(ord(c) < 32 for c in shown)


def test_split_emoji_displays_as_bytes(tiny_tokenizer):
    ids = tiny_tokenizer.encode("🧠")
    assert len(ids) > 1  # not in the tiny vocabulary as one token
    assert "".join(tiny_tokenizer.display(i) for i in ids) == "<0xF0><0x9F><0xA7><0xA0>"


def test_characters_without_a_glyph_are_named():
    from gptviz.io.tokenizer import display_bytes

    # C1 control, zero-width space, line separator: shown by code point, never as an empty box.
    assert display_bytes("a\u0085b\u200bc\u2028".encode()) == "a<U+0085>b<U+200B>c<U+2028>"
    assert display_bytes("é 😀\n".encode()) == "é·😀↵"


def test_core_imports_no_qt():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import gptviz
        for m in pkgutil.walk_packages(gptviz.__path__, "gptviz."):
            if m.name != "gptviz.__main__":
                importlib.import_module(m.name)
        bad = sorted(k for k in sys.modules
                     if k.split(".")[0] in ("PySide6", "PySide2", "PyQt5", "PyQt6", "pyqtgraph",
                                            "shiboken6", "shiboken2"))
        print("LOADED:" + ",".join(bad))
        print("COUNT:%d" % sum(1 for k in sys.modules if k.startswith("gptviz.")))
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "LOADED:\n" in res.stdout, res.stdout
    assert int(res.stdout.split("COUNT:")[1]) >= 8  # the submodules really were imported
