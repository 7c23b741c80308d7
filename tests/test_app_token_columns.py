"""Snapshots of long texts: the per-token arrays are updated where the tokens changed, and
carry a revision that tells a view how much of what it drew still stands."""

from __future__ import annotations

import numpy as np

from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz_app.runtime.snapshot import ViewSpec, tokens_kept
from gptviz_app.runtime.snapshots import SnapshotBuilder


def expected(s):
    """The per-token arrays computed from scratch (no caching)."""
    N, pl = s.n_tokens, s.prompt_len
    probs = np.full(N, np.nan, np.float32)
    forced = np.zeros(N, bool)
    for i, r in enumerate(s.history):
        probs[pl + i], forced[pl + i] = r.prob, r.forced
    return s.tokens, [s.display(t) for t in s.tokens], probs, forced


def check(snap, s):
    ids, toks, probs, forced = expected(s)
    assert snap.ids.tolist() == ids and snap.tokens == toks
    np.testing.assert_array_equal(snap.chosen_probs, probs)
    np.testing.assert_array_equal(snap.forced, forced)
    assert not snap.ids.flags.writeable


def test_columns_follow_every_change_and_old_snapshots_stay(tiny_bundle):
    s = Session(tiny_bundle, "Once upon a time", SamplingSettings(seed=1))
    b = SnapshotBuilder(s, cell=8, gap=1)
    view = ViewSpec()
    snaps = [b.build(0, "prompt", view)]
    frozen = [(snaps[0].ids.copy(), list(snaps[0].tokens))]
    actions = [lambda: s.step(), lambda: s.step(), lambda: s.undo(1), lambda: s.step(force=7),
               lambda: s.generate(3), lambda: s.undo(2), lambda: s.redo(1), lambda: s.reset(),
               lambda: s.undo_reset(), lambda: s.set_prompt("Another text"), lambda: s.step()]
    for i, act in enumerate(actions, start=1):
        act()
        snap = b.build(i, "x", view)
        check(snap, s)
        snaps.append(snap)
        frozen.append((snap.ids.copy(), list(snap.tokens)))
    for snap, (ids, toks) in zip(snaps, frozen):  # no later build changed an earlier one
        np.testing.assert_array_equal(snap.ids, ids)
        assert snap.tokens == toks
    # How many tokens stayed, between any two snapshots of the log's reach.
    for a in range(len(snaps)):
        for c in range(a, len(snaps)):
            kept = tokens_kept(snaps[c], snaps[a].tokens_rev)
            x, y = frozen[a][0].tolist(), frozen[c][0].tolist()
            common = next((k for k in range(min(len(x), len(y))) if x[k] != y[k]),
                          min(len(x), len(y)))
            assert kept is not None and kept <= common  # never claims more than stayed
            if c == a + 1 or snaps[c].tokens_rev == snaps[a].tokens_rev:
                assert kept == common or (x[:kept] == y[:kept])


def test_tokens_kept_cannot_tell_across_sessions(tiny_bundle):
    s1, s2 = Session(tiny_bundle, "a b"), Session(tiny_bundle, "a b")
    a = SnapshotBuilder(s1).build(0, "x", ViewSpec())
    c = SnapshotBuilder(s2).build(0, "x", ViewSpec())
    assert tokens_kept(c, a.tokens_rev) is None and tokens_kept(c, None) is None
    assert tokens_kept(c, c.tokens_rev) == c.n_tokens


def test_timeline_reports_the_first_changed_position(tiny_bundle):
    s = Session(tiny_bundle, "Once upon a time", SamplingSettings(seed=2))
    n = s.n_tokens
    v = s.token_version
    assert s.tokens_same_since(v) == n
    s.generate(3)
    assert s.tokens_same_since(v) == n
    v2 = s.token_version
    s.undo(2)
    s.step(force=5)
    assert s.tokens_same_since(v2) == n + 1 and s.tokens_same_since(v) == n
    s.set_prompt("x")
    assert s.tokens_same_since(v) == 0 and s.tokens_same_since(None) == 0
    assert s.tokens_from(0) == s.tokens
