"""``python -m gptviz lens``: the logit lens at one position of a prompt.

JSON output (``--json``)::

    {"model": str, "ids": [T ints], "tokens": [T display strings],
     "position": p, "token": {"id", "token"}, "target": {"id", "token"} or null,
     "layers": [{"layer": 0, "name": "embed",
                 "top": [{"id", "token", "prob"} * k],
                 "target_prob": float, "target_rank": int},   # when there is a target
                ... n_layer + 1 rows]}

The target is the token after ``position`` in the prompt (none at the last position). With
``--mid`` the rows are the ``2 n_layer + 1`` points embed, ``L0 mid``, ``L0 out``, ...: the
``mid`` ones read the stream between each block's attention and its feed-forward layer
(TransformerLens' ``resid_mid``; see :mod:`gptviz.analysis.lens`).
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
    p.add_argument("--position", type=int, default=-1,
                   help="position to read (negative counts from the end; default the last)")
    p.add_argument("--k", type=whole_number(1), default=10, help="top predictions per layer")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--mid", action="store_true",
                   help="also read the points between each block's attention and its "
                        "feed-forward layer (resid_mid)")


def run(args: argparse.Namespace) -> int:
    """Read the lens and print it."""
    import torch

    from gptviz.analysis.lens import logit_lens

    bundle, ids = load_prompt(args)
    with torch.no_grad():
        res = logit_lens(bundle.model, ids, position=args.position, k=args.k, mid=args.mid)
    out = {"model": bundle.name, "ids": [int(i) for i in ids],
           "tokens": [bundle.tokenizer.display(i) for i in ids],
           **res.to_dict(bundle.tokenizer)}
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    tgt = out["target"]
    print(f"{out['model']}: position {out['position']} = {out['token']['token']!r}"
          + (f", next token {tgt['token']!r}" if tgt else ""))
    for row in out["layers"]:
        tops = "  ".join(f"{t['token']!r} {t['prob']:.3f}" for t in row["top"])
        extra = (f"   [next: p={row['target_prob']:.3f} rank {row['target_rank']}]"
                 if "target_prob" in row else "")
        print(f"{row['name']:>9}: {tops}{extra}")
    return 0
