"""A broken Hugging Face cache, one thing at a time (:data:`hostile_cache.DAMAGE`), and names
that are not in it (:data:`hostile_cache.NAMES`).

The cache holds two copies of a tiny GPT-2, ``org/good`` and ``org/bad``; each case breaks
one thing of ``org/bad``. Then: opening ``org/bad`` by name (the Python API and ``--model``)
succeeds or says what is wrong in one line; the cache listing (File ▸ Open model) still lists
``org/good`` as supported and lists ``org/bad``, with the reason when it is broken; the
dialog's rows are built; nothing blocks (every case runs under an alarm: the pipes of the
cases live in the test's own cache, opened by nothing but the code under test). Every socket
is refused: a connection attempt fails the test.
"""

from __future__ import annotations

import shutil

import pytest
from hostile_cache import DAMAGE, NAMES
from hub_cache import fail_after, good_and_bad_cache, refuse_network

from gptviz.cli import main as cli_main
from gptviz.families import hub, load_model
from gptviz.io.checkpoint import CheckpointError

pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")

GOOD, BAD = "1" * 40, "2" * 40


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    refuse_network(monkeypatch)


@pytest.fixture(autouse=True)
def alarm():
    """Fail instead of hanging: a blind read of a named pipe blocks forever."""
    with fail_after(30, "blocked (a named pipe opened without a check?)"):
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """A cache with ``org/good`` and ``org/bad``, made once and copied for every case."""
    return good_and_bad_cache(tmp_path_factory.mktemp("hostile-cache"), GOOD, BAD)


