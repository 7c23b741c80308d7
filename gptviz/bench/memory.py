"""Memory of sessions: the buffers a window holds per model shape, and resident memory over a
long run.

:func:`session_memory` reports what :meth:`Session.memory_bytes
<gptviz.engine.session.Session.memory_bytes>` says after a prefill to ``tokens - steps``
tokens and ``steps`` steps (attention history, KV cache, residuals, final activations and the
recorded steps), for random-weight models of each shape: a real session for the shapes given in
``real`` and, for the big ones, the same window's buffers on a model built on the meta device
(no weights in memory; the buffers are the ones a real prefill fills, tested in
``tests/test_engine_memory.py``).

:func:`soak` runs ``n`` steps of one session and reads the process's resident memory (RSS)
every 1,000 steps: what stays behind per step (history, buffers, caches) shows up as growth
after the first window.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from typing import Any

import torch

from gptviz.bench.speed import GPT2_SMALL, PROMPT_VOCAB, Shape, _random_prompt, bundled_shape
from gptviz.model.config import GPTConfig

__all__ = ["GPT2_MEDIUM", "GPT2_XL", "MEMORY_SHAPES", "resident_bytes", "session_memory", "soak"]

GPT2_MEDIUM = Shape("gpt2-medium", 24, 16, 1024, 50257, 1024, "gelu_tanh")
GPT2_XL = Shape("gpt2-xl", 48, 25, 1600, 50257, 1024, "gelu_tanh")
MEMORY_SHAPES = (bundled_shape(), GPT2_SMALL, GPT2_MEDIUM, GPT2_XL)
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
        model = GPT(_config(shape))
    w = ContextWindow(model)
    T = tokens - steps
    w.reserve(T, min(shape.block_size, T + 16))  # as a prefill does
    w.reserve(tokens)
    return w.nbytes()


def _real(shape: Shape, tokens: int, steps: int) -> dict[str, int]:
    from gptviz.bench.speed import build_models
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    bundle, _ = build_models(shape, use_hf=False)
    s = Session(bundle, _random_prompt(tokens - steps, PROMPT_VOCAB, 1),
                SamplingSettings(greedy=True))
    s.generate(steps)
    return s.memory_bytes()


def session_memory(shapes: tuple[Shape, ...] = MEMORY_SHAPES, tokens: int = 1024,
                   steps: int = 4, real: tuple[str, ...] = ("bundled-shape", "gpt2-small"),
                   log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """MB of every buffer of a session at ``tokens`` tokens, per shape (see the module notes).

    Returns
    -------
    dict
        ``{label: {"how": "session" | "buffers", "total_mb": ..., "<buffer>_mb": ...}}``
        (decimal MB).
    """
    out: dict[str, Any] = {}
    for shape in shapes:
        if log:
            log(f"session memory: {shape.label} at {tokens} tokens")
        how = "session" if shape.label in real else "buffers"
        mem = _real(shape, tokens, steps) if how == "session" else _accounted(shape, tokens,
                                                                                 steps)
        row: dict[str, Any] = {"how": how, "tokens": tokens,
                               "total_mb": round(sum(mem.values()) / _MB, 1)}
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
