"""Hostile paths: what is not a regular file is never replaced (pipes and character devices
are written into, directories, sockets refused), temporary files of killed writers are
cleaned up, and inputs that are pipes, directories or dangling links are called what they
are. Session files with numbers past a float and deep nesting are refused cleanly.

Device nodes: only ``/dev/null`` and ``/dev/full`` are written, and each test checks that
they are still character devices afterwards.
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from gptviz.cli import main
from gptviz.engine.session import Session
from gptviz.families import load_model
from gptviz.io.checkpoint import CheckpointError, load_gptviz_checkpoint, save_checkpoint
from gptviz.io.export import TRACE_KEYS, atomic_write, attention_csv
from gptviz.io.session_file import (
    SessionFileError,
    read_session_file,
    restore_session,
    save_session,
    session_data_from_dict,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ckpt(tmp_path, tiny_bundle):
    return str(save_checkpoint(tmp_path / "tiny", tiny_bundle.model, tiny_bundle.tokenizer))


class FifoReader:
    """Reads a named pipe to its end in a thread (what `cat fifo` would get)."""

    def __init__(self, path: Path) -> None:
        self.data = b""
        self.thread = threading.Thread(target=self._read, args=(path,), daemon=True)
        self.thread.start()

    def _read(self, path: Path) -> None:
        with open(path, "rb") as f:
            self.data = f.read()

    def join(self) -> bytes:
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "nothing was written into the pipe"
        return self.data


def fifo(tmp_path: Path, name: str = "pipe") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


def is_char_device(path: str) -> bool:
    return stat.S_ISCHR(os.stat(path).st_mode)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    return err


# ---------------------------------------------------------------------- writing
def test_trace_into_a_named_pipe_writes_it_and_leaves_it_a_pipe(ckpt, tmp_path, capsys):
    path = fifo(tmp_path)
    reader = FifoReader(path)
    assert main(["trace", "--model", ckpt, "--prompt", "hello", "--steps", "3",
                 "--out", str(path)]) == 0
    data = reader.join()
    assert stat.S_ISFIFO(os.stat(path).st_mode)
    with np.load(io.BytesIO(data)) as npz:
        assert set(npz.files) == set(TRACE_KEYS)
        assert npz["attention"].ndim == 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_csv_and_session_into_a_named_pipe(tmp_path, tiny_bundle):
    path = fifo(tmp_path)
    reader = FifoReader(path)
    attention_csv(path, np.eye(2, dtype=np.float32), ["a", "b"])
    assert reader.join().decode() == "query \\ key,a,b\r\na,1.0,0.0\r\nb,0.0,1.0\r\n"
    session = Session(tiny_bundle, "hello there")
    session.generate(2)
    reader = FifoReader(path)
    save_session(path, session, tiny_bundle)
    assert json.loads(reader.join())["format"] == "gptviz-session"
    assert stat.S_ISFIFO(os.stat(path).st_mode)


def test_dev_null_stays_a_character_device(ckpt, capsys):
    assert main(["trace", "--model", ckpt, "--prompt", "hello", "--steps", "2",
                 "--out", "/dev/null"]) == 0
    assert is_char_device("/dev/null")
    atomic_write("/dev/null", lambda f: f.write(b"x" * 100_000))
    assert is_char_device("/dev/null")
    assert os.path.getsize("/dev/null") == 0


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full_is_a_full_disk_not_a_traceback(ckpt, capsys):
    with pytest.raises(OSError) as e:
        atomic_write("/dev/full", lambda f: f.write(b"x" * 100_000))
    assert e.value.errno == errno.ENOSPC and e.value.filename == "/dev/full"
    assert main(["trace", "--model", ckpt, "--prompt", "hello", "--steps", "2",
                 "--out", "/dev/full"]) == 2
    assert "No space left on device" in one_line_error(capsys)
    assert is_char_device("/dev/full")


def test_a_symlink_stays_a_symlink(tmp_path):
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    atomic_write(link, lambda f: f.write(b"new"))
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_bytes() == b"new"


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / "link.npz"
    link.symlink_to(tmp_path / "made.npz")
    atomic_write(link, lambda f: f.write(b"data"))
    assert link.is_symlink() and (tmp_path / "made.npz").read_bytes() == b"data"


def test_directories_and_sockets_are_refused(tmp_path):
    with pytest.raises(IsADirectoryError, match="is a directory"):
        atomic_write(tmp_path, lambda f: f.write(b"x"))
    assert tmp_path.is_dir() and list(tmp_path.iterdir()) == []
    sock_path = tmp_path / "s"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(OSError, match="is a socket"):
            atomic_write(sock_path, lambda f: f.write(b"x"))
        assert stat.S_ISSOCK(os.stat(sock_path).st_mode)


@pytest.mark.parametrize("out,words", [
    ("", "--out is empty"),
    (".", "is a directory"),
    ("{tmp}", "is a directory"),
    ("{tmp}/sock", "is a socket"),
])
def test_trace_out_refused_before_generating(ckpt, tmp_path, capsys, out, words):
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        assert main(["trace", "--model", ckpt, "--prompt", "hi", "--steps", "1",
                     "--out", out.format(tmp=tmp_path)]) == 2
    err = one_line_error(capsys)
    assert words in err and "Device or resource busy" not in err


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temporary_files_of_dead_writers_are_removed(tmp_path):
    target = tmp_path / "t.npz"
    dead, live = _dead_pid(), os.getppid()
    orphan = tmp_path / f".t.npz.{dead}.abc123_x.tmp"
    alive = tmp_path / f".t.npz.{live}.def456.tmp"
    others = [tmp_path / ".t.npz.abcdefgh.tmp",          # another naming: not ours to judge
              tmp_path / f".u.npz.{dead}.abc123.tmp",    # another target's
              tmp_path / f"t.npz.{dead}.abc123.tmp"]     # not hidden: not a temporary file
    for p in (orphan, alive, *others):
        p.write_bytes(b"partial")
    atomic_write(target, lambda f: f.write(b"whole"))
    assert target.read_bytes() == b"whole"
    assert not orphan.exists()
    assert alive.exists() and all(p.exists() for p in others)


def test_a_killed_save_leaves_nothing_after_the_next_save(tmp_path):
    """A writer killed half-way leaves its temporary file; the next write of the same
    target removes it."""
    target = tmp_path / "big.npz"
    code = ("import sys, time; sys.path.insert(0, sys.argv[1]); "
            "from gptviz.io.export import atomic_write; "
            "atomic_write(sys.argv[2], lambda f: (f.write(b'x' * 1_000_000), f.flush(), "
            "print('writing', flush=True), time.sleep(120)))")
    child = subprocess.Popen([sys.executable, "-c", code, str(ROOT), str(target)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        temps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        assert len(temps) == 1 and f".{child.pid}." in temps[0].name
        atomic_write(target, lambda f: f.write(b"y"))  # the writer is alive: kept
        assert temps[0].exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
    assert temps[0].exists()  # what a crash leaves behind
    atomic_write(target, lambda f: f.write(b"z"))
    assert target.read_bytes() == b"z"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npz"]


@pytest.mark.parametrize("redirect", ["pipe", "file"])
def test_dev_stdout_is_written_into_not_replaced(tmp_path, redirect):
    code = ("import sys; sys.path.insert(0, sys.argv[1]); "
            "from gptviz.io.export import atomic_write; "
            "atomic_write('/dev/stdout', lambda f: f.write(b'through stdout'))")
    out_file = tmp_path / "out.bin"
    if redirect == "pipe":
        res = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True,
                             timeout=60)
        assert res.returncode == 0, res.stderr
        assert res.stdout == b"through stdout"
    else:
        with open(out_file, "wb") as f:
            inode = os.fstat(f.fileno()).st_ino
            res = subprocess.run([sys.executable, "-c", code, str(ROOT)], stdout=f,
                                 stderr=subprocess.PIPE, timeout=60)
        assert res.returncode == 0, res.stderr
        assert out_file.read_bytes() == b"through stdout"
        assert out_file.stat().st_ino == inode  # the same file, not a replacement
    assert sorted(p.name for p in tmp_path.iterdir()) == (["out.bin"] if redirect == "file"
                                                          else [])


@pytest.mark.parametrize("redirect", ["pipe", "file"])
def test_trace_to_dev_stdout_is_the_npz_alone(ckpt, tmp_path, redirect):
    """``trace --out /dev/stdout``: stdout carries the NPZ and nothing else (the summary
    line goes to stderr), whether stdout is a pipe or a file."""
    argv = [sys.executable, "-m", "gptviz", "trace", "--model", ckpt, "--prompt", "hello",
            "--steps", "2", "--out", "/dev/stdout"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if redirect == "pipe":
        res = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, timeout=180)
        data = res.stdout
    else:
        with open(tmp_path / "t.npz", "wb") as f:
            res = subprocess.run(argv, cwd=ROOT, env=env, stdout=f, stderr=subprocess.PIPE,
                                 timeout=180)
        data = (tmp_path / "t.npz").read_bytes()
    assert res.returncode == 0, res.stderr
    assert b"wrote /dev/stdout" in res.stderr
    with np.load(io.BytesIO(data)) as npz:
        assert set(npz.files) == set(TRACE_KEYS)


# ---------------------------------------------------------------------- reading
def test_model_inputs_are_called_what_they_are(tmp_path, ckpt):
    path = fifo(tmp_path)
    with pytest.raises(CheckpointError, match="is a named pipe"):
        load_model(path)
    link = tmp_path / "gone"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="broken symbolic link"):
        load_model(link)

    d = Path(ckpt)
    (d / "config.json").rename(d / "config.bak")
    (d / "config.json").mkdir()
    for load in (load_model, load_gptviz_checkpoint):
        with pytest.raises(CheckpointError, match=r"config\.json: is a directory, not a file"):
            load(d)
    (d / "config.json").rmdir()
    (d / "config.bak").rename(d / "config.json")

    (d / "model.safetensors").unlink()
    os.mkfifo(d / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors: is a named pipe"):
        load_model(d)  # and does not block on the pipe
    (d / "tokenizer.json").unlink()
    (d / "tokenizer.json").symlink_to(tmp_path / "no-tokenizer.json")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: is a broken symbolic link"):
        load_model(d)


def test_an_empty_pt_file_says_it_is_empty(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "ckpt.pt")
    assert "the file is empty" in str(e.value) and ": str" not in str(e.value)
    (tmp_path / "ckpt.pt").write_bytes(b"\x80")  # a pickle cut after its first byte
    with pytest.raises(CheckpointError, match="truncated or corrupt") as e:
        load_model(tmp_path / "ckpt.pt")
    assert not str(e.value).endswith("str)")


def test_cli_input_files_that_are_not_files(ckpt, tmp_path, capsys):
    link = tmp_path / "gone.txt"
    link.symlink_to(tmp_path / "nowhere.txt")
    cases = [(["heads", "--prompt-file", str(tmp_path)], "is a directory"),
             (["lens", "--prompt-file", str(link)], "broken symbolic link"),
             (["heads", "--prompt-file", str(tmp_path / "none.txt")], "file is missing"),
             (["eval", "--text", str(tmp_path)], "is a directory")]
    for argv, words in cases:
        assert main(argv[:1] + ["--model", ckpt] + argv[1:]) == 2
        err = one_line_error(capsys)
        assert words in err and ("--prompt-file" in err or "--text" in err), err
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9")
    assert main(["heads", "--model", ckpt, "--prompt-file", str(tmp_path / "bad.txt")]) == 2
    assert "not UTF-8" in one_line_error(capsys)


def test_a_prompt_file_may_be_a_pipe(ckpt, tmp_path, capsys):
    path = fifo(tmp_path)

    def write() -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write("hello hello world")

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    assert main(["heads", "--model", ckpt, "--prompt-file", str(path), "--json",
                 "--probe-len", "0"]) == 0
    writer.join(timeout=60)
    out = json.loads(capsys.readouterr().out)
    assert "".join(out["tokens"]).replace("·", " ") == "hello hello world"


# ---------------------------------------------------------------------- session files
@pytest.fixture
def session_dict(tmp_path, tiny_bundle):
    session = Session(tiny_bundle, "hello world")
    session.generate(3)
    save_session(tmp_path / "s.gptviz.json", session, tiny_bundle)
    return json.loads((tmp_path / "s.gptviz.json").read_text())


def test_session_files_that_are_not_files(tmp_path):
    path = fifo(tmp_path, "s.gptviz.json")
    with pytest.raises(SessionFileError, match="is a named pipe"):
        read_session_file(path)  # refused, not read (which would block)
    with pytest.raises(SessionFileError, match="is a directory"):
        read_session_file(tmp_path)
    link = tmp_path / "l.gptviz.json"
    link.symlink_to(tmp_path / "nowhere")
    with pytest.raises(SessionFileError, match="broken symbolic link"):
        read_session_file(link)
    with pytest.raises(SessionFileError, match="no such file"):
        read_session_file(tmp_path / "nothing.gptviz.json")


HUGE = 10 ** 400  # a JSON integer no float holds


@pytest.mark.parametrize("edit,words", [
    (lambda d: d["settings"].update(temperature=HUGE), "'settings.temperature' must be a finite"),
    (lambda d: d["settings"].update(top_p=HUGE), "'settings.top_p' must be a finite"),
    (lambda d: d["tokens"][0].update(settings={**d["settings"], "temperature": -HUGE}),
     "tokens[0].settings.temperature"),
    (lambda d: d.update(ablation={"mode": "mean", "heads": [[0, 0]], "means": [[HUGE] * 8]}),
     "'ablation.means[0]' must be a non-empty list of finite numbers"),
    (lambda d: d["settings"].update(seed=HUGE), "seed"),
    (lambda d: d.update(cursor=HUGE), "'cursor'"),
    (lambda d: d.update(view={"deep": json.loads("[" * 150 + "]" * 150)}),
     "nested too deeply"),
])
def test_session_numbers_past_a_float_and_deep_nesting(tmp_path, session_dict, edit, words):
    edit(session_dict)
    path = tmp_path / "bad.gptviz.json"
    path.write_text(json.dumps(session_dict))
    with pytest.raises(SessionFileError) as e:
        read_session_file(path)
    assert str(path) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text,words", [
    ('{"format": "gptviz-session", "version": ' + "9" * 5000 + "}", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('{"a": 1e400}', "not a gptviz session file"),
])
def test_session_text_past_the_parser(tmp_path, text, words):
    path = tmp_path / "bad.gptviz.json"
    path.write_text(text)
    with pytest.raises(SessionFileError, match=words):
        read_session_file(path)


@pytest.mark.parametrize("edit,words", [
    (lambda d: d["prompt"].update(ids=[HUGE]), "outside the vocabulary"),
    (lambda d: d["tokens"][1].update(id=10 ** 30), "outside the vocabulary"),
    (lambda d: d.update(ablation={"mode": "zero", "heads": [[10 ** 30, 0]]}), "does not exist"),
])
def test_session_ids_past_the_model_are_refused_on_restore(session_dict, tiny_bundle, edit,
                                                           words):
    edit(session_dict)
    data = session_data_from_dict(session_dict, "s.gptviz.json")
    with pytest.raises(SessionFileError, match=words):
        restore_session(data, tiny_bundle)


def test_a_session_saved_into_dev_null_keeps_it(tiny_bundle):
    session = Session(tiny_bundle, "hello")
    save_session("/dev/null", session, tiny_bundle)
    assert is_char_device("/dev/null")

