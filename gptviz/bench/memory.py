"""Memory of sessions: the buffers a window holds per model shape, and resident memory over a
long run.

:func:`session_memory` reports what :meth:`Session.memory_bytes
<gptviz.engine.session.Session.memory_bytes>` says after a prefill to ``tokens - steps``
tokens and ``steps`` steps (attention history, KV cache, residuals, final activations and the
recorded steps), for random-weight models of each shape: a real session for the shapes given in
``real`` and, for the big ones, the same window's buffers on a model built on the meta device
(no weights in memory; the buffers are the ones a real prefill fills, tested in
``tests/test_engine_memory.py``).

:func:`real_session_memory` builds the random-weight model of one shape and measures the
process itself: resident memory (RSS) with the model loaded, after the prefill and the steps,
and the peak in between (``VmHWM`` of ``/proc/self/status`` after resetting it through
``/proc/self/clear_refs``; where that is not there, ``ru_maxrss``, which then also counts the
model's own build). The session's memory is what it adds to the loaded model (the weights are
not the session's). :func:`measure_real` runs it in a child process per shape (python -m
gptviz.bench.memory SHAPE), so that every peak is that shape's alone.

:func:`soak` runs ``n`` steps of one session and reads the process's resident memory (RSS)
every 1,000 steps: what stays behind per step (history, buffers, caches) shows up as growth
after the first window.
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from gptviz.bench.speed import GPT2_SMALL, PROMPT_VOCAB, Shape, _random_prompt, bundled_shape
from gptviz.model.config import GPTConfig

__all__ = ["GPT2_MEDIUM", "GPT2_XL", "MEMORY_SHAPES", "REAL_BY_DEFAULT", "measure_real",
           "peak_bytes", "real_session_memory", "reset_peak", "resident_bytes",
           "session_memory", "soak"]

GPT2_MEDIUM = Shape("gpt2-medium", 24, 16, 1024, 50257, 1024, "gelu_tanh")
GPT2_XL = Shape("gpt2-xl", 48, 25, 1600, 50257, 1024, "gelu_tanh")
MEMORY_SHAPES = (bundled_shape(), GPT2_SMALL, GPT2_MEDIUM, GPT2_XL)
#: Shapes measured as real sessions (a child process each) by default; the others are counted
#: on a meta-device model unless asked for (``bench --memory-real gpt2-xl``).
REAL_BY_DEFAULT = ("bundled-shape", "gpt2-small", "gpt2-medium")
_MB = 1e6


def resident_bytes() -> int:
    """The process's resident memory (``psutil`` when installed, else ``/proc/self/statm``;
    0 where neither is there)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)
    except Exception:
        pass
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def reset_peak() -> bool:
    """Reset the process's peak resident memory (``VmHWM``) to its current RSS, through
    ``/proc/self/clear_refs`` (Linux); ``False`` where that cannot be done."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_bytes() -> int:
    """The process's peak resident memory since it started or since :func:`reset_peak`
    (``VmHWM``; ``ru_maxrss`` where ``/proc/self/status`` is not there)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        pass
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) * (1 if sys.platform == "darwin" else 1024)  # bytes on macOS, else kB


def _config(shape: Shape) -> GPTConfig:
    return GPTConfig(n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd,
                     vocab_size=shape.vocab_size, block_size=shape.block_size,
                     activation=shape.activation, name=shape.label)


def _accounted(shape: Shape, tokens: int, steps: int) -> dict[str, int]:
    """The window's buffers after a prefill to ``tokens - steps`` tokens and ``steps`` steps,
    on a meta-device model (no weights, no forward)."""
    from gptviz.engine.window import ContextWindow
    from gptviz.model.gpt import GPT

    with torch.device("meta"):
        model = GPT(_config(shape), init_weights=False)  # no draws: normal_ on meta is slow
    w = ContextWindow(model)
    T = tokens - steps
    w.reserve(T, min(shape.block_size, T + 16))  # as a prefill does
    w.reserve(tokens)
    return w.nbytes()


