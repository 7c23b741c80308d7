"""Feed-forward neurons: activations at a position and over the text, and what each value
vector promotes, checked against hooks on transformers' GPT-2 and a hand-written gated layer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _hf_gpt2 import hf_and_ours, hooked_inputs


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hf_and_ours(tmp_path_factory.mktemp("neurons"), seed=4)


def _ids(vocab, n=14, seed=5):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def _hf_acts(hf, ids):
    """Every layer's activation ``[L, T, d_ff]``: what transformers' c_proj of the MLP reads."""
    handles, got = hooked_inputs([b.mlp.c_proj for b in hf.transformer.h])
    try:
        with torch.no_grad():
            hf(ids[None])
    finally:
        for h in handles:
            h.remove()
    return torch.stack([g[0][0] for g in got])


def test_top_neurons_match_transformers(pair):
    from gptviz.analysis.neurons import top_neurons

    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size)
    pos = 9
    acts = _hf_acts(hf, ids[:pos + 1])[:, pos]  # (L, d_ff) at pos
    got = top_neurons(bundle.model, ids, position=pos, k=4, m=3)
    v, i = torch.topk(acts, 4, dim=-1)
    assert (torch.from_numpy(got.ids) == i).all()
    torch.testing.assert_close(torch.from_numpy(got.acts), v, atol=1e-5, rtol=0)
    assert got.d_ff == 4 * 32 and got.position == pos
    # Geva et al.: the value vector (c_proj's row n of transformers' Conv1D) through W_U
    W_U = hf.lm_head.weight.detach().double()
    for layer in range(2):
        W_out = hf.transformer.h[layer].mlp.c_proj.weight.detach().double()  # (d_ff, C)
        for j, n in enumerate(i[layer].tolist()):
            pv, pi = torch.topk(W_U @ W_out[n], 3)
            assert got.promoted_ids[layer, j].tolist() == pi.tolist()
            torch.testing.assert_close(torch.from_numpy(got.promoted[layer, j]).double(), pv,
                                       atol=1e-4, rtol=0)


def test_one_neuron_over_the_text_matches_transformers(pair):
    from gptviz.analysis.neurons import neuron_activations

    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size, seed=6)
    acts = _hf_acts(hf, ids)  # (L, T, d_ff)
    row = neuron_activations(bundle.model, ids, 1, 17)
    assert row.shape == (14,)
    np.testing.assert_allclose(row, acts[1, :, 17].numpy(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="no neuron"):
        neuron_activations(bundle.model, ids, 1, 10_000)


def test_gated_activation_is_act_gate_times_up(tiny_bundle_factory):
    from gptviz.analysis.neurons import top_neurons

    b = tiny_bundle_factory(mlp_type="gated", activation="silu", norm_type="rmsnorm")
    m = b.model
    ids = _ids(m.config.vocab_size, n=8, seed=7)
    handles, got = hooked_inputs([blk.mlp for blk in m.h])  # what each MLP reads (LN_2 out)
    try:
        with torch.no_grad():
            m(ids[None])
    finally:
        for h in handles:
            h.remove()
    res = top_neurons(m, ids, position=6, k=3)
    for layer, blk in enumerate(m.h):
        x = got[layer][0][0, 6]
        gate = x @ blk.mlp.c_gate.weight.T + blk.mlp.c_gate.bias
        up = x @ blk.mlp.c_fc.weight.T + blk.mlp.c_fc.bias
        a = F.silu(gate) * up
        v, i = torch.topk(a, 3)
        assert res.ids[layer].tolist() == i.tolist()
        torch.testing.assert_close(torch.from_numpy(res.acts[layer]), v.detach(), atol=1e-5,
                                   rtol=0)


def test_live_neurons_and_shading(tiny_bundle):
    from gptviz.analysis.live_neurons import NeuronSettings
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat. the cat")
    s.step()
    runner = AnalysisRunner(AnalysisSpec({"neurons": NeuronSettings(k=2, m=3)}))
    res = runner.run(s, query=5)
    view = res.get("neurons")
    assert view is not None, res.errors
    m = s.model
    ids = torch.tensor(s.window_tokens)
    handles, got = hooked_inputs([blk.mlp.c_proj for blk in m.h])
    try:
        with torch.no_grad():
            m(ids[None])
    finally:
        for h in handles:
            h.remove()
    for layer in range(m.config.n_layer):
        v, i = torch.topk(got[layer][0][0, 5], 2)
        assert view.top.ids[layer].tolist() == i.tolist()
        assert view.promoted_tokens[layer][0] == [s.display(int(t))
                                                   for t in view.top.promoted_ids[layer, 0]]
    assert view.shading is None
    n = int(view.top.ids[1, 0])
    runner.command(s, "spec", spec=AnalysisSpec(
        {"neurons": NeuronSettings(k=2, m=3, neuron=(1, n))}))
    shaded = runner.run(s, query=5).get("neurons")
    np.testing.assert_allclose(shaded.shading, got[1][0][0, :, n].numpy(), atol=1e-5, rtol=0)
    assert shaded.neuron == (1, n) and shaded.top is view.top  # the top list came from cache
