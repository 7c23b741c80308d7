"""``python -m gptviz bench``: ms per generated token with full attention capture, and memory.

See :mod:`gptviz.bench.speed` for what is measured and how. ``--analysis`` adds the head-score and
ablation timings (:func:`gptviz.bench.analysis.bench_analysis`); ``--gui`` runs the window
offscreen in a child process (``python -m gptviz_app.bench_gui``) so that the core never imports Qt.
Beside transformers, every run also times a Pythia-160m and a SmolLM-135m shape
(:mod:`gptviz.bench.families`; ``--no-families`` skips them, ``--families-only`` runs only them).
Every run also reports each shape's session memory (:func:`gptviz.bench.memory.session_memory`):
real sessions in a child process each, measured by the process (resident memory after and at
the peak), for the bundled shape, GPT-2 small and medium; the GPT-2-XL shape counted from its
buffers unless ``--memory-real gpt2-xl`` (minutes: a 6 GB model and a 1,020-token prefill).
``--memory-only`` runs only that; ``--soak N`` runs only the soak test
(:func:`gptviz.bench.memory.soak`). Every run but ``--quick`` also times opening a model
(:func:`gptviz.bench.load.bench_load`: a GPT-2-small-shaped random checkpoint, the bundled
model); ``--load-only`` runs only that.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options."""
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true", help="fewer steps and repetitions (< 1 min)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (the median is reported)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the idle cores: core count minus the load "
                        "average)")
    p.add_argument("--no-hf", action="store_true", help="do not compare with transformers")
    p.add_argument("--no-families", action="store_true",
                   help="skip the Pythia-160m and SmolLM-135m shapes (GPT-NeoX, Llama)")
    p.add_argument("--families-only", action="store_true",
                   help="only the Pythia-160m and SmolLM-135m shapes beside transformers")
    p.add_argument("--analysis", action="store_true",
                   help="also time head scores (12x12 heads, 512 tokens), ablated re-runs and "
                        "the newer analyses per step (head writes, neurons, saliency, inside "
                        "head, embedding, attribution, patching)")
    p.add_argument("--gui", action="store_true",
                   help="only the GUI benchmark: ms per view update and tokens/s under Play")
    p.add_argument("--soak", type=int, default=None, metavar="N",
                   help="only the soak test: N sampled steps of one session, resident memory "
                        "(RSS) every 1,000 steps")
    p.add_argument("--soak-shape", choices=("bundled", "gpt2-small"), default="bundled",
                   help="the model of --soak: the bundled one, or a random GPT-2-small shape")
    p.add_argument("--memory-real", action="append", default=[], metavar="SHAPE",
                   choices=("bundled-shape", "gpt2-small", "gpt2-medium", "gpt2-xl"),
                   help="also measure a real session of this shape (repeatable; gpt2-xl: "
                        "about 9 GB of memory and minutes of prefill)")
    p.add_argument("--memory-only", action="store_true",
                   help="only the session memory of each shape at 1,024 tokens")
    p.add_argument("--load-only", action="store_true",
                   help="only how long opening a model takes (a GPT-2-small-shaped random "
                        "checkpoint, the bundled model) and its parts")


def _run_gui(as_json: bool) -> int:
    """The GUI benchmark in a child process (the core never imports Qt): the installed
    ``gptviz_app``, or a checkout's ``app/`` through its ``main.py``."""
    flags = ["--json"] if as_json else []
    launcher = REPO_ROOT / "main.py"
    checkout = (REPO_ROOT / "pyproject.toml").is_file() and launcher.is_file()
    if checkout and (REPO_ROOT / "app" / "bench_gui.py").is_file():
        code = ("import sys; sys.path.insert(0, sys.argv.pop(1)); import main; "
                "main.use_checkout_app(); from gptviz_app.bench_gui import main as m; "
                "sys.exit(m(sys.argv[1:]))")
        return subprocess.run([sys.executable, "-c", code, str(REPO_ROOT), *flags]).returncode
    if importlib.util.find_spec("gptviz_app") is None:
        raise FileNotFoundError("the GUI (gptviz_app) is not installed next to gptviz")
    return subprocess.run([sys.executable, "-m", "gptviz_app.bench_gui", *flags]).returncode


def _soak_table(out: dict) -> str:
    """The soak results as plain text."""
    rss = ", ".join(f"{v:.0f}" for v in out["rss_mb"])
    return (f"{out['steps']} steps of {out['model']} ({out['ms_per_step']:.2f} ms a step)\n"
            f"RSS every {out['every']} steps (MB): {rss}\n"
            f"growth after the first window (step {out['first_window_step']}): "
            f"{out['growth_mb']:.1f} MB, {out['growth_mb_per_1000']:.2f} MB per 1,000 steps")


