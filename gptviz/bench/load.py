"""How long opening a model takes: a GPT-2-small-shaped checkpoint and the bundled model.

:func:`bench_load` writes a GPT-2-small-shaped gptviz checkpoint with random weights to a
temporary directory (and uses the bundled model where it is installed), then times opening
each with :func:`gptviz.families.load_model` (median over ``reps``), each time in a fresh
child process (``python -m gptviz.bench.load``): a process that opened a model before
reuses the memory it freed, and opens twice as fast as the user's first. The parts, as the
loader runs them, are timed the same way: reading the weights
(:func:`~gptviz.io.checkpoint.read_safetensors`), the finiteness check
(:func:`~gptviz.io.config_checks.check_finite`), building the model around them
(:func:`~gptviz.io.checkpoint.model_from_state`: modules on the meta device, weights
assigned, with its own check) and the tokenizer; and beside them what opening did before on
the same weights: ``GPT(config)`` with its random initialisation, then
:func:`~gptviz.io.checkpoint.load_state` copying the weights over it.

Each child reads the files once before timing: the figures are what opening costs once the
file is in the page cache, not the disk.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from gptviz.bench.speed import GPT2_SMALL, _byte_tokenizer_json
from gptviz.io.checkpoint import (
    DEFAULT_MODEL_DIR,
    load_state,
    model_from_state,
    read_safetensors,
    save_checkpoint,
)
from gptviz.io.config_checks import check_finite
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

__all__ = ["bench_load", "time_open", "format_load_table", "measure_once"]

_KINDS = ("open", "parts", "old")


def _timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """``fn()``, its wall and CPU seconds."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def measure_once(directory: Path, kind: str) -> dict[str, float]:
    """One measurement in this process, on the gptviz checkpoint ``directory`` (its files
    read once first): ``"open"`` the whole :func:`~gptviz.families.load_model`, ``"parts"``
    its steps one after the other, ``"old"`` random initialisation plus copying the weights
    over it. Seconds of wall time (``open_cpu`` the CPU time of the open)."""
    from gptviz.families import load_model

    for f in directory.iterdir():
        f.read_bytes()
    weights = directory / "model.safetensors"
    if kind == "open":
        _, wall, cpu = _timed(lambda: load_model(directory))
        return {"open": wall, "open_cpu": cpu}
    config = GPTConfig.from_json_file(directory / "config.json")
    state, read_s, _ = _timed(lambda: read_safetensors(weights))
    if kind == "old":
        model, init_s, _ = _timed(lambda: GPT(config))
        _, copy_s, _ = _timed(lambda: load_state(model, state, weights))
        return {"random init (GPT(config))": init_s,
                "copy over it (load_state, with its check)": copy_s}
    if kind != "parts":
        raise ValueError(f"kind must be one of {', '.join(_KINDS)} (got {kind!r})")
    _, check_s, _ = _timed(lambda: check_finite(state, weights))
    _, build_s, _ = _timed(lambda: model_from_state(config, state, weights))
    _, tok_s, _ = _timed(lambda: Tokenizer.from_file(directory / "tokenizer.json"))
    return {"read weights": read_s, "finiteness check": check_s,
            "build (meta modules, assign, with its check)": build_s, "tokenizer": tok_s}


def _child(directory: Path, kind: str, threads: int) -> dict[str, float]:
    """:func:`measure_once` in a fresh child process."""
    cmd = [sys.executable, "-m", "gptviz.bench.load", str(directory), kind, str(threads)]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"timing the open of {directory}: the child process failed ({tail})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def time_open(directory: Path, reps: int = 3, threads: int | None = None) -> dict[str, Any]:
    """Medians over ``reps`` fresh processes of each :func:`measure_once` kind.

    Returns
    -------
    dict
        ``open_s`` / ``open_cpu_s``, ``parts_s`` (read, finiteness check, build, tokenizer)
        and ``old_way_s``: what opening paid before instead of the build.
    """
    threads = threads or torch.get_num_threads()
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in _KINDS}
    for _ in range(reps):  # the kinds take turns: all see the same machine load
        for kind in _KINDS:
            runs[kind].append(_child(directory, kind, threads))

    def medians(kind: str) -> dict[str, float]:
        return {k: round(statistics.median(r[k] for r in runs[kind]), 3) for k in runs[kind][0]}

    opened = medians("open")
    state = read_safetensors(directory / "model.safetensors")
    return {"n_params": sum(v.numel() for v in state.values()),
            "open_s": opened["open"], "open_cpu_s": opened["open_cpu"],
            "parts_s": medians("parts"), "old_way_s": medians("old")}


def bench_load(reps: int = 3, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Opening a GPT-2-small-shaped random checkpoint (written to a temporary directory) and
    the bundled model: see :func:`time_open`. The results as a JSON-ready dict."""
    log = log or (lambda line: None)
    out: dict[str, Any] = {"reps": reps, "threads": torch.get_num_threads()}
    s = GPT2_SMALL
    config = GPTConfig(n_layer=s.n_layer, n_head=s.n_head, n_embd=s.n_embd,
                       vocab_size=s.vocab_size, block_size=s.block_size,
                       activation=s.activation, name=s.label)
    with tempfile.TemporaryDirectory(prefix="gptviz-bench-load-") as d:
        log(f"writing a random {s.label} checkpoint ({config.n_layer} x {config.n_embd}, "
            f"{config.vocab_size:,} tokens) to time opening it")
        _byte_tokenizer_json(Path(d) / "tokenizer.json")
        tokenizer = Tokenizer.from_file(Path(d) / "tokenizer.json")
        torch.manual_seed(0)
        save_checkpoint(Path(d) / s.label, GPT(config), tokenizer)
        out[s.label] = time_open(Path(d) / s.label, reps)
    if (DEFAULT_MODEL_DIR / "model.safetensors").is_file():
        log("timing opening the bundled model")
        out["bundled"] = time_open(DEFAULT_MODEL_DIR, reps)
    return out


def format_load_table(res: dict[str, Any]) -> str:
    """The load figures as plain text, one block per model."""
    lines = [f"opening a model (s, median of {res['reps']} fresh processes, {res['threads']} "
             "threads, page cache warm):"]
    for label, r in res.items():
        if not isinstance(r, dict):
            continue
        parts = ", ".join(f"{k} {v:.3f}" for k, v in r["parts_s"].items())
        old = ", ".join(f"{k} {v:.3f}" for k, v in r["old_way_s"].items())
        lines.append(f"  {label} ({r['n_params']:,} weights): open {r['open_s']:.3f} "
                     f"(CPU {r['open_cpu_s']:.3f}); parts: {parts}")
        lines.append(f"    instead of the build, opening paid before: {old}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m gptviz.bench.load DIRECTORY KIND [THREADS]``: one JSON line of
    :func:`measure_once` (what :func:`time_open` runs)."""
    torch.set_num_threads(int(argv[2]) if len(argv) > 2 and int(argv[2]) > 0 else 1)
    print(json.dumps(measure_once(Path(argv[0]), argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
