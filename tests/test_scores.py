"""Inside a head (scores, mask, softmax, value-weighted attention) and the embedding, checked
against independent computations: forward hooks on ``transformers``' GPT-2 with random
weights, and hand-written formulas from the weights."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tests.test_loaders import _gpt2, _gpt2_tokenizer, _save_bpe

TEXT = "the cat sat on the mat. the cat sat on the mat."


@pytest.fixture(scope="module")
def hf_gpt2(tmp_path_factory):
    """A random transformers GPT-2 and the same model loaded by gptviz."""
    from gptviz import load_model

    tok = _gpt2_tokenizer()
    d = tmp_path_factory.mktemp("hf") / "gpt2"
    hf = _gpt2(tok.get_vocab_size(), n_layer=2, n_head=4, n_embd=32)
    hf.save_pretrained(d)
    _save_bpe(tok, d)
    return hf, load_model(str(d))


def _hf_qkv(hf, ids):
    """q, k, v ``(L, nh, T, hd)`` and the attention ``(L, nh, T, T)`` from hooks on every
    GPT-2 block's ``attn.c_attn`` (its output is [q | k | v])."""
    captured = []
    hooks = [b.attn.c_attn.register_forward_hook(lambda _m, _i, out: captured.append(out))
             for b in hf.transformer.h]
    try:
        with torch.no_grad():
            ref = hf(torch.tensor([ids]), output_attentions=True)
    finally:
        for h in hooks:
            h.remove()
    cfg = hf.config
    nh, hd = cfg.n_head, cfg.n_embd // cfg.n_head
    qs, ks, vs = [], [], []
    for out in captured:
        q, k, v = out[0].split(cfg.n_embd, dim=-1)  # (T, C) each
        qs.append(q.view(-1, nh, hd).transpose(0, 1))
        ks.append(k.view(-1, nh, hd).transpose(0, 1))
        vs.append(v.view(-1, nh, hd).transpose(0, 1))
    return torch.stack(qs), torch.stack(ks), torch.stack(vs), torch.stack(ref.attentions)[:, 0]


def _session(bundle, steps=5):
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    s = Session(bundle, TEXT, settings=SamplingSettings(greedy=True))
    s.generate(steps)
    return s


def test_scores_match_transformers_hooks(hf_gpt2):
    from gptviz.analysis.scores import head_projections, masked_scores, raw_scores, window_residuals

    hf, bundle = hf_gpt2
    s = _session(bundle)
    ids = s.window_tokens
    q, k, _v, att = _hf_qkv(hf, ids)
    hd = q.shape[-1]
    resid = window_residuals(bundle.model, torch.tensor(ids))
    for layer in range(bundle.config.n_layer):
        with torch.inference_mode():
            p = head_projections(bundle.model, layer, resid[layer])
            raw = raw_scores(bundle.model, p)
        want = q[layer] @ k[layer].transpose(-2, -1) / math.sqrt(hd)  # (nh, T, T)
        assert torch.allclose(raw, want, atol=1e-5)
        with torch.inference_mode():
            ms = masked_scores(bundle.model, layer, raw)
        T = len(ids)
        upper = torch.triu(torch.ones(T, T, dtype=torch.bool), 1)
        assert torch.isneginf(ms[:, upper]).all()
        assert torch.isfinite(ms[:, ~upper]).all()
        assert torch.allclose(torch.softmax(ms, -1), att[layer], atol=1e-5)
        # and the session's own attention buffer
        assert np.abs(torch.softmax(ms, -1).numpy() - s.attention()[layer]).max() <= 1e-5


def test_value_weighted_matches_transformers_hooks(hf_gpt2):
    from gptviz.analysis.scores import window_residuals, window_value_weighted

    hf, bundle = hf_gpt2
    s = _session(bundle, 3)
    ids = s.window_tokens
    _q, _k, v, att = _hf_qkv(hf, ids)
    cfg = hf.config
    hd = cfg.n_embd // cfg.n_head
    got = window_value_weighted(bundle.model, window_residuals(bundle.model, torch.tensor(ids)))
    for layer, block in enumerate(hf.transformer.h):
        w = block.attn.c_proj.weight.detach()  # Conv1D: (in, out), y = x W + b
        for h in range(cfg.n_head):
            f = v[layer, h] @ w[h * hd:(h + 1) * hd]  # (T, C): v_j W_O^h
            want = (att[layer, h].unsqueeze(-1) * f.unsqueeze(0)).norm(dim=-1)  # (T, T)
            assert np.abs(got[layer, h] - want.numpy()).max() <= 1e-5


def test_trace_scores_softmax_is_the_trace_attention(hf_gpt2, tmp_path):
    from gptviz.analysis.scores import trace_extras

    _hf, bundle = hf_gpt2
    s = _session(bundle, 4)
    arrays = s.trace_arrays()
    extra = trace_extras(s, scores=True, value_weighted=True)
    sc = extra["scores"]
    assert sc.dtype == np.float32 and sc.shape == arrays["attention"].shape
    T = sc.shape[-1]
    upper = np.triu(np.ones((T, T), bool), 1)
    assert np.isneginf(sc[:, :, upper]).all() and np.isfinite(sc[:, :, ~upper]).all()
    e = np.exp(sc - sc.max(-1, keepdims=True))
    assert np.abs(e / e.sum(-1, keepdims=True) - arrays["attention"]).max() <= 1e-5
    assert extra["value_weighted"].shape == sc.shape


