"""What a head writes (direct logit attribution at one position), checked against forward hooks
on transformers' GPT-2 and on our own model's modules with the formula written out here."""

from __future__ import annotations

import pytest
import torch
from _hf_gpt2 import hf_and_ours, hooked_inputs

POS = 7


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hf_and_ours(tmp_path_factory.mktemp("hw"))


def _ids(bundle, n=12, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, bundle.config.vocab_size, (n,), generator=g)


@torch.no_grad()
def _hf_head_logits(hf, ids, pos):
    """Every head's direct logit contribution ``[L, H, V]`` at ``pos``, float64, from hooks on
    the transformers model: c_proj's input (the merged heads) and ln_f's input."""
    blocks = hf.transformer.h
    mods = [b.attn.c_proj for b in blocks] + [hf.transformer.ln_f]
    handles, got = hooked_inputs(mods)
    try:
        with torch.no_grad():
            hf(ids[None, :pos + 1])
    finally:
        for h in handles:
            h.remove()
    cfg = hf.config
    hd = cfg.n_embd // cfg.n_head
    x = got[-1][0][0, pos].double()  # the stream entering ln_f
    s = torch.sqrt(x.var(unbiased=False) + cfg.layer_norm_epsilon)
    gamma = hf.transformer.ln_f.weight.double()
    W_U = hf.lm_head.weight.double()  # (V, C), tied to wte
    out = torch.zeros(cfg.n_layer, cfg.n_head, W_U.shape[0], dtype=torch.float64)
    for layer in range(cfg.n_layer):
        z = got[layer][0][0, pos].double()  # (C,) = heads side by side
        W = blocks[layer].attn.c_proj.weight.double()  # Conv1D: (in, out)
        for h in range(cfg.n_head):
            w = z[h * hd:(h + 1) * hd] @ W[h * hd:(h + 1) * hd]  # (C,)
            out[layer, h] = ((w - w.mean()) / s * gamma) @ W_U.T
    return out, got


def test_head_writes_match_hooks_on_transformers(pair):
    from gptviz.analysis.head_writes import head_writes

    hf, bundle = pair
    ids = _ids(bundle)
    ref, _ = _hf_head_logits(hf, ids, POS)
    hw = head_writes(bundle.model, ids, position=POS, k=5)
    assert hw.position == POS and hw.target == int(ids[POS + 1])
    top_v, top_i = torch.topk(ref, 5, dim=-1)
    low_v, low_i = torch.topk(-ref, 5, dim=-1)
    assert (torch.from_numpy(hw.promoted_ids) == top_i).all()
    assert (torch.from_numpy(hw.suppressed_ids) == low_i).all()
    torch.testing.assert_close(torch.from_numpy(hw.promoted).double(), top_v, atol=1e-4, rtol=0)
    torch.testing.assert_close(torch.from_numpy(hw.suppressed).double(), -low_v, atol=1e-4,
                               rtol=0)
    torch.testing.assert_close(torch.from_numpy(hw.target_logit).double(),
                               ref[..., int(ids[POS + 1])], atol=1e-4, rtol=0)
    assert float(top_v.max()) > 0.05  # not trivially zero


def test_the_direct_terms_add_up_to_the_model_logits(pair):
    """Heads + every other component of the final stream, each through the frozen final norm,
    plus the norm's bias through W_U: transformers' logits."""
    from gptviz.analysis.head_writes import head_write_logits

    hf, bundle = pair
    ids = _ids(bundle, seed=2)
    blocks = hf.transformer.h
    mods = ([b.attn.c_proj for b in blocks] + [b.mlp for b in blocks]
            + [blocks[0], hf.transformer.ln_f])
    handles, got = hooked_inputs(mods)
    mlp_out: list[torch.Tensor] = []
    handles += [b.mlp.register_forward_hook(lambda _m, _i, o: mlp_out.append(o.detach()))
                for b in blocks]
    try:
        with torch.no_grad():
            want = hf(ids[None, :POS + 1]).logits[0, POS].double()
    finally:
        for h in handles:
            h.remove()
    L = hf.config.n_layer
    x_final = got[-1][0][0, POS]
    z = torch.stack([got[layer][0][0, POS].view(hf.config.n_head, -1) for layer in range(L)])
    heads = head_write_logits(bundle.model, z, x_final).sum(dim=(0, 1))  # (V,)
    s = torch.sqrt(x_final.double().var(unbiased=False) + hf.config.layer_norm_epsilon)
    gamma, beta = hf.transformer.ln_f.weight.double(), hf.transformer.ln_f.bias.double()
    W_U = hf.lm_head.weight.double()
    rest = got[2 * L][0][0, POS].double()  # the embedding: the stream entering block 0
    for layer in range(L):
        rest = rest + blocks[layer].attn.c_proj.bias.double() + mlp_out[layer][0, POS].double()
    others = ((rest - rest.mean()) / s * gamma) @ W_U.T + beta @ W_U.T
    torch.testing.assert_close(heads + others, want, atol=2e-4, rtol=0)


