"""The branch tree: continuations kept after Back + another token, switching restores them
exactly, session files keep every branch."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gptviz.engine.branches import BranchTree, common_prefix, tree_for
from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz.io.session_file import (
    SessionFileError,
    read_session_file,
    restore_session,
    save_session,
    session_data_from_dict,
    session_to_dict,
)

PROMPT = "the cat sat on"


def gen_ids(s: Session) -> list[int]:
    return s.tokens[s.prompt_len:]


def fresh(bundle, ids: list[int]) -> Session:
    """An independent session: the prompt, then ``ids`` replayed one by one."""
    f = Session(bundle, PROMPT, settings=SamplingSettings(seed=3))
    for t in ids:
        f.replay(t)
    return f


def other_token(s: Session) -> int:
    """A token other than the one the redo stack would give back."""
    nxt = s.redo_stack[0].token_id if s.can_redo else -1
    return 7 if nxt != 7 else 8


@pytest.fixture
def session(tiny_bundle):
    s = Session(tiny_bundle, PROMPT, settings=SamplingSettings(seed=3))
    tree_for(s)
    return s


def test_common_prefix():
    assert common_prefix([1, 2, 3], [1, 2, 4]) == 2
    assert common_prefix([1, 2], [1, 2, 4]) == 2
    assert common_prefix([], [1]) == 0
    assert common_prefix([5] * 1000 + [1], [5] * 1000 + [2]) == 1000


def test_branching_after_back_keeps_the_old_continuation(session):
    s, tree = session, tree_for(session)
    s.generate(6)
    old = gen_ids(s)
    s.undo(3)
    s.step(force=other_token(s))
    s.generate(2)
    new = gen_ids(s)
    assert new[:3] == old[:3] and new[3] != old[3]
    branches = {tuple(b.ids) for b in tree.branches()}
    assert branches == {tuple(old), tuple(new)}
    info = tree.summary()
    assert [i.current for i in info].count(True) == 1
    cur = next(i for i in info if i.current)
    assert tree.branch(cur.id).ids == new
    child = next(i for i in info if i.parent >= 0)
    assert child.at == 3 and child.length == 6


def test_switching_restores_tokens_attention_and_probabilities_exactly(session, tiny_bundle):
    s, tree = session, tree_for(session)
    s.generate(5)
    before = (gen_ids(s), s.attention(copy=True), s.next_probs(), s.text())
    first = next(i.id for i in tree.summary() if i.current)
    s.undo(2)
    s.step(force=other_token(s))
    s.generate(3)
    second = next(i.id for i in tree.summary() if i.current)
    assert second != first
    after_second = (gen_ids(s), s.attention(copy=True), s.next_probs())

    assert tree.switch(first) == 2          # back 4 tokens to the branch point, 2 replayed
    assert gen_ids(s) == before[0] and s.text() == before[3]
    np.testing.assert_array_equal(s.attention(), before[1])
    np.testing.assert_array_equal(s.next_probs(), before[2])
    # independently of the tree: a fresh session replaying the same tokens
    f = fresh(tiny_bundle, before[0])
    np.testing.assert_array_equal(s.attention(), f.attention())
    np.testing.assert_array_equal(s.next_probs(), f.next_probs())
    assert next(i.id for i in tree.summary() if i.current) == first

    tree.switch(second)
    assert gen_ids(s) == after_second[0]
    np.testing.assert_array_equal(s.attention(), after_second[1])
    np.testing.assert_array_equal(s.next_probs(), after_second[2])
    f2 = fresh(tiny_bundle, after_second[0])
    np.testing.assert_array_equal(s.attention(), f2.attention())
    assert len(tree.branches()) == 2  # switching adds no branch


def test_switch_keeps_forced_flags_and_settings(session):
    s, tree = session, tree_for(session)
    s.step(force=11)
    s.set_settings(SamplingSettings(seed=9, temperature=0.5))
    s.generate(2)
    first = next(i.id for i in tree.summary() if i.current)
    flags = [(r.forced, r.settings) for r in s.history]
    s.undo(3)
    s.step(force=12)
    tree.switch(first)
    assert [(r.forced, r.settings) for r in s.history] == flags


def test_nested_branches_form_a_tree(session):
    s, tree = session, tree_for(session)
    s.generate(6)
    a = gen_ids(s)
    s.undo(4)                                 # branch B at 2
    s.step(force=other_token(s))
    s.generate(3)
    b = gen_ids(s)
    s.undo(2)                                 # branch C off B at 4
    s.step(force=other_token(s))
    c = gen_ids(s)
    info = {tuple(tree.branch(i.id).ids): i for i in tree.summary()}
    assert set(info) == {tuple(a), tuple(b), tuple(c)}
    ib, ic = info[tuple(b)], info[tuple(c)]
    assert ib.parent == info[tuple(a)].id and ib.at == 2
    assert ic.parent == ib.id and ic.at == 4 and ic.depth == 2 and ic.current
    # switching to each gives its text back
    for ids, i in info.items():
        tree.switch(i.id)
        assert tuple(gen_ids(s)) == ids


def test_going_back_to_an_existing_branch_adds_nothing(session):
    s, tree = session, tree_for(session)
    s.generate(4)
    a = gen_ids(s)
    s.undo(2)
    s.step(force=other_token(s))
    s.undo(1)
    s.step(force=a[2])                        # the old branch's token again
    assert {tuple(b.ids) for b in tree.branches()} == {tuple(a), tuple(a[:2]) + (
        other_token_for(a),)}


def other_token_for(a: list[int]) -> int:
    return 7 if a[2] != 7 else 8


def test_reset_then_step_keeps_the_reset_text_as_a_branch(session):
    s, tree = session, tree_for(session)
    s.generate(3)
    a = gen_ids(s)
    s.reset()
    s.step(force=5 if a[0] != 5 else 6)
    assert tuple(a) in {tuple(b.ids) for b in tree.branches()}


def test_new_prompt_starts_a_new_tree(session):
    s, tree = session, tree_for(session)
    s.generate(3)
    s.undo(1)
    s.step(force=other_token(s))
    assert len(tree.branches()) == 2
    s.set_prompt("a dog")
    assert len(tree.branches()) == 1 and tree.branches()[0].ids == []


def test_unknown_branch_is_a_clear_error(session):
    with pytest.raises(ValueError, match="no branch 99"):
        tree_for(session).switch(99)


def test_detach_stops_listening(session):
    tree = BranchTree(session)
    n = len(session.discard_listeners)
    tree.detach()
    assert len(session.discard_listeners) == n - 1


# ---------------------------------------------------------------------- session files
def branchy(session) -> Session:
    s = session
    s.generate(5)
    s.undo(2)
    s.step(force=other_token(s))
    s.generate(1)
    s.undo(3)
    s.step(force=other_token(s))
    s.undo(1)                                 # a redo stack on the current branch
    return s


def test_session_file_round_trip_keeps_every_branch(tmp_path, tiny_bundle, session):
    s = branchy(session)
    want = {tuple(b.ids) for b in tree_for(s).branches()}
    assert len(want) == 3
    path = tmp_path / "b.gptviz.json"
    save_session(path, s, tiny_bundle)
    d = json.loads(path.read_text())
    assert len(d["branches"]) == 2
    r, _ = restore_session(read_session_file(path), tiny_bundle)
    tree = tree_for(r)
    assert {tuple(b.ids) for b in tree.branches()} == want
    assert r.tokens == s.tokens and len(r.redo_stack) == 1
    for i in tree.summary():
        tree.switch(i.id)
        f = fresh(tiny_bundle, gen_ids(r))
        np.testing.assert_array_equal(r.attention(), f.attention())
        np.testing.assert_array_equal(r.next_probs(), f.next_probs())


def test_old_files_without_branches_open(tmp_path, tiny_bundle, session):
    s = branchy(session)
    d = session_to_dict(s, tiny_bundle)
    del d["branches"]
    data = session_data_from_dict(d, "old.gptviz.json")
    assert data.branches == []
    r, _ = restore_session(data, tiny_bundle)
    assert r.tokens == s.tokens and len(tree_for(r).branches()) == 1


@pytest.mark.parametrize("bad, msg", [
    ("x", "field 'branches' must be a list"),
    (["x"], r"'branches\[0\]' must be an object"),
    ([{"at": -1, "tokens": [1], "forced": [False]}], r"branches\[0\].at' must be >= 0"),
    ([{"at": 99, "tokens": [1], "forced": [False]}], "holds only"),
    ([{"at": 0, "tokens": [], "forced": []}], "must hold 1"),
    ([{"at": 0, "tokens": [True], "forced": [False]}], "must be a token id"),
    ([{"at": 0, "tokens": ["1"], "forced": [False]}], "must be a token id"),
    ([{"at": 0, "tokens": [1, 2], "forced": [False]}], "one entry per token"),
    ([{"at": 0, "tokens": [1], "forced": [0]}], "must be true or false"),
    ([{"at": 0, "tokens": [1], "forced": [False], "settings": [{"greedy": 1}]}],
     "settings"),
    ([{"at": 0, "tokens": [1], "forced": [False]}] * 5000, "at most 4096"),
    ([{"at": 0, "tokens": [1] * 600_000, "forced": [False] * 600_000}] * 2, "in all"),
])
def test_hostile_branches_are_refused_in_one_line(tiny_bundle, session, bad, msg):
    d = session_to_dict(branchy(session), tiny_bundle)
    d["branches"] = bad
    with pytest.raises(SessionFileError, match=msg) as e:
        session_data_from_dict(d, "h.gptviz.json")
    assert "\n" not in str(e.value) and str(e.value).startswith("h.gptviz.json: ")


def test_branch_ids_outside_the_vocabulary_are_refused(tiny_bundle, session):
    d = session_to_dict(branchy(session), tiny_bundle)
    d["branches"] = [{"at": 0, "tokens": [10 ** 6], "forced": [False]}]
    data = session_data_from_dict(d, "v.gptviz.json")
    with pytest.raises(SessionFileError, match="outside the vocabulary"):
        restore_session(data, tiny_bundle)


def test_deeply_nested_branches_are_refused(tmp_path):
    deep: list = []
    for _ in range(200):
        deep = [deep]
    p = tmp_path / "deep.gptviz.json"
    p.write_text(json.dumps({"format": "gptviz-session", "version": 1, "branches": deep}))
    with pytest.raises(SessionFileError, match="nested too deeply"):
        read_session_file(p)