def _shape(label: str) -> Shape:
    for shape in MEMORY_SHAPES:
        if shape.label == label:
            return shape
    names = ", ".join(s.label for s in MEMORY_SHAPES)
    raise ValueError(f"no memory shape {label!r} (one of {names})")


def real_session_memory(label: str, tokens: int = 1024, steps: int = 4) -> dict[str, Any]:
    """Resident memory of a real session of one shape, measured in this process (see the
    module notes; run it in a process of its own for a peak that is the session's only).

    Returns
    -------
    dict
        Decimal MB: ``rss_start_mb`` (before the model), ``rss_model_mb`` (model loaded),
        ``rss_after_mb`` (after a prefill to ``tokens - steps`` tokens and ``steps`` steps),
        ``session_rss_mb`` (after minus model), ``session_peak_mb`` (peak minus model),
        ``buffers_mb`` (:meth:`Session.memory_bytes`, summed) and ``buffers`` (each buffer),
        ``peak_reset`` (whether the peak counts from the loaded model on, else from the
        start), ``prefill_s`` and ``steps_s``.
    """
    from gptviz.bench.speed import build_models
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    shape = _shape(label)
    if not 2 <= tokens <= shape.block_size or not 0 <= steps < tokens:
        raise ValueError(f"tokens must be in 2..{shape.block_size}, steps in 0..tokens - 1")
    gc.collect()
    start = resident_bytes()
    bundle, _ = build_models(shape, use_hf=False)
    prompt = _random_prompt(tokens - steps, PROMPT_VOCAB, 1)
    gc.collect()
    model = resident_bytes()
    was_reset = reset_peak()
    t0 = time.perf_counter()
    s = Session(bundle, prompt, SamplingSettings(greedy=True))
    t1 = time.perf_counter()
    s.generate(steps)
    t2 = time.perf_counter()
    gc.collect()
    after, peak = resident_bytes(), peak_bytes()
    buffers = s.memory_bytes()
    return {"shape": label, "tokens": tokens, "steps": steps,
            "rss_start_mb": round(start / _MB, 1), "rss_model_mb": round(model / _MB, 1),
            "rss_after_mb": round(after / _MB, 1),
            "session_rss_mb": round((after - model) / _MB, 1),
            "session_peak_mb": round((peak - model) / _MB, 1),
            "buffers_mb": round(sum(buffers.values()) / _MB, 1),
            "buffers": {f"{k}_mb": round(v / _MB, 1) for k, v in buffers.items()},
            "peak_reset": was_reset,
            "prefill_s": round(t1 - t0, 2), "steps_s": round(t2 - t1, 2)}


def measure_real(label: str, tokens: int = 1024, steps: int = 4, threads: int | None = None,
                 timeout: float = 3600.0) -> dict[str, Any]:
    """:func:`real_session_memory` of one shape in a child process of its own (``python -m
    gptviz.bench.memory``), so that its peak is that session's alone."""
    _shape(label)  # a clear error before starting anything
    cmd = [sys.executable, "-m", "gptviz.bench.memory", label, str(tokens), str(steps),
           str(threads or 0)]
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"memory of a {label} session: the child process failed ({tail})")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def session_memory(shapes: tuple[Shape, ...] = MEMORY_SHAPES, tokens: int = 1024,
                   steps: int = 4, real: tuple[str, ...] = REAL_BY_DEFAULT,
                   log: Callable[[str], None] | None = None,
                   threads: int | None = None) -> dict[str, Any]:
    """MB of every buffer of a session at ``tokens`` tokens, per shape (see the module notes).

    The shapes in ``real`` run a real session in a child process each
    (:func:`measure_real`): their row also has the resident memory the process measured,
    ``session_rss_mb`` and ``session_peak_mb`` (what the session added to the loaded model,
    after the steps and at its peak), ``rss_model_mb`` and ``prefill_s``.

    Returns
    -------
    dict
        ``{label: {"how": "session" | "buffers", "total_mb": ..., "<buffer>_mb": ...}}``
        (decimal MB).
    """
    out: dict[str, Any] = {}
    for shape in shapes:
        if log:
            log(f"session memory: {shape.label} at {tokens} tokens"
                + (" (a real session)" if shape.label in real else ""))
        row: dict[str, Any] = {"how": "buffers", "tokens": tokens}
        if shape.label in real:
            got = measure_real(shape.label, tokens, steps, threads)
            row.update(how="session", total_mb=got["buffers_mb"], **got["buffers"])
            row.update({k: got[k] for k in ("session_rss_mb", "session_peak_mb",
                                            "rss_model_mb", "prefill_s", "peak_reset")})
        else:
            mem = _accounted(shape, tokens, steps)
            row["total_mb"] = round(sum(mem.values()) / _MB, 1)
            row.update({f"{k}_mb": round(v / _MB, 1) for k, v in mem.items()})
        out[shape.label] = row
    return out


