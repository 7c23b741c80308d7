"""A new user's pass over the window, the parts without Qt: thumbnails that fill their tiles,
session files whose tokens must match their text, Reset that can be undone, exports that say
what they show.

Expected values are computed here from the session or written out as formulas.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from gptviz.io.provenance import trace_file_arrays
from gptviz_app.runtime.snapshot import ViewSpec
from gptviz_app.runtime.snapshots import GridMosaic, SnapshotBuilder


def _random_attention(L, H, T, seed=0):
    a = np.tril(np.random.default_rng(seed).random((L, H, T, T)).astype(np.float32))
    return a / a.sum(-1, keepdims=True)


# ---------------------------------------------------------------------- thumbnails
@pytest.mark.parametrize("T", [16, 32, 33, 50, 64, 65, 100, 129, 200])
def test_every_thumbnail_fills_its_tile(T):
    """Pixel (y, x) of a 64-pixel tile shows the maximum over the tokens it covers: blocks of
    b = ceil(T / 64) tokens (one token while T <= 64), block j = floor(p * n / 64) of the
    n = ceil(T / b) blocks (for T <= 64 at an integer scale: token floor(p * T / 64))."""
    L, H, cell, gap = 2, 3, 64, 3
    att = _random_attention(L, H, T)
    g = GridMosaic(L, H, cell=cell, gap=gap)
    g.rebuild_maps(att)
    img = g.image()
    pitch = cell + gap
    b = math.ceil(T / cell)
    n = math.ceil(T / b)
    padded = np.zeros((L, H, n * b, n * b), np.float32)
    padded[:, :, :T, :T] = att
    pooled = padded.reshape(L, H, n, b, n, b).max(axis=(3, 5))
    pooled[:, :, np.triu_indices(n, 1)[0], np.triu_indices(n, 1)[1]] = np.nan
    src = np.arange(cell) * n // cell
    for layer in range(L):
        for head in range(H):
            tile = img[layer * pitch:layer * pitch + cell, head * pitch:head * pitch + cell]
            want = pooled[layer, head][src][:, src]
            np.testing.assert_array_equal(tile, want)
            # the last row and the diagonal's end reach the tile's far edges
            assert np.isfinite(tile[-1]).all() and np.isfinite(tile[-1, -1])
            assert np.isnan(img[layer * pitch + cell:(layer + 1) * pitch]).all()  # gaps


def test_row_thumbnails_fill_the_tile_width():
    L, H, cell, S = 1, 2, 64, 33
    rows = np.random.default_rng(1).random((L, H, S)).astype(np.float32)
    g = GridMosaic(L, H, cell=cell, gap=2)
    g.draw_rows(rows)
    tile = g.image()[:cell, :cell]
    src = np.arange(cell) * S // cell
    np.testing.assert_array_equal(tile, np.broadcast_to(rows[0, 0][src], (cell, cell)))


def test_snapshot_grid_is_the_stretched_mosaic(tiny_bundle):
    from gptviz.engine.session import Session

    s = Session(tiny_bundle, "Once upon a time")
    b = SnapshotBuilder(s, cell=16, gap=2)
    while s.n_tokens < 17:          # past the cell: 17 tokens pool into 9 blocks of 2
        b.note_step(s.step())
    snap = b.build(1, "step", ViewSpec(sqrt_scale=False))
    att = s.attention()
    T = s.n_tokens
    n = math.ceil(T / 2)
    padded = np.zeros(att.shape[:2] + (2 * n, 2 * n), np.float32)
    padded[:, :, :T, :T] = att
    pooled = padded.reshape(att.shape[:2] + (n, 2, n, 2)).max(axis=(3, 5))
    src = np.arange(16) * n // 16
    tile = snap.grid[:16, 18:34]                                     # layer 0, head 1
    want = pooled[0, 1][src][:, src]
    want[np.arange(16)[:, None] * n // 16 < np.arange(16)[None, :] * n // 16] = np.nan
    np.testing.assert_array_equal(tile, want)
    sq = b.build(2, "view", ViewSpec(sqrt_scale=True))
    np.testing.assert_allclose(sq.grid, np.sqrt(snap.grid), rtol=1e-6)


# ---------------------------------------------------------------------- tampered sessions
def _saved_session(tmp_path, bundle):
    import json

    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session
    from gptviz.io.session_file import save_session

    s = Session(bundle, "Once upon a time", SamplingSettings(seed=3))
    s.generate(5)
    s.step(force=42)
    path = tmp_path / "s.gptviz.json"
    save_session(path, s, bundle)
    return s, path, json.loads(path.read_text(encoding="utf-8"))


def _other_id(tok, tid: int) -> int:
    """A token id whose display string differs from ``tid``'s."""
    return next(j for j in range(tok.vocab_size) if tok.display(j) != tok.display(tid))


