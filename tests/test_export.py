"""Qt-free exports: attention and next-token CSV, trace NPZ; atomic writes."""

from __future__ import annotations

import csv
import json
import os

import numpy as np
import pytest

from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz.io.export import (
    TRACE_KEYS,
    atomic_write,
    attention_csv,
    next_token_csv,
    trace_npz,
    write_trace_npz,
)
from gptviz.io.provenance import trace_file_arrays
from gptviz.model.gpt import Ablation

TRICKY = ["a,b", 'say "hi"', "↵", "line\nbreak", "cr\r\nlf", "😀", "·the", "", " ", "=1+1",
          "tab\tx", "日本"]


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.reader(f))


def lower_triangular(T, seed=0):
    rng = np.random.default_rng(seed)
    m = np.tril(rng.random((T, T))).astype(np.float32)
    return m / m.sum(-1, keepdims=True)


@pytest.fixture
def session(tiny_bundle):
    s = Session(tiny_bundle, "Hello, world! 😀", SamplingSettings(seed=2))
    s.generate(6)
    return s


# ---------------------------------------------------------------------- attention CSV
def test_attention_csv_round_trips_tricky_tokens(tmp_path):
    T = len(TRICKY)
    m = lower_triangular(T)
    m[3, 1] = 1e-30  # tiny and exact values survive
    m[4, 0] = np.float32(1) / 3
    path = tmp_path / "att.csv"
    assert attention_csv(path, m, TRICKY) == path
    rows = read_csv(path)
    assert len(rows) == T + 1
    assert rows[0][0] == "query \\ key" and rows[0][1:] == TRICKY
    assert [r[0] for r in rows[1:]] == TRICKY
    back = np.array([[np.float32(x) for x in r[1:]] for r in rows[1:]], dtype=np.float32)
    assert back.dtype == m.dtype and np.array_equal(back, m)  # bit for bit
    assert path.read_bytes()[:3] != b"\xef\xbb\xbf"  # plain UTF-8, no BOM
    assert "😀".encode() in path.read_bytes()


def test_attention_csv_of_a_session_head_and_head_average(tmp_path, session):
    toks = session.display_tokens()[session.window_start:]
    head = session.attention_head(1, 2)
    attention_csv(tmp_path / "h.csv", head, toks)
    rows = read_csv(tmp_path / "h.csv")
    assert rows[0][1:] == toks and [r[0] for r in rows[1:]] == toks
    back = np.array([[float(x) for x in r[1:]] for r in rows[1:]], dtype=np.float32)
    assert np.array_equal(back, head)
    np.testing.assert_allclose(back.sum(-1), 1.0, atol=1e-5)
    avg = session.attention()[1].mean(0)  # float32 mean over heads
    attention_csv(tmp_path / "avg.csv", avg, toks)
    rows = read_csv(tmp_path / "avg.csv")
    assert np.array_equal(np.array([[float(x) for x in r[1:]] for r in rows[1:]],
                                   dtype=np.float32), avg)
    m64 = head.astype(np.float64) / 3  # float64 round-trips too
    attention_csv(tmp_path / "d.csv", m64, toks)
    rows = read_csv(tmp_path / "d.csv")
    assert np.array_equal(np.array([[float(x) for x in r[1:]] for r in rows[1:]]), m64)