def soak(n_steps: int, shape: str = "bundled", every: int = 1000,
         log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Resident memory over ``n_steps`` sampled steps of one session.

    Parameters
    ----------
    n_steps
        Steps to take (>= 1).
    shape
        ``"bundled"``: the bundled model (``resources/model``, its own block size);
        ``"gpt2-small"``: a random GPT-2-small-shaped model.
    every
        Steps between two readings.

    Returns
    -------
    dict
        ``rss_mb`` (one reading every ``every`` steps, the first after the prompt),
        ``first_window_step`` (the step where the window first slid, the reference point),
        ``growth_mb`` (RSS at the end minus at that step), ``growth_mb_per_1000``,
        ``ms_per_step``.
    """
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    if n_steps < 1 or every < 1:
        raise ValueError("--soak needs at least 1 step")
    if shape == "bundled":
        from gptviz.families import load_model

        bundle = load_model()
    elif shape == "gpt2-small":
        from gptviz.bench.speed import build_models

        bundle, _ = build_models(GPT2_SMALL, use_hf=False)
    else:
        raise ValueError(f"soak shape must be 'bundled' or 'gpt2-small' (got {shape!r})")
    s = Session(bundle, _random_prompt(8, min(PROMPT_VOCAB, bundle.config.vocab_size), 2),
                SamplingSettings(seed=0))
    readings = [resident_bytes()]
    first: tuple[int, int] | None = None  # (step, rss) when the window first slid
    t0 = time.perf_counter()
    for i in range(1, n_steps + 1):
        r = s.step()
        if first is None and r.slid:
            gc.collect()
            first = (i, resident_bytes())
        if i % every == 0 or i == n_steps:
            gc.collect()
            readings.append(resident_bytes())
            if log:
                log(f"  step {i}: RSS {readings[-1] / _MB:.1f} MB")
    elapsed = time.perf_counter() - t0
    base_step, base = first if first is not None else (0, readings[0])
    growth = readings[-1] - base
    span = max(1, n_steps - base_step)
    return {"shape": shape, "model": bundle.name, "steps": n_steps, "every": every,
            "rss_mb": [round(b / _MB, 1) for b in readings],
            "first_window_step": base_step, "growth_mb": round(growth / _MB, 1),
            "growth_mb_per_1000": round(growth / _MB * 1000 / span, 2),
            "ms_per_step": round(elapsed * 1e3 / n_steps, 3)}


def main(argv: list[str]) -> int:
    """``python -m gptviz.bench.memory SHAPE [TOKENS [STEPS [THREADS]]]``: one JSON line of
    :func:`real_session_memory` (what :func:`measure_real` runs)."""
    label = argv[0]
    given = [int(a) for a in argv[1:4]]
    tokens, steps, threads = given + [1024, 4, 0][len(given):]
    torch.set_num_threads(threads or max(1, os.cpu_count() or 1))
    print(json.dumps(real_session_memory(label, tokens, steps)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