def _inside(s, layer, head, query=None):
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec

    r = AnalysisRunner(AnalysisSpec({"inside_head": None, "embedding": None}))
    res = r.run(s, query=query, layer=layer, head=head)
    assert res.errors == {}
    return res.get("inside_head"), res.get("embedding"), r


def test_inside_head_is_the_formula_and_the_sessions_attention(hf_gpt2):
    hf, bundle = hf_gpt2
    s = _session(bundle, 4)
    ids = s.window_tokens
    q, k, v, att = _hf_qkv(hf, ids)
    hd = q.shape[-1]
    for layer, head, query in ((0, 0, None), (1, 3, 5), (1, 2, 0)):
        ih, _emb, _r = _inside(s, layer, head, query)
        i = len(ids) - 1 if query is None else query
        assert (ih.layer, ih.head, ih.query) == (layer, head, i)
        assert np.allclose(ih.q, q[layer, head, i].numpy(), atol=1e-5)
        assert np.allclose(ih.keys, k[layer, head].numpy(), atol=1e-5)
        want = (q[layer, head, i] @ k[layer, head].T / math.sqrt(hd)).numpy()
        assert np.abs(ih.scores - want).max() <= 1e-5  # the future keys too (raw)
        assert (ih.masked == (np.arange(len(ids)) > i)).all()
        assert np.abs(ih.weights - s.attention()[layer, head, i]).max() <= 1e-5
        assert (ih.weights[ih.masked] == 0).all()
        out = att[layer, head, i] @ v[layer, head]
        assert np.abs(ih.output - out.numpy()).max() <= 1e-5
        j = int(np.argmax(ih.weights))
        prod = (q[layer, head, i] * k[layer, head, j]).numpy()
        dims, vals = ih.top_products(j)
        assert np.allclose(vals, prod[dims], atol=1e-6)
        assert (np.diff(np.abs(vals)) <= 1e-7).all()  # largest first
        assert ih.formula == "s_ij = q_i·k_j / √d" and ih.scale_text == f"1/√{hd}"


def test_inside_head_follows_steps_and_scrubbing(tiny_bundle):
    s = _session(tiny_bundle, 6)
    ih6, _, r = _inside(s, 1, 2)
    s.goto(2)  # back on the timeline: the stream is sliced
    res = r.run(s, layer=1, head=2)
    ih2 = res.get("inside_head")
    T = len(s.window_tokens)
    assert ih2.query == T - 1 and ih2.scores.shape == (T,)
    assert np.abs(ih2.weights - s.attention()[1, 2, T - 1]).max() <= 1e-5
    s.goto(6)
    s.step()  # forward again and one more: one single-token pass
    res = r.run(s, layer=1, head=2)
    T = len(s.window_tokens)
    assert np.abs(res.get("inside_head").weights - s.attention()[1, 2, T - 1]).max() <= 1e-5
    assert ih6.scores.shape[0] == T - 1


