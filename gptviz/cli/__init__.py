"""``python -m gptviz COMMAND ...``: the command line.

Each command lives in its own module under :mod:`gptviz.cli` with two functions,
``configure(parser)`` and ``run(args) -> int``; this file only dispatches, so commands are
imported lazily (``info`` does not pay for the training code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module under gptviz.cli, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "print a model's config, parameter count and metadata as JSON"),
    "trace": ("trace", "generate and save tokens, attention and probabilities to an NPZ file"),
    "generate": ("generate", "generate text from a prompt and print it"),
    "bench": ("bench", "measure ms per generated token (and GUI update cost with --gui)"),
    "train": ("train", "pre-train (L1) and fine-tune (L3 = L2 + lambda L1) the bundled model"),
    "eval": ("evaluate", "loss per token and bits per character of a model on text files"),
    "heads": ("heads", "per-head diagnostic scores (previous-token, sink, induction, ...)"),
    "lens": ("lens", "logit lens: top predictions after every layer"),
}


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the process exit code."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="python -m gptviz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] not in COMMANDS:
        parser.print_help() if not argv or argv[0] in ("-h", "--help") else parser.parse_args(argv)
        return 0 if not argv or argv[0] in ("-h", "--help") else 2
    name = argv[0]
    module = importlib.import_module(f"gptviz.cli.{COMMANDS[name][0]}")
    cmd_parser = argparse.ArgumentParser(prog=f"python -m gptviz {name}",
                                         description=COMMANDS[name][1])
    module.configure(cmd_parser)
    args = cmd_parser.parse_args(argv[1:])
    from gptviz.io.checkpoint import CheckpointError

    try:
        return int(module.run(args) or 0)
    except BrokenPipeError:
        # The reader went away (`... | head`): not an error of ours. Point stdout at devnull
        # so that the interpreter's final flush does not raise again.
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CheckpointError, ValueError, FileNotFoundError) as e:
        # Bad input is the user's to fix: one clear line, no traceback.
        print(f"error: {e}", file=sys.stderr)
        return 2
