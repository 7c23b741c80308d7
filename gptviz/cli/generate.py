"""``python -m gptviz generate``: generate text from a prompt and print it."""

from __future__ import annotations

import argparse
import sys

from gptviz.cli.arguments import MODEL_HELP, add_device_args, text
from gptviz.engine.sampling import add_sampling_args


def add_generation_args(p: argparse.ArgumentParser, default_steps: int) -> None:
    """``--model``, ``--prompt``, ``--steps`` and the sampling flags (shared with ``trace``)."""
    p.add_argument("--model", default=None, metavar="PATH|NAME", help=MODEL_HELP)
    add_device_args(p)
    p.add_argument("--prompt", required=True, type=text,
                   help="prompt text (must encode to >= 1 token)")
    p.add_argument("--steps", type=int, default=default_steps,
                   help=f"tokens to generate (default {default_steps})")
    add_sampling_args(p)


def run_session(args: argparse.Namespace):
    """Load the model, check the arguments, prefill and take ``args.steps`` steps."""
    from gptviz.engine.sampling import settings_from_args
    from gptviz.engine.session import Session
    from gptviz.families import load_model

    if args.steps < 0:
        raise ValueError(f"--steps must be >= 0 (got {args.steps})")
    settings = settings_from_args(args)  # checked before the (slow) model load
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    session = Session(bundle, args.prompt, settings)
    session.generate(args.steps)
    return session


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``generate`` options."""
    add_generation_args(p, default_steps=50)
    p.add_argument("--only-new", action="store_true", help="print only the generated text")


def run(args: argparse.Namespace) -> int:
    """Print the prompt followed by the generated text."""
    session = run_session(args)
    text = session.generated_text() if args.only_new else session.text()
    out = sys.stdout
    if hasattr(out, "reconfigure"):  # never die on a console that cannot show some characters
        out.reconfigure(errors="backslashreplace")
    out.write(text + "\n")
    out.flush()
    return 0