def test_rmsnorm_untied_grouped_heads_against_our_modules(tiny_bundle_factory):
    from gptviz.analysis.head_writes import head_writes

    b = tiny_bundle_factory(norm_type="rmsnorm", tie_word_embeddings=False, n_kv_head=2,
                            mlp_type="gated", activation="silu",
                            positional_embedding_type="rotary", bias=False)
    m = b.model
    ids = torch.randint(0, m.config.vocab_size, (10,), generator=torch.Generator().manual_seed(3))
    handles, got = hooked_inputs([blk.attn.c_proj for blk in m.h] + [m.ln_f])
    try:
        with torch.no_grad():
            m(ids[None, :6])
    finally:
        for h in handles:
            h.remove()
    x = got[-1][0][0, 5].double()
    rms = torch.sqrt((x * x).mean() + m.ln_f.eps)
    nh, hd = m.config.n_head, m.config.head_dim
    hw = head_writes(m, ids, position=5, k=3)
    for layer in range(m.config.n_layer):
        z = got[layer][0][0, 5].double()
        W = m.h[layer].attn.c_proj.weight.double()  # nn.Linear: (out, in)
        for h in range(nh):
            w = W[:, h * hd:(h + 1) * hd] @ z[h * hd:(h + 1) * hd]
            logits = (w / rms * m.ln_f.weight.double()) @ m.unembed.weight.double().T
            v, i = torch.topk(logits, 3)
            assert hw.promoted_ids[layer, h].tolist() == i.tolist()
            torch.testing.assert_close(torch.from_numpy(hw.promoted[layer, h]).double(), v,
                                       atol=1e-4, rtol=0)


def test_post_ln_models_are_refused_with_one_line(tiny_bundle_factory):
    from gptviz.analysis.head_writes import head_writes

    b = tiny_bundle_factory(ln_placement="post", final_ln=False)
    with pytest.raises(ValueError, match="post-LN"):
        head_writes(b.model, [1, 2, 3])
    with pytest.raises(ValueError, match="outside"):
        head_writes(tiny_bundle_factory().model, [1, 2, 3], position=5)


def test_live_head_writes_at_the_query_and_under_ablation(tiny_bundle):
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat. the cat")
    s.step()
    s.step()
    runner = AnalysisRunner(AnalysisSpec({"head_writes": None}))
    q = 4
    res = runner.run(s, query=q, layer=1, head=2)
    view = res.get("head_writes")
    assert view is not None, res.errors
    m = s.model
    ids = torch.tensor(s.window_tokens)
    handles, got = hooked_inputs([blk.attn.c_proj for blk in m.h] + [m.ln_f])
    try:
        with torch.no_grad():
            m(ids[None, :q + 1])
    finally:
        for h in handles:
            h.remove()
    x = got[-1][0][0, q].double()
    s_ = torch.sqrt(x.var(unbiased=False) + m.ln_f.eps)
    hd = m.config.head_dim
    z = got[1][0][0, q].double()
    w = m.h[1].attn.c_proj.weight.double()[:, 2 * hd:3 * hd] @ z[2 * hd:3 * hd]
    logits = ((w - w.mean()) / s_ * m.ln_f.weight.double()) @ m.wte.weight.double().T
    v, i = torch.topk(logits, view.writes.promoted_ids.shape[-1])
    assert view.writes.promoted_ids[1, 2].tolist() == i.tolist()
    assert view.promoted_tokens[1][2] == [s.display(int(t)) for t in i]
    assert view.position == q and view.target_token == s.display(int(ids[q + 1]))
    assert "writes +" in view.summary(1, 2)
    # a zero-ablated head writes nothing
    runner.command(s, "toggle_head", layer=1, head=2)
    res = runner.run(s, query=q)
    hw = res.get("head_writes").writes
    assert hw.write_norm[1, 2] == 0 and abs(hw.promoted[1, 2]).max() == 0
    assert hw.write_norm[1, 1] > 0
