"""Tests of the attention analyses: head scores, logit lens, rollout, ablation, comparison.

Head scores are checked on hand-built attention and on a hand-built 2-layer model whose
weights make one head of each kind (previous-token, duplicate-token, induction, sink).
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from gptviz import GPT, Ablation, GPTConfig
from gptviz.analysis import (
    HeadScores,
    ablated_heads,
    ablation_effect,
    attention_array,
    attention_difference,
    attention_entropy,
    attention_rollout,
    clone_cache,
    common_prefix_len,
    duplicate_token_scores,
    first_token_scores,
    head_output_means,
    head_scores,
    induction_scores,
    induction_target_mask,
    induction_text_scores,
    logit_lens,
    make_ablation,
    mean_attention_entropy,
    previous_token_scores,
    repeated_random_tokens,
    rerun_from_layer,
    rollout_row,
)
from gptviz.analysis.ablation import PrefixRunner
from gptviz.bench.analysis import bench_analysis, random_causal_attention

# ============================================================================ helpers

def causal_rows(t: int, pick) -> np.ndarray:
    """``[T, T]`` attention where row i is uniform over the keys ``pick(i)`` returns."""
    att = np.zeros((t, t))
    for i in range(t):
        keys = list(pick(i))
        att[i, keys] = 1.0 / len(keys)
    return att


def uniform_causal(t: int) -> np.ndarray:
    return causal_rows(t, lambda i: range(i + 1))


def reference_scores(att: np.ndarray, ids: np.ndarray) -> dict[str, float]:
    """Loop implementation of the documented definitions, for one head ``[T, T]``."""
    t = len(ids)
    prev = np.mean([att[i, i - 1] for i in range(1, t)])
    sink = np.mean([att[i, 0] for i in range(1, t)])
    ind, dup = [], []
    for i in range(t):
        targets = [j + 1 for j in range(i) if ids[j] == ids[i] and j + 1 <= i - 2]
        if targets:
            ind.append(sum(att[i, k] for k in targets))
        copies = [k for k in range(i) if ids[k] == ids[i]]
        if copies:
            dup.append(sum(att[i, k] for k in copies))
    ent = np.mean([-sum(p * math.log2(p) for p in att[i, : i + 1] if p > 0)
                   for i in range(1, t)])
    return {"prev_token": prev, "first_token": sink,
            "induction": np.mean(ind) if ind else np.nan,
            "duplicate_token": np.mean(dup) if dup else np.nan, "entropy": ent}


# Hand-built 2-layer model ------------------------------------------------------
# Residual layout (each feature is a +1/-1 pair so every residual has mean 0 and the same
# norm: LayerNorm then only rescales by a known constant):
#   [0, V)+[V, 2V)          token of this position
#   [2V, 2V+P)+[.., 2V+2P)  position
#   [2V+2P, ..+V)+[.., +2V) previous token (written by the previous-token head)
HB_V, HB_P = 48, 32


def hand_built_model() -> GPT:
    """L0H0 previous-token, L0H1 duplicate-token, L1H0 induction, L1H1 attention sink."""
    V, P = HB_V, HB_P
    C = 4 * V + 2 * P
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=C, block_size=P, vocab_size=V, n_inner=4,
                    name="hand-built")
    model = GPT(cfg).eval()
    hd = cfg.head_dim
    TOK, POS, PREV = 0, 2 * V, 2 * V + 2 * P
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for m in model.modules():  # LayerNorms back to the identity affine map
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.fill_(1.0)
        for t in range(V):
            model.wte.weight[t, TOK + t] = 1.0
            model.wte.weight[t, TOK + V + t] = -1.0
        for p in range(P):
            model.wpe.weight[p, POS + p] = 1.0
            model.wpe.weight[p, POS + P + p] = -1.0
        s0 = math.sqrt(C / 4)  # LayerNorm scale at layer 0 (4 entries of +-1)

        def q(layer, head, dim, src, w):  # query dim of a head reads residual dim src
            model.h[layer].attn.c_attn.weight[head * hd + dim, src] = w

        def k(layer, head, dim, src, w):
            model.h[layer].attn.c_attn.weight[C + head * hd + dim, src] = w

        def v(layer, head, dim, src, w):
            model.h[layer].attn.c_attn.weight[2 * C + head * hd + dim, src] = w

        # L0H0 previous token: q = onehot(i), k = onehot(j + 1); value = token, written to PREV.
        for p in range(P):
            q(0, 0, p, POS + p, 4.0)
            if p + 1 < P:
                k(0, 0, p + 1, POS + p, 1.0)
        for t in range(V):
            v(0, 0, t, TOK + t, 1.0)
            model.h[0].attn.c_proj.weight[PREV + t, t] = 1.0 / s0
            model.h[0].attn.c_proj.weight[PREV + V + t, t] = -1.0 / s0
        # L0H1 duplicate token: same token +, same position strongly - (not itself).
        for t in range(V):
            q(0, 1, t, TOK + t, 4.0)
            k(0, 1, t, TOK + t, 1.0)
        for p in range(P):
            q(0, 1, V + p, POS + p, -8.0)
            k(0, 1, V + p, POS + p, 1.0)
        # L1H0 induction: this token vs the key's previous token; fallback: itself.
        for t in range(V):
            q(1, 0, t, TOK + t, 6.0)
            k(1, 0, t, PREV + t, 1.0)
        for p in range(P):
            q(1, 0, V + p, POS + p, 3.0)
            k(1, 0, V + p, POS + p, 1.0)
        # L1H1 sink: a constant query (bias) against "is position 0".
        model.h[1].attn.c_attn.bias[hd] = 40.0
        k(1, 1, 0, POS + 0, 1.0)
    return model


@pytest.fixture(scope="module")
def hb_model() -> GPT:
    return hand_built_model()


def tiny_model(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    cfg = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=97)
    cfg.update(kw)
    model = GPT(GPTConfig(**cfg)).eval()
    with torch.no_grad():  # larger weights than the init so heads matter for the logits
        for name, p in model.named_parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
            elif not name.endswith("weight"):
                p.normal_(0, 0.1)
    return model


# ============================================================================ head scores

def test_scores_on_hand_built_attention():
    t = 24
    ids = np.array([5, 1, 2, 3, 4, 6, 7, 1, 2, 3, 4, 8, 9, 1, 2, 3, 10, 11, 12, 4, 13, 14, 15, 16])
    mask = induction_target_mask(ids)
    prev = causal_rows(t, lambda i: [max(i - 1, 0)])
    sink = causal_rows(t, lambda i: [0])
    ind = causal_rows(t, lambda i: np.nonzero(mask[i])[0] if mask[i].any() else [i])
    dup = causal_rows(t, lambda i: [k for k in range(i) if ids[k] == ids[i]] or [i])
    uni = uniform_causal(t)
    att = np.stack([prev, sink, ind, dup, uni])[None]  # [1, 5, T, T]
    s = head_scores(att, ids)
    assert s.prev_token.shape == (1, 5)
    np.testing.assert_allclose(s.prev_token[0, 0], 1.0)
    np.testing.assert_allclose(s.first_token[0, 1], 1.0)
    np.testing.assert_allclose(s.induction[0, 2], 1.0)
    np.testing.assert_allclose(s.duplicate_token[0, 3], 1.0)
    # heads that do something else score (near) 0 on each score
    assert s.prev_token[0, [1, 2, 3]].max() < 0.1
    assert s.first_token[0, [0, 2, 3]].max() < 0.1
    assert s.induction[0, [0, 1, 3]].max() < 0.1
    assert s.duplicate_token[0, [0, 1, 2]].max() < 0.1
    # one-hot rows have no entropy; uniform rows log2(i + 1)
    np.testing.assert_allclose(s.entropy[0, :2], 0.0, atol=1e-6)
    np.testing.assert_allclose(s.entropy[0, 4], np.mean(np.log2(np.arange(2, t + 1))), rtol=1e-6)
    assert s.induction_queries == int(mask.any(1).sum()) > 0


def test_scores_match_loop_reference():
    rng = np.random.default_rng(3)
    t = 40
    ids = rng.integers(0, 6, size=t)  # many repeats
    att = random_causal_attention(2, 3, t, seed=1).astype(np.float64)
    s = head_scores(att, ids)
    for layer in range(2):
        for head in range(3):
            ref = reference_scores(att[layer, head], ids)
            for name, value in ref.items():
                np.testing.assert_allclose(s.get(name)[layer, head], value, rtol=1e-9,
                                           err_msg=name)
    # float32 input gives the same to float32 precision
    s32 = head_scores(att.astype(np.float32), ids)
    for name in ("prev_token", "first_token", "induction", "duplicate_token", "entropy"):
        np.testing.assert_allclose(s32.get(name), s.get(name), rtol=1e-5, atol=1e-6)


def test_scores_sparse_dense_and_strided_inputs_agree():
    rng = np.random.default_rng(7)
    t = 64
    big = np.zeros((3, 2, 80, 80))
    big[:, :, :t, :t] = random_causal_attention(3, 2, t, seed=5)
    view = big[:, :, :t, :t]  # strided: what a pre-allocated engine buffer gives
    for ids in (rng.integers(0, 3, t), rng.integers(0, 200, t)):  # dense / sparse masks
        s = head_scores(view, ids)
        contiguous = head_scores(np.ascontiguousarray(view), ids)
        for layer in range(3):
            ref = reference_scores(view[layer, 1], ids)
            for name, value in ref.items():
                np.testing.assert_allclose(s.get(name)[layer, 1], value, rtol=1e-9)
                np.testing.assert_allclose(contiguous.get(name)[layer, 1], value, rtol=1e-9)
        swapped = head_scores(view.transpose(1, 0, 2, 3), ids)  # leading axes do not merge
        for name in ref:
            np.testing.assert_allclose(swapped.get(name), s.get(name).T, rtol=1e-9)


def test_induction_target_definition():
    # "A B A": the target of the second A would be B = its previous token: excluded.
    m = induction_target_mask([1, 2, 1])
    assert not m.any()
    # "A B C A": the second A's target is B (position 1)
    m = induction_target_mask([1, 2, 3, 1])
    assert m[3].tolist() == [False, True, False, False] and m[:3].sum() == 0
    # "A A": nothing earlier to point at
    assert not induction_target_mask([7, 7]).any()


def test_undefined_scores_are_nan_and_json_null():
    ids = np.arange(10)  # no repeats
    att = uniform_causal(10)[None, None]
    s = head_scores(att, ids)
    assert np.isnan(s.induction).all() and np.isnan(s.duplicate_token).all()
    assert s.induction_queries == 0 and s.duplicate_queries == 0
    d = json.loads(json.dumps(s.to_dict(), allow_nan=False))
    assert d["scores"]["induction"] == [[None]]
    assert d["scores"]["prev_token"][0][0] == pytest.approx(np.mean(1 / np.arange(2, 11)))
    # a single token: nothing is defined
    one = head_scores(np.ones((1, 1, 1, 1)), [3])
    assert all(np.isnan(one.get(n)).all() for n in
               ("prev_token", "first_token", "induction", "duplicate_token", "entropy"))


def test_single_score_functions_and_shapes():
    att = random_causal_attention(3, 2, 16, seed=0)
    ids = np.arange(16) % 5
    assert previous_token_scores(att).shape == (3, 2)
    assert first_token_scores(att[0, 0]).shape == ()
    assert induction_text_scores(att, ids).shape == (3, 2)
    assert duplicate_token_scores(att, ids).shape == (3, 2)
    ent = attention_entropy(att)
    assert ent.shape == (3, 2, 16) and (ent[..., 0] == 0).all()
    np.testing.assert_allclose(attention_entropy(att, causal=False), ent, rtol=1e-5)
    np.testing.assert_allclose(mean_attention_entropy(att), ent[..., 1:].mean(-1), rtol=1e-6)
    with pytest.raises(ValueError):
        head_scores(att, ids[:5])
    with pytest.raises(ValueError):
        previous_token_scores(np.zeros((3, 4)))


def test_ranking_sorts_nan_last():
    grid = np.array([[0.2, np.nan], [0.9, 0.1]])
    s = HeadScores(grid, grid, grid, grid, grid)
    assert [(lay, h) for lay, h, _ in s.ranking("prev_token")] == [(1, 0), (0, 0), (1, 1), (0, 1)]
    with pytest.raises(ValueError):
        s.get("nope")


# ---------------------------------------------------------------------------- on a model

def test_hand_built_model_heads_do_their_job(hb_model):
    n = 15
    ids = repeated_random_tokens(n, batch=1, vocab=HB_V, seed=5)[0]  # [2n]
    att = attention_array(hb_model, ids)  # [2, 2, 2n, 2n]
    s = head_scores(att, ids)
    P, D, I, S = (0, 0), (0, 1), (1, 0), (1, 1)  # noqa: E741 (I: the induction head)
    assert s.prev_token[P] > 0.95
    assert max(s.prev_token[I], s.prev_token[S]) < 0.05
    assert s.duplicate_token[D] > 0.95
    assert max(s.duplicate_token[P], s.duplicate_token[I]) < 0.05
    assert s.induction[I] > 0.9
    assert max(s.induction[P], s.induction[D], s.induction[S]) < 0.05
    assert s.first_token[S] > 0.95
    assert max(s.first_token[P], s.first_token[I]) < 0.05
    assert max(s.entropy[P], s.entropy[I], s.entropy[S]) < 0.05  # sharp heads
    assert s.entropy[D] > 1.0  # uniform where no earlier copy exists


def test_probe_induction_scores(hb_model):
    scores = induction_scores(hb_model, n=15, seed=0, batch=3)
    assert scores.shape == (2, 2)
    assert scores[1, 0] > 0.9
    assert max(scores[0, 0], scores[0, 1], scores[1, 1]) < 0.05
    # reproducible, n clipped to block_size // 2, training flag restored
    hb_model.train()
    again = induction_scores(hb_model, n=15, seed=0, batch=3)
    assert hb_model.training
    hb_model.eval()
    np.testing.assert_array_equal(scores, again)
    assert induction_scores(hb_model, n=500, batch=1)[1, 0] > 0.9
    with pytest.raises(ValueError):
        induction_scores(hb_model, n=1)


def test_repeated_random_tokens():
    x = repeated_random_tokens(10, batch=3, vocab=20, seed=1)
    assert x.shape == (3, 20) and x.dtype == np.int64
    np.testing.assert_array_equal(x[:, :10], x[:, 10:])
    assert all(len(set(row[:10])) == 10 for row in x)  # distinct within a copy
    np.testing.assert_array_equal(x, repeated_random_tokens(10, batch=3, vocab=20, seed=1))
    assert x.max() < 20


# ============================================================================ logit lens

@pytest.mark.parametrize("kind", ["pre", "post"])
def test_logit_lens_last_layer_is_the_output(kind):
    kw = {} if kind == "pre" else {"ln_placement": "post", "final_ln": False}
    model = tiny_model(1, n_layer=3, **kw)
    ids = torch.randint(0, 97, (20,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        probs = torch.softmax(model(ids[None]).logits[0], -1)  # [T, V]
    for position in (7, -1):
        res = logit_lens(model, ids, position=position, k=5)
        pos = position % 20
        assert res.position == pos and res.token == int(ids[pos])
        assert res.top_ids.shape == (4, 5) and res.layers[0] == "embed"
        top_p, top_i = torch.topk(probs[pos], 5)
        np.testing.assert_array_equal(res.top_ids[-1], top_i.numpy())
        np.testing.assert_allclose(res.top_probs[-1], top_p.numpy(), atol=1e-5)
        assert np.all(np.diff(res.top_probs, axis=1) <= 0)
    res = logit_lens(model, ids, position=7)
    assert res.target == int(ids[8])
    assert res.target_probs[-1] == pytest.approx(float(probs[7, ids[8]]), abs=1e-5)
    assert res.target_ranks[-1] == int((probs[7] > probs[7, ids[8]]).sum())
    assert logit_lens(model, ids).target is None
    d = json.loads(json.dumps(res.to_dict()))
    assert len(d["layers"]) == 4 and "target_prob" in d["layers"][0]


def test_logit_lens_intermediate_layer_by_hand():
    model = tiny_model(2)
    ids = torch.arange(10)
    res = logit_lens(model, ids, position=4, k=3)
    with torch.no_grad():
        out = model(ids[None], return_resid=True)
        p = torch.softmax(model.lm_head(model.ln_f(out.residuals[1][0, 4])), -1)
    np.testing.assert_allclose(res.top_probs[1], torch.topk(p, 3).values.numpy(), atol=1e-6)


def test_logit_lens_with_ablation_matches_ablated_output():
    model = tiny_model(3)
    ids = torch.arange(12)
    abl = make_ablation(model.config, [(1, 2)])
    res = logit_lens(model, ids, k=4, ablation=abl)
    with torch.no_grad():
        p = torch.softmax(model(ids[None], ablation=abl).logits[0, -1], -1)
    np.testing.assert_allclose(res.top_probs[-1], torch.topk(p, 4).values.numpy(), atol=1e-5)
    with pytest.raises(ValueError):
        logit_lens(model, ids, position=12)


# ============================================================================ rollout

def test_rollout_identity_and_properties():
    t = 12
    eye = np.broadcast_to(np.eye(t), (3, 2, t, t))
    np.testing.assert_allclose(attention_rollout(eye), np.eye(t))
    np.testing.assert_allclose(attention_rollout(eye, residual=False), np.eye(t))
    att = random_causal_attention(4, 3, t, seed=2)
    for residual in (True, False):
        r = attention_rollout(att, residual=residual)
        np.testing.assert_allclose(r.sum(-1), 1.0, rtol=1e-5)
        assert np.all(np.triu(r, 1) == 0)  # causal
        np.testing.assert_allclose(rollout_row(att, 5, residual=residual), r[5], rtol=1e-5)
        np.testing.assert_allclose(rollout_row(att, -1, residual=residual), r[-1], rtol=1e-5)


def test_rollout_by_hand():
    att = random_causal_attention(2, 2, 5, seed=4).astype(np.float64)
    att /= att.sum(-1, keepdims=True)  # rows sum to 1 in float64 too
    a = [0.5 * att[layer].mean(0) + 0.5 * np.eye(5) for layer in range(2)]
    np.testing.assert_allclose(attention_rollout(att), a[1] @ a[0], rtol=1e-12)
    np.testing.assert_allclose(attention_rollout(att, n_layers=1), a[0], rtol=1e-12)
    # head mask: layer 0 uses only head 1; layer 1 has no head left -> identity
    mask = np.array([[0, 1], [0, 0]])
    expected = 0.5 * att[0, 1] + 0.5 * np.eye(5)
    np.testing.assert_allclose(attention_rollout(att, head_mask=mask), expected, rtol=1e-12)
    # previous-token attention everywhere, no residual: everything flows to i - L (clipped)
    prev = np.broadcast_to(causal_rows(5, lambda i: [max(i - 1, 0)]), (2, 1, 5, 5))
    r = attention_rollout(prev, residual=False)
    assert [int(np.argmax(row)) for row in r] == [0, 0, 0, 1, 2]


# ============================================================================ ablation

def test_ablating_nothing_is_bit_identical():
    model = tiny_model(4)
    cfg = model.config
    ids = torch.arange(16)[None]
    assert make_ablation(cfg, []) is None
    assert make_ablation(cfg, [], mode="mean") is None
    with torch.no_grad():
        ref = model(ids, return_attn=True)
        ones = model(ids, ablation=Ablation(
            keep=torch.ones(cfg.n_layer, cfg.n_head)), return_attn=True)
        ones_fill = model(ids, ablation=Ablation(
            keep=torch.ones(cfg.n_layer, cfg.n_head),
            fill=torch.randn(cfg.n_layer, cfg.n_head, cfg.head_dim)))
    assert torch.equal(ref.logits, ones.logits)
    assert torch.equal(ref.logits, ones_fill.logits)
    assert all(torch.equal(a, b) for a, b in zip(ref.attentions, ones.attentions))


def _one_layer_by_hand(model: GPT, ids: torch.Tensor, head: int, fill: torch.Tensor | None
                       ) -> torch.Tensor:
    """Logits of a 1-layer pre-LN model with ``head``'s output replaced, computed by hand."""
    block = model.h[0]
    with torch.no_grad():
        clean = model(ids, return_head_out=True, return_resid=True)
        z = clean.head_outputs[0].clone()  # [1, nh, T, hd]
        z[:, head] = 0.0 if fill is None else fill
        y = z.transpose(1, 2).reshape(1, ids.shape[1], -1)  # [1, T, C]
        x = clean.residuals[0] + block.attn.c_proj(y)
        x = x + block.mlp(block.ln_2(x))
        return model.lm_head(model.ln_f(x))


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablation_equals_removing_contribution_by_hand(mode):
    model = tiny_model(5, n_layer=1)
    ids = torch.randint(0, 97, (1, 18), generator=torch.Generator().manual_seed(1))
    head = 2
    fill = None
    if mode == "mean":
        with torch.no_grad():
            fill = model(ids, return_head_out=True).head_outputs[0][0, head].mean(0)  # [hd]
    expected = _one_layer_by_hand(model, ids, head, fill)
    abl = make_ablation(model.config, [(0, head)], mode=mode, model=model, ids=ids[0])
    with torch.no_grad():
        got = model(ids, ablation=abl).logits
        clean = model(ids).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    assert (got - clean).abs().max() > 1e-3  # the head mattered
    means = head_output_means(model, ids[0])
    assert means.shape == (1, 4, 8)
    torch.testing.assert_close(means[0, head], fill if fill is not None else means[0, head])