def test_attention_csv_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="square"):
        attention_csv(tmp_path / "x.csv", np.zeros((2, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="expected 3 tokens, got 2"):
        attention_csv(tmp_path / "x.csv", np.zeros((3, 3)), ["a", "b"])
    with pytest.raises(ValueError, match="real numbers"):
        attention_csv(tmp_path / "x.csv", np.array([["a"]]), ["a"])
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- next-token CSV
def test_next_token_csv_round_trips(tmp_path, session):
    ids, probs, _ = session.next_distribution()
    toks = [session.display(i) for i in ids]
    path = tmp_path / "next.csv"
    next_token_csv(path, ids, probs, toks)
    rows = read_csv(path)
    assert rows[0] == ["rank", "id", "token", "probability"]
    body = rows[1:]
    assert [int(r[0]) for r in body] == list(range(1, len(ids) + 1))
    assert [int(r[1]) for r in body] == ids.tolist()
    assert [r[2] for r in body] == toks
    assert np.array_equal(np.array([float(r[3]) for r in body], dtype=np.float32), probs)


def test_next_token_csv_sorts_and_escapes(tmp_path):
    ids = np.arange(len(TRICKY), dtype=np.int64)
    rng = np.random.default_rng(1)
    probs = rng.random(len(TRICKY)).astype(np.float32)
    probs[2] = probs[5]  # a tie keeps the given order
    path = tmp_path / "n.csv"
    next_token_csv(path, ids, probs, TRICKY)
    body = read_csv(path)[1:]
    order = sorted(range(len(ids)), key=lambda i: (-float(probs[i]), i))
    assert [int(r[1]) for r in body] == order
    assert [r[2] for r in body] == [TRICKY[i] for i in order]
    assert [np.float32(r[3]) for r in body] == [probs[i] for i in order]
    with pytest.raises(ValueError, match="same length"):
        next_token_csv(path, ids[:3], probs, TRICKY[:3])
    with pytest.raises(ValueError, match="expected 3 tokens"):
        next_token_csv(path, ids[:3], probs[:3], TRICKY[:2])


# ---------------------------------------------------------------------- trace NPZ
def check_trace(path, session):
    z = np.load(path, allow_pickle=False)
    cfg = session.config
    T = session.window_len
    assert set(z.files) == set(TRACE_KEYS)
    assert z["token_ids"].dtype == np.int64 and z["token_ids"].tolist() == session.window_tokens
    assert z["tokens"].dtype.kind == "U" and z["tokens"].tolist() == \
        [session.display(t) for t in session.window_tokens]
    att = z["attention"]
    assert att.dtype == np.float32 and att.shape == (cfg.n_layer, cfg.n_head, T, T)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert (att[..., np.triu(np.ones((T, T), dtype=bool), 1)] == 0).all()
    np.testing.assert_allclose(att, session.attention(), atol=1e-5)
    probs = z["probs"]
    assert probs.dtype == np.float32 and probs.shape == (T, cfg.vocab_size)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs[-1], session.next_probs(), atol=1e-5)
    assert z["prompt_len"].dtype == np.int64 and z["prompt_len"].shape == ()
    assert int(z["prompt_len"]) == max(0, session.prompt_len - session.window_start)
    assert int(z["window_start"]) == session.window_start
    assert json.loads(str(z["config"])) == cfg.to_dict()
    return z


def test_trace_npz_schema(tmp_path, session):
    path = tmp_path / "trace.npz"
    arrays = trace_npz(path, session)
    z = check_trace(path, session)
    for k in TRACE_KEYS:
        assert np.array_equal(z[k], arrays[k])


def test_trace_npz_after_a_slide_and_with_ablation(tmp_path, tiny_bundle_factory):
    bundle = tiny_bundle_factory(block_size=16)
    s = Session(bundle, "Once upon a time there was", SamplingSettings(seed=4))
    s.generate(14)
    assert s.window_start > 0
    keep = np.ones((bundle.config.n_layer, bundle.config.n_head), dtype=np.float32)
    keep[0, 1] = 0
    s.set_ablation(Ablation(keep=keep))
    trace_npz(tmp_path / "slid.npz", s)
    z = check_trace(tmp_path / "slid.npz", s)
    assert int(z["window_start"]) > 0 and z["attention"].shape[-1] == s.window_len <= 16


def test_write_trace_npz_keeps_the_name_and_checks_keys(tmp_path, session):
    arrays = trace_file_arrays(session)
    path = tmp_path / "no_suffix"  # numpy would append .npz to a name; a file object doesn't
    write_trace_npz(path, arrays)
    assert path.is_file() and not (tmp_path / "no_suffix.npz").exists()
    check_trace(path, session)
    with pytest.raises(ValueError, match="lack probs"):
        write_trace_npz(tmp_path / "x.npz", {k: v for k, v in arrays.items() if k != "probs"})
    with pytest.raises(ValueError, match="object dtype"):
        write_trace_npz(tmp_path / "x.npz", {**arrays, "tokens": np.array([None, 1])})
    assert not (tmp_path / "x.npz").exists()


# ---------------------------------------------------------------------- atomic writes
def test_exports_are_atomic(tmp_path, session, monkeypatch):
    targets = {"a.csv": lambda p: attention_csv(p, np.eye(2, dtype=np.float32), ["x", "y"]),
               "n.csv": lambda p: next_token_csv(p, [1, 2], [0.6, 0.4], ["x", "y"]),
               "t.npz": lambda p: trace_npz(p, session)}
    for name in targets:
        (tmp_path / name).write_bytes(b"old")
    real = os.replace

    def boom(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    for name, export in targets.items():
        with pytest.raises(OSError, match="No space left") as e:
            export(tmp_path / name)
        assert e.value.filename == str(tmp_path / name)  # names the target, not the temp
        assert (tmp_path / name).read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(targets)
    monkeypatch.setattr(os, "replace", real)
    for name, export in targets.items():
        export(tmp_path / name)
        assert (tmp_path / name).read_bytes() != b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(targets)


def test_atomic_write_cleans_up_after_a_failing_writer(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o640)

    def half(f):
        f.write(b"new but")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        atomic_write(path, half)
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]
    atomic_write(path, lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new"
    assert path.stat().st_mode & 0o777 == 0o640  # permissions of the old file are kept
    with pytest.raises(OSError) as e:
        atomic_write(tmp_path / "missing" / "f.bin", lambda f: f.write(b"x"))
    assert e.value.filename == str(tmp_path / "missing" / "f.bin")
