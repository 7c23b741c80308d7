"""``python -m gptviz info``: a model's config, parameter count and metadata as JSON."""

from __future__ import annotations

import argparse
import json

from gptviz.cli.arguments import MODEL_HELP, add_device_args


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``info`` options."""
    p.add_argument("--model", default=None, metavar="PATH|NAME", help=MODEL_HELP)
    add_device_args(p)


def model_info(bundle) -> dict:
    """The JSON-ready description of a :class:`~gptviz.io.checkpoint.ModelBundle`."""
    return {
        "name": bundle.name,
        "kind": bundle.kind,
        "source": bundle.source,
        "config": bundle.config.to_dict(),
        "n_params": bundle.model.num_params(),
        "tokenizer": {"vocab_size": bundle.tokenizer.vocab_size,
                      "byte_level": bundle.tokenizer.byte_level},
        "metadata": bundle.metadata,
    }


def run(args: argparse.Namespace) -> int:
    """Print the model description as JSON."""
    from gptviz.families import load_model

    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    print(json.dumps(model_info(bundle), indent=2, default=str))
    return 0