def test_ablation_validation_and_helpers():
    model = tiny_model(6)
    cfg = model.config
    with pytest.raises(ValueError):
        make_ablation(cfg, [(2, 0)])
    with pytest.raises(ValueError):
        make_ablation(cfg, [(0, 4)])
    with pytest.raises(ValueError):
        make_ablation(cfg, [(0, 0)], mode="half")
    with pytest.raises(ValueError):
        make_ablation(cfg, [(0, 0)], mode="mean")  # no model/ids
    abl = make_ablation(cfg, [(1, 3), (0, 1), (1, 3)])
    assert ablated_heads(abl) == [(0, 1), (1, 3)]
    assert abl.keep.sum() == cfg.n_layer * cfg.n_head - 2 and abl.fill is None


def test_rerun_from_layer_matches_full_ablated_forward_and_continues():
    model = tiny_model(7, n_layer=3)
    ids = torch.randint(0, 97, (1, 21), generator=torch.Generator().manual_seed(2))
    prompt, nxt = ids[:, :20], ids[:, 20:]
    abl = make_ablation(model.config, [(1, 2)], mode="mean", model=model, ids=prompt[0])
    with torch.no_grad():
        cache = model.new_cache()
        clean = model(prompt, cache, return_resid=True, return_attn=True)
        c2 = clone_cache(cache, layers=1)
        full_copy = clone_cache(cache)
        assert torch.equal(full_copy.k[:, :, :, :20], cache.k[:, :, :, :20])
        assert full_copy.length == 20 and full_copy.k.data_ptr() != cache.k.data_ptr()
        fast = rerun_from_layer(model, clean.residuals[1], 1, ablation=abl, cache=c2,
                                return_attn=True, last_only=False)
        full = model(prompt, ablation=abl, return_attn=True)
        torch.testing.assert_close(fast.logits, full.logits, atol=1e-5, rtol=0)
        for a, b in zip(fast.attentions, full.attentions[1:]):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
        # layers below the ablated one are untouched by it
        assert torch.equal(full.attentions[0], clean.attentions[0])
        # stepping on from the re-run cache continues the ablated model
        step = model(nxt, c2, ablation=abl)
        full2 = model(ids, ablation=abl)
        torch.testing.assert_close(step.logits[0, -1], full2.logits[0, -1], atol=1e-5, rtol=0)
        assert cache.length == 20  # the clean cache was not touched
        with pytest.raises(ValueError):
            rerun_from_layer(model, clean.residuals[2], 2, ablation=abl)


