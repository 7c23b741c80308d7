"""The live analyses of a session without Qt: the runner's commands, caches, corner cases, the
registry (with plug-ins), head ablation as session state, and the shared ablation helpers."""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

PROMPT = "the cat sat on the mat. the cat sat on the mat."


@pytest.fixture
def setup(tiny_bundle):
    from gptviz.analysis.runner import AnalysisRunner
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, PROMPT)
    runner = AnalysisRunner()

    def run(query=None, layer=0, head=0, average=False):
        return runner.run(s, query=query, layer=layer, head=head, average=average)

    return s, runner, run


def spec(**analyses):
    from gptviz.analysis.runner import AnalysisSpec

    return AnalysisSpec(dict(analyses))


# ---------------------------------------------------------------------- commands
def test_without_a_session_and_bad_commands(setup):
    from gptviz.analysis.runner import AnalysisRunner

    s, runner, run = setup
    fresh = AnalysisRunner()
    assert fresh.command(None, "spec", spec=spec(heads=None)) is False
    assert fresh.command(None, "set_mode", mode="mean") is False and fresh.ablation.mode == "mean"
    with pytest.raises(ValueError, match="no model"):
        fresh.command(None, "toggle_head", layer=0, head=0)
    with pytest.raises(ValueError, match="unknown analysis command"):
        runner.command(s, "explode")
    with pytest.raises(ValueError, match="unknown analysis command"):
        runner.command(s, "compare.explode")
    with pytest.raises(ValueError, match="no analysis named 'nothing'"):
        runner.command(s, "nothing.pin")
    with pytest.raises(ValueError, match="mode"):
        runner.command(s, "set_mode", mode="half")
    with pytest.raises(ValueError, match="no head"):
        runner.command(s, "toggle_head", layer=5, head=0)
    with pytest.raises(ValueError, match="AnalysisSpec"):
        runner.command(s, "spec", spec={"heads": True})
    res = run()
    assert res.ablated == () and res.get("heads") is None and res.errors == {}


def test_toggle_set_clear_and_an_ablation_set_elsewhere(setup):
    from gptviz.analysis import make_ablation

    s, runner, run = setup
    assert runner.command(s, "toggle_head", layer=1, head=2) is True
    assert s.ablation is not None and run().ablated == ((1, 2),)
    assert runner.command(s, "toggle_head", layer=1, head=2) is True
    assert s.ablation is None
    assert runner.command(s, "clear") is False  # nothing to change
    runner.command(s, "set_heads", heads=[(0, 1), (1, 3)])
    assert run().ablated == ((0, 1), (1, 3))
    # an ablation set without the runner (a restored session file) is read back
    s.set_ablation(make_ablation(s.config, [(0, 3)], "mean", model=s.model,
                                 ids=s.window_tokens))
    res = run()
    assert res.ablated == ((0, 3),) and res.ablation_mode == "mean"
    runner.command(s, "clear")
    assert s.ablation is None and run().ablated == ()


def test_mean_mode_switches_the_heads_over_and_measures_the_text(setup):
    from gptviz.analysis import head_output_means

    s, runner, run = setup
    runner.command(s, "set_heads", heads=[(0, 1)])
    assert run().ablation_mode == "zero" and s.ablation.fill is None
    assert runner.command(s, "set_mode", mode="mean") is True  # the heads switch over
    res = run()
    assert res.ablation_mode == "mean" and res.means_tokens == len(s.window_tokens)
    want = head_output_means(s.model, s.window_tokens)[0, 1]
    torch.testing.assert_close(s.ablation.fill[0, 1], want)
    assert runner.command(s, "set_mode", mode="mean") is False  # nothing changed


# ---------------------------------------------------------------------- the analyses
def test_the_effect_after_steps_runs_the_clean_model_one_token_a_step(setup):
    from gptviz.analysis import ablation_effect

    s, runner, run = setup
    runner.command(s, "spec", spec=spec(effect=None))
    runner.command(s, "toggle_head", layer=0, head=1)
    run()
    for n in range(3):
        s.step()
        res = run()
        ids = s.window_tokens
        want = ablation_effect(s.model, ids[:-1], [(0, 1)], k=5)
        eff = res.get("effect")
        assert eff["position"] == len(ids) - 2 and eff["step"] == n + 1
        # (the clean run stepped token by token through its cache, the reference ran the
        # whole prefix: float32 sums in another order; 3e-6 relative seen)
        assert eff["kl_bits"] == pytest.approx(want["kl_bits"], rel=2e-5)
        assert eff["kl_bits"] > 0
        assert eff["chosen_token"] == ids[-1]  # the token drawn from this distribution
        assert eff["top_token_str"] == s.display(want["top_token"])
        # the first clean distribution after the toggle was a prefill; every later one
        # extends the clean run by the new token only
        if n > 0:
            assert runner.ablation.clean_runner.last_ran == 1
    runner.command(s, "clear")
    res = run()
    assert res.get("effect") is None and "effect" not in res.timings  # nothing ablated


