"""Ways a training-timeline series folder can be broken, one function each, for the hostile
tests: ``metadata.json`` of wrong types, huge, NaN, deeply nested, a pipe or a folder;
snapshot folders missing, doubled, out of order, of another model shape or tokenizer;
``losses.json`` of the wrong shape.

:func:`small_series` copies three snapshots of the shipped run (and its ``losses.json``) into
a folder of the test's own; the damage functions edit that copy. The pipes are made there and
opened by nothing but the code under test, under an alarm.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from hostile_cache import BINARY, DEEP, _replace

#: Snapshots of the shipped run copied into a test series (first, one of the middle, last).
PICK = (0, 1, -1)


def small_series(dest: Path) -> Path:
    """Three snapshots of the shipped series and its losses.json, in ``dest``."""
    from gptviz.analysis.timeline import LOSSES_FILE, default_series_dir

    src = default_series_dir()
    snaps = sorted(p for p in src.iterdir() if p.is_dir() and p.name.isdigit())
    dest.mkdir(parents=True, exist_ok=True)
    for i in PICK:
        shutil.copytree(snaps[i], dest / snaps[i].name)
    shutil.copyfile(src / LOSSES_FILE, dest / LOSSES_FILE)
    return dest


def _snaps(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir() and p.name.isdigit())


def _meta(index: int, edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        path = _snaps(d)[index] / "metadata.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta, allow_nan=True))
    return damage


def _set(key: str, value: object, index: int = 1) -> Callable[[Path], None]:
    return _meta(index, lambda m: m.__setitem__(key, value))


def _meta_raw(content: bytes, index: int = 1) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        (_snaps(d)[index] / "metadata.json").write_bytes(content)
    return damage


def _meta_is(how: str, index: int = 1) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        _replace(_snaps(d)[index] / "metadata.json", how)
    return damage


def _file_is(name: str, how: str, index: int = 1) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        _replace(_snaps(d)[index] / name, how)
    return damage


def _losses(content: object) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        text = content if isinstance(content, bytes) else json.dumps(content, allow_nan=True)
        (d / "losses.json").write_bytes(text if isinstance(text, bytes) else text.encode())
    return damage


def _losses_edit(edit: Callable[[dict], object]) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        data = json.loads((d / "losses.json").read_text())
        edit(data)
        (d / "losses.json").write_text(json.dumps(data, allow_nan=True))
    return damage


def _losses_is(how: str) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        _replace(d / "losses.json", how)
    return damage


def _entry(name: str, how: str) -> Callable[[Path], None]:
    """An entry named like a snapshot that is not a snapshot folder."""
    def damage(d: Path) -> None:
        (d / name).parent.mkdir(parents=True, exist_ok=True)
        _replace(d / name, how, b"x")
    return damage


def _rename(index: int, new: str, fix_meta: bool = False) -> Callable[[Path], None]:
    def damage(d: Path) -> None:
        src = _snaps(d)[index]
        os.rename(src, d / new)
        if fix_meta:
            path = d / new / "metadata.json"
            meta = json.loads(path.read_text())
            meta["iteration"] = int(new)
            path.write_text(json.dumps(meta))
    return damage


def _copy_as(index: int, name: Callable[[str], str]) -> Callable[[Path], None]:
    """A copy of a snapshot under another name that reads as the same iteration."""
    def damage(d: Path) -> None:
        src = _snaps(d)[index]
        shutil.copytree(src, d / name(src.name))
    return damage


def _other_shape(d: Path) -> None:
    """The middle snapshot replaced by a model of another shape (more heads, fewer layers)."""
    import torch

    from gptviz.io.checkpoint import load_gptviz_checkpoint, save_checkpoint
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    snap = _snaps(d)[1]
    bundle = load_gptviz_checkpoint(snap)
    meta = json.loads((snap / "metadata.json").read_text())
    cfg = bundle.config
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2 * cfg.n_head, n_embd=cfg.n_embd,
                          block_size=cfg.block_size // 2, vocab_size=cfg.vocab_size)).eval()
    shutil.rmtree(snap)
    save_checkpoint(snap, model, bundle.tokenizer, meta)


def _other_tokenizer(d: Path) -> None:
    """The middle snapshot's tokenizer replaced by the bundled model's (another vocabulary)."""
    from gptviz.io.checkpoint import DEFAULT_MODEL_DIR

    snap = _snaps(d)[1]
    shutil.copyfile(DEFAULT_MODEL_DIR / "tokenizer.json", snap / "tokenizer.json")


def _no_snapshots(d: Path) -> None:
    for s in _snaps(d):
        shutil.rmtree(s)


#: name -> damage(series folder).
DAMAGE: dict[str, Callable[[Path], None]] = {
    "iteration is a string": _set("iteration", "250"),
    "iteration is a float": _set("iteration", 250.0),
    "iteration is true": _set("iteration", True),
    "iteration is null": _set("iteration", None),
    "iteration is a list": _set("iteration", [250]),
    "iteration is an object": _set("iteration", {"n": 250}),
    "iteration is NaN": _set("iteration", float("nan")),
    "iteration is infinite": _set("iteration", float("inf")),
    "iteration is 10**30": _set("iteration", 10 ** 30),
    "iteration has 5000 digits": _meta_raw(b'{"iteration": ' + b"9" * 5000
                                           + b', "stage": "pretrain"}'),
    "iteration is negative": _set("iteration", -1),
    "iteration is missing": _meta(1, lambda m: m.pop("iteration")),
    "iteration of another folder": _set("iteration", 0),
    "stage is a number": _set("stage", 5),
    "stage is a list": _set("stage", ["pretrain"]),
    "stage is unknown": _set("stage", "warmup"),
    "stage is long": _set("stage", "x" * 100_000),
    "stage has control characters": _set("stage", "pre\ntrain\x00"),
    "stage is missing": _meta(1, lambda m: m.pop("stage")),
    "stages out of order": _set("stage", "finetune", 0),
    "metadata nests deeply": _meta_raw(DEEP),
    "metadata deep inside an object": _meta_raw(b'{"iteration": 0, "x": ' + DEEP + b"}", 0),
    "metadata is a list": _meta_raw(b"[1, 2]"),
    "metadata is binary": _meta_raw(BINARY),
    "metadata is empty": _meta_raw(b""),
    "metadata is truncated": _meta_raw(b'{"iteration": 25'),
    "metadata is huge": _meta_is("huge"),
    "metadata is a pipe": _meta_is("fifo"),
    "metadata is a folder": _meta_is("dir"),
    "metadata is a dangling link": _meta_is("dangling"),
    "metadata is a link loop": _meta_is("loop"),
    "metadata is missing": _meta_is("missing"),
    "the weights are a pipe": _file_is("model.safetensors", "fifo"),
    "the weights are missing": _file_is("model.safetensors", "missing"),
    "config.json is a pipe": _file_is("config.json", "fifo"),
    "tokenizer.json is a pipe": _file_is("tokenizer.json", "fifo"),
    "a snapshot of another model shape": _other_shape,
    "a snapshot with another tokenizer": _other_tokenizer,
    "a pipe named like a snapshot": _entry("000999", "fifo"),
    "a file named like a snapshot": _entry("000999", "file"),
    "a dangling link named like a snapshot": _entry("000999", "dangling"),
    "a link loop named like a snapshot": _entry("000999", "loop"),
    "an empty folder named like a snapshot": _entry("000999/x", "file"),
    "a snapshot folder of seven digits": _rename(1, "0000250"),
    "a snapshot renamed, metadata kept": _rename(1, "000111"),
    "a snapshot moved before the first": _rename(2, "000001", fix_meta=True),
    "no snapshot folders": _no_snapshots,
    "a copy named with a trailing newline": _copy_as(1, lambda n: n + "\n"),
    "a copy named in Arabic-Indic digits": _copy_as(
        1, lambda n: "".join(chr(0x660 + int(c)) for c in n)),
    "a copy named in full-width digits": _copy_as(
        1, lambda n: "".join(chr(0xFF10 + int(c)) for c in n)),
    "losses.json is a list": _losses([1, 2]),
    "losses.json is binary": _losses(BINARY),
    "losses.json nests deeply": _losses(DEEP),
    "losses.json is huge": _losses_is("huge"),
    "losses.json is a pipe": _losses_is("fifo"),
    "losses.json is a folder": _losses_is("dir"),
    "curves is a list": _losses_edit(lambda d: d.__setitem__("curves", [[0, 1]])),
    "curves is a string": _losses_edit(lambda d: d.__setitem__("curves", "l1")),
    "a curve is ragged": _losses_edit(lambda d: d["curves"].__setitem__("l1", [[0, 1], [2]])),
    "a curve holds strings": _losses_edit(
        lambda d: d["curves"].__setitem__("l1", [[0, "a"], [1, "b"]])),
    "a curve holds NaN and inf": _losses_edit(
        lambda d: d["curves"].__setitem__("l1", [[0, float("nan")], [1, float("inf")],
                                                 [float("-inf"), 2.0]])),
    "a curve is empty": _losses_edit(lambda d: d["curves"].__setitem__("l1", [])),
    "a curve holds objects": _losses_edit(lambda d: d["curves"].__setitem__("l1", [{"a": 1}])),
    "a curve is 3-D": _losses_edit(lambda d: d["curves"].__setitem__("l1", [[[0, 1]]])),
    "a curve has 10**5 points": _losses_edit(
        lambda d: d["curves"].__setitem__("l1", [[i, 1.0] for i in range(10 ** 5)])),
    "stages is an object": _losses_edit(lambda d: d.__setitem__("stages", {"a": 1})),
    "a stage start is a string": _losses_edit(
        lambda d: d["stages"].append({"stage": "finetune", "start": "abc", "end": 5})),
    "a stage start is NaN": _losses_edit(
        lambda d: d["stages"].append({"stage": "finetune", "start": float("nan"), "end": 1})),
    "a stage start is a list": _losses_edit(
        lambda d: d["stages"].append({"stage": "finetune", "start": [1], "end": 5})),
    "a stage name is a list": _losses_edit(
        lambda d: d["stages"].append({"stage": ["finetune"], "start": 1, "end": 5})),
    "a stage start is 1e308": _losses_edit(
        lambda d: d["stages"].append({"stage": "finetune", "start": 1e308, "end": 1e308})),
}

#: Prompts typed into the timeline panel: each runs or gives one clear line.
PROMPTS = ["", " ", "\n" * 50, "\x00", "\udcff", "a\ud800b", "😀" * 50, "x" * 100_000,
           "the " * 5000, "\u202e\u200b", "<|endoftext|>"]
