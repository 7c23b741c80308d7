"""Ways a Hugging Face hub cache can be broken, one function each, for the hostile tests.

Each damage function takes the repository folder (``<cache>/models--org--name``) of a model
put in the cache by :func:`hub_cache.add_to_cache` and its commit, and breaks one thing:
a ref that is a named pipe, a folder, a dangling link, a huge or binary file; a snapshot
folder that is a file or a pipe; a config.json or safetensors file that is a pipe, junk or
deeply nested; the repository folder itself replaced by a file, a pipe or a dangling link.

The pipes are made here, inside a cache the test owns: only the code under test opens them,
and every test using them runs under an alarm (a blind open of a pipe blocks forever).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

#: Bytes of the "huge" files (sparse: no disk used; reading one whole would take this much).
HUGE = 64 * 1024 * 1024


def _replace(path: Path, how: str, content: bytes = b"") -> None:
    """Put a ``how`` (``"fifo"``, ``"dir"``, ``"dangling"``, ``"loop"``, ``"file"``,
    ``"huge"``, ``"missing"``) where ``path`` was."""
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    if how == "fifo":
        os.mkfifo(path)
    elif how == "dir":
        path.mkdir()
        (path / "inner").write_text("x")
    elif how == "dangling":
        path.symlink_to("no-such-target")
    elif how == "loop":
        path.symlink_to(path.name)
    elif how == "file":
        path.write_bytes(content)
    elif how == "huge":
        with open(path, "wb") as f:
            f.truncate(HUGE)
    elif how != "missing":
        raise ValueError(how)


def _snapshot(repo: Path, commit: str) -> Path:
    return repo / "snapshots" / commit


def _ref(how: str, content: bytes = b"", name: str = "main") -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        path = repo / "refs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        _replace(path, how, content.replace(b"COMMIT", commit.encode()))
    return damage


def _in_snapshot(file: str, how: str, content: bytes = b"") -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        _replace(_snapshot(repo, commit) / file, how, content)
    return damage


def _at(rel: str, how: str, content: bytes = b"") -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        _replace(repo / rel.replace("COMMIT", commit), how, content)
    return damage


def _first_safetensors(how: str, content: bytes = b"") -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        snap = _snapshot(repo, commit)
        _replace(next(snap.glob("*.safetensors")), how, content)
    return damage


def _whole_repo(how: str) -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        _replace(repo, how, b"not a repository")
    return damage


def _rename(new: str) -> Callable[[Path, str], None]:
    def damage(repo: Path, commit: str) -> None:
        os.rename(repo, repo.parent / new)
    return damage


DEEP = b"[" * 200_000 + b"]" * 200_000
BINARY = bytes(range(256)) * 4

#: name -> damage(repo, commit). The broken repository is ``org/bad``.
DAMAGE: dict[str, Callable[[Path, str], None]] = {
    "refs/main is a pipe": _ref("fifo"),
    "refs/main is a folder": _ref("dir"),
    "refs/main is a dangling link": _ref("dangling"),
    "refs/main is a link loop": _ref("loop"),
    "refs/main is huge": _ref("huge"),
    "refs/main is binary": _ref("file", BINARY),
    "refs/main is empty": _ref("file", b""),
    "refs/main names no snapshot": _ref("file", b"f" * 40),
    "refs/main ends in a newline": _ref("file", b"COMMIT\n"),
    "refs/main is two lines of text": _ref("file", b"hello world\nsecond line"),
    "refs/main holds a NUL": _ref("file", b"COMMIT\x00"),
    "refs/main is not UTF-8": _ref("file", b"\xff\xfe" + b"a" * 38),
    "refs/main names a path": _ref("file", b"../../../../etc"),
    "refs/dev is a pipe": _ref("fifo", name="dev"),
    "refs/dev is binary": _ref("file", BINARY, name="dev"),
    "refs/pr/1 is a pipe": _ref("fifo", name="refs/pr/1"),
    "refs is a file": _at("refs", "file", b"COMMIT"),
    "refs is a pipe": _at("refs", "fifo"),
    "refs is a dangling link": _at("refs", "dangling"),
    "refs is missing": _at("refs", "missing"),
    "snapshots is missing": _at("snapshots", "missing"),
    "snapshots is a file": _at("snapshots", "file", b"x"),
    "snapshots is a pipe": _at("snapshots", "fifo"),
    "snapshots is a link loop": _at("snapshots", "loop"),
    "snapshots is empty": _at("snapshots", "dir"),
    "the snapshot is a file": _at("snapshots/COMMIT", "file", b"x"),
    "the snapshot is a pipe": _at("snapshots/COMMIT", "fifo"),
    "the snapshot is a dangling link": _at("snapshots/COMMIT", "dangling"),
    "the snapshot is a link loop": _at("snapshots/COMMIT", "loop"),
    "blobs are missing": _at("blobs", "missing"),
    "config.json is a pipe": _in_snapshot("config.json", "fifo"),
    "config.json is a folder": _in_snapshot("config.json", "dir"),
    "config.json is a dangling link": _in_snapshot("config.json", "dangling"),
    "config.json is a link loop": _in_snapshot("config.json", "loop"),
    "config.json is binary": _in_snapshot("config.json", "file", BINARY),
    "config.json is huge": _in_snapshot("config.json", "huge"),
    "config.json nests deeply": _in_snapshot("config.json", "file", DEEP),
    "config.json is a list": _in_snapshot("config.json", "file", b"[1, 2]"),
    "config.json model_type is a list": _in_snapshot(
        "config.json", "file", b'{"model_type": ["gpt2"], "n_layer": 2}'),
    "config.json model_type is long": _in_snapshot(
        "config.json", "file", b'{"model_type": "' + b"x" * 100_000 + b'"}'),
    "config.json model_type has newlines": _in_snapshot(
        "config.json", "file", b'{"model_type": "a\\nb\\u0000c"}'),
    "config.json sizes are huge": _in_snapshot(
        "config.json", "file", b'{"model_type": "gpt2", "n_layer": 1e400, "n_embd": '
        + b"9" * 5000 + b', "vocab_size": -1}'),
    "the weights are a pipe": _first_safetensors("fifo"),
    "the weights are a folder": _first_safetensors("dir"),
    "the weights are binary": _first_safetensors("file", BINARY),
    "the weights are huge": _first_safetensors("huge"),
    "the weights are empty": _first_safetensors("file"),
    "the snapshot holds a pipe": _in_snapshot("extra.bin", "fifo"),
    "the snapshot holds a link loop": _in_snapshot("loop", "loop"),
    "tokenizer.json is a pipe": _in_snapshot("tokenizer.json", "fifo"),
    "the repository is a file": _whole_repo("file"),
    "the repository is a pipe": _whole_repo("fifo"),
    "the repository is a dangling link": _whole_repo("dangling"),
    "the repository is a link loop": _whole_repo("loop"),
    "the repository folder is called models--": _rename("models--"),
    "the repository folder has three parts": _rename("models--a--b--c"),
    "the repository folder is called models--org--": _rename("models--org--"),
}

#: Names and revisions that are not in the cache or not names at all: each gives a success
#: or one clear line (``COMMIT`` stands for the good repository's commit).
NAMES = [
    "org/bad@../../../etc", "org/good@main/../..", "org/good@" + "a" * 200,
    "org/good@" + "a" * 201, "org/good@refs/pr/1", "org/good@.", "org/good@..",
    "org/good@/", "org/good@main\n", "org/good@ main", "org/good@", "@main", "org/@main",
    "org/good@COMMIT", "org/good@COMMIT7", "org/good@COMMITUPPER", "org/good@" + "f" * 40,
    "a" * 96 + "/b", "b/" + "a" * 96, "a" * 97, "org/go od", "org//good", "org/good/",
    "\udcff", "org/\udcffgood", "org/good@\udcff", "org/good\x00", "-", "--model", "gpt2",
    "gpt2@main", "distilgpt2@v1", "org/good@" + "x" * 100_000, "x" * 100_000,
    "org/good@main@dev", "org/good#main", "org/good@😀", "😀/😀", "org/good@main;rm -rf /",
    "org/good@$(id)",
]