@pytest.mark.parametrize("ablate", [False, True])
def test_prefix_runner_runs_only_the_new_tokens_and_matches_a_full_forward(ablate):
    model = tiny_model(9, n_layer=3)
    abl = make_ablation(model.config, [(0, 1), (2, 0)]) if ablate else None
    ids = torch.randint(0, 97, (30,), generator=torch.Generator().manual_seed(4)).tolist()
    runner = PrefixRunner(model, abl)

    def full(toks):
        with torch.no_grad():
            return model(torch.tensor([toks]), ablation=abl).logits[0, -1]

    def check(toks, ran):
        got = runner.logits_after(toks)
        torch.testing.assert_close(got, full(toks), atol=1e-5, rtol=0)
        assert runner.last_ran == ran, (len(toks), runner.last_ran)

    check(ids[:10], 10)                  # first call: a prefill
    for n in range(11, 16):              # steps: one token each
        check(ids[:n], 1)
    check(ids[:15], 0)                   # the same text again: nothing runs
    check(ids[:12], 1)                   # undo: the cache is cut, the last token re-runs
    check(ids[:12] + ids[20:23], 3)      # a branch: only the tokens after the fork
    check(ids[5:25], 20)                 # the window slid: positions moved, all of it runs
    if ablate:                           # and the ablation really is applied
        with torch.no_grad():
            clean = model(torch.tensor([ids[5:25]])).logits[0, -1]
        assert not torch.allclose(runner.logits_after(ids[5:25]), clean)
    with pytest.raises(ValueError):
        runner.logits_after([])
    with pytest.raises(ValueError):
        runner.logits_after([1] * (model.config.block_size + 1))


