"""Direct logit attribution, checked against forward hooks: on transformers' GPT2LMHeadModel
with random weights (each head's z captured before c_proj, the MLP outputs, ln_f's input),
and on tiny configs of our own GPT for the later families (parallel block, untied head,
RMSNorm, gated MLP, grouped-query, rotary); the live analysis of a session, per step and
under ablation; GPT-1 refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from gptviz.analysis.attribution import direct_logit_attribution, not_additive_reason
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Ablation

TOL = 1e-4


def _randomize(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            elif name.endswith("bias"):
                p.copy_(0.2 * r)
            else:
                p.copy_(0.3 * r)


def hf_gpt2(vocab: int = 97, seed: int = 0, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    args = dict(n_layer=3, n_head=4, n_embd=32, n_positions=64, vocab_size=vocab,
                bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    args.update(kw)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**args))
    _randomize(model, seed)
    return model.eval()


def ours_from_hf(hf) -> GPT:
    from gptviz.families.hf_common import hf_model

    c = hf.config
    cfg = GPTConfig(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
                    block_size=c.n_positions, vocab_size=c.vocab_size,
                    activation="gelu_tanh", layer_norm_eps=c.layer_norm_epsilon)
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    return hf_model(cfg, state, Path("hf"), rename={}, tie_word_embeddings=True).eval()


def reference(embed_mod, c_projs, mlps, ln_f, lm_head_w, run, head_out, n_head, position,
              target, vs=None, ln_kind="layernorm", eps=1e-5, keep=None):
    """DLA by hooks: z before each c_proj (optionally zeroing removed heads there, which is
    the ablation), each MLP's output, the embedding, ln_f's input; then the formula by hand
    in float64."""
    got: dict = {"z": {}, "mlp": {}}
    handles = []

    def pre(layer):
        def hook(_m, args):
            z = args[0]
            if keep is not None:
                B, T, C = z.shape
                z = (z.view(B, T, n_head, -1) * keep[layer].view(1, 1, -1, 1)).view(B, T, C)
            got["z"][layer] = z[0, position].double().clone()
            return (z,)
        return hook

    def post(layer):
        def hook(_m, _a, out):
            got["mlp"][layer] = out[0, position].double().clone()
        return hook

    try:
        for i, m in enumerate(c_projs):
            handles.append(m.register_forward_pre_hook(pre(i)))
        for i, m in enumerate(mlps):
            handles.append(m.register_forward_hook(post(i)))
        handles.append(embed_mod.register_forward_pre_hook(
            lambda _m, a: got.__setitem__("emb", a[0][0, position].double().clone())))
        handles.append(ln_f.register_forward_pre_hook(
            lambda _m, a: got.__setitem__("xf", a[0][0, position].double().clone())))
        with torch.no_grad():
            logits = run()[0, position].double()
    finally:
        for h in handles:
            h.remove()
    W = lm_head_w.detach().double()
    u = W[target] - (W[vs] if vs is not None else 0)
    x = got["xf"]
    w = ln_f.weight.detach().double()
    if ln_kind == "rmsnorm":
        scale = torch.sqrt((x * x).mean() + eps)

        def read(v):
            return float((w * v / scale) @ u)
        shift = 0.0
    else:
        sd = torch.sqrt(((x - x.mean()) ** 2).mean() + eps)

        def read(v):
            return float((w * (v - v.mean()) / sd) @ u)
        shift = float(ln_f.bias.detach().double() @ u) if ln_f.bias is not None else 0.0
    L = len(c_projs)
    heads = np.array([[read(v) for v in head_out(i, got["z"][i])] for i in range(L)])
    mlp = np.array([read(got["mlp"][i]) for i in range(L)])
    rest = shift + sum(read(m.bias.detach().double()) for m in c_projs if m.bias is not None)
    logit = float(logits[target] - (logits[vs] if vs is not None else 0.0))
    return dict(embed=read(got["emb"]), heads=heads, mlps=mlp, rest=rest, logit=logit)


def hf_reference(hf, ids, position, target, vs=None, keep=None):
    tr = hf.transformer
    H, C = hf.config.n_head, hf.config.n_embd
    hd = C // H

    def head_out(layer, z):  # Conv1D weight (in, out): head h owns rows h*hd .. (h+1)*hd
        W = tr.h[layer].attn.c_proj.weight.detach().double()
        return [z[h * hd:(h + 1) * hd] @ W[h * hd:(h + 1) * hd] for h in range(H)]

    idx = torch.tensor([ids])
    return reference(tr.drop, [b.attn.c_proj for b in tr.h], [b.mlp for b in tr.h], tr.ln_f,
                     hf.lm_head.weight, lambda: hf(idx).logits, head_out, H, position,
                     target, vs, eps=hf.config.layer_norm_epsilon, keep=keep)


def ours_reference(model: GPT, ids, position, target, vs=None):
    cfg = model.config
    H, hd = cfg.n_head, cfg.head_dim

    def head_out(layer, z):  # nn.Linear weight (out, in): head h owns columns h*hd ..
        W = model.h[layer].attn.c_proj.weight.detach().double()
        return [W[:, h * hd:(h + 1) * hd] @ z[h * hd:(h + 1) * hd] for h in range(H)]

    idx = torch.tensor([ids])
    return reference(model.drop, [b.attn.c_proj for b in model.h], [b.mlp for b in model.h],
                     model.ln_f, model.unembed_weight, lambda: model(idx).logits, head_out, H,
                     position, target, vs, ln_kind=cfg.norm_type, eps=cfg.layer_norm_eps)


def assert_matches(a, ref):
    assert abs(a.logit - ref["logit"]) < TOL
    assert abs(a.embed - ref["embed"]) < TOL
    np.testing.assert_allclose(a.heads, ref["heads"], atol=TOL)
    np.testing.assert_allclose(a.mlps, ref["mlps"], atol=TOL)
    assert abs(a.rest - ref["rest"]) < TOL
    total = a.embed + a.heads.sum() + a.mlps.sum() + a.rest
    assert abs(total - ref["logit"]) < TOL
    # not a trivial case: heads and layers do contribute
    assert np.abs(a.heads).max() > 1e-2 and np.abs(a.mlps).max() > 1e-2


@pytest.mark.parametrize("position,vs", [(-1, None), (4, 11), (0, 3)])
def test_matches_hooks_on_transformers_gpt2(position, vs):
    hf = hf_gpt2()
    ours = ours_from_hf(hf)
    ids = [5, 17, 3, 40, 8, 96, 2, 33, 60, 1]
    p = position % len(ids)
    a = direct_logit_attribution(ours, ids, target=7, vs=vs, position=position)
    assert a.position == p and a.target_id == 7 and a.vs_id == vs
    assert a.heads.shape == (3, 4) and a.mlps.shape == (3,)
    assert_matches(a, hf_reference(hf, ids, p, 7, vs))


def test_ablated_heads_match_hooks_that_zero_them():
    hf = hf_gpt2(seed=1)
    ours = ours_from_hf(hf)
    ids = [9, 4, 4, 71, 20, 5, 88]
    keep = torch.ones(3, 4)
    keep[0, 1] = keep[2, 3] = 0.0
    a = direct_logit_attribution(ours, ids, target=12, vs=30, ablation=Ablation(keep=keep))
    ref = hf_reference(hf, ids, len(ids) - 1, 12, 30, keep=keep)
    assert_matches(a, ref)
    assert a.heads[0, 1] == 0.0 and a.heads[2, 3] == 0.0


FAMILIES = {
    "neox-parallel-untied-rotary": dict(parallel_attn=True, tie_word_embeddings=False,
                                        positional_embedding_type="rotary", rotary_dim=4),
    "llama-rms-gated-gqa": dict(norm_type="rmsnorm", mlp_type="gated", n_kv_head=2,
                                bias=False, activation="silu", tie_word_embeddings=False,
                                positional_embedding_type="rotary"),
    "no-final-norm": dict(final_ln=False),
    "layernorm-no-bias": dict(bias=False),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_families_match_hooks_on_our_modules(name):
    torch.manual_seed(3)
    cfg = GPTConfig(n_layer=3, n_head=4, n_embd=32, block_size=32, vocab_size=61,
                    **FAMILIES[name])
    model = GPT(cfg).eval()
    _randomize(model, 3)
    ids = [1, 50, 7, 7, 23, 40, 2, 9]
    a = direct_logit_attribution(model, ids, target=5, vs=44, position=-2)
    if not cfg.final_ln:  # no norm: read the pieces straight off the unembedding
        x_ref = ours_reference_without_norm(model, ids, len(ids) - 2, 5, 44)
        assert_matches(a, x_ref)
        return
    assert_matches(a, ours_reference(model, ids, len(ids) - 2, 5, 44))


def ours_reference_without_norm(model: GPT, ids, position, target, vs):
    """Without a final norm: u . piece for every piece, captured by hooks."""
    cfg = model.config
    H, hd = cfg.n_head, cfg.head_dim
    got: dict = {"z": {}, "m": {}}
    hs = []
    for i, b in enumerate(model.h):
        hs.append(b.attn.c_proj.register_forward_pre_hook(
            lambda _m, a, i=i: got["z"].__setitem__(i, a[0][0, position].double())))
        hs.append(b.mlp.register_forward_hook(
            lambda _m, _a, o, i=i: got["m"].__setitem__(i, o[0, position].double())))
    hs.append(model.drop.register_forward_pre_hook(
        lambda _m, a: got.__setitem__("e", a[0][0, position].double())))
    try:
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, position].double()
    finally:
        for h in hs:
            h.remove()
    W = model.unembed_weight.detach().double()
    u = W[target] - W[vs]
    heads = np.array([[float(u @ (b.attn.c_proj.weight.detach().double()[:, h * hd:(h + 1) * hd]
                                  @ got["z"][i][h * hd:(h + 1) * hd])) for h in range(H)]
                      for i, b in enumerate(model.h)])
    rest = sum(float(u @ b.attn.c_proj.bias.detach().double()) for b in model.h)
    return dict(embed=float(u @ got["e"]), heads=heads,
                mlps=np.array([float(u @ got["m"][i]) for i in range(cfg.n_layer)]),
                rest=rest, logit=float(logits[target] - logits[vs]))


def test_post_layernorm_cannot_add_up():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=30,
                    ln_placement="post", final_ln=False)
    model = GPT(cfg).eval()
    assert "post-LayerNorm" in not_additive_reason(cfg)
    with pytest.raises(ValueError, match="cannot add up"):
        direct_logit_attribution(model, [1, 2, 3], target=4)


def test_bad_arguments():
    model = ours_from_hf(hf_gpt2())
    with pytest.raises(ValueError, match="outside the text"):
        direct_logit_attribution(model, [1, 2, 3], target=4, position=3)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        direct_logit_attribution(model, [1, 2, 3], target=97)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        direct_logit_attribution(model, [1, 2, 3], target=1, vs=-1)


# ------------------------------------------------------------------ live, per step
def _session_on(hf, tokenizer):
    from gptviz.engine.session import Session
    from gptviz.io.checkpoint import ModelBundle

    model = ours_from_hf(hf)
    bundle = ModelBundle(model=model, tokenizer=tokenizer, source="<hf>", kind="gptviz")
    return Session(bundle, "the cat sat on the mat")


def _live(runner, s, **settings):
    from gptviz.analysis.live_attribution import AttributionSettings
    from gptviz.analysis.runner import AnalysisSpec

    runner.command(s, "spec", spec=AnalysisSpec({"attribution": AttributionSettings(**settings)}))
    res = runner.run(s)
    assert "attribution" not in res.errors, res.errors
    return res.get("attribution")


def test_live_attribution_follows_every_step_and_the_ablation(tiny_tokenizer):
    from gptviz.analysis.runner import AnalysisRunner

    hf = hf_gpt2(vocab=tiny_tokenizer.vocab_size, seed=2)
    s = _session_on(hf, tiny_tokenizer)
    runner = AnalysisRunner()
    for _ in range(4):
        view = _live(runner, s)
        ids = s.window_tokens
        T = len(ids)
        # the newest token, at the position that chose it (what the next-token chart shows)
        assert view.position == T - 2 and view.target_kind == "chosen"
        assert view.target_id == ids[-1]
        assert_matches(view.attribution, hf_reference(hf, ids, T - 2, ids[-1]))
        s.step()
        assert len(s.window_tokens) == T + 1
    ids = s.window_tokens
    view = runner.run(s, query=3).get("attribution")  # an earlier token: chosen at 2
    assert view.position == 2 and view.target_kind == "chosen" and view.target_id == ids[3]
    assert_matches(view.attribution, hf_reference(hf, ids, 2, ids[3]))
    view = runner.run(s, query=0).get("attribution")  # the first: what it predicts
    assert view.position == 0 and view.target_id == ids[1]
    view = _live(runner, s, vs=10)
    assert view.vs_id == 10 and view.vs_token == s.display(10)
    assert_matches(view.attribution, hf_reference(hf, ids, len(ids) - 2, ids[-1], 10))
    # Heads ablated in the session: the live numbers are those of the ablated model.
    runner.command(s, "toggle_head", layer=1, head=2)
    runner.command(s, "toggle_head", layer=0, head=0)
    view = _live(runner, s, target=20, vs=10)
    keep = torch.ones(3, 4)
    keep[1, 2] = keep[0, 0] = 0.0
    ref = hf_reference(hf, ids, len(ids) - 2, 20, 10, keep=keep)
    assert view.n_ablated == 2 and view.target_kind == "picked"
    assert_matches(view.attribution, ref)
    assert view.attribution.heads[1, 2] == 0.0


def test_live_attribution_of_a_post_ln_model_says_why(tiny_bundle_factory):
    from gptviz.analysis.runner import AnalysisRunner
    from gptviz.engine.session import Session

    s = Session(tiny_bundle_factory(ln_placement="post", final_ln=False), "the cat sat")
    view = _live(AnalysisRunner(), s)
    assert view.attribution is None
    assert "post-LayerNorm" in view.reason and "cannot add up" in view.reason


def test_live_attribution_of_a_parallel_untied_model(tiny_bundle_factory):
    from gptviz.analysis.runner import AnalysisRunner
    from gptviz.engine.session import Session

    b = tiny_bundle_factory(parallel_attn=True, tie_word_embeddings=False,
                            positional_embedding_type="rotary", n_kv_head=2)
    _randomize(b.model, 5)
    s = Session(b, "the cat sat on")
    runner = AnalysisRunner()
    s.step()
    s.step()
    view = _live(runner, s, target=3, vs=100)
    ids = s.window_tokens
    assert_matches(view.attribution, ours_reference(b.model, ids, len(ids) - 2, 3, 100))


def test_live_attribution_of_a_one_token_prompt_takes_the_likely_next(tiny_tokenizer):
    from gptviz.analysis.runner import AnalysisRunner
    from gptviz.engine.session import Session
    from gptviz.io.checkpoint import ModelBundle

    hf = hf_gpt2(vocab=tiny_tokenizer.vocab_size, seed=7)
    s = Session(ModelBundle(model=ours_from_hf(hf), tokenizer=tiny_tokenizer), [42])
    view = _live(AnalysisRunner(), s)
    top = int(np.argmax(hf(torch.tensor([[42]])).logits[0, -1].detach().numpy()))
    assert view.position == 0 and view.target_kind == "likely" and view.target_id == top
    assert_matches(view.attribution, hf_reference(hf, [42], 0, top))
