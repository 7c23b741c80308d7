"""``python -m gptviz patch``: activation patching of a clean prompt into a corrupted one.

JSON output (``--json``)::

    {"model": str, "clean_ids": [T], "corrupt_ids": [T], "target_id": int, "vs_id": int,
     "clean_metric": float, "corrupt_metric": float,
     "heads": [[H] * L], "resid": [[T] * L], "note": str or null}

The metric is M = logit(target) - logit(vs) at the last position; each map entry is
(M_patched - M_corrupt) / (M_clean - M_corrupt) for the corrupted run with that activation
taken from the clean run: ``heads[l][h]`` one head's output at every position, ``resid[l][t]``
the residual stream entering block l at token t (null where M_clean == M_corrupt).
"""

from __future__ import annotations

import argparse
import json
import sys

from gptviz.cli.arguments import text
from gptviz.cli.attribute import add_token_args, token_from_args


def configure(p: argparse.ArgumentParser) -> None:
    """Add the options."""
    p.add_argument("--model", default=None,
                   help="checkpoint directory or nanoGPT .pt (default: the bundled model)")
    p.add_argument("--clean", type=text, required=True, help="the clean prompt")
    p.add_argument("--corrupt", type=text, required=True,
                   help="the corrupted prompt (the same number of tokens)")
    add_token_args(p, "target", True, "the metric's target token")
    add_token_args(p, "vs", True, "the metric's other token (M = logit(target) - logit(vs))")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _encode(bundle, prompt: str, flag: str) -> list[int]:
    ids = bundle.tokenizer.encode(prompt)
    if not ids:
        raise ValueError(f"{flag}: the prompt encodes to no tokens")
    if len(ids) > bundle.config.block_size:
        raise ValueError(f"{flag}: the prompt is {len(ids)} tokens; the model reads at most "
                         f"{bundle.config.block_size}")
    return ids


def run(args: argparse.Namespace) -> int:
    """Patch and print."""
    from gptviz.analysis.patching import activation_patching
    from gptviz.families import load_model

    bundle = load_model(args.model)
    clean, corrupt = _encode(bundle, args.clean, "--clean"), _encode(bundle, args.corrupt,
                                                                    "--corrupt")
    if len(clean) != len(corrupt):
        raise ValueError(f"--clean is {len(clean)} tokens and --corrupt {len(corrupt)}: "
                         "patching needs prompts of the same token length")
    target = token_from_args(bundle, args, "target")
    vs = token_from_args(bundle, args, "vs")
    assert target is not None and vs is not None  # both groups are required
    res = activation_patching(bundle.model, clean, corrupt, target, vs)
    out = {"model": bundle.name, "clean_ids": clean, "corrupt_ids": corrupt,
           "target_id": target, "vs_id": vs, **res.to_dict()}
    if args.json:
        json.dump(out, sys.stdout, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    tok = bundle.tokenizer.display
    print(f"{out['model']}: M = logit({tok(target)!r}) - logit({tok(vs)!r}); clean "
          f"{res.clean_metric:.4f}, corrupted {res.corrupt_metric:.4f}")
    if res.note:
        print(f"note: {res.note}")
    assert res.heads is not None and res.resid is not None
    print("heads (rows: layers, columns: heads):")
    for layer, row in enumerate(res.heads):
        print(f"  {layer:>2}: " + " ".join(f"{v:+.2f}" for v in row))
    print("residual entering each block (rows: layers, columns: tokens):")
    for layer, row in enumerate(res.resid):
        print(f"  {layer:>2}: " + " ".join(f"{v:+.2f}" for v in row))
    return 0