def test_effect_from_logprobs_is_the_formula():
    from gptviz.analysis.ablation import effect_from_logprobs

    g = torch.Generator().manual_seed(0)
    before = torch.randn(7, generator=g, dtype=torch.float64).log_softmax(-1)
    after = torch.randn(7, generator=g, dtype=torch.float64).log_softmax(-1)
    out = effect_from_logprobs(before, after, [(0, 1)], "zero", position=4, chosen=2, k=3)
    p = [math.exp(x) for x in before.tolist()]
    q = [math.exp(x) for x in after.tolist()]
    kl = sum(pi * (math.log(pi) - math.log(qi)) for pi, qi in zip(p, q)) / math.log(2)
    assert out["kl_bits"] == pytest.approx(kl, rel=1e-12)
    assert out["total_variation"] == pytest.approx(0.5 * sum(abs(a - b) for a, b in zip(p, q)))
    top = max(range(7), key=lambda i: p[i])
    assert out["top_token"] == top
    assert out["top_logprob_change"] == pytest.approx(math.log(q[top]) - math.log(p[top]))
    assert out["chosen_logprob_change"] == pytest.approx(math.log(q[2]) - math.log(p[2]))
    assert [d["id"] for d in out["top_after"]] == sorted(range(7), key=lambda i: -q[i])[:3]
    assert (out["heads"], out["mode"], out["position"]) == ([[0, 1]], "zero", 4)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        effect_from_logprobs(before, after, [], "zero", 0, chosen=7)


def test_logits_fallback_without_the_engine_buffer(setup, monkeypatch):
    from gptviz.analysis.live_ablation import logits_at

    s, runner, run = setup
    runner.command(s, "toggle_head", layer=1, head=0)
    fast = logits_at(s, 5)
    # final activations that do not hold the position: one forward pass instead
    monkeypatch.setattr(s, "final_hidden", lambda copy=False: torch.zeros(0, s.config.n_embd))
    slow = logits_at(s, 5)
    torch.testing.assert_close(fast, slow, rtol=1e-5, atol=1e-5)


def test_failures_are_reported_not_raised(setup, monkeypatch):
    import gptviz.analysis.lens
    from gptviz.analysis.live_heads import HeadDiagnostics
    from gptviz.analysis.live_lens import LensSettings

    s, runner, run = setup

    def broken(*a, **k):
        raise RuntimeError("lens exploded")

    monkeypatch.setattr(gptviz.analysis.lens, "lens_readout", broken)
    runner.command(s, "spec", spec=spec(lens=LensSettings(), heads=None, nothing=None,
                                        rollout=LensSettings()))
    res = run()
    assert "lens exploded" in res.errors["lens"] and res.get("lens") is None
    assert "no analysis named 'nothing'" in res.errors["nothing"]
    assert "RolloutSettings" in res.errors["rollout"]  # settings of another analysis
    assert isinstance(runner.analysis("heads"), HeadDiagnostics)
    assert res.get("heads") is not None and "heads" not in res.errors
    assert {"lens", "heads", "probe"} <= set(res.timings)


def test_model_change_drops_state(setup, tiny_bundle_factory):
    from gptviz.engine.session import Session

    s, runner, run = setup
    runner.command(s, "compare.pin")
    runner.command(s, "toggle_head", layer=0, head=0)
    runner.command(s, "spec", spec=spec(compare=None))
    assert runner.analysis("compare").pinned is not None and run().get("compare").pinned
    other = Session(tiny_bundle_factory(seed=1, n_layer=3, n_head=2), "hello there")
    res = runner.run(other)
    assert runner.analysis("compare").pinned is None and res.ablated == ()
    assert res.get("compare").pinned == ""


def test_heads_are_cached_per_text_and_ablation(setup):
    from gptviz.analysis import head_scores

    s, runner, run = setup
    runner.command(s, "spec", spec=spec(heads=None))
    first = run()
    hs = first.get("heads")
    assert "probe" in first.timings
    np.testing.assert_allclose(hs.prev_token, head_scores(s.attention(), s.window_tokens)
                               .prev_token)
    again = run(query=3, layer=1)  # another view: the same object, no probe again
    assert again.get("heads") is hs and "probe" not in again.timings
    runner.command(s, "toggle_head", layer=0, head=1)
    assert run().get("heads") is not hs


