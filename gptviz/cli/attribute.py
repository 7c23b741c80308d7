"""``python -m gptviz attribute``: direct logit attribution at one position of a prompt.

JSON output (``--json``)::

    {"model": str, "ids": [T ints], "tokens": [T display strings],
     "position": p, "target_id": int, "vs_id": int or null,
     "logit": float, "embed": float, "heads": [[H floats] * L], "mlps": [L floats],
     "rest": float}

``embed + sum(heads) + sum(mlps) + rest == logit`` (the logit of the target at position p,
i.e. the prediction of the token after p, minus that of ``vs`` when given).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from gptviz.cli.arguments import text, whole_number
from gptviz.cli.heads import add_model_prompt_args, load_prompt


def add_token_args(p: argparse.ArgumentParser, name: str, required: bool, what: str) -> None:
    """``--NAME-id N`` or ``--NAME TEXT`` (text that is one token)."""
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument(f"--{name}-id", type=whole_number(0), help=f"{what} as a token id")
    g.add_argument(f"--{name}", type=text, help=f"{what} as text (must be one token)")


def token_from_args(bundle: Any, args: argparse.Namespace, name: str) -> int | None:
    """The token id that ``--NAME-id`` or ``--NAME`` gives (``None``: neither); a one-line
    ValueError when it is outside the vocabulary or the text is not exactly one token."""
    tid = getattr(args, f"{name.replace('-', '_')}_id")
    txt = getattr(args, name.replace("-", "_"))
    V = bundle.config.vocab_size
    if tid is not None:
        if not 0 <= tid < V:
            raise ValueError(f"--{name}-id {tid} is outside the vocabulary (0..{V - 1})")
        return int(tid)
    if txt is None:
        return None
    ids = bundle.tokenizer.encode(txt)
    if len(ids) != 1:
        raise ValueError(f"--{name} {txt!r} is {len(ids)} tokens, not one "
                         f"(use --{name}-id to give an id)")
    return int(ids[0])


def configure(p: argparse.ArgumentParser) -> None:
    """Add the options."""
    add_model_prompt_args(p)
    p.add_argument("--position", type=int, default=-1,
                   help="0-based position whose logits are attributed (the prediction of the "
                        "token after it; negative counts from the end; default the last)")
    add_token_args(p, "target", True, "the token whose logit is attributed")
    add_token_args(p, "vs", False, "attribute logit(target) - logit(this token)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Attribute and print."""
    import torch

    from gptviz.analysis.attribution import direct_logit_attribution

    bundle, ids = load_prompt(args)
    target = token_from_args(bundle, args, "target")
    assert target is not None  # the group is required
    vs = token_from_args(bundle, args, "vs")
    with torch.no_grad():
        res = direct_logit_attribution(bundle.model, ids, target, vs, position=args.position)
    tok = bundle.tokenizer.display
    out = {"model": bundle.name, "ids": [int(i) for i in ids],
           "tokens": [tok(i) for i in ids], **res.to_dict()}
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    what = f"logit({tok(target)!r})" + (f" - logit({tok(vs)!r})" if vs is not None else "")
    print(f"{out['model']}: {what} at position {res.position} "
          f"({tok(ids[res.position])!r}) = {res.logit:.4f}")
    print(f"  embed {res.embed:+.4f}   rest (biases, final norm shift) {res.rest:+.4f}")
    for layer, (row, m) in enumerate(zip(res.heads, res.mlps, strict=True)):
        heads = " ".join(f"{v:+.3f}" for v in row)
        print(f"  layer {layer:>2}: mlp {m:+.4f}   heads {heads}")
    return 0
