"""Comparable definitions: head scores in TransformerLens' convention, the logit lens between
attention and feed-forward (resid_mid), and causal mean-ablation. Every number is matched by
a formula written here (TransformerLens' ``detect_head`` by hand) or by forward hooks on
transformers' GPT-2 / on our model's modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _hf_gpt2 import hf_and_ours, hooked_inputs

IDS = [3, 3, 5, 7, 3, 5, 9, 7, 7, 3, 5, 11]  # repeats, and a token right after itself


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hf_and_ours(tmp_path_factory.mktemp("defs"), seed=12)


def _hf_attention(hf, ids):
    with torch.no_grad():
        out = hf(torch.tensor([ids]), output_attentions=True)
    return torch.stack(out.attentions)[:, 0].double().numpy()  # [L, H, T, T]


# ---------------------------------------------------------------------- head scores
def _tl_scores(att, ids):
    """TransformerLens' detect_head (error_measure="mul", nothing excluded), written out:
    score = sum(att * pattern) / sum(att), with its previous-token, duplicate-token and
    induction (duplicate pattern shifted one to the right, lower triangle) patterns."""
    T = len(ids)
    prev = np.zeros((T, T))
    dup = np.zeros((T, T))
    for i in range(T):
        if i >= 1:
            prev[i, i - 1] = 1
        for k in range(i):
            if ids[k] == ids[i]:
                dup[i, k] = 1
    ind = np.zeros((T, T))
    ind[:, 1:] = dup[:, :-1]  # torch.roll(dup, 1, dims=1) with the first column zeroed
    ind = np.tril(ind)
    total = att.sum(axis=(-2, -1))
    return {name: (att * p).sum(axis=(-2, -1)) / total
            for name, p in (("prev_token", prev), ("duplicate_token", dup), ("induction", ind))}


def _gptviz_induction(att, ids):
    """Ours: mean over the queries with a target k = j + 1 <= i - 2 of the mass on them."""
    T = len(ids)
    per_query = []
    for i in range(T):
        ks = [k for k in range(1, i - 1) if ids[k - 1] == ids[i]]
        if ks:
            per_query.append(att[..., i, ks].sum(axis=-1))
    return np.mean(per_query, axis=0)


def test_transformer_lens_convention_by_hand(pair):
    from gptviz.analysis.heads import head_scores

    hf, _ = pair
    att = _hf_attention(hf, IDS)
    want = _tl_scores(att, IDS)
    got = head_scores(att, IDS, convention="transformer_lens")
    assert got.convention == "transformer_lens"
    for name, w in want.items():
        np.testing.assert_allclose(got.get(name), w, atol=1e-12, rtol=0)
    # first_token and entropy are the same in both conventions
    ours = head_scores(att, IDS)
    np.testing.assert_array_equal(ours.first_token, got.first_token)
    np.testing.assert_array_equal(ours.entropy, got.entropy)
    # ours: over the queries that have a target, k <= i - 2 (the two differ on this text)
    np.testing.assert_allclose(ours.induction, _gptviz_induction(att, IDS), atol=1e-12, rtol=0)
    np.testing.assert_allclose(ours.prev_token,
                               np.mean([att[..., i, i - 1] for i in range(1, len(IDS))], 0),
                               atol=1e-12, rtol=0)
    assert np.abs(ours.induction - got.induction).max() > 1e-3
    assert got.to_dict()["convention"] == "transformer_lens"
    with pytest.raises(ValueError, match="convention"):
        head_scores(att, IDS, convention="tl")


def test_live_heads_in_either_convention(tiny_bundle):
    from gptviz.analysis import attention_array
    from gptviz.analysis.live_heads import HeadSettings
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat. the cat sat on the mat.")
    runner = AnalysisRunner(AnalysisSpec({"heads": HeadSettings("transformer_lens")}))
    got = runner.run(s).get("heads")
    ids = s.window_tokens
    want = _tl_scores(attention_array(s.model, ids).astype(np.float64), ids)
    for name, w in want.items():
        np.testing.assert_allclose(got.get(name), w, atol=1e-5, rtol=0)
    runner.command(s, "spec", spec=AnalysisSpec({"heads": HeadSettings()}))
    assert runner.run(s).get("heads").convention == "gptviz"


# ---------------------------------------------------------------------- resid_mid
def _readout(ln_f, W_U, x, k):
    p = torch.softmax(ln_f(x) @ W_U.T, dim=-1)
    return torch.topk(p, k)


def test_lens_mid_points_match_transformers(pair):
    from gptviz.analysis.lens import layer_names, logit_lens

    hf, bundle = pair
    ids = torch.tensor(IDS)
    pos = 9
    blocks = hf.transformer.h
    handles, mids = hooked_inputs([b.ln_2 for b in blocks])  # GPT-2: ln_2 reads resid_mid
    outs: list[torch.Tensor] = []
    handles += [b.register_forward_hook(lambda _m, _i, o: outs.append(
        (o[0] if isinstance(o, tuple) else o).detach()))
                for b in blocks]
    try:
        with torch.no_grad():
            hf(ids[None, :pos + 1])
    finally:
        for h in handles:
            h.remove()
    res = logit_lens(bundle.model, ids, position=pos, k=4, mid=True)
    assert res.layers == layer_names(2, mid=True) == ["embed", "L0 mid", "L0 out", "L1 mid",
                                                      "L1 out"]
    W_U = hf.lm_head.weight.detach()
    with torch.no_grad():
        for layer in range(2):
            for row, x in ((1 + 2 * layer, mids[layer][0][0, pos]),
                           (2 + 2 * layer, outs[layer][0, pos])):
                v, i = _readout(hf.transformer.ln_f, W_U, x, 4)
                assert res.top_ids[row].tolist() == i.tolist(), res.layers[row]
                np.testing.assert_allclose(res.top_probs[row], v.numpy(), atol=1e-5)
        want_last = torch.softmax(hf(ids[None, :pos + 1]).logits[0, -1], -1)
    np.testing.assert_allclose(res.top_probs[-1], torch.topk(want_last, 4).values.numpy(),
                               atol=1e-5)
    plain = logit_lens(bundle.model, ids, position=pos, k=4)
    assert plain.layers == ["embed", "L0 out", "L1 out"]
    np.testing.assert_array_equal(plain.top_ids, res.top_ids[[0, 2, 4]])


@pytest.mark.parametrize("kind", ["post", "parallel"])
def test_lens_mid_points_of_post_ln_and_parallel_blocks(tiny_bundle_factory, kind):
    from gptviz.analysis.lens import logit_lens

    kw = (dict(ln_placement="post", final_ln=False) if kind == "post"
          else dict(parallel_attn=True))
    m = tiny_bundle_factory(**kw).model
    ids = torch.tensor(IDS)
    handles, got = hooked_inputs([b.mlp for b in m.h] + list(m.h))
    attn: list[torch.Tensor] = []
    handles += [b.attn.register_forward_hook(lambda _m, _i, o: attn.append(o[0].detach()))
                for b in m.h]
    try:
        with torch.no_grad():
            m(ids[None])
    finally:
        for h in handles:
            h.remove()
    res = logit_lens(m, ids, position=6, k=3, mid=True)
    L = m.config.n_layer
    with torch.no_grad():
        for layer in range(L):
            if kind == "post":  # GPT-1: the feed-forward reads LN_1(x + a): that is the mid
                mid = got[layer][0][0, 6]
            else:  # parallel: the block's input plus the attention's output
                mid = got[L + layer][0][0, 6] + attn[layer][0, 6]
            v, i = _readout(m.ln_f, m.wte.weight, mid, 3)
            assert res.top_ids[1 + 2 * layer].tolist() == i.tolist()
            np.testing.assert_allclose(res.top_probs[1 + 2 * layer], v.numpy(), atol=1e-5)


def test_live_lens_mid_points(tiny_bundle):
    from gptviz.analysis.live_lens import LensSettings
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat")
    s.step()
    m = s.model
    q = 4
    runner = AnalysisRunner(AnalysisSpec({"lens": LensSettings(k=3, mid=True)}))
    lv = runner.run(s, query=q).get("lens")
    handles, got = hooked_inputs([b.ln_2 for b in m.h])
    try:
        with torch.no_grad():
            m(torch.tensor([s.window_tokens[:q + 1]]))
    finally:
        for h in handles:
            h.remove()
    assert lv.layers[1] == "L0 mid" and len(lv.layers) == 2 * m.config.n_layer + 1
    with torch.no_grad():
        for layer in range(m.config.n_layer):
            v, i = _readout(m.ln_f, m.wte.weight, got[layer][0][0, q], 3)
            assert lv.top_ids[1 + 2 * layer].tolist() == i.tolist()


# ---------------------------------------------------------------------- causal mean-ablation
def _hf_mean_ablated_kl(hf, ids, pos, layer, head, means_over):
    """KL(clean || mean-ablated) in bits of the prediction after ``pos``, by hooks: the head's
    slice of c_proj's input replaced by its clean mean over ``means_over`` token ids."""
    c_proj = hf.transformer.h[layer].attn.c_proj
    hd = hf.config.n_embd // hf.config.n_head
    sl = slice(head * hd, (head + 1) * hd)
    handles, got = hooked_inputs([c_proj])
    with torch.no_grad():
        hf(torch.tensor([means_over]))
    handles[0].remove()
    mean = got[0][0][0, :, sl].mean(dim=0)  # over every position of means_over

    def replace(_m, inp):
        z = inp[0].clone()
        z[..., sl] = mean
        return (z,)

    x = torch.tensor([ids[:pos + 1]])
    with torch.no_grad():
        before = hf(x).logits[0, -1].double().log_softmax(-1)
        h = c_proj.register_forward_pre_hook(replace)
        try:
            after = hf(x).logits[0, -1].double().log_softmax(-1)
        finally:
            h.remove()
    return float((before.exp() * (before - after)).sum() / np.log(2))


