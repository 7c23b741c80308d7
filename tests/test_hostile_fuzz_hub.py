"""A bounded fuzz (hypothesis, derandomized; ``GPTVIZ_FUZZ_EXAMPLES`` scales it) of model
names, refs files, a cache listing, timeline ``metadata.json`` / ``losses.json`` files and
the recent-models preference: every input ends in success or one clear line, never a
traceback; one broken repository never hides the others.

No named pipe is made here: fuzzed names and paths may be opened blindly (the pipes of the
hostile cases live in ``test_hostile_hub_cache.py`` and ``test_hostile_timeline.py``).
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from hub_cache import good_and_bad_cache, refuse_network
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gptviz.analysis.timeline import TimelineError, read_series
from gptviz.families import hub, load_model
from gptviz.io.checkpoint import CheckpointError

pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

FUZZ = settings(max_examples=max(1, int(os.environ.get("GPTVIZ_FUZZ_EXAMPLES", "200")) // 2),
                deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
GOOD, BAD = "1" * 40, "2" * 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse_network(monkeypatch)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return good_and_bad_cache(tmp_path_factory.mktemp("fuzz-hub"), GOOD, BAD)


@pytest.fixture
def env(cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def one_line(message: str) -> None:
    assert "\n" not in message and "\r" not in message and "\x00" not in message, message
    assert len(message) < 1000, message[:200]


PIECES = st.sampled_from(["org", "good", "bad", "gpt2", "@", "/", "//", "..", ".", "-", "--",
                          "_", "main", GOOD, GOOD[:7], "refs/pr/1", "\n", "\x00", " ", "~",
                          "\udcff", "😀", "x" * 300, "models--org--good", ".pt", ".json"])
NAMES = st.one_of(st.lists(PIECES, min_size=1, max_size=6).map("".join),
                  st.text(max_size=40))


@FUZZ
@given(name=NAMES)
def test_fuzz_names(env, name):
    try:
        bundle = load_model(name)
        event("opened")
        assert bundle.kind == "hf-gpt2"
    except CheckpointError as e:
        event("refused")
        one_line(str(e))


@FUZZ
@given(content=st.one_of(st.binary(max_size=120),
                         st.sampled_from([BAD.encode(), BAD.encode() + b"\n", b" " + BAD.encode(),
                                          BAD.upper().encode(), b"", b"\n", GOOD.encode()])),
       ref=st.sampled_from(["main", "dev", "refs/pr/1"]))
def test_fuzz_refs_files(env, content, ref):
    path = env / "models--org--bad" / "refs" / ref
    path.parent.mkdir(parents=True, exist_ok=True)
    old = path.read_bytes() if path.is_file() else None
    path.write_bytes(content)
    try:
        try:
            kind = load_model("org/bad" if ref == "main" else f"org/bad@{ref}").kind
            event("opened")
            assert kind == "hf-gpt2"
        except CheckpointError as e:
            event("refused")
            one_line(str(e))
        listed = {m.repo_id: m for m in hub.cached_models()}
        assert listed["org/good"].supported and "org/bad" in listed
        if listed["org/bad"].reason is not None:
            one_line(listed["org/bad"].reason)
    finally:
        if old is None:
            path.unlink()
        else:
            path.write_bytes(old)


HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["pretrain", "finetune", "induct", "anneal", 0, 250, "250", 250.0]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(),
                                                          max_size=2))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    from hostile_series import small_series

    return small_series(tmp_path_factory.mktemp("fuzz-series") / "run")


@FUZZ
@given(changes=st.dictionaries(st.sampled_from(["iteration", "stage", "name", "extra"]),
                               HOSTILE, min_size=1, max_size=3),
       index=st.integers(0, 2))
def test_fuzz_snapshot_metadata(series, changes, index):
    snap = sorted(p for p in series.iterdir() if p.is_dir())[index]
    path = snap / "metadata.json"
    old = path.read_text()
    path.write_text(json.dumps({**json.loads(old), **changes}, allow_nan=True),
                    encoding="utf-8", errors="surrogatepass")
    try:
        s = read_series(series)
        event("read")
        assert s.iterations == sorted(set(s.iterations))
    except TimelineError as e:
        event("refused")
        one_line(str(e))
    finally:
        path.write_text(old)


POINTS = st.one_of(HOSTILE, st.lists(st.lists(HOSTILE, max_size=3), max_size=4))


@FUZZ
@given(curves=st.one_of(HOSTILE, st.dictionaries(st.sampled_from(["l1", "l3", "copy", ""]),
                                                  POINTS, max_size=3)),
       stages=st.one_of(HOSTILE, st.lists(st.one_of(HOSTILE, st.dictionaries(
           st.sampled_from(["stage", "start", "end"]), HOSTILE, max_size=3)), max_size=3)))
def test_fuzz_losses(series, curves, stages):
    path = series / "losses.json"
    old = path.read_text()
    path.write_text(json.dumps({"curves": curves, "stages": stages}, allow_nan=True),
                    encoding="utf-8", errors="surrogatepass")
    try:
        s = read_series(series)
        event("read")
        for c in s.curves.values():
            assert c.ndim == 2 and c.shape[1] == 2
        for st_ in s.stages:
            assert isinstance(st_["stage"], str)
    except TimelineError as e:
        event("refused")
        one_line(str(e))
    finally:
        path.write_text(old)


RECENT = st.recursive(
    st.one_of(st.text(max_size=30), st.integers(), st.none(), st.floats(), st.binary(max_size=8),
              st.sampled_from(["org/good", "org/bad", "org/absent", "gpt2", "/", "/dev/null",
                               "/nowhere/ckpt.pt", "x" * 5000, "org/good@" + GOOD])),
    lambda inner: st.lists(inner, max_size=12), max_leaves=30)


@FUZZ
@given(value=RECENT)
def test_fuzz_recent_models(env, tmp_path, value):
    from gptviz_app.actions.open_model import model_rows
    from gptviz_app.actions.preferences import Preferences

    prefs = Preferences.in_memory()
    prefs.set_value("recent/models", value)
    rows = model_rows(prefs)
    recent = [r for r in rows if r.group == "Recent"]
    assert len(recent) <= 10
    assert any(r.group == "Cache" and r.title == "org/good" and r.reason is None for r in rows)
    for r in rows:
        if r.reason is not None:
            one_line(r.reason)


def test_a_copy_of_the_cache_is_left_as_it_was(cache, tmp_path):
    """The fuzz restores what it edits: the cache still opens both models."""
    c = tmp_path / "hub"
    shutil.copytree(cache, c, symlinks=True)
    assert {m.repo_id for m in hub.cached_models(c) if m.supported} == {"org/good", "org/bad"}
