"""What the newer analyses cost per generated token, as multiples of one step.

:func:`bench_live_costs` runs a :class:`~gptviz.engine.session.Session` on a random model of the
bundled model's shape and of GPT-2 small's, and after each step asks the
:class:`~gptviz.analysis.runner.AnalysisRunner` for one live analysis at the newest token (the
text changed, so its cache misses: the cost the app pays per step with that panel open). The
analyses: head writes, neurons, saliency (input × gradient, and integrated gradients with the
default 32 steps), inside one head, the embedding view and direct logit attribution; plus
activation patching of every head on a 20-token prompt pair (a command, not per step), all
reported in ms and divided by the median step time measured in the same loop.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from gptviz.bench.speed import GPT2_SMALL, PROMPT_VOCAB, Shape, _random_prompt, bundled_shape

__all__ = ["LIVE_CASES", "bench_live_costs", "format_live_costs"]


def _settings(name: str, **kw: Any) -> Any:
    from gptviz.analysis.registry import analysis_factory

    return analysis_factory(name)().settings_type(**kw)


#: label -> (registry name, settings keywords)
LIVE_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "head_writes": ("head_writes", {}),
    "neurons": ("neurons", {}),
    "saliency_grad": ("saliency", {"method": "grad"}),
    "saliency_ig": ("saliency", {"method": "ig"}),
    "inside_head": ("inside_head", {}),
    "embedding": ("embedding", {}),
    "attribution": ("attribution", {}),
}


def _time_case(bundle: Any, name: str, settings: Any, context: int, repeats: int
               ) -> tuple[float, float]:
    """Median ms of a step and of the analysis after it (a warm-up pair first)."""
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    session = Session(bundle, _random_prompt(context, PROMPT_VOCAB, context),
                      SamplingSettings(greedy=True))
    runner = AnalysisRunner(AnalysisSpec(analyses={name: settings}))
    steps: list[float] = []
    costs: list[float] = []
    for i in range(repeats + 1):
        t0 = time.perf_counter()
        session.step()
        t1 = time.perf_counter()
        res = runner.run(session)
        t2 = time.perf_counter()
        if res.errors:
            raise RuntimeError(f"{name}: {res.errors[name]}")
        if name not in res.results:
            raise RuntimeError(f"{name} gave no result")
        if i:  # the first pair warms caches that are built once per model
            steps.append((t1 - t0) * 1e3)
            costs.append((t2 - t1) * 1e3)
    return statistics.median(steps), statistics.median(costs)


def _time_patching(bundle: Any) -> float:
    """ms of patching every head on a random 20-token prompt pair."""
    from gptviz.analysis.patching import activation_patching

    V = bundle.config.vocab_size
    gen = torch.Generator().manual_seed(1)
    clean, corrupt = (torch.randint(0, V, (20,), generator=gen).tolist() for _ in range(2))
    t0 = time.perf_counter()
    activation_patching(bundle.model, clean, corrupt, 1, 2, heads=True, resid=False)
    return (time.perf_counter() - t0) * 1e3


def bench_shape_costs(shape: Shape, context: int, repeats: int,
                      log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """One shape's costs: ``step_ms`` and, per analysis, ``ms`` and ``ratio_to_step``."""
    from gptviz.bench.speed import build_models

    bundle, _ = build_models(shape, use_hf=False)
    out: dict[str, Any] = {"context": context, "analyses": {}}
    step_times = []
    for label, (name, kw) in LIVE_CASES.items():
        step_ms, ms = _time_case(bundle, name, _settings(name, **kw), context, repeats)
        step_times.append(step_ms)
        out["analyses"][label] = {"ms": round(ms, 2)}
        if log:
            log(f"  {shape.label} {label}: {ms:.1f} ms after a {step_ms:.1f} ms step")
    step = statistics.median(step_times)
    out["step_ms"] = round(step, 2)
    for v in out["analyses"].values():
        v["ratio_to_step"] = round(v["ms"] / step, 2)
    patch = _time_patching(bundle)
    out["patch_heads_20_ms"] = round(patch, 1)
    out["ratio_patch_heads_20_to_step"] = round(patch / step, 1)
    if log:
        log(f"  {shape.label} patching all heads, 20 tokens: {patch / 1e3:.2f} s")
    return out


def bench_live_costs(context: int = 128, repeats: int = 3, shapes: list[Shape] | None = None,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Per-step costs of the newer live analyses at each shape (module docstring).

    Parameters
    ----------
    context
        Tokens of the prompt before the timed steps.
    repeats
        Timed steps per analysis (the median is reported), after one warm-up step.
    shapes
        Default: the bundled model's shape and GPT-2 small (random weights).
    log
        Optional ``callable(str)`` for progress lines.

    Returns
    -------
    dict
        ``{shape label: {"context", "step_ms", "analyses": {label: {"ms",
        "ratio_to_step"}}, "patch_heads_20_ms", "ratio_patch_heads_20_to_step"}}`` and
        ``torch_threads``.
    """
    shapes = shapes or [bundled_shape(), GPT2_SMALL]
    res: dict[str, Any] = {"torch_threads": torch.get_num_threads()}
    for shape in shapes:
        if log:
            log(f"timing the live analyses on {shape.label} ({context} tokens)")
        res[shape.label] = bench_shape_costs(shape, context, repeats, log)
    return res


def format_live_costs(res: dict[str, Any]) -> str:
    """The costs as a plain-text (and Markdown) table: ms and multiples of one step."""
    labels = [k for k in res if k != "torch_threads"]
    head = "| analysis | " + " | ".join(f"{k} ms | {k} / step" for k in labels) + " |"
    lines = [head, "|---|" + "---:|---:|" * len(labels)]
    for case in LIVE_CASES:
        cells = " | ".join(f"{res[k]['analyses'][case]['ms']:.1f} | "
                           f"{res[k]['analyses'][case]['ratio_to_step']:.2f}x" for k in labels)
        lines.append(f"| {case} | {cells} |")
    cells = " | ".join(f"{res[k]['patch_heads_20_ms']:.0f} | "
                       f"{res[k]['ratio_patch_heads_20_to_step']:.0f}x" for k in labels)
    lines.append(f"| patching all heads (20 tokens) | {cells} |")
    lines.append("\none step: " + ", ".join(f"{k} {res[k]['step_ms']:.2f} ms at "
                                            f"{res[k]['context']} tokens" for k in labels)
                 + f"; {res['torch_threads']} threads")
    return "\n".join(lines)