def test_mean_ablation_is_causal(pair):
    from gptviz.analysis.ablation import ablation_effect

    hf, bundle = pair
    pos = 6
    later = IDS[:pos + 1] + [1, 2, 4, 8, 16]  # every token after pos changed
    a = ablation_effect(bundle.model, IDS, [(1, 2)], "mean", position=pos, chosen=0)
    b = ablation_effect(bundle.model, later, [(1, 2)], "mean", position=pos, chosen=0)
    assert a["kl_bits"] == b["kl_bits"] and a["top_after"] == b["top_after"]
    want = _hf_mean_ablated_kl(hf, IDS, pos, 1, 2, IDS[:pos + 1])  # means over 0..pos
    assert a["kl_bits"] == pytest.approx(want, abs=1e-5) and want > 1e-4
    # the means of the whole text would give another number
    assert abs(_hf_mean_ablated_kl(hf, IDS, pos, 1, 2, IDS) - want) > 1e-5


def test_live_mean_ablation_is_causal_and_takes_a_reference(tiny_bundle):
    from gptviz.analysis.ablation import ablation_effect, head_output_means
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    effects = []
    for forced in (5, 77):  # the same text but for the token drawn at the step
        s = Session(tiny_bundle, "the cat sat on the mat. the")
        s.step(force=forced)
        runner = AnalysisRunner(AnalysisSpec({"effect": None}))
        runner.command(s, "set_mode", mode="mean")
        runner.command(s, "toggle_head", layer=1, head=0)
        res = runner.run(s)
        effects.append(res.get("effect"))
        assert res.means_tokens == len(s.window_tokens) - 1  # positions 0 .. the step's
    assert effects[0]["kl_bits"] == effects[1]["kl_bits"] > 0
    assert effects[0]["top_after"] == effects[1]["top_after"]
    # stepping on: the effect uses the means up to the new position, not the toggle's
    s.step()
    s.step()
    eff = runner.run(s).get("effect")
    ids = s.window_tokens
    want = ablation_effect(s.model, ids[:-1], [(1, 0)], "mean", k=5)
    assert eff["kl_bits"] == pytest.approx(want["kl_bits"], abs=1e-6)
    # a reference text: the session's fill is the head's mean over it (hooks on our modules)
    runner.command(s, "set_reference", text="a completely different text")
    ref = s.tokenizer.encode("a completely different text")
    handles, got = hooked_inputs([s.model.h[1].attn.c_proj])
    try:
        with torch.no_grad():
            s.model(torch.tensor([ref]))
    finally:
        handles[0].remove()
    hd = s.config.head_dim
    torch.testing.assert_close(s.ablation.fill[1, 0], got[0][0][0, :, :hd].mean(0))
    eff = runner.run(s).get("effect")
    want = ablation_effect(s.model, ids[:-1], [(1, 0)], "mean", k=5,
                           means=head_output_means(s.model, ref))
    assert eff["kl_bits"] == pytest.approx(want["kl_bits"], abs=1e-6)
    with pytest.raises(ValueError, match="reference"):
        runner.command(s, "set_reference", text=7)
    runner.command(s, "set_reference", text="")
    assert runner.ablation.reference_text is None
