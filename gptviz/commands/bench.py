"""``python -m gptviz bench``: ms per generated token with full attention capture.

See :mod:`gptviz.bench` for what is measured and how.
"""

from __future__ import annotations

import argparse
import sys


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``bench`` options."""
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--quick", action="store_true", help="fewer steps and repetitions (< 1 min)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per repetition")
    p.add_argument("--reps", type=int, default=None, help="repetitions (the median is reported)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: the idle cores: core count minus the load average)")
    p.add_argument("--no-hf", action="store_true", help="do not compare with transformers")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; progress goes to stderr, the table or JSON to stdout."""
    from ..bench import dumps, format_table, run_bench

    res = run_bench(quick=args.quick, steps=args.steps, reps=args.reps,
                    use_hf=False if args.no_hf else None, threads=args.threads,
                    log=lambda line: print(line, file=sys.stderr, flush=True))
    print(dumps(res) if args.json else format_table(res))
    return 0
