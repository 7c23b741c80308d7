"""The sampling knobs' effect (gptviz.engine.knobs) against a hand-written numpy computation:
softmax(logits / T), the top-k cut, the nucleus cut and the renormalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gptviz.engine.knobs import knob_effect, knobs_change_nothing
from gptviz.engine.sampling import SamplingSettings, filter_probs


def np_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def np_knobs(logits: np.ndarray, T: float, k: int, p: float):
    """Independent reference: (raw, tempered, kept mask, final) over the whole vocabulary."""
    raw = np_softmax(logits)
    q = np_softmax(logits / T)
    order = np.argsort(-q, kind="stable")
    keep = np.ones_like(q, dtype=bool)
    if 0 < k < q.size:
        keep[:] = False
        keep[order[:k]] = True
    if p < 1.0:
        r = np.where(keep, q, 0.0)
        r = r / r.sum()
        mass = 0.0
        nucleus = np.zeros_like(keep)
        for i in order:  # most probable first, until the mass reaches p
            if not keep[i]:
                continue
            nucleus[i] = True
            mass += r[i]
            if mass >= p:
                break
        keep &= nucleus
    final = np.where(keep, q, 0.0)
    return raw, q, keep, final / final.sum()


@pytest.mark.parametrize("T,k,p", [(1.0, 0, 1.0), (0.5, 0, 1.0), (2.0, 0, 1.0), (1.0, 5, 1.0),
                                   (0.7, 0, 0.9), (1.3, 8, 0.6), (0.3, 3, 0.95), (3.0, 0, 0.2)])
def test_knobs_match_numpy(T, k, p):
    g = torch.Generator().manual_seed(int(T * 100) + k)
    logits = torch.randn(64, generator=g) * 2.5  # distinct values: no ties at the cuts
    ids = np.arange(64)
    e = knob_effect(logits, SamplingSettings(temperature=T, top_k=k, top_p=p), ids)
    raw, q, keep, final = np_knobs(logits.numpy(), T, k, p)
    np.testing.assert_allclose(e.raw, raw, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(e.tempered, q, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(e.kept, keep)
    np.testing.assert_allclose(e.final, final, rtol=1e-5, atol=1e-7)
    assert e.n_kept == int(keep.sum())
    assert e.kept_mass == pytest.approx(float(q[keep].sum()), rel=1e-5)
    assert e.final.sum() == pytest.approx(1.0, abs=1e-5)
    # exactly what the sampler draws from
    s = SamplingSettings(temperature=T, top_k=k, top_p=p)
    np.testing.assert_allclose(e.final, filter_probs(logits, s).numpy(), atol=1e-7)


def test_temperature_sharpens_and_flattens():
    logits = torch.tensor([3.0, 1.0, 0.5, -2.0])
    ids = [0, 1, 2, 3]
    cold = knob_effect(logits, SamplingSettings(temperature=0.25), ids)
    hot = knob_effect(logits, SamplingSettings(temperature=4.0), ids)
    assert cold.final[0] > cold.raw[0] > hot.final[0]  # the top token gains when colder
    assert hot.final[3] > hot.raw[3]                     # the tail gains when hotter
    assert cold.kept.all() and cold.kept_mass == pytest.approx(1.0)


def test_a_subset_of_ids_and_greedy():
    logits = torch.tensor([0.1, 2.0, 2.0, -1.0, 0.5])
    e = knob_effect(logits, SamplingSettings(greedy=True), [4, 1, 2])
    assert e.ids.tolist() == [4, 1, 2]
    assert e.kept.tolist() == [False, True, False]  # the first maximum, as argmax takes it
    assert e.final.tolist() == [0.0, 1.0, 0.0] and e.n_kept == 1
    np.testing.assert_allclose(e.raw, np_softmax(logits.numpy())[[4, 1, 2]], rtol=1e-6)
    assert "greedy" in e.describe()


def test_describe_and_identity():
    e = knob_effect(torch.arange(10.0), SamplingSettings(temperature=0.5, top_k=3), [9])
    assert e.describe(10).startswith("T=0.5 · top-k 3: 3 of 10 tokens keep ")
    assert knobs_change_nothing(SamplingSettings()) and knobs_change_nothing(None)
    assert not knobs_change_nothing(SamplingSettings(top_p=0.9))
    assert not knobs_change_nothing(SamplingSettings(greedy=True))


def test_bad_input_says_what():
    with pytest.raises(ValueError, match="1-d"):
        knob_effect(torch.zeros(2, 3), SamplingSettings(), [0])
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        knob_effect(torch.zeros(3), SamplingSettings(), [5])
