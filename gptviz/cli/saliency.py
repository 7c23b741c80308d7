"""``python -m gptviz saliency``: how much each prompt token moves one next-token prediction.

The log-probability of the target after the last prompt token, attributed to the input token
embeddings by input × gradient (``--method grad``) or integrated gradients from a zero
baseline (``--method ig --steps N``); see :mod:`gptviz.analysis.saliency`.

JSON output (``--json``)::

    {"model": str, "ids": [T ints], "tokens": [T display strings],
     "target": {"id", "token"}, "method": "grad" | "ig", "position": T - 1,
     "logprob": float, "scores": [T floats, L2 norm per token], "signed": [T floats],
     "attribution_sum": float,
     "steps": int, "baseline_logprob": float, "completeness_gap": float}   # ig only

The target is ``--target TEXT`` (which must encode to one token), ``--target-id N``, or by
default the model's most probable next token.
"""

from __future__ import annotations

import argparse
import json
import sys

from gptviz.cli.arguments import whole_number
from gptviz.cli.heads import add_model_prompt_args, load_prompt


def configure(p: argparse.ArgumentParser) -> None:
    """Add the options."""
    add_model_prompt_args(p)
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--target", help="the next token to explain, as text (one token)")
    tgt.add_argument("--target-id", type=whole_number(0), help="the next token to explain, "
                     "as an id")
    p.add_argument("--method", choices=("grad", "ig"), default="grad",
                   help="grad: input x gradient; ig: integrated gradients (default grad)")
    p.add_argument("--steps", type=whole_number(1), default=32,
                   help="integration steps for --method ig (default 32)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _target(args: argparse.Namespace, bundle) -> int | None:
    if args.target_id is not None:
        V = bundle.config.vocab_size
        if not args.target_id < V:
            raise ValueError(f"--target-id {args.target_id} is outside the vocabulary "
                             f"(0..{V - 1})")
        return int(args.target_id)
    if args.target is None:
        return None
    ids = bundle.tokenizer.encode(args.target)
    if len(ids) != 1:
        raise ValueError(f"--target {args.target!r} encodes to {len(ids)} tokens, not one; "
                         "use --target-id")
    return int(ids[0])


def run(args: argparse.Namespace) -> int:
    """Compute the saliency and print it."""
    from gptviz.analysis.saliency import saliency

    bundle, ids = load_prompt(args)
    if args.steps > 1024:
        raise ValueError(f"--steps must be at most 1024 (got {args.steps})")
    res = saliency(bundle.model, ids, position=-1, target=_target(args, bundle),
                   method=args.method, steps=args.steps)
    tok = bundle.tokenizer.display
    out = {"model": bundle.name, "ids": [int(i) for i in ids], "tokens": [tok(i) for i in ids],
           **res.to_dict(), "target": {"id": res.target, "token": tok(res.target)}}
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    name = "integrated gradients" if args.method == "ig" else "input x gradient"
    print(f"{out['model']}: {name} of log p({out['target']['token']!r}) = {res.value:.4f}")
    top = max(res.scores.max(), 1e-12)
    for i, (t, v, sv) in enumerate(zip(out["tokens"], res.scores, res.signed)):
        bar = "#" * int(round(20 * v / top))
        print(f"{i:>5} {t!r:>16} {v:10.4f} {sv:+10.4f} {bar}")
    if args.method == "ig":
        print(f"completeness: sum {res.attribution_sum:+.5f} vs f(x) - f(0) "
              f"{res.value - (res.baseline_value or 0.0):+.5f} (gap {res.completeness_gap:+.2e})")
    return 0
