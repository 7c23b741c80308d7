"""``python -m gptviz heads``: per-head diagnostic scores of a prompt, as a table or JSON.

JSON output (``--json``), readable with ``json.loads`` in a notebook::

    {"model": str, "n_layer": L, "n_head": H,
     "ids": [T ints], "tokens": [T display strings],
     "n_tokens": T, "induction_queries": int, "duplicate_queries": int,
     "scores": {"prev_token": [[H floats] * L], "first_token": ..., "induction": ...,
                "duplicate_token": ..., "entropy": ...},
     "probe_induction": [[H floats] * L] or null,
     "probe": {"n": int, "batch": int, "seed": int} or null,
     "convention": "gptviz" or "transformer_lens"}

Undefined scores (e.g. induction on a text without repeats) are ``null``. Definitions:
``docs/analysis.md``. ``--convention transformer_lens`` computes ``prev_token``,
``duplicate_token`` and ``induction`` as TransformerLens' ``detect_head`` does (the mass on
its pattern over all queries; see :mod:`gptviz.analysis.heads`).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gptviz.analysis.heads import CONVENTIONS
from gptviz.cli.arguments import MODEL_HELP, add_device_args, text, whole_number
from gptviz.engine.sampling import MAX_SEED
from gptviz.io.files import read_text_input

#: Most random probe sequences ``heads`` runs at once (each is one forward pass).
MAX_PROBE_BATCH = 256


def add_model_prompt_args(p: argparse.ArgumentParser) -> None:
    """``--model`` and ``--prompt`` / ``--prompt-file`` (shared with ``lens``)."""
    p.add_argument("--model", default=None, metavar="PATH|NAME", help=MODEL_HELP)
    add_device_args(p)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt", type=text, help="the text to analyse")
    src.add_argument("--prompt-file", help="read the text from this file (UTF-8; a pipe or "
                     "/dev/stdin is read too)")


def load_prompt(args: argparse.Namespace) -> tuple[Any, list[int]]:
    """Load the model and encode the prompt; a clear ValueError when it does not fit."""
    from gptviz.families import load_model

    prompt = (args.prompt if args.prompt is not None
              else read_text_input(args.prompt_file, f"--prompt-file {args.prompt_file}"))
    bundle = load_model(args.model, device=args.device, dtype=args.dtype)
    ids = bundle.tokenizer.encode(prompt)
    if not ids:
        raise ValueError("the prompt encodes to no tokens")
    if len(ids) > bundle.config.block_size:
        raise ValueError(f"the prompt is {len(ids)} tokens; the model reads at most "
                         f"{bundle.config.block_size}")
    return bundle, ids


def configure(p: argparse.ArgumentParser) -> None:
    """Add the options."""
    add_model_prompt_args(p)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--probe-len", type=whole_number(0), default=50,
                   help="length n of the random probe repeated twice (0: skip the probe)")
    p.add_argument("--probe-batch", type=whole_number(1, MAX_PROBE_BATCH), default=4,
                   help="random probe sequences")
    p.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0,
                   help="seed of the probe tokens")
    p.add_argument("--convention", choices=CONVENTIONS, default="gptviz",
                   help="gptviz: means over the queries a score is defined for; "
                        "transformer_lens: as its detect_head, over all queries "
                        "(default: %(default)s)")


def _table(name: str, grid: list[list[float | None]]) -> str:
    n_head = len(grid[0]) if grid else 0
    lines = [name, "      " + "".join(f"{'H' + str(h):>8}" for h in range(n_head))]
    for layer, row in enumerate(grid):
        cells = "".join(f"{'-':>8}" if v is None else f"{v:8.3f}" for v in row)
        lines.append(f"  L{layer:<3d}" + cells)
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Compute and print the scores."""
    from gptviz.analysis import head_scores, induction_scores
    from gptviz.analysis.sources import forward_attention

    bundle, ids = load_prompt(args)
    model = bundle.model
    att = forward_attention(model, ids)  # [L, H, T, T] packed, scored a layer at a time
    probe = None
    probe_info = None
    if args.probe_len and args.probe_len > 0:
        vocab = min(bundle.tokenizer.vocab_size, bundle.config.vocab_size)
        probe = induction_scores(model, n=args.probe_len, seed=args.seed,
                                 batch=args.probe_batch, vocab=vocab)
        probe_info = {"n": min(args.probe_len, bundle.config.block_size // 2),
                      "batch": args.probe_batch, "seed": args.seed}
    scores = head_scores(att, ids, probe_induction=probe, convention=args.convention)
    out = {
        "model": bundle.name,
        "n_layer": bundle.config.n_layer,
        "n_head": bundle.config.n_head,
        "ids": [int(i) for i in ids],
        "tokens": [bundle.tokenizer.display(i) for i in ids],
        **scores.to_dict(),
        "probe": probe_info,
    }
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    print(f"{out['model']}: {len(ids)} tokens, {out['n_layer']} layers x {out['n_head']} heads"
          + ("" if args.convention == "gptviz" else f" ({args.convention} convention)"))
    for name, grid in out["scores"].items():
        print()
        print(_table(name + (" (bits)" if name == "entropy" else ""), grid))
    if out["probe_induction"] is not None and probe_info is not None:  # the probe ran
        print()
        print(_table(f"probe_induction (random n={probe_info['n']} x2, "
                     f"batch {probe_info['batch']}, seed {probe_info['seed']})",
                     out["probe_induction"]))
    return 0
