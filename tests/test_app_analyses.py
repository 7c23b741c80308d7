"""The worker side of the analysis panels without Qt: ``snap.extra["analysis"]``, the
next-token candidates that follow the ablated heads, and the worker's command table."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture
def setup(tiny_bundle):
    from gptviz.engine.session import Session
    from gptviz_app.runtime.analyses import SnapshotAnalyses
    from gptviz_app.runtime.snapshots import SnapshotBuilder

    s = Session(tiny_bundle, "the cat sat on the mat. the cat sat on the mat.")
    sb = SnapshotBuilder(s)
    an = SnapshotAnalyses()

    def snap(**view):
        from gptviz_app.runtime.snapshot import ViewSpec

        sb.note_jump()
        sn = sb.build(1, "view", ViewSpec(**view))
        an.extend(sn, s)
        return sn, sn.extra["analysis"]

    return s, an, snap


def test_step_distribution_follows_the_heads_and_comes_back_exactly(setup):
    s, an, snap = setup
    s.step()
    s.step()
    sn, _ = snap()
    clean = sn.candidates
    assert clean.kind == "last"
    an.command(s, "toggle_head", layer=0, head=1)
    sn, res = snap()
    assert "candidates" in res.timings and res.errors == {}
    assert sn.candidates.chosen_id == clean.chosen_id and sn.candidates.step == 2
    assert not np.allclose(sn.candidates.probs[:3], clean.probs[:3])
    # the ablated model's distribution after the token before the newest one, written out
    ids = s.window_tokens
    with torch.no_grad():
        logits = s.model(torch.tensor([ids[:-1]]), ablation=s.ablation,
                         last_only=True).logits[0, -1]
    probs = torch.softmax(logits.float(), -1).numpy()
    k = len(sn.candidates.ids)
    np.testing.assert_allclose(sn.candidates.probs[:k], np.sort(probs)[::-1][:k], rtol=1e-5)
    assert sn.candidates.chosen_prob == pytest.approx(float(probs[ids[-1]]), rel=1e-5)
    entropy = float(-(probs * np.log2(np.clip(probs, 1e-30, None))).sum())
    assert sn.candidates.entropy == pytest.approx(entropy, rel=1e-4)
    # a step taken while ablated already has the ablated distribution: kept as it is
    r = s.step()
    sn, _ = snap()
    np.testing.assert_array_equal(sn.candidates.probs[:len(r.topk_probs)], r.topk_probs)
    s.undo(1)
    an.command(s, "clear")
    sn, _ = snap()
    np.testing.assert_array_equal(sn.candidates.probs, clean.probs)
    assert sn.candidates.chosen == clean.chosen


def test_a_session_that_arrives_ablated_keeps_its_step_distributions(tiny_bundle, monkeypatch):
    """A session that arrives already ablated (a restored session file): its steps were taken
    under that ablation, so their distributions are shown as they are."""
    import gptviz_app.runtime.analyses as analyses
    from gptviz.analysis import make_ablation
    from gptviz.engine.session import Session
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder

    s = Session(tiny_bundle, "the cat sat on the mat.")
    s.set_ablation(make_ablation(s.config, [(0, 1)]))
    r = s.step()

    def no_recompute(*a, **k):
        raise AssertionError("recomputed")

    monkeypatch.setattr(analyses, "logits_at", no_recompute)
    sn = SnapshotBuilder(s).build(1, "view", ViewSpec())
    res = analyses.SnapshotAnalyses().extend(sn, s)
    assert res.errors == {} and res.ablated == ((0, 1),)
    np.testing.assert_array_equal(sn.candidates.probs[:len(r.topk_probs)], r.topk_probs)


def test_the_result_follows_the_snapshot_view(setup):
    from gptviz.analysis.live_compare import CompareSettings
    from gptviz.analysis.runner import AnalysisSpec

    s, an, snap = setup
    an.command(s, "spec", spec=AnalysisSpec({"compare": CompareSettings("ablation")}))
    _, res = snap(layer=1, head=3, query=4)
    cv = res.get("compare")
    assert (cv.layer, cv.head, cv.average) == (1, 3, False)
    np.testing.assert_array_equal(np.nan_to_num(cv.b), s.attention()[1, 3])
    assert an.runner.run(s, query=4).get("compare").layer == 0  # the runner's own default


def test_worker_commands_are_one_table():
    from gptviz_app.runtime import analyses, file_commands, session_commands
    from gptviz_app.runtime.commands import COMMANDS, command, load_commands

    table = load_commands()
    assert table is COMMANDS
    assert set(table) == {"load_model", "set_prompt", "step", "undo", "redo", "goto", "reset",
                          "force", "set_settings", "set_ablation", "view", "save_session",
                          "open_session", "export_trace", "sample_prompt", "analysis",
                          "open_model", "patch", "set_stride", "branches", "switch_branch"}
    assert table["analysis"] is analyses.analysis
    assert table["open_session"] is file_commands.open_session
    assert table["step"] is session_commands.step
    with pytest.raises(ValueError, match="registered twice"):
        command("step")(lambda worker, req: None)
    assert table["step"] is session_commands.step