def test_prefix_runner_trusts_nothing_past_the_prefix_after_a_failed_run(monkeypatch):
    model = tiny_model(10, n_layer=2)
    ids = torch.randint(0, 97, (20,), generator=torch.Generator().manual_seed(5)).tolist()
    runner = PrefixRunner(model)
    runner.logits_after(ids[:10])
    block = model.h[1]
    calls = {"n": 0}
    real = type(block).forward

    def failing(self, *a, **k):  # layer 1 fails once, after layer 0 wrote its keys/values
        calls["n"] += 1
        raise MemoryError("simulated")

    monkeypatch.setattr(type(block), "forward", failing)
    with pytest.raises(MemoryError):
        # a branch at 4 (another token there): rows 4.. get overwritten
        runner.logits_after(ids[:4] + [(ids[4] + 1) % 97] + ids[12:17])
    monkeypatch.setattr(type(block), "forward", real)
    assert calls["n"] == 1
    with torch.no_grad():
        want = model(torch.tensor([ids[:11]])).logits[0, -1]
    torch.testing.assert_close(runner.logits_after(ids[:11]), want, atol=1e-5, rtol=0)
    assert runner.last_ran == 7  # from the fork at 4, not the 10 it held before


def test_ablation_effect_report():
    model = tiny_model(8)
    ids = torch.randint(0, 97, (14,), generator=torch.Generator().manual_seed(3))
    r = ablation_effect(model, ids, [(1, 0), (1, 1)], mode="zero", position=10, k=5)
    json.dumps(r, allow_nan=False)
    with torch.no_grad():
        before = model(ids[None, :11]).logits[0, -1].double().log_softmax(-1)
        abl = make_ablation(model.config, [(1, 0), (1, 1)])
        after = model(ids[None, :11], ablation=abl).logits[0, -1].double().log_softmax(-1)
    top = int(before.argmax())
    assert r["top_token"] == top and r["position"] == 10
    assert r["top_logprob_change"] == pytest.approx(float(after[top] - before[top]), abs=1e-5)
    c = int(ids[11])
    assert r["chosen_token"] == c
    assert r["chosen_logprob_change"] == pytest.approx(float(after[c] - before[c]), abs=1e-5)
    assert [t["id"] for t in r["top_before"]] == torch.topk(before, 5).indices.tolist()
    assert r["kl_bits"] > 0 and 0 < r["total_variation"] <= 1
    none = ablation_effect(model, ids, [], chosen=3)
    assert none["kl_bits"] == 0 and none["chosen_logprob_change"] == 0
    assert none["chosen_token"] == 3


