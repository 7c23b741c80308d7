"""``python -m gptviz eval``: loss per token and bits per character on text files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptviz.cli.arguments import MODEL_HELP, add_device_args
from gptviz.io.files import file_problem


def configure(p: argparse.ArgumentParser) -> None:
    """Add the evaluation options."""
    p.add_argument("--model", default=None, metavar="PATH|NAME", help=MODEL_HELP)
    add_device_args(p)
    p.add_argument("--text", nargs="+", required=True, metavar="FILE", help="UTF-8 text files")


def run(args: argparse.Namespace) -> int:
    """Print JSON: one entry per file and the pooled total."""
    from gptviz.families import load_model
    from gptviz.train.evaluate import combine, evaluate_text

    for name in args.text:  # checked before the (slow) model load
        problem = file_problem(name, allow_streams=True)  # a pipe or /dev/stdin is read too
        if problem is not None:
            raise ValueError(f"--text {name}: {problem}")
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    per_file = {}
    for name in args.text:
        path = Path(name)
        text = path.read_bytes().decode("utf-8", errors="replace").replace("\r\n", "\n")
        per_file[str(path)] = evaluate_text(bundle, text)
    print(json.dumps({"model": bundle.source, "files": per_file,
                      "total": combine(list(per_file.values()))}, indent=2))
    return 0
