"""Session files: save -> read -> restore gives the same session; bad files are refused
cleanly; writes are atomic; the engine hooks the files rely on."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from gptviz.analysis.ablation import ablated_heads, make_ablation
from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz.io.session_file import (
    FORMAT,
    VERSION,
    SessionData,
    SessionFileError,
    load_session_model,
    read_session_file,
    restore_session,
    save_session,
    session_data_from_dict,
    weights_sha256,
)

PROMPT = "Once upon a time 😀 "
VIEW = {"layer": 1, "head": 2, "query": 5, "average_heads": False, "colormap": "cividis",
        "font_scale": 1.5, "notes": ["ünïcode", "😀"]}


def steps_of(s: Session) -> list[tuple[int, bool]]:
    return [(r.token_id, r.forced) for r in s.history]


def redo_of(s: Session) -> list[tuple[int, bool]]:
    return [(r.token_id, r.forced) for r in s.redo_stack]


def assert_same_session(a: Session, b: Session) -> None:
    """Same tokens, flags, cursor, redo stack, settings, ablation, maps and distribution."""
    assert b.tokens == a.tokens
    assert b.prompt == a.prompt and b.prompt_len == a.prompt_len
    assert steps_of(b) == steps_of(a)
    assert redo_of(b) == redo_of(a)
    assert b.n_generated == a.n_generated
    assert b.settings == a.settings
    assert b.top_k_report == a.top_k_report
    assert b.window_start == a.window_start
    assert ablated_heads(b.ablation) == ablated_heads(a.ablation)
    if a.ablation is not None:
        fa, fb = a.ablation.fill, b.ablation.fill
        assert (fa is None) == (fb is None)
        if fa is not None:
            assert torch.equal(fa.cpu(), fb.cpu())
    assert np.array_equal(b.attention(), a.attention())
    ia, pa, ea = a.next_distribution()
    ib, pb, eb = b.next_distribution()
    assert np.array_equal(ia, ib) and np.array_equal(pa, pb) and ea == eb
    for ra, rb in zip(a.history, b.history):
        assert np.array_equal(ra.attention_row, rb.attention_row)
        assert ra.prob == rb.prob and np.array_equal(ra.topk_probs, rb.topk_probs)


def round_trip(tmp_path, session, bundle, view=VIEW, name="s.gptviz.json"):
    path = tmp_path / name
    save_session(path, session, bundle, view)
    data = read_session_file(path)
    restored, v = restore_session(data, bundle)
    return path, data, restored, v


@pytest.fixture
def session(tiny_bundle):
    """Sampled and forced tokens, settings changed midway, undone (cursor < total)."""
    s = Session(tiny_bundle, PROMPT, SamplingSettings(temperature=0.9, top_k=30, seed=7),
                top_k_report=25)
    s.generate(4)
    s.step(force=42)
    s.set_settings(SamplingSettings(temperature=1.3, top_p=0.9, seed=11))
    s.generate(4)
    s.undo(3)
    return s


# ---------------------------------------------------------------------- round trips
def test_round_trip_after_undo_with_forced_token(tmp_path, tiny_bundle, session):
    assert session.n_generated == 6 and len(session.redo_stack) == 3
    before = session.attention(copy=True)
    path, data, restored, view = round_trip(tmp_path, session, tiny_bundle)
    assert isinstance(data, SessionData) and data.path == str(path)
    assert data.cursor == 6 and len(data.tokens) == 9
    assert [t.forced for t in data.tokens] == [False] * 4 + [True] + [False] * 4
    assert view == VIEW
    assert restored is not session
    assert_same_session(session, restored)
    assert np.array_equal(session.attention(), before)  # the open session is untouched
    # The redo stacks replay to the same place, with the same maps.
    assert session.redo(3) == restored.redo(3) == 3
    assert_same_session(session, restored)
    # And both sessions go on identically (same settings, seed, positions).
    ra, rb = session.step(), restored.step()
    assert (ra.token_id, ra.forced) == (rb.token_id, rb.forced)
    assert np.array_equal(ra.attention_row, rb.attention_row)


def test_round_trip_file_content(tmp_path, tiny_bundle, session):
    path = tmp_path / "s.gptviz.json"
    save_session(path, session, tiny_bundle, VIEW)
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["format"] == FORMAT and d["version"] == VERSION
    assert d["model"]["weights_sha256"] == tiny_bundle.weights_hash()
    assert d["model"]["kind"] == "gptviz" and d["model"]["path"] == "<tiny>"
    assert d["prompt"] == {"text": PROMPT, "ids": tiny_bundle.tokenizer.encode(PROMPT)}
    assert d["settings"] == {"greedy": False, "temperature": 1.3, "top_k": 0, "top_p": 0.9,
                             "seed": 11}
    assert d["cursor"] == 6 and d["ablation"] is None and d["view"] == VIEW
    ids = [r.token_id for r in session.history] + [r.token_id for r in session.redo_stack]
    assert [t["id"] for t in d["tokens"]] == ids
    assert d["tokens"][4]["forced"] is True
    assert d["tokens"][0]["text"] == session.history[0].token
    assert "😀" in path.read_text(encoding="utf-8")  # readable UTF-8, not \\u escapes


def test_round_trip_at_the_end_and_at_the_prompt(tmp_path, tiny_bundle):
    s = Session(tiny_bundle, "Hello, world!", SamplingSettings(greedy=True))
    _, data, r, view = round_trip(tmp_path, s, tiny_bundle, view=None)
    assert data.tokens == [] and data.cursor == 0 and view == {}
    assert_same_session(s, r)
    s.generate(5)
    _, _, r, _ = round_trip(tmp_path, s, tiny_bundle)
    assert_same_session(s, r)
    s.undo(5)  # everything undone: cursor 0, all on the redo stack
    _, data, r, _ = round_trip(tmp_path, s, tiny_bundle)
    assert data.cursor == 0 and len(data.redo_ids) == 5
    assert_same_session(s, r)


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_round_trip_with_ablation(tmp_path, tiny_bundle, session, mode):
    cfg = tiny_bundle.config
    heads = [(0, 1), (1, 3)]
    abl = make_ablation(cfg, heads, mode, model=tiny_bundle.model, ids=session.tokens)
    session.set_ablation(abl)
    path, data, restored, _ = round_trip(tmp_path, session, tiny_bundle)
    assert data.ablation is not None and data.ablation.mode == mode
    assert list(data.ablation.heads) == heads
    d = json.loads(path.read_text(encoding="utf-8"))
    assert d["ablation"]["heads"] == [[0, 1], [1, 3]] and d["ablation"]["mode"] == mode
    assert ablated_heads(restored.ablation) == heads
    assert_same_session(session, restored)
    session.redo(2)
    restored.redo(2)
    assert_same_session(session, restored)


def test_ablation_switched_on_before_generating_restores_exactly_with_applied_at(
        tmp_path, tiny_bundle):
    s = Session(tiny_bundle, PROMPT, SamplingSettings(seed=3))
    s.set_ablation(make_ablation(tiny_bundle.config, [(1, 0)], "zero"))
    s.generate(6)
    path = tmp_path / "a.gptviz.json"
    save_session(path, s, tiny_bundle)
    d = json.loads(path.read_text(encoding="utf-8"))
    # Without the engine's record of when the ablation was switched on, the restore switches
    # it on at the cursor: same tokens, maps equal to float rounding.
    r, _ = restore_session(read_session_file(path), tiny_bundle)
    assert r.tokens == s.tokens and steps_of(r) == steps_of(s)
    np.testing.assert_allclose(r.attention(), s.attention(), atol=1e-5)
    # With applied_at (the number of tokens at the switch) the maps are bit-identical.
    d["ablation"]["applied_at"] = s.prompt_len
    path.write_text(json.dumps(d), encoding="utf-8")
    r, _ = restore_session(read_session_file(path), tiny_bundle)
    assert_same_session(s, r)


def test_round_trip_across_a_window_slide(tmp_path, tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = Session(bundle, PROMPT, SamplingSettings(seed=5))
    s.generate(20)
    assert s.window_start > 0
    s.undo(2)
    _, _, r, _ = round_trip(tmp_path, s, bundle)
    assert_same_session(s, r)


def test_prompt_given_as_ids_and_odd_unicode(tmp_path, tiny_bundle):
    text = "日本語\x07\t\r\n e\u0301 🧪🧪"
    s = Session(tiny_bundle, text)
    s.generate(3)
    _, data, r, _ = round_trip(tmp_path, s, tiny_bundle)
    assert data.prompt == text and r.prompt == text
    assert_same_session(s, r)
    ids = tiny_bundle.tokenizer.encode("The quick brown fox")[::-1]  # not a canonical encoding
    s = Session(tiny_bundle, ids)
    s.step(force=7)
    _, _, r, _ = round_trip(tmp_path, s, tiny_bundle)
    assert r.tokens[:len(ids)] == ids
    assert_same_session(s, r)


def test_restore_reports_progress(tmp_path, tiny_bundle, session):
    path = tmp_path / "s.gptviz.json"
    save_session(path, session, tiny_bundle)
    seen = []
    restore_session(read_session_file(path), tiny_bundle, progress=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 9) for i in range(1, 10)]


# ---------------------------------------------------------------------- refused files
def saved(tmp_path, tiny_bundle, session) -> tuple:
    path = tmp_path / "good.gptviz.json"
    save_session(path, session, tiny_bundle, VIEW)
    return path, json.loads(path.read_text(encoding="utf-8"))


def refused(path, *fragments):
    with pytest.raises(SessionFileError) as e:
        read_session_file(path)
    msg = str(e.value)
    assert str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "garbage.gptviz.json"
    path.write_bytes(bytes(range(256)) * 8)
    refused(path, "not a gptviz session file", "corrupt")
    path.write_text("{this is not json", encoding="utf-8")
    refused(path, "not valid JSON")
    path.write_bytes(b"")
    refused(path, "empty")
    refused(tmp_path / "nope.gptviz.json", "no such file")


def test_truncated_file_is_refused(tmp_path, tiny_bundle, session):
    path, _ = saved(tmp_path, tiny_bundle, session)
    raw = path.read_bytes()
    path.write_bytes(raw[:len(raw) // 2])
    refused(path, "not valid JSON", "truncated")


def test_future_version_and_wrong_format_are_refused(tmp_path, tiny_bundle, session):
    path, d = saved(tmp_path, tiny_bundle, session)
    path.write_text(json.dumps({**d, "version": VERSION + 1}), encoding="utf-8")
    refused(path, f"version {VERSION + 1}", "newer gptviz")
    path.write_text(json.dumps({**d, "format": "something-else"}), encoding="utf-8")
    refused(path, "not a gptviz session file", "something-else")
    path.write_text(json.dumps([1, 2, 3]), encoding="utf-8")
    refused(path, "not a gptviz session file")
    path.write_text(json.dumps({**d, "version": "1"}), encoding="utf-8")
    refused(path, "'version' must be an integer")


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: d.pop("tokens"), "'tokens' is missing"),
    (lambda d: d["model"].pop("weights_sha256"), "'model.weights_sha256' is missing"),
    (lambda d: d["model"].update(weights_sha256="abc"), "64 lowercase hex"),
    (lambda d: d["tokens"][2].update(forced="yes"), "'tokens[2].forced' must be true or false"),
    (lambda d: d["tokens"][1].update(id=-4), "'tokens[1].id' must be >= 0"),
    (lambda d: d["tokens"][1].update(id=3.5), "'tokens[1].id' must be an integer"),
    (lambda d: d.update(cursor=99), "'cursor' is 99"),
    (lambda d: d.update(cursor=True), "'cursor' must be an integer"),
    (lambda d: d["prompt"].update(ids=[]), "'prompt.ids' is empty"),
    (lambda d: d["prompt"].update(text=None), "'prompt.text' must be a string"),
    (lambda d: d["settings"].update(temperature=-1), "temperature"),
    (lambda d: d["settings"].pop("seed"), "'settings.seed' is missing"),
    (lambda d: d.update(view=[1]), "'view' must be an object"),
    (lambda d: d.update(ablation={"mode": "half", "heads": [[0, 0]]}), "'ablation.mode'"),
    (lambda d: d.update(ablation={"mode": "zero", "heads": [[0]]}), "'ablation.heads[0]'"),
    (lambda d: d.update(ablation={"mode": "mean", "heads": [[0, 0]]}), "'ablation.means'"),
])
def test_missing_or_ill_typed_fields_are_refused(tmp_path, tiny_bundle, session, edit, fragment):
    path, d = saved(tmp_path, tiny_bundle, session)
    edit(d)
    path.write_text(json.dumps(d), encoding="utf-8")
    refused(path, fragment)


def test_mismatched_weights_are_refused(tmp_path, tiny_bundle, tiny_bundle_factory, session):
    path, _ = saved(tmp_path, tiny_bundle, session)
    data = read_session_file(path)
    other = tiny_bundle_factory(seed=1)
    with pytest.raises(SessionFileError, match="different weights") as e:
        restore_session(data, other)
    assert str(path) in str(e.value)


def test_failed_restore_changes_nothing(tmp_path, tiny_bundle, session):
    path, d = saved(tmp_path, tiny_bundle, session)
    before = (session.tokens, steps_of(session), redo_of(session), session.attention(copy=True))
    d["tokens"][5]["id"] = tiny_bundle.config.vocab_size + 10  # fits the schema, not the model
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(SessionFileError, match=r"tokens\[5\].*outside the vocabulary"):
        restore_session(read_session_file(path), tiny_bundle)
    d["tokens"][5]["id"] = 3
    d["ablation"] = {"mode": "zero", "heads": [[0, 9]]}
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(SessionFileError, match=r"head \(0, 9\) does not exist"):
        restore_session(read_session_file(path), tiny_bundle)
    assert (session.tokens, steps_of(session), redo_of(session)) == before[:3]
    assert np.array_equal(session.attention(), before[3])
    session.redo(3)  # the open session still works
    assert session.n_generated == 9


def test_load_session_model(tmp_path, tiny_bundle, session):
    from gptviz.io.checkpoint import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "model", tiny_bundle.model, tiny_bundle.tokenizer)
    from gptviz import load_model

    bundle = load_model(ckpt)
    s = Session(bundle, PROMPT)
    s.generate(3)
    path = tmp_path / "m.gptviz.json"
    save_session(path, s, bundle)
    data = read_session_file(path)
    assert data.model_path == str(ckpt.resolve()) and not data.model_bundled
    again = load_session_model(data)
    r, _ = restore_session(data, again)
    assert_same_session(s, r)
    # A missing model says so, naming the session file and the model path.
    d = json.loads(path.read_text(encoding="utf-8"))
    d["model"]["path"] = str(tmp_path / "gone")
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(SessionFileError, match="cannot be opened") as e:
        load_session_model(read_session_file(path))
    assert str(path) in str(e.value) and str(tmp_path / "gone") in str(e.value)


def test_weights_hash_is_cached_and_invalidated(tiny_bundle, monkeypatch):
    h = weights_sha256(tiny_bundle)
    assert h == tiny_bundle.weights_hash()
    calls = []
    real = type(tiny_bundle).weights_hash
    monkeypatch.setattr(type(tiny_bundle), "weights_hash",
                        lambda self: calls.append(1) or real(self))
    assert weights_sha256(tiny_bundle) == h and calls == []
    with torch.no_grad():
        tiny_bundle.model.wte.weight[0, 0] += 1.0
    assert weights_sha256(tiny_bundle) != h and calls == [1]


# ---------------------------------------------------------------------- atomic writes
def test_interrupted_write_leaves_the_old_file(tmp_path, tiny_bundle, session, monkeypatch):
    path, _ = saved(tmp_path, tiny_bundle, session)
    old = path.read_bytes()
    session.redo(3)

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="No space left") as e:
        save_session(path, session, tiny_bundle, VIEW)
    assert e.value.filename == str(path)
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    monkeypatch.undo()
    # A view that is not JSON fails before anything is written.
    with pytest.raises(ValueError, match="view is not JSON"):
        save_session(path, session, tiny_bundle, {"bad": object()})
    with pytest.raises(ValueError, match="view is not JSON"):
        save_session(path, session, tiny_bundle, {"bad": float("nan")})
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]
    # And a good save replaces it.
    save_session(path, session, tiny_bundle, VIEW)
    assert read_session_file(path).cursor == 9


def test_session_data_from_dict_names_its_source(tiny_bundle, session):
    from gptviz.io.session_file import session_to_dict

    d = session_to_dict(session, tiny_bundle, VIEW)
    data = session_data_from_dict(json.loads(json.dumps(d)), "clipboard")
    assert data.cursor == 6 and data.view == VIEW
    with pytest.raises(SessionFileError, match="^clipboard: "):
        session_data_from_dict({**d, "version": 99}, "clipboard")


# ---------------------------------------------------------------------- engine hooks
# ``replay``/``forced``, ``StepResult.settings`` and ``Session.ablation_applied_at``, which
# session files rely on.
def test_engine_replay_records_flags_and_settings(tiny_bundle):
    s1 = SamplingSettings(temperature=0.7, seed=3)
    s2 = SamplingSettings(greedy=True)
    s = Session(tiny_bundle, "Once upon a time", settings=s1)
    a = s.step()
    assert a.settings == s1 and not a.forced
    s.set_settings(s2)
    b = s.step(force=7)
    assert b.forced and b.settings == s2
    c = s.step(force=9, forced=False)             # a replayed sampled token
    assert not c.forced and c.token_id == 9
    d = s.replay(11, forced=False, settings=s1)   # keeps what it is told
    assert (d.token_id, d.forced, d.settings) == (11, False, s1)
    e = s.replay(12, forced=True)
    assert e.forced and e.settings == s2          # default: the current settings
    # undo/redo keep the recorded settings, also when redo has to feed the token again
    s.undo(2)
    assert [r.settings for r in s.redo_stack] == [s1, s2]
    s.redo(2)
    assert [r.settings for r in s.history] == [s1, s2, s2, s1, s2]
    with pytest.raises(ValueError):
        s.replay(10**9)


def test_engine_ablation_applied_at_follows_branches_and_resets(tiny_bundle):
    s = Session(tiny_bundle, "Once upon a time")
    assert s.ablation_applied_at is None
    s.generate(5)
    abl = make_ablation(tiny_bundle.config, [(0, 1)], "zero")
    s.set_ablation(abl)
    assert s.ablation_applied_at == s.n_tokens
    at = s.n_tokens
    s.generate(3)
    s.undo(2)                      # undo keeps the redo stack: the point stays
    assert s.ablation_applied_at == at
    s.undo(3)                      # before the point, with the point on the redo stack
    assert s.ablation_applied_at == at
    s.step()                       # a branch drops the redo stack: counts from the cursor
    assert s.ablation_applied_at == s.n_tokens - 1 < at
    s.reset()
    assert s.ablation_applied_at == s.prompt_len
    s.set_prompt("The quick brown fox")
    assert s.ablation_applied_at == s.prompt_len
    s.set_ablation(None)
    assert s.ablation_applied_at is None


def test_session_after_reset_with_ablation_saves_a_readable_file(tmp_path, tiny_bundle):
    """Without the clamp above, applied_at would point past the saved tokens."""
    s = Session(tiny_bundle, "Once upon a time")
    s.generate(6)
    s.set_ablation(make_ablation(tiny_bundle.config, [(1, 2)], "zero"))
    s.generate(2)
    s.reset()
    s.generate(3)
    p = tmp_path / "s.gptviz.json"
    save_session(p, s, tiny_bundle)
    data = read_session_file(p)
    r, _view = restore_session(data, tiny_bundle)
    assert r.tokens == s.tokens
    np.testing.assert_allclose(r.attention(), s.attention(), atol=1e-6)


def test_restored_tokens_keep_sampled_and_forced_flags(tmp_path, tiny_bundle):
    s = Session(tiny_bundle, "Hello", settings=SamplingSettings(seed=5))
    s.generate(3)
    s.step(force=42)
    s.set_settings(SamplingSettings(temperature=0.5, seed=5))
    s.generate(2)
    p = tmp_path / "a.gptviz.json"
    save_session(p, s, tiny_bundle)
    r, _ = restore_session(read_session_file(p), tiny_bundle)
    assert [(h.token_id, h.forced, h.settings) for h in r.history] == \
        [(h.token_id, h.forced, h.settings) for h in s.history]
    # saving the restored session gives the same tokens section
    q = tmp_path / "b.gptviz.json"
    save_session(q, r, tiny_bundle)
    assert json.loads(q.read_text())["tokens"] == json.loads(p.read_text())["tokens"]