# ============================================================================ comparison

def test_attention_difference():
    a = random_causal_attention(1, 1, 8, seed=0)[0, 0]
    b = random_causal_attention(1, 1, 6, seed=1)[0, 0]
    ids_a = [1, 2, 3, 4, 9, 9, 9, 9]
    ids_b = [1, 2, 3, 4, 5, 6]
    assert common_prefix_len(ids_a, ids_b) == 4
    diff, n = attention_difference(a, ids_a, b, ids_b)
    assert n == 4 and diff.shape == (4, 4)
    np.testing.assert_allclose(diff, a[:4, :4] - b[:4, :4])
    diff, n = attention_difference(a, ids_a, b, ids_b, align="position")
    assert n == 6 and diff.shape == (6, 6)
    diff, n = attention_difference(a, [0] * 8, b, ids_b)
    assert n == 0 and diff.shape == (0, 0)
    # [L, H, T, T] pairs work too
    la = random_causal_attention(2, 2, 5, seed=3)
    d, n = attention_difference(la, [1, 2, 3, 4, 5], la[..., :3, :3], [1, 2, 3])
    assert n == 3 and d.shape == (2, 2, 3, 3) and not d.any()
    with pytest.raises(ValueError):
        attention_difference(a, ids_a[:3], b, ids_b)