@pytest.fixture
def cache(template, tmp_path, monkeypatch):
    c = tmp_path / "hub"
    shutil.copytree(template, c, symlinks=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


def one_line(message: str) -> None:
    assert "\n" not in message and "\r" not in message and "\x00" not in message, message
    assert len(message) < 1000, message[:200]
    assert "Traceback" not in message, message


def opens_or_one_line(name: str) -> str | None:
    """The model's kind, or ``None`` after a one-line refusal."""
    try:
        return load_model(name).kind
    except CheckpointError as e:
        one_line(str(e))
        return None


def cli_opens_or_one_line(name: str, capsys, cache=None) -> int:
    rc = cli_main(["info", "--model", name])
    err = capsys.readouterr().err.strip()
    assert rc in (0, 2), (rc, err)
    if rc == 2:
        one_line(err)
        assert err.startswith("error: "), err
        # the line starts with what is wrong (the name, or a file of the cache), never with a
        # library's own words ("'utf-8' codec can't decode...", "[Errno 36] ...")
        subject = err[len("error: "):].split(": ")[0]
        assert (subject in (name, hub.shown_name(name), " ".join(name.split()))
                or subject.endswith("…") or "--model" in subject
                or (cache is not None and subject.startswith(str(cache)))), err
    return rc


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_one_broken_repository(cache, case, capsys):
    DAMAGE[case](cache / "models--org--bad", BAD)
    kind = opens_or_one_line("org/bad")
    rc = cli_opens_or_one_line("org/bad", capsys, cache)
    assert (rc == 0) == (kind is not None)
    listed = hub.cached_models()
    by_name = {m.repo_id: m for m in listed}
    assert by_name["org/good"].supported and by_name["org/good"].reason is None, case
    others = [m for m in listed if m.repo_id != "org/good"]
    assert len(others) == 1, others  # the broken one is listed, never dropped in silence
    bad = others[0]
    if bad.reason is not None:
        one_line(bad.reason)
        assert not bad.supported
    if not bad.supported:
        assert kind is None, f"{case}: listed as unsupported but it opens"

    from gptviz_app.actions.open_model import model_rows
    from gptviz_app.actions.preferences import Preferences

    prefs = Preferences.in_memory()
    prefs.set_value("recent/models", ["org/bad", "org/good", "org/bad@dev"])
    rows = model_rows(prefs)
    assert any(r.group == "Cache" and r.title == "org/good" and r.reason is None for r in rows)
    assert any(r.group == "Recent" and r.title == "org/good" and r.reason is None for r in rows)
    for r in rows:
        if r.reason is not None:
            one_line(r.reason)


def test_the_good_repository_still_opens_beside_broken_ones(cache):
    for case in ("refs/main is a pipe", "config.json is a pipe", "the weights are a pipe",
                 "refs/dev is binary"):
        DAMAGE[case](cache / "models--org--bad", BAD)
    assert load_model("org/good").kind == "hf-gpt2"
    assert [m.repo_id for m in hub.cached_models() if m.supported] == ["org/good"]


@pytest.mark.parametrize("case,words", [
    ("refs/main is a pipe", "refs/main is a named pipe"),
    ("refs/main is binary", "refs/main is not a commit hash"),
    ("refs/main is huge", "refs/main is not a commit hash (more than 1024 bytes)"),
    ("refs/main names no snapshot", "names commit ffffffff, which has no snapshot folder"),
    ("the snapshot is a pipe", "snapshots/22222222… is a named pipe"),
    ("the repository is a file", "models--org--bad is a file, not a folder"),
])
def test_a_damaged_repository_is_called_damaged_with_the_repair(cache, case, words):
    DAMAGE[case](cache / "models--org--bad", BAD)
    with pytest.raises(CheckpointError) as e:
        hub.resolve_name("org/bad")
    msg = str(e.value)
    assert "org/bad is in the Hugging Face cache" in msg and words in msg, msg
    assert "hf download org/bad" in msg, msg
    reason = {m.repo_id: m for m in hub.cached_models()}["org/bad"].reason
    assert reason is not None and words in reason, reason


def test_a_ref_with_a_trailing_newline_still_opens(cache):
    DAMAGE["refs/main ends in a newline"](cache / "models--org--bad", BAD)
    assert load_model("org/bad").kind == "hf-gpt2"


def test_without_refs_main_the_listing_opens_the_snapshot_by_commit(cache):
    DAMAGE["refs is missing"](cache / "models--org--bad", BAD)
    bad = {m.repo_id: m for m in hub.cached_models()}["org/bad"]
    assert bad.supported and bad.spec == f"org/bad@{BAD}"
    assert load_model(bad.spec).kind == "hf-gpt2"
    with pytest.raises(CheckpointError, match=f"open one by its commit, e.g. org/bad@{BAD}"):
        load_model("org/bad")


def _name(text: str) -> str:
    return (text.replace("COMMITUPPER", GOOD.upper()).replace("COMMIT7", GOOD[:7])
            .replace("COMMIT", GOOD))


@pytest.mark.parametrize("text", NAMES, ids=lambda t: ascii(t)[:40])
def test_names_open_or_say_why_in_one_line(cache, text, capsys):
    name = _name(text)
    kind = opens_or_one_line(name)
    if name in ("org/good", f"org/good@{GOOD}"):
        assert kind == "hf-gpt2"
    if "\x00" not in name:  # a command line cannot hold a NUL
        cli_opens_or_one_line(name, capsys)


@pytest.mark.parametrize("how", ["file", "fifo", "dangling", "loop"])
def test_a_cache_folder_that_is_not_a_folder(tmp_path, monkeypatch, how):
    from hostile_cache import _replace

    c = tmp_path / "hub"
    c.mkdir()
    _replace(c, how, b"x")
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    assert hub.cached_models() == []
    assert opens_or_one_line("org/good") is None


def test_the_dialog_greys_a_broken_repository_and_says_why(cache, qtbot):
    from PySide6.QtCore import Qt

    from gptviz_app.actions.open_model import OpenModelDialog, model_rows
    from gptviz_app.actions.preferences import Preferences

    DAMAGE["refs/main is a pipe"](cache / "models--org--bad", BAD)
    dialog = OpenModelDialog(None, model_rows(Preferences.in_memory()))
    qtbot.addWidget(dialog)
    bad, good = dialog.row_item("org/bad"), dialog.row_item("org/good")
    assert bad is not None and good is not None
    assert bad.text(1) == "cannot open" and "refs/main is a named pipe" in bad.text(4)
    assert "refs/main is a named pipe" in bad.toolTip(0)
    assert not bad.flags() & Qt.ItemFlag.ItemIsSelectable
    assert good.flags() & Qt.ItemFlag.ItemIsSelectable and good.text(1) == "Hugging Face GPT-2"
    dialog.close()


def test_a_folder_tree_deeper_than_python_recurses_is_listed(tmp_path):
    """A repository whose blobs nest 1,200 folders deep (os.walk recursed past Python's
    limit): the cache is still listed, the repository with it."""
    import os

    repo = tmp_path / "models--org--deep"
    snap = repo / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text('{"model_type": "gpt2"}')
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a" * 40)
    (repo / "blobs").mkdir()
    fd = cur = os.open(repo / "blobs", os.O_RDONLY)
    try:
        for _ in range(1200):  # relative to the parent's descriptor: no path too long
            os.mkdir("a", dir_fd=cur)
            nxt = os.open("a", os.O_RDONLY, dir_fd=cur)
            if cur != fd:
                os.close(cur)
            cur = nxt
    finally:
        if cur != fd:
            os.close(cur)
        os.close(fd)
    try:
        models = hub.cached_models(tmp_path)
        assert [m.repo_id for m in models] == ["org/deep"]
    finally:  # from the deepest up: a recursive removal would meet the same limit
        for depth in range(1200, 0, -1):
            os.rmdir(os.path.join(repo, "blobs", *["a"] * depth))
