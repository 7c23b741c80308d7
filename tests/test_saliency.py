"""Gradient saliency (input x gradient, integrated gradients): checked against autograd through
transformers' GPT-2 fed ``inputs_embeds``, the completeness of integrated gradients, the CLI and
the live analysis (gradients through our GPT.forward with the embedding replaced by a hook)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _hf_gpt2 import hf_and_ours

POS = 8


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    return hf_and_ours(tmp_path_factory.mktemp("sal"), seed=8)


def _ids(vocab, n=12, seed=9):
    return torch.randint(0, vocab, (n,), generator=torch.Generator().manual_seed(seed))


def _hf_grad(hf, e, target):
    """``(f, ∂f/∂E)`` with f = log p(target) after the last position, E = token embeddings."""
    e = e.detach().clone().requires_grad_(True)
    logp = hf(inputs_embeds=e[None]).logits[0, -1].double().log_softmax(-1)[target]
    (g,) = torch.autograd.grad(logp, e)
    return float(logp.detach()), g.double()


def test_input_x_gradient_matches_transformers(pair):
    from gptviz.analysis.saliency import saliency

    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size)
    target = int(ids[POS + 1])
    e = hf.transformer.wte(ids[:POS + 1]).detach()
    f, g = _hf_grad(hf, e, target)
    attr = e.double() * g
    got = saliency(bundle.model, ids, position=POS, method="grad")
    assert got.target == target and got.position == POS
    assert got.value == pytest.approx(f, abs=1e-5)
    np.testing.assert_allclose(got.scores, attr.norm(dim=-1).numpy(), rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(got.signed, attr.sum(-1).numpy(), rtol=1e-3, atol=1e-5)
    assert got.scores.max() > 1e-3
    assert all(p.grad is None for p in bundle.model.parameters())  # no weight gradients


def test_integrated_gradients_match_transformers_and_are_complete(pair):
    from gptviz.analysis.saliency import saliency

    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size, seed=10)
    with torch.no_grad():  # the top prediction: far from what the zero baseline gives it
        target = int(hf(ids[None, :POS + 1]).logits[0, -1].argmax())
    steps = 16
    e = hf.transformer.wte(ids[:POS + 1]).detach()
    total = torch.zeros_like(e, dtype=torch.float64)
    for j in range(steps + 1):  # the trapezoidal rule over alpha = j / steps
        w = (0.5 if j in (0, steps) else 1.0) / steps
        total += w * _hf_grad(hf, e * (j / steps), target)[1]
    attr = e.double() * total
    f_x, f_0 = _hf_grad(hf, e, target)[0], _hf_grad(hf, e * 0, target)[0]
    got = saliency(bundle.model, ids, position=POS, target=target, method="ig", steps=steps)
    np.testing.assert_allclose(got.scores, attr.norm(dim=-1).numpy(), rtol=2e-3, atol=1e-5)
    assert got.baseline_value == pytest.approx(f_0, abs=1e-5)
    assert got.value == pytest.approx(f_x, abs=1e-5)
    # completeness: sum of the attributions = f(x) - f(baseline), up to the quadrature error
    fine = saliency(bundle.model, ids, position=POS, target=target, method="ig", steps=128)
    coarse = saliency(bundle.model, ids, position=POS, target=target, method="ig", steps=2)
    diff = f_x - f_0
    assert abs(diff) > 0.5
    assert fine.attribution_sum == pytest.approx(diff, abs=1e-3 * max(1.0, abs(diff)))
    assert fine.completeness_gap == pytest.approx(fine.attribution_sum - diff, abs=1e-4)
    assert abs(fine.completeness_gap) < abs(coarse.completeness_gap)


def test_default_target_and_bad_input(pair):
    from gptviz.analysis.saliency import saliency

    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size, n=6, seed=11)
    with torch.no_grad():
        top = int(hf(ids[None]).logits[0, -1].argmax())
    assert saliency(bundle.model, ids).target == top  # the last position: the top prediction
    with pytest.raises(ValueError, match="method"):
        saliency(bundle.model, ids, method="lrp")
    with pytest.raises(ValueError, match="steps"):
        saliency(bundle.model, ids, method="ig", steps=0)
    with pytest.raises(ValueError, match="vocabulary"):
        saliency(bundle.model, ids, target=10**6)
    bundle.model.train()
    saliency(bundle.model, ids)
    assert bundle.model.training  # the flag is restored
    bundle.model.eval()


def test_cli_json_with_integrated_gradients(pair, capsys):
    from gptviz.cli import main

    hf, bundle = pair
    prompt = "the cat sat on the mat"
    rc = main(["saliency", "--model", str(bundle.source), "--prompt", prompt, "--method", "ig",
               "--steps", "64", "--target-id", "7", "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    ids = bundle.tokenizer.encode(prompt)
    assert d["ids"] == ids and len(d["scores"]) == len(ids) and d["target"]["id"] == 7
    e = hf.transformer.wte(torch.tensor(ids)).detach()
    f_x, f_0 = _hf_grad(hf, e, 7)[0], _hf_grad(hf, e * 0, 7)[0]
    assert d["logprob"] == pytest.approx(f_x, abs=1e-5)
    assert d["attribution_sum"] == pytest.approx(f_x - f_0, abs=2e-3)
    assert rc == 0 and d["method"] == "ig" and d["steps"] == 64
    assert main(["saliency", "--model", str(bundle.source), "--prompt", prompt,
                 "--target", "the cat sat"]) == 2
    assert "encodes to" in capsys.readouterr().err


def test_live_saliency_through_the_model_forward(tiny_bundle):
    from gptviz.analysis.live_saliency import SaliencySettings
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat. the cat")
    s.step()
    q = 6
    runner = AnalysisRunner(AnalysisSpec({"saliency": SaliencySettings()}))
    view = runner.run(s, query=q).get("saliency")
    assert view is not None
    m = s.model
    ids = torch.tensor(s.window_tokens[:q + 1])
    target = int(s.window_tokens[q + 1])
    e = m.wte(ids).detach().clone().requires_grad_(True)
    handle = m.wte.register_forward_hook(lambda _m, _i, _o: e[None])  # forward reads e
    try:
        logp = m(ids[None]).logits[0, -1].log_softmax(-1)[target]
        (g,) = torch.autograd.grad(logp, e)
    finally:
        handle.remove()
    want = (e * g).detach().norm(dim=-1).numpy()
    np.testing.assert_allclose(view.result.scores, want, rtol=1e-3, atol=1e-6)
    assert view.target_token == s.display(target) and len(view.tokens) == q + 1
    assert not m.wte._forward_hooks  # no hooks left behind


def test_integrated_gradients_batches_by_memory(pair, monkeypatch):
    from gptviz.analysis import saliency as sal

    assert sal.ig_batch(12, 12, 512) == 1 and sal.ig_batch(2, 4, 12) == sal.IG_BATCH
    hf, bundle = pair
    ids = _ids(bundle.config.vocab_size, seed=13)
    whole = sal.saliency(bundle.model, ids, method="ig", steps=10)
    monkeypatch.setattr(sal, "IG_ATTENTION_BUDGET", 2 * 4 * 12 * 12 * 3)  # 3 points a pass
    assert sal.ig_batch(2, 4, 12) == 3
    parts = sal.saliency(bundle.model, ids, method="ig", steps=10)
    np.testing.assert_allclose(parts.scores, whole.scores, rtol=1e-5, atol=1e-7)
    assert parts.completeness_gap == pytest.approx(whole.completeness_gap, abs=1e-5)