def test_lens_from_the_cache_equals_the_core_lens(setup, monkeypatch):
    from gptviz.analysis import logit_lens
    from gptviz.analysis.live_lens import LensSettings, lens_from_cache

    s, runner, run = setup
    s.step()
    s.step()
    runner.command(s, "toggle_head", layer=0, head=2)
    s.undo(1)  # the cache is longer than the cursor: only positions <= query are read
    wids = np.asarray(s.window_tokens)
    abl = s.ablation
    for q in (0, 4, len(wids) - 2, len(wids) - 1):
        got = lens_from_cache(s, wids, q, 5)
        want = logit_lens(s.model, wids, position=q, k=5, ablation=abl)
        np.testing.assert_array_equal(got.top_ids, want.top_ids)
        np.testing.assert_allclose(got.top_probs, want.top_probs, rtol=1e-4, atol=1e-7)
        assert got.target == want.target
        if want.target is not None:
            np.testing.assert_allclose(got.target_probs, want.target_probs, rtol=1e-4)
            np.testing.assert_array_equal(got.target_ranks, want.target_ranks)
    # the panel's result, and the fallback without a cache
    runner.command(s, "spec", spec=spec(lens=LensSettings(k=5)))
    res = run(query=4)
    np.testing.assert_array_equal(res.get("lens").top_ids,
                                  logit_lens(s.model, wids, 4, k=5, ablation=abl).top_ids)
    assert res.get("lens").n_ablated == 1 and res.get("lens").position == 4

    def no_cache(length=None, room=1):
        raise ValueError("no cache")

    monkeypatch.setattr(s, "kv_cache_snapshot", no_cache)
    assert lens_from_cache(s, wids, 4, 5) is None
    res2 = run(query=3)
    np.testing.assert_array_equal(
        res2.get("lens").top_ids, logit_lens(s.model, wids, 3, k=5, ablation=abl).top_ids)


