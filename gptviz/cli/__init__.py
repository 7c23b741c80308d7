"""``python -m gptviz COMMAND ...``: the command line.

Each command lives in its own module under :mod:`gptviz.cli` with two functions,
``configure(parser)`` and ``run(args) -> int``; this file only dispatches, so commands are
imported lazily (``info`` does not pay for the training code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from typing import Any, TextIO

from gptviz.cli.arguments import OneLineParser, UsageError

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
    "saliency": ("saliency", "gradient saliency (input x gradient, integrated gradients) "
                 "of a next-token log-probability per input token"),
    "attribute": ("attribute", "direct logit attribution: each head's and layer's share of a "
                  "logit"),
    "patch": ("patch", "activation patching: clean heads and residuals into a corrupted run"),
}


class _OutputError(Exception):
    """Standard output refused a write (closed, a full disk, a reader gone)."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error.strerror or str(error))
        self.error = error


class _GuardedOutput:
    """``sys.stdout`` while a command runs: a write that fails raises :class:`_OutputError`,
    so the failure is told apart from the command's own file errors."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, s: str) -> int:
        try:
            return self._stream.write(s)
        except OSError as e:
            raise _OutputError(e) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as e:
            raise _OutputError(e) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _error(message: str) -> None:
    """Print ``error: message`` on one line of stderr (if there is a stderr)."""
    if sys.stderr is not None:
        line = " ".join(message.split()) or "unknown error"
        print(f"error: {line}", file=sys.stderr)


def _drop_pending_output(stream: TextIO) -> None:
    """Point the process's stdout at devnull, so that the interpreter's last flush of text
    that a reader no longer takes (or a full disk refused) does not fail again."""
    if stream is not sys.__stdout__:
        return  # captured (tests): nothing will flush to a real descriptor
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _os_error_text(e: OSError) -> str:
    if e.strerror and e.filename is not None:
        return f"{e.filename}: {e.strerror}"
    return e.strerror or str(e)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run one command; returns the process exit code.

    Every error the user can fix is one line ``error: ...`` on stderr and exit code 2: a bad
    argument (naming the flag), a model or input file that cannot be read, an output that
    cannot be written, standard output closed or full. A reader that goes away
    (``... | head``) is not an error (exit code 0).
    """
    argv = sys.argv[1:] if argv is None else argv
    parser = OneLineParser(prog="python -m gptviz", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if sys.stdout is None:
        _error("standard output is closed; gptviz prints its results there")
        return 2
    try:
        if not argv or argv[0] not in COMMANDS:
            if not argv or argv[0] in ("-h", "--help"):
                parser.print_help()
                return 0
            parser.parse_args(argv)
            return 2
        name = argv[0]
        module = importlib.import_module(f"gptviz.cli.{COMMANDS[name][0]}")
        cmd_parser = OneLineParser(prog=f"python -m gptviz {name}",
                                   description=COMMANDS[name][1])
        module.configure(cmd_parser)
        args = cmd_parser.parse_args(argv[1:])
    except UsageError as e:
        _error(str(e))
        return 2
    except SystemExit as e:  # --help printed the help
        return e.code if isinstance(e.code, int) else 0
    return _run(module, args)


def _run(module: Any, args: argparse.Namespace) -> int:
    """Run a parsed command, turning the errors a user can fix into one line."""
    from gptviz.io.checkpoint import CheckpointError

    real_stdout = sys.stdout
    sys.stdout = _GuardedOutput(real_stdout)
    try:
        rc = int(module.run(args) or 0)
        sys.stdout.flush()
        return rc
    except _OutputError as e:
        _drop_pending_output(real_stdout)
        if isinstance(e.error, BrokenPipeError):
            return 0  # the reader went away (`... | head`): not an error of ours
        _error(f"cannot write to standard output ({e})")
        return 2
    except (CheckpointError, ValueError) as e:
        # Bad input is the user's to fix: one clear line, no traceback.
        _error(str(e))
        return 2
    except OSError as e:
        _error(_os_error_text(e))
        return 2
    finally:
        sys.stdout = real_stdout