def test_same_model_branches_agree_on_their_common_prefix():
    model = tiny_model(9)
    ids_a, ids_b = [5, 6, 7, 8, 9, 10], [5, 6, 7, 8, 40, 41, 42]
    att_a, att_b = attention_array(model, ids_a), attention_array(model, ids_b)
    diff, n = attention_difference(att_a, ids_a, att_b, ids_b)
    assert n == 4 and np.abs(diff).max() < 1e-6  # causal: the prefix rows cannot differ
    abl = make_ablation(model.config, [(0, 0), (0, 1)])
    diff, _ = attention_difference(att_a, ids_a, attention_array(model, ids_b, abl), ids_b)
    assert np.abs(diff[1]).max() > 1e-4 and np.abs(diff[0]).max() < 1e-6


# ============================================================================ bench

def test_bench_analysis_small():
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=40, vocab_size=50)
    r = bench_analysis(repeats=1, context=32, model_repeats=1, config=cfg)
    for key in ("head_scores_ms", "rollout_ms", "rollout_row_ms", "prefill_ms", "step_ms",
                "ablated_full_rerun_ms", "clone_cache_ms", "ablated_step_ms"):
        assert r[key] > 0, key
    assert set(r["ablated_rerun_from_layer_ms"]) == {0, 1}
    assert set(r["ratio_rerun_from_layer_to_prefill"]) == {0, 1}
    assert r["ratio_rerun_from_layer_to_prefill"][0] == pytest.approx(
        r["ablated_rerun_from_layer_ms"][0] / r["prefill_ms"])
    json.dumps(r)