def test_rollout_map_grows_by_one_row_per_step(setup):
    from gptviz.analysis import attention_rollout, rollout_row
    from gptviz.analysis.live_rollout import RolloutSettings

    s, runner, run = setup
    runner.command(s, "spec", spec=spec(rollout=RolloutSettings(map=True)))
    first = run().get("rollout").map
    for _ in range(3):
        s.step()
        res = run()
        m = res.get("rollout").map
        assert m.shape == (s.window_len, s.window_len)
        np.testing.assert_allclose(np.nan_to_num(m), attention_rollout(s.attention()),
                                   rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(m[:first.shape[0], :first.shape[0]], first)
    s.undo(2)  # not an append: computed again
    m = run().get("rollout").map
    np.testing.assert_allclose(np.nan_to_num(m), attention_rollout(s.attention()),
                               rtol=1e-5, atol=1e-7)
    # the row alone (token strip), without the ablated heads
    runner.command(s, "spec", spec=spec(rollout=RolloutSettings(strip=True, residual=False)))
    runner.command(s, "toggle_head", layer=0, head=2)
    rv = run(query=5).get("rollout")
    keep = np.ones((2, 4))
    keep[0, 2] = 0
    assert rv.map is None and rv.query == 5 and not rv.residual
    np.testing.assert_allclose(rv.row, rollout_row(s.attention(), 5, residual=False,
                                                   head_mask=keep), rtol=1e-5, atol=1e-7)


def test_compare_pinned_against_current(setup):
    from gptviz.analysis import attention_array
    from gptviz.analysis.live_compare import CompareSettings

    s, runner, run = setup
    runner.command(s, "spec", spec=spec(compare=CompareSettings("pinned", "position")))
    assert "Pin" in run().get("compare").message
    ids_a = list(s.window_tokens)
    runner.command(s, "compare.pin")
    s.set_prompt("a dog ran to the hat. a dog ran to the hat.")
    cv = run(layer=1, head=2).get("compare")
    ids_b = list(s.window_tokens)
    n = min(len(ids_a), len(ids_b))
    want = attention_array(s.model, ids_a)[1, 2, :n, :n] - attention_array(s.model, ids_b)[
        1, 2, :n, :n]
    assert cv.n == n and cv.pinned.startswith(f"{len(ids_a)} tokens")
    np.testing.assert_allclose(np.nan_to_num(cv.diff), want, atol=1e-6)
    runner.command(s, "compare.unpin")
    assert "Pin" in run().get("compare").message


# ---------------------------------------------------------------------- ablation helpers
def test_read_ablation_inverts_make_ablation(tiny_bundle):
    from gptviz.analysis import ablated_heads, head_output_means, make_ablation
    from gptviz.analysis.ablation import read_ablation
    from gptviz.model.gpt import Ablation

    cfg, model = tiny_bundle.config, tiny_bundle.model
    assert read_ablation(None) is None and ablated_heads(None) == []
    zero = read_ablation(make_ablation(cfg, [(1, 3), (0, 2)]))
    assert zero.heads == ((0, 2), (1, 3)) and zero.mode == "zero" and zero.fill is None
    assert zero.keep.dtype == np.float64 and zero.keep.sum() == cfg.n_layer * cfg.n_head - 2
    means = head_output_means(model, [1, 2, 3, 4])
    mean = read_ablation(make_ablation(cfg, [(0, 1)], "mean", model=model, means=means))
    assert mean.heads == ((0, 1),) and mean.mode == "mean"
    np.testing.assert_array_equal(mean.fill[0, 1], means[0, 1].double().numpy())
    # plain arrays, and a fill that is zero where the heads are removed: zero-ablation
    keep = np.ones((cfg.n_layer, cfg.n_head), np.float32)
    keep[1, 0] = 0
    fill = np.zeros((cfg.n_layer, cfg.n_head, cfg.head_dim), np.float32)
    fill[0, 0] = 1.0  # a kept head: ignored
    parts = read_ablation(Ablation(keep=keep, fill=fill))
    assert parts.heads == ((1, 0),) and parts.mode == "zero"
    assert ablated_heads(Ablation(keep=keep, fill=None)) == [(1, 0)]


# ---------------------------------------------------------------------- the registry
def test_registry_builtins_and_a_registered_analysis(setup):
    from dataclasses import dataclass

    from gptviz.analysis.live import LiveAnalysis
    from gptviz.analysis.registry import (
        analysis_names,
        create_analysis,
        register_analysis,
        unregister_analysis,
    )

    assert analysis_names()[:5] == ("heads", "effect", "lens", "compare", "rollout")

    @dataclass(frozen=True)
    class Every:
        n: int = 1

    class Counts(LiveAnalysis):
        name = "counts"
        settings_type = Every

        def reset(self):
            self.calls = 0

        def compute(self, inputs, settings):
            self.calls += 1
            return np.bincount(inputs.ids[::settings.n])

    s, runner, run = setup
    register_analysis("counts", Counts)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_analysis("counts", Counts)
        assert "counts" in analysis_names() and isinstance(create_analysis("counts"), Counts)
        runner.command(s, "spec", spec=spec(counts=Every(2)))
        got = run().get("counts")
        ids = s.window_tokens[::2]
        assert got.tolist() == [ids.count(i) for i in range(max(ids) + 1)]
    finally:
        unregister_analysis("counts")
    assert "counts" not in analysis_names()
    with pytest.raises(ValueError, match="no analysis named 'counts'"):
        create_analysis("counts")


def _install_plugin(root: Path, module: str, body: str, entry: str) -> None:
    """A real installed distribution on ``root``: a module plus its dist-info with an entry
    point of the analyses group (what ``pip install`` of a plug-in package leaves)."""
    from gptviz.analysis.registry import ENTRY_POINT_GROUP

    (root / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n",
                                           encoding="utf-8")


def test_entry_point_plugins_load_lazily_and_a_broken_one_warns(tmp_path, monkeypatch, setup):
    from gptviz.analysis.registry import analysis_names

    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, "gptviz_toy_analysis", """
        from gptviz.analysis.live import LiveAnalysis

        class Length(LiveAnalysis):
            name = "length"

            def compute(self, inputs, settings):
                return inputs.T
    """, "length = gptviz_toy_analysis:Length\nheads = gptviz_toy_analysis:Length")
    other = site / "other"
    other.mkdir()
    _install_plugin(other, "gptviz_bad_analysis", "raise ImportError('missing dependency')\n",
                    "bad = gptviz_bad_analysis:Thing")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(other))
    s, runner, run = setup
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = analysis_names(rescan=True)
        messages = [str(w.message) for w in caught]
        assert any("'bad'" in m and "missing dependency" in m for m in messages)
        # a built-in is never replaced
        assert any("'heads'" in m and "already registered" in m for m in messages)
        assert names[:5] == ("heads", "effect", "lens", "compare", "rollout")
        assert "length" in names and "bad" not in names
        runner.command(s, "spec", spec=spec(length=None, heads=None))
        res = run()
        assert res.get("length") == len(s.window_tokens) and res.get("heads") is not None
    finally:
        monkeypatch.undo()
        analysis_names(rescan=True)
    assert "length" not in analysis_names()
