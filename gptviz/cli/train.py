"""``python -m gptviz train``: reproduce the bundled model (see :mod:`gptviz.train.stages`),
or train a run whose snapshots the app shows as a timeline (:mod:`gptviz.train.snapshots`)."""

from __future__ import annotations

import argparse

from gptviz.cli.arguments import whole_number


def _iterations(text: str) -> str:
    """An argparse type: a comma-separated list of iterations (checked, kept as text)."""
    from gptviz.train.snapshots import parse_iterations

    try:
        parse_iterations(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def configure(p: argparse.ArgumentParser) -> None:
    """Add the training options."""
    p.add_argument("--stage", default="all",
                   choices=["pretrain", "induct", "anneal", "finetune", "report", "all",
                            "pretrain+finetune"],
                   help="pretrain+finetune: the two stages of the reference, no report (the "
                        "timeline run)")
    p.add_argument("--run-dir", default="runs/shakespeare", help="work folder (resumable state)")
    p.add_argument("--out", default="resources/model", help="where the report stage writes the "
                   "shipped checkpoint")
    p.add_argument("--corpus", default=None, help="folder of *_gut.txt works (default: the "
                   "installed shakespeare package), or builtin:tales for the synthetic tales "
                   "that need nothing installed")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--positions", default="learned", choices=["learned", "rotary"],
                   help="learned: h_0 = U W_e + W_p (GPT); rotary: q and k rotated by position")
    p.add_argument("--iters", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--repeat-frac", type=float, default=0.0,
                   help="fraction of training rows that repeat a passage twice (teaches copying)")
    p.add_argument("--copy-rows", type=int, default=0,
                   help="rows of the copying task (random tokens written twice) added to every "
                        "pre-training batch, scored on the second copy; forms induction heads")
    p.add_argument("--copy-weight", type=float, default=1.0,
                   help="weight w of the copying loss in L1 + w * L_copy")
    p.add_argument("--warmup", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--log-every", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=200)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--induct-iters", type=int, default=600,
                   help="iterations of L1 + w * copying loss after pre-training (0: skip)")
    p.add_argument("--induct-weight", type=float, default=1.0)
    p.add_argument("--induct-lr", type=float, default=1e-3)
    p.add_argument("--anneal-iters", type=int, default=0,
                   help="iterations of L1 (+ the copying rows) after the copying stage, at "
                        "--anneal-lr, so the language model recovers (0: skip)")
    p.add_argument("--anneal-lr", type=float, default=5e-4)
    p.add_argument("--anneal-copy-rows", type=int, default=None,
                   help="copying rows per batch in the anneal stage (default: --copy-rows)")
    p.add_argument("--anneal-copy-weight", type=float, default=None,
                   help="weight of their loss (default: --copy-weight)")
    p.add_argument("--ft-iters", type=int, default=300)
    p.add_argument("--ft-batch-size", type=int, default=16)
    p.add_argument("--ft-lr", type=float, default=3e-4,
                   help="fine-tuning learning rate of the genre head W_y")
    p.add_argument("--ft-body-lr", type=float, default=None,
                   help="fine-tuning learning rate of the rest of the model (default: --ft-lr)")
    p.add_argument("--ft-body-grad", type=float, default=1.0,
                   help="share of the genre loss's gradient that reaches the model below the "
                        "head (1: all; the language-model loss always trains it)")
    p.add_argument("--ft-eval-len", type=int, default=256,
                   help="tokens per held-out passage when measuring genre accuracy")
    p.add_argument("--lam", type=float, default=0.5, help="lambda in L3 = L2 + lambda * L1")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    p.add_argument("--snapshot-dir", default=None,
                   help="where snapshots go, one folder per iteration (default: "
                        "<run dir>/snapshots)")
    p.add_argument("--snapshot-every", type=whole_number(0), default=0,
                   help="save a float16 snapshot every N iterations (counted over the whole "
                        "run), and at the end of every stage")
    p.add_argument("--snapshots", type=_iterations, default=None,
                   help="save snapshots at these iterations too, e.g. 0,50,100")


def run(args: argparse.Namespace) -> int:
    """Run the chosen stage(s)."""
    import os

    import torch

    from gptviz.train import stages

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.stage in ("pretrain", "all", "pretrain+finetune"):
        stages.pretrain(args)
    if args.stage == "induct" or (args.stage == "all" and args.induct_iters > 0):
        stages.induct(args)
    if args.stage == "anneal" or (args.stage == "all" and args.anneal_iters > 0):
        stages.anneal(args)
    if args.stage in ("finetune", "all", "pretrain+finetune"):
        stages.finetune(args)
    if args.stage in ("report", "all"):
        stages.report(args)
    return 0