def test_a_token_id_changed_by_hand_is_refused(tmp_path, tiny_bundle):
    import json

    from gptviz.io.session_file import SessionFileError, read_session_file, restore_session

    s, path, d = _saved_session(tmp_path, tiny_bundle)
    tok = tiny_bundle.tokenizer
    # untouched: opens, every text is the token's display string
    restored, _view = restore_session(read_session_file(path), tiny_bundle)
    assert restored.tokens == s.tokens
    assert [r["text"] for r in d["tokens"]] == [tok.display(t) for t in s.tokens[s.prompt_len:]]
    # tokens[2]'s id changed, its text left as it was
    old = d["tokens"][2]["id"]
    new = _other_id(tok, old)
    d["tokens"][2]["id"] = new
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(SessionFileError) as e:
        restore_session(read_session_file(path), tiny_bundle)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "tokens[2]" in msg
    assert repr(tok.display(new)) in msg and repr(d["tokens"][2]["text"]) in msg
    # a file without texts (hand-written) has nothing to compare: it opens
    for r in d["tokens"]:
        del r["text"]
    path.write_text(json.dumps(d), encoding="utf-8")
    restored, _view = restore_session(read_session_file(path), tiny_bundle)
    assert restored.tokens[s.prompt_len + 2] == new


def test_a_prompt_id_changed_by_hand_is_refused(tmp_path, tiny_bundle):
    import json

    from gptviz.io.session_file import SessionFileError, read_session_file, restore_session

    s, path, d = _saved_session(tmp_path, tiny_bundle)
    tok = tiny_bundle.tokenizer
    ids = d["prompt"]["ids"]
    ids[1] = _other_id(tok, ids[1])
    assert tok.decode(ids) != d["prompt"]["text"]
    path.write_text(json.dumps(d), encoding="utf-8")
    with pytest.raises(SessionFileError) as e:
        restore_session(read_session_file(path), tiny_bundle)
    msg = str(e.value)
    assert "\n" not in msg and "prompt" in msg and repr(d["prompt"]["text"]) in msg
    # the text may differ from the ids' encoding as long as the ids spell it (a prompt
    # given as ids): it opens
    d["prompt"]["text"] = tok.decode(ids)
    path.write_text(json.dumps(d), encoding="utf-8")
    restored, _view = restore_session(read_session_file(path), tiny_bundle)
    assert restored.tokens[:len(ids)] == ids


# ---------------------------------------------------------------------- undoing Reset
def _demo(bundle, steps=8, undo=3):
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    s = Session(bundle, "Once upon a time", SamplingSettings(temperature=0.9, seed=5))
    s.generate(steps - 3)
    s.step(force=42)
    s.generate(2)
    s.undo(undo)
    return s


def _state(s):
    return (s.tokens, [(r.token_id, r.forced, r.prob) for r in s.history],
            [r.token_id for r in s.redo_stack], s.attention(copy=True), s.next_probs())


def test_reset_is_undone_exactly(tiny_bundle):
    s = _demo(tiny_bundle)
    before = _state(s)
    history, redo = s.history, s.redo_stack
    s.reset()
    assert s.n_generated == 0 and not s.can_redo and not s.can_undo
    assert s.can_undo_reset and s.n_put_aside == 8
    s.reset()                       # a second Home loses nothing
    assert s.n_put_aside == 8
    assert s.undo_reset() == 5
    after = _state(s)
    assert after[:3] == before[:3]
    np.testing.assert_array_equal(after[3], before[3])        # bit for bit
    np.testing.assert_array_equal(after[4], before[4])
    assert all(a is b for a, b in zip(s.history, history))   # the stored steps themselves
    assert all(a is b for a, b in zip(s.redo_stack, redo))
    assert not s.can_undo_reset
    s.redo(3)                                                # the redo stack works on
    assert s.n_generated == 8


def test_a_step_after_reset_forgets_what_was_put_aside(tiny_bundle):
    s = _demo(tiny_bundle)
    s.reset()
    s.step()
    assert not s.can_undo_reset and s.undo_reset() == 0 and s.n_generated == 1
    s.reset()
    s.set_prompt("A new prompt")     # nothing to bring back after a new prompt either
    assert s.can_undo_reset is False


