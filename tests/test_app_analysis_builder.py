"""The worker-side analysis builder (issue 5) without Qt: commands, caches, corner cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def setup(tiny_bundle):
    from gptviz_app.runtime.analysis_builder import AnalysisBuilder
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "the cat sat on the mat. the cat sat on the mat.")
    sb = SnapshotBuilder(s)
    ab = AnalysisBuilder()

    def snap(**view):
        from gptviz_app.runtime.snapshot import ViewSpec

        sb.note_jump()
        sn = sb.build(1, "view", ViewSpec(**view))
        ab.extend(sn, s)
        return sn, sn.extra["analysis"]

    return s, ab, snap


def test_without_a_session_and_bad_commands(setup):
    from gptviz_app.runtime.analysis_builder import AnalysisBuilder, AnalysisSpec

    s, ab, snap = setup
    fresh = AnalysisBuilder()
    assert fresh.command(None, "spec", spec=AnalysisSpec(heads=True)) is False
    assert fresh.command(None, "set_mode", mode="mean") is False and fresh.mode == "mean"
    with pytest.raises(ValueError, match="no model"):
        fresh.command(None, "toggle_head", layer=0, head=0)
    with pytest.raises(ValueError, match="unknown analysis command"):
        ab.command(s, "explode")
    with pytest.raises(ValueError, match="mode"):
        ab.command(s, "set_mode", mode="half")
    with pytest.raises(ValueError, match="no head"):
        ab.command(s, "toggle_head", layer=5, head=0)
    with pytest.raises(ValueError, match="AnalysisSpec"):
        ab.command(s, "spec", spec={"heads": True})
    _, res = snap()
    assert res.ablated == () and res.heads is None and res.errors == {}


def test_toggle_set_clear_and_an_ablation_set_elsewhere(setup):
    from gptviz.analysis import make_ablation

    s, ab, snap = setup
    assert ab.command(s, "toggle_head", layer=1, head=2) is True
    assert s.ablation is not None and snap()[1].ablated == ((1, 2),)
    assert ab.command(s, "toggle_head", layer=1, head=2) is True
    assert s.ablation is None
    assert ab.command(s, "clear") is False  # nothing to change
    ab.command(s, "set_heads", heads=[(0, 1), (1, 3)])
    assert snap()[1].ablated == ((0, 1), (1, 3))
    # an ablation set without the builder (a restored session file) is read back
    s.set_ablation(make_ablation(s.config, [(0, 3)], "mean", model=s.model,
                                 ids=s.window_tokens))
    _, res = snap()
    assert res.ablated == ((0, 3),) and res.ablation_mode == "mean"
    ab.command(s, "clear")
    assert s.ablation is None and snap()[1].ablated == ()


def test_step_distribution_follows_the_heads_and_comes_back_exactly(setup):
    s, ab, snap = setup
    s.step()
    s.step()
    sn, _ = snap()
    clean = sn.candidates
    assert clean.kind == "last"
    ab.command(s, "toggle_head", layer=0, head=1)
    sn, _ = snap()
    assert sn.candidates.chosen_id == clean.chosen_id and sn.candidates.step == 2
    assert not np.allclose(sn.candidates.probs[:3], clean.probs[:3])
    # a step taken while ablated already has the ablated distribution: kept as it is
    r = s.step()
    sn, _ = snap()
    np.testing.assert_array_equal(sn.candidates.probs[:len(r.topk_probs)], r.topk_probs)
    s.undo(1)
    ab.command(s, "clear")
    sn, _ = snap()
    np.testing.assert_array_equal(sn.candidates.probs, clean.probs)
    assert sn.candidates.chosen == clean.chosen


def test_the_effect_after_steps_runs_the_clean_model_one_token_a_step(setup):
    from gptviz_app.runtime.analysis_builder import AnalysisSpec
    from gptviz.analysis import ablation_effect

    s, ab, snap = setup
    ab.command(s, "spec", spec=AnalysisSpec(ablation=True))
    ab.command(s, "toggle_head", layer=0, head=1)
    snap()
    for n in range(3):
        s.step()
        _, res = snap()
        ids = s.window_tokens
        want = ablation_effect(s.model, ids[:-1], [(0, 1)], k=5)
        assert res.effect["position"] == len(ids) - 2
        assert res.effect["kl_bits"] == pytest.approx(want["kl_bits"], abs=1e-6)
        assert res.effect["kl_bits"] > 0
        # the first clean distribution after the toggle was a prefill; every later one
        # extends the clean run by the new token only
        if n > 0:
            assert ab._clean_runner.last_ran == 1


def test_logits_fallback_without_the_engine_buffer(setup, monkeypatch):
    from gptviz_app.runtime.analysis_builder import AnalysisBuilder

    s, ab, snap = setup
    ab.command(s, "toggle_head", layer=1, head=0)
    fast = AnalysisBuilder._logits_at(s, 5)
    # final activations that do not hold the position: one forward pass instead
    monkeypatch.setattr(s, "final_hidden", lambda copy=False: torch.zeros(0, s.config.n_embd))
    slow = AnalysisBuilder._logits_at(s, 5)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_failures_are_reported_not_raised(setup, monkeypatch):
    import gptviz.analysis.lens
    from gptviz_app.runtime.analysis_builder import AnalysisSpec

    s, ab, snap = setup

    def broken(*a, **k):
        raise RuntimeError("lens exploded")

    monkeypatch.setattr(gptviz.analysis.lens, "lens_readout", broken)
    ab.command(s, "spec", spec=AnalysisSpec(lens=True, heads=True))
    _, res = snap()
    assert "lens exploded" in res.errors["lens"] and res.lens is None
    assert res.heads is not None and "heads" not in res.errors


def test_model_change_drops_state(setup, tiny_bundle_factory):
    from gptviz.engine.session import Session

    s, ab, snap = setup
    ab.command(s, "pin")
    ab.command(s, "toggle_head", layer=0, head=0)
    assert ab.pinned is not None
    other = Session(tiny_bundle_factory(seed=1, n_layer=3, n_head=2), "hello there")
    from gptviz_app.runtime.snapshots import SnapshotBuilder
    from gptviz_app.runtime.snapshot import ViewSpec

    sn = SnapshotBuilder(other).build(2, "view", ViewSpec())
    res = ab.extend(sn, other)
    assert ab.pinned is None and res.ablated == () and res.pinned == ""


def test_lens_from_the_cache_equals_the_core_lens(setup, monkeypatch):
    from gptviz_app.runtime.analysis_builder import AnalysisSpec, _lens_from_cache
    from gptviz.analysis import logit_lens

    s, ab, snap = setup
    s.step()
    s.step()
    ab.command(s, "toggle_head", layer=0, head=2)
    s.undo(1)  # the cache is longer than the cursor: only positions <= query are read
    wids = np.asarray(s.window_tokens)
    abl = s.ablation
    for q in (0, 4, len(wids) - 2, len(wids) - 1):
        got = _lens_from_cache(s, wids, q, 5)
        want = logit_lens(s.model, wids, position=q, k=5, ablation=abl)
        np.testing.assert_array_equal(got.top_ids, want.top_ids)
        np.testing.assert_allclose(got.top_probs, want.top_probs, rtol=1e-4, atol=1e-7)
        assert got.target == want.target
        if want.target is not None:
            np.testing.assert_allclose(got.target_probs, want.target_probs, rtol=1e-4)
            np.testing.assert_array_equal(got.target_ranks, want.target_ranks)
    # the panel's result, and the fallback without a cache
    ab.command(s, "spec", spec=AnalysisSpec(lens=True))
    _, res = snap(query=4)
    np.testing.assert_array_equal(res.lens.top_ids, logit_lens(s.model, wids, 4, k=5,
                                                               ablation=abl).top_ids)
    def no_cache(length=None, room=1):
        raise ValueError("no cache")

    monkeypatch.setattr(s, "kv_cache_snapshot", no_cache)
    assert _lens_from_cache(s, wids, 4, 5) is None
    _, res2 = snap(query=3)
    np.testing.assert_array_equal(
        res2.lens.top_ids, logit_lens(s.model, wids, 3, k=5, ablation=abl).top_ids)


def test_rollout_map_grows_by_one_row_per_step(setup):
    from gptviz_app.runtime.analysis_builder import AnalysisSpec
    from gptviz.analysis import attention_rollout

    s, ab, snap = setup
    ab.command(s, "spec", spec=AnalysisSpec(rollout_map=True))
    _, res = snap()
    first = res.rollout_map
    for _ in range(3):
        s.step()
        _, res = snap()
        assert res.rollout_map.shape == (s.window_len, s.window_len)
        np.testing.assert_allclose(np.nan_to_num(res.rollout_map),
                                   attention_rollout(s.attention()), rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(res.rollout_map[:first.shape[0], :first.shape[0]], first)
    s.undo(2)  # not an append: computed again
    _, res = snap()
    np.testing.assert_allclose(np.nan_to_num(res.rollout_map), attention_rollout(s.attention()),
                               rtol=1e-5, atol=1e-7)