def test_families_with_rotary_grouped_query_and_own_scale(tiny_bundle_factory):
    bundle = tiny_bundle_factory(positional_embedding_type="rotary", n_kv_head=2,
                                 norm_type="rmsnorm", attn_scale=0.5, mlp_type="gated",
                                 activation="silu")
    s = _session(bundle, 4)
    ih, emb, _r = _inside(s, 1, 3, 4)
    assert ih.rotary and ih.grouped and ih.kv_head == 1
    assert ih.formula == "s_ij = 0.5 · (R_i q_i)·(R_j k_j)"
    assert np.abs(ih.weights - s.attention()[1, 3, 4]).max() <= 1e-5
    # q by hand: RMSNorm, c_attn, rotate_half by the position's angles
    m = bundle.model
    from gptviz.analysis.scores import window_residuals

    x = window_residuals(m, torch.tensor(s.window_tokens))[1, 4]
    with torch.no_grad():
        ln = m.h[1].ln_1
        xn = x / torch.sqrt((x * x).mean() + ln.eps) * ln.weight
        qraw = (m.h[1].attn.c_attn(xn))[3 * 8:4 * 8]
        hd = 8
        inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
        ang = torch.cat((4 * inv, 4 * inv))
        rot = torch.cat((-qraw[hd // 2:], qraw[:hd // 2]))
        qrot = qraw * ang.cos() + rot * ang.sin()
    assert np.allclose(ih.q, qrot.numpy(), atol=1e-5)
    assert emb.positions == "rotary" and emb.position_part is None and emb.position_map is None


def test_embedding_parts_sum_to_the_stream_entering_block_0(tiny_bundle):
    from gptviz.analysis.scores import window_residuals

    s = _session(tiny_bundle, 3)
    _ih, emb, _r = _inside(s, 0, 0, 4)
    m = tiny_bundle.model
    u = s.window_tokens[4]
    we, wp = m.wte.weight[u].detach(), m.wpe.weight[4].detach()
    h0 = window_residuals(m, torch.tensor(s.window_tokens))[0, 4]
    assert np.allclose(emb.token_part + emb.position_part, h0.numpy(), atol=1e-6)
    assert np.allclose(emb.h0, h0.numpy(), atol=1e-6)
    assert emb.token_norm == pytest.approx(float(we.norm()), rel=1e-5)
    assert emb.position_norm == pytest.approx(float(wp.norm()), rel=1e-5)
    assert emb.cosine == pytest.approx(float(we @ wp / we.norm() / wp.norm()), abs=1e-5)
    # nearest tokens: by cosine over the choosable vocabulary, the token itself left out
    W = m.wte.weight.detach()[:s.n_choosable]
    cos = (W @ we) / (W.norm(dim=1) * we.norm())
    cos[u] = -2
    order = torch.argsort(cos, descending=True)[:len(emb.near_ids)]
    assert list(emb.near_ids) == order.tolist()
    assert np.allclose(emb.near_cos, cos[order].numpy(), atol=1e-5)
    P = m.wpe.weight.detach()
    i, j = 3, 10
    want = float(P[i] @ P[j] / P[i].norm() / P[j].norm())
    assert emb.position_map[i, j] == pytest.approx(want, abs=1e-5)
    assert emb.position_map.shape == (tiny_bundle.config.block_size,) * 2


def test_scores_follow_an_ablation(tiny_bundle):
    from gptviz.analysis import make_ablation

    s = _session(tiny_bundle, 3)
    _ih, _e, r = _inside(s, 1, 1)
    s.set_ablation(make_ablation(tiny_bundle.config, [(0, 0), (0, 2)]))
    res = r.run(s, layer=1, head=1)
    T = len(s.window_tokens)
    assert np.abs(res.get("inside_head").weights - s.attention()[1, 1, T - 1]).max() <= 1e-5


def test_trace_cli_writes_scores_and_value_weighted(hf_gpt2, tmp_path, capsys):
    from gptviz.cli import main

    hf, bundle = hf_gpt2
    out = tmp_path / "t.npz"
    assert main(["trace", "--model", str(bundle.source), "--prompt", TEXT, "--steps", "3",
                 "--greedy", "--scores", "--value-weighted", "--out", str(out)]) == 0
    capsys.readouterr()
    z = np.load(out, allow_pickle=False)
    ids = z["token_ids"].tolist()
    q, k, v, att = _hf_qkv(hf, ids)
    hd = q.shape[-1]
    sc = z["scores"]
    T = len(ids)
    upper = np.triu(np.ones((T, T), bool), 1)
    want = (q @ k.transpose(-2, -1) / math.sqrt(hd)).numpy()  # (L, nh, T, T)
    assert np.abs(sc[:, :, ~upper] - want[:, :, ~upper]).max() <= 1e-5
    assert np.isneginf(sc[:, :, upper]).all()
    assert np.abs(z["attention"] - att.numpy()).max() <= 1e-5
    w = torch.stack([b.attn.c_proj.weight.detach() for b in hf.transformer.h])  # (L, C, C)
    for layer in range(sc.shape[0]):
        for h in range(sc.shape[1]):
            f = v[layer, h] @ w[layer, h * hd:(h + 1) * hd]  # (T, C)
            vw = att[layer, h] * f.norm(dim=-1)[None, :]
            assert np.abs(z["value_weighted"][layer, h] - vw.numpy()).max() <= 1e-5
    # without the flags the file has neither key
    out2 = tmp_path / "plain.npz"
    assert main(["trace", "--model", str(bundle.source), "--prompt", TEXT, "--steps", "1",
                 "--out", str(out2)]) == 0
    assert not {"scores", "value_weighted"} & set(np.load(out2).files)


def test_a_local_layer_masks_outside_its_window(tiny_bundle_factory):
    from gptviz.analysis.stages import StageMaps

    bundle = tiny_bundle_factory(attention_layers=("local", "global"), window_size=3)
    s = _session(bundle, 4)
    T = len(s.window_tokens)
    ih, _e, _r = _inside(s, 0, 1, T - 1)
    i = T - 1
    assert (ih.masked == ((np.arange(T) > i) | (np.arange(T) <= i - 3))).all()
    assert np.abs(ih.weights - s.attention()[0, 1, i]).max() <= 1e-5
    mm = StageMaps().head(s, 0, 1, False, "masked")
    qi, kj = np.indices((T, T))
    outside = (kj > qi) | (kj <= qi - 3)
    assert np.isneginf(mm[outside]).all() and np.isfinite(mm[~outside]).all()
    ih1, _e, _r = _inside(s, 1, 1, i)  # the global layer masks only the future
    assert not ih1.masked.any()