def test_reset_undone_after_an_ablation_change_recomputes(tiny_bundle):
    """The tokens come back; their distributions and maps are the ablated model's, as a new
    session replaying the same tokens with that ablation computes them."""
    from gptviz.analysis.ablation import make_ablation
    from gptviz.engine.session import Session

    s = _demo(tiny_bundle, undo=0)
    tokens = s.tokens
    forced = [r.forced for r in s.history]
    s.reset()
    abl = make_ablation(tiny_bundle.config, [(0, 1)], "zero")
    s.set_ablation(abl)
    assert s.undo_reset() == 8
    assert s.tokens == tokens and [r.forced for r in s.history] == forced
    ref = Session(tiny_bundle, tokens[:s.prompt_len])
    ref.set_ablation(abl)
    for t in tokens[s.prompt_len:]:
        ref.step(force=t)
    np.testing.assert_allclose(s.attention(), ref.attention(), atol=1e-6)
    np.testing.assert_allclose([r.prob for r in s.history], [r.prob for r in ref.history],
                               atol=1e-6)


def test_reset_undone_across_a_slid_window(tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = _demo(bundle, steps=20, undo=0)
    assert s.window_start > 0
    before = _state(s)
    s.reset()
    assert s.window_start == 0
    s.undo_reset()
    after = _state(s)
    assert after[:3] == before[:3] and s.window_start > 0
    np.testing.assert_allclose(after[3], before[3], atol=1e-6)   # one forward: float rounding


# ---------------------------------------------------------------------- exports
def test_trace_says_what_it_shows(tmp_path, tiny_bundle):
    import json

    from gptviz.analysis.ablation import make_ablation
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session
    from gptviz.io.export import TRACE_DATA_KEYS, TRACE_KEYS, trace_npz

    s = Session(tiny_bundle, "Once upon a time", SamplingSettings(temperature=0.8, seed=2))
    s.generate(2)
    s.step(force=42)                               # step 3, position prompt_len + 2
    s.set_settings(SamplingSettings(greedy=True))
    s.generate(2)
    s.set_ablation(make_ablation(tiny_bundle.config, [(0, 1), (1, 3)], "zero"))
    path = tmp_path / "t.npz"
    trace_npz(path, s)
    with np.load(path, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    assert set(got) == set(TRACE_KEYS) and set(TRACE_DATA_KEYS) < set(got)
    pl = s.prompt_len
    assert got["model"].item() == tiny_bundle.name and int(got["step"]) == 5
    assert got["forced"].dtype == bool and got["forced"].shape == (pl + 5,)
    assert np.flatnonzero(got["forced"]).tolist() == [pl + 2]
    assert json.loads(got["settings"].item()) == {"greedy": True, "temperature": 1.0,
                                                  "top_k": 0, "top_p": 1.0, "seed": 0}
    assert json.loads(got["ablation"].item()) == {"mode": "zero", "heads": [[0, 1], [1, 3]]}
    lines = got["description"].item().split("\n")
    assert lines[1] == f"step 5: {pl + 5} tokens ({pl} prompt + 5 generated)"
    assert lines[2] == "sampling: T=0.8 seed=2 (steps 1-2), greedy (steps 4-5)"
    assert lines[3] == f"forced tokens: step 3 {s.display(42)!r} (position {pl + 2})"
    assert lines[4] == "ablation: zero, L0 H1, L1 H3"
    # the clean model: ablation null, said so in words
    s.set_ablation(None)
    arrays = trace_file_arrays(s)
    assert json.loads(arrays["ablation"].item()) is None
    assert arrays["description"].item().endswith("ablation: none")


def test_csv_writers_take_positions_a_comment_and_the_chosen_token(tmp_path):
    import csv

    from gptviz.io.export import attention_csv, next_token_csv

    m = np.tril(np.full((3, 3), 0.5, np.float32))
    p = attention_csv(tmp_path / "a.csv", m, ["a", "b", "a"], positions=[7, 8, 9],
                      comment=["what: test", "two\nlines"])
    text = p.read_bytes().decode("utf-8")            # CRLF line ends, as written
    head, _, table = text.partition("position,")
    assert head == "# what: test\r\n# two\r\n# lines\r\n"
    rows = list(csv.reader(("position," + table).splitlines()))
    assert rows[0] == ["position", "query \\ key", "7 a", "8 b", "9 a"]
    assert [r[:2] for r in rows[1:]] == [["7", "a"], ["8", "b"], ["9", "a"]]
    assert rows[3][2:] == ["0.5", "0.5", "0.5"]
    q = next_token_csv(tmp_path / "n.csv", [5, 9, 2], [0.2, 0.5, 0.3], ["x", "y", "z"],
                       chosen=2, comment="next")
    lines = q.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "# next" and lines[1] == "rank,id,token,probability,chosen"
    assert lines[2:] == ["1,9,y,0.5,0", "2,2,z,0.3,1", "3,5,x,0.2,0"]
