"""A session file whose model came from a Hugging Face cache (this machine's, another's, or
one since emptied), and a junk recent-models list in the preferences.

A session saved with a cached model records the snapshot folder. Opened where that folder
does not exist, the same repository and commit are looked up in this machine's cache: found,
the session opens; not found, one line names the model and the ``hf download`` command.

The recent-models list (``recent/models``) may hold anything a hand-edited or damaged
settings file gives back: numbers, nested lists, megabytes of text, paths of pipes and
devices, ten thousand entries. The Open model dialog's rows are built from what makes sense,
quickly, and nothing is opened that could block.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hub_cache import add_to_cache, fail_after, refuse_network

from gptviz import save_checkpoint
from gptviz.engine.session import Session
from gptviz.io.session_file import (
    SessionFileError,
    load_session_model,
    read_session_file,
    restore_session,
    save_session,
    weights_sha256,
)

COMMIT = "3" * 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse_network(monkeypatch)


@pytest.fixture(autouse=True)
def alarm():
    with fail_after(60):
        yield


@pytest.fixture
def cached_session(tmp_path, tiny_bundle, monkeypatch):
    """A session saved with the tiny model opened from a cache at ``tmp_path/a/hub``."""
    from gptviz import load_model

    src = save_checkpoint(tmp_path / "src", tiny_bundle.model, tiny_bundle.tokenizer)
    cache = tmp_path / "a" / "hub"
    add_to_cache(cache, "org/tiny", src, commit=COMMIT)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    bundle = load_model("org/tiny")
    session = Session(bundle, "hello world")
    session.generate(3)
    path = tmp_path / "s.gptviz.json"
    save_session(path, session, bundle)
    return path, cache, src, weights_sha256(bundle)


def test_the_session_records_the_cached_snapshot(cached_session):
    path, cache, _src, _sha = cached_session
    data = read_session_file(path)
    assert Path(data.model_path) == (cache / "models--org--tiny" / "snapshots" / COMMIT).resolve()


def test_a_session_from_another_machines_cache_opens_from_this_one(cached_session, tmp_path,
                                                                    monkeypatch):
    path, cache, src, sha = cached_session
    here = tmp_path / "b" / "hub"
    add_to_cache(here, "org/tiny", src, commit=COMMIT)
    os.rename(cache, tmp_path / "moved")  # the folder the file names is gone
    monkeypatch.setenv("HF_HUB_CACHE", str(here))
    data = read_session_file(path)
    bundle = load_session_model(data)
    assert weights_sha256(bundle) == sha
    session, _view = restore_session(data, bundle)
    assert session.n_generated == 3


@pytest.mark.parametrize("how", ["empty cache", "other commit", "no cache"])
def test_a_session_whose_cached_model_is_not_here_says_which_and_how_to_get_it(
        cached_session, tmp_path, monkeypatch, how):
    path, cache, src, _sha = cached_session
    os.rename(cache, tmp_path / "moved")
    here = tmp_path / "b" / "hub"
    if how == "empty cache":
        here.mkdir(parents=True)
    elif how == "other commit":
        add_to_cache(here, "org/tiny", src, commit="4" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(here))
    with pytest.raises(SessionFileError) as e:
        load_session_model(read_session_file(path))
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 1000, msg
    assert f"the session's model org/tiny (commit {COMMIT[:8]})" in msg, msg
    assert f"hf download org/tiny --revision {COMMIT}" in msg, msg
    assert "Hugging Face cache" in msg, msg


def test_a_session_naming_a_model_by_name_that_is_not_cached(cached_session, tmp_path):
    path, _cache, _src, _sha = cached_session
    d = json.loads(path.read_text())
    d["model"]["path"] = "org/absent"
    p = tmp_path / "named.gptviz.json"
    p.write_text(json.dumps(d))
    with pytest.raises(SessionFileError) as e:
        load_session_model(read_session_file(p))
    msg = str(e.value)
    assert "\n" not in msg and "hf download org/absent" in msg, msg


# ---------------------------------------------------------------------- recent models
def _rows(value, tmp_path, monkeypatch):
    from gptviz_app.actions.open_model import model_rows
    from gptviz_app.actions.preferences import Preferences

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    prefs = Preferences.in_memory()
    prefs.set_value("recent/models", value)
    return [r for r in model_rows(prefs) if r.group == "Recent"], prefs


@pytest.fixture
def pipe_dir(tmp_path):
    """A folder holding a named pipe; only the code under test opens it (under the alarm)."""
    d = tmp_path / "pipes"
    d.mkdir()
    os.mkfifo(d / "model.pt")
    os.mkfifo(d / "ckpt")
    return d


JUNK = {
    "an int": 5,
    "a float": 2.5,
    "None": None,
    "a dict": {"a": "b"},
    "bytes": b"\xff\x00",
    "a nested list": [["org/x", ["y"]], {"z": 1}, 3, None],
    "a long string": "x" * 1_000_000,
    "a long list of long strings": ["y" * 100_000] * 50,
    "10,000 entries": [f"/nowhere/model-{i}" for i in range(10_000)],
    "control characters": ["org/x\n", "a\x00b", "\udcff", "\u202e/evil"],
    "devices": ["/dev/zero", "/dev/null", "/dev/stdin", "/dev/tty", "/proc/self/mem", "/"],
    "names that are not cached": ["gpt2", "org/absent@main", "x" * 300],
    "empty strings": ["", "", " "],
    "a path too long for the system": ["/" + "a" * 5000, "/".join(["b" * 255] * 20)],
}


@pytest.mark.parametrize("case", sorted(JUNK))
def test_a_junk_recent_list_still_gives_the_dialog(case, tmp_path, monkeypatch):
    rows, prefs = _rows(JUNK[case], tmp_path, monkeypatch)
    assert len(rows) <= 10
    for r in rows:
        assert isinstance(r.spec, str) and len(r.spec) <= 4096 and r.spec.isprintable()
        if r.reason is not None:
            assert "\n" not in r.reason and len(r.reason) < 500, r.reason
    prefs.add_recent("models", "org/new")  # adding to a junk list works and cleans it
    assert prefs.recent("models")[0] == "org/new"


def test_recent_pipes_are_named_not_opened(pipe_dir, tmp_path, monkeypatch):
    rows, _ = _rows([str(pipe_dir / "model.pt"), str(pipe_dir / "ckpt"), str(pipe_dir)],
                    tmp_path, monkeypatch)
    reasons = {Path(r.spec).name: r.reason for r in rows}
    assert "named pipe" in reasons["model.pt"] and "named pipe" in reasons["ckpt"]
    assert reasons["pipes"] is not None  # a folder of pipes is no model


def test_recent_duplicates_and_the_root_folder(tmp_path, monkeypatch, tiny_bundle):
    ckpt = save_checkpoint(tmp_path / "m", tiny_bundle.model, tiny_bundle.tokenizer)
    rows, _ = _rows([str(ckpt), str(ckpt), "/", str(ckpt)], tmp_path, monkeypatch)
    assert [r.spec for r in rows] == [str(ckpt), "/"]
    assert rows[0].reason is None and rows[0].family == "gptviz checkpoint"
    assert rows[1].reason is not None  # "/" is no model; its size is not walked


def test_the_dialog_opens_on_a_junk_list(qtbot, tmp_path, monkeypatch):
    from gptviz_app.actions.open_model import OpenModelDialog

    rows, _ = _rows(JUNK["control characters"] + JUNK["devices"], tmp_path, monkeypatch)
    dialog = OpenModelDialog(None, rows)
    qtbot.addWidget(dialog)
    assert dialog.tree.topLevelItemCount() >= 2
    dialog.close()


INI = {
    "a number": "5", "a list": "a, b, c", "bytes": "@ByteArray(\\xff\\x00)",
    "a variant": "@Variant(\\0\\0\\0\\x7f\\0\\0\\0\\x18QPair<QVariant,QVariant>\\0)",
    "invalid": "@Invalid()", "a size": "@Size(1 2)", "a rect": "@Rect(1 2 3 4)",
    "a megabyte": "x" * 1_000_000, "10,000 entries": ", ".join(f"/n/m{i}" for i in range(10_000)),
    "quoted newlines": '"a\\nb", "c"', "devices": "/dev/zero, /dev/stdin, /proc/kmsg",
    "empty": "",
}


@pytest.mark.parametrize("case", sorted(INI))
def test_a_hand_edited_settings_file(case, tmp_path, monkeypatch):
    """What QSettings gives back from an INI file edited by hand: the dialog's rows, the
    device and precision the opener would use."""
    from gptviz_app.actions.open_model import model_rows, stored_device, stored_dtype
    from gptviz_app.actions.preferences import Preferences

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "no-cache"))
    ini = tmp_path / "p.ini"
    v = INI[case]
    ini.write_text(f"[recent]\nmodels={v}\n[model]\ndevice={v}\ndtype={v}\n")
    prefs = Preferences.at_path(str(ini))
    rows = [r for r in model_rows(prefs) if r.group == "Recent"]
    assert len(rows) <= 10
    for r in rows:
        assert r.spec.isprintable() and (r.reason is None or "\n" not in r.reason)
    # what ModelOpener.device / .dtype give the dialog: a value that is no device is "auto"
    assert stored_device(prefs) == "auto" and stored_dtype(prefs) == "float32"