def _memory_table(mem: dict) -> str:
    """Session memory per shape as plain text."""
    lines = ["session memory at 1,024 tokens (MB): buffers (attention); real sessions: what "
             "the process grew by after the steps and at the peak, over the loaded model"]
    for k, v in mem.items():
        line = f"  {k}: {v['total_mb']:.0f} ({v['attention_mb']:.0f})"
        if v["how"] == "session":
            line += (f"; measured {v['session_rss_mb']:.0f}, peak {v['session_peak_mb']:.0f}"
                     f" (model {v['rss_model_mb']:.0f}, prefill {v['prefill_s']:.0f} s)")
        lines.append(line)
    return "\n".join(lines)


def _run_memory_only(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """``--memory-only``: the session memory of every shape, nothing else."""
    from gptviz.bench.memory import REAL_BY_DEFAULT, session_memory
    from gptviz.bench.speed import dumps

    mem = session_memory(real=REAL_BY_DEFAULT + tuple(args.memory_real), log=log,
                         threads=args.threads)
    print(dumps({"memory": mem}) if args.json else _memory_table(mem))
    return 0


def _run_families_only(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """``--families-only``: the GPT-NeoX and Llama shapes beside transformers, nothing else."""
    from gptviz.bench.families import format_family_table, run_family_bench
    from gptviz.bench.speed import dumps

    if args.no_hf:
        raise ValueError("--families-only compares with transformers: drop --no-hf")
    res = run_family_bench(quick=args.quick, steps=args.steps, reps=args.reps,
                           threads=args.threads, log=log)
    print(dumps(res) if args.json else format_family_table(res))
    return 0


def _run_load_only(args: argparse.Namespace, log: Callable[[str], None]) -> int:
    """``--load-only``: how long opening a model takes, nothing else."""
    import torch

    from gptviz.bench.load import bench_load, format_load_table
    from gptviz.bench.speed import default_threads, dumps

    torch.set_num_threads(args.threads or default_threads())
    res = bench_load(reps=args.reps or 3, log=log)
    print(dumps({"load": res}) if args.json else format_load_table(res))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; progress goes to stderr, the table or JSON to stdout."""
    if args.gui:
        return _run_gui(args.json)
    from gptviz.bench.memory import REAL_BY_DEFAULT, session_memory, soak
    from gptviz.bench.speed import dumps, format_table, run_bench

    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    if args.soak is not None:
        import torch

        torch.set_num_threads(args.threads or 1)  # memory, not speed: one thread, less noise
        out = soak(args.soak, args.soak_shape, log=log)
        print(dumps(out) if args.json else _soak_table(out))
        return 0
    if args.families_only:
        return _run_families_only(args, log)
    if args.memory_only:
        return _run_memory_only(args, log)
    if args.load_only:
        return _run_load_only(args, log)
    res = run_bench(quick=args.quick, steps=args.steps, reps=args.reps,
                    use_hf=False if args.no_hf else None, threads=args.threads, log=log)
    if res["transformers"] and not (args.no_families or args.no_hf):
        from gptviz.bench.families import run_family_bench

        res["families"] = run_family_bench(quick=args.quick, steps=args.steps, reps=args.reps,
                                           threads=args.threads, log=log)
    if args.analysis:
        from gptviz.bench.analysis import bench_analysis

        log("timing head scores and ablated re-runs (GPT-2-small shape, 512 tokens)")
        res["analysis"] = bench_analysis(repeats=3 if args.quick else 5,
                                         model_repeats=2 if args.quick else 3)
        from gptviz.bench.live_costs import bench_live_costs

        res["analysis_per_step"] = bench_live_costs(repeats=2 if args.quick else 3, log=log)
    res["memory"] = session_memory(real=REAL_BY_DEFAULT + tuple(args.memory_real), log=log,
                                   threads=args.threads)
    if not args.quick:  # a 500 MB checkpoint written and opened in fresh processes: minutes
        from gptviz.bench.load import bench_load

        res["load"] = bench_load(reps=args.reps or 3, log=log)
    if args.json:
        print(dumps(res))
    else:
        print(format_table(res))
        if "families" in res:
            from gptviz.bench.families import format_family_table

            print("\nother families, side by side on the same weights:\n"
                  + format_family_table(res["families"]))
        print("\n" + _memory_table(res["memory"]))
        if "load" in res:
            from gptviz.bench.load import format_load_table

            print("\n" + format_load_table(res["load"]))
        if "analysis" in res:
            print("\nanalysis (ms): " + json.dumps(
                {k: v for k, v in res["analysis"].items() if k != "model"}, default=float))
        if "analysis_per_step" in res:
            from gptviz.bench.live_costs import format_live_costs

            print("\nthe newer analyses after each step, and patching:\n"
                  + format_live_costs(res["analysis_per_step"]))
    return 0
