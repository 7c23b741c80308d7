"""``python -m gptviz train``: reproduce the bundled model (see :mod:`gptviz.train.stages`)."""

from __future__ import annotations

import argparse


def configure(p: argparse.ArgumentParser) -> None:
    """Add the training options."""
    p.add_argument("--stage", default="all",
                   choices=["pretrain", "induct", "anneal", "finetune", "report", "all"])
    p.add_argument("--run-dir", default="runs/shakespeare", help="work folder (resumable state)")
    p.add_argument("--out", default="resources/model", help="where the report stage writes the "
                   "shipped checkpoint")
    p.add_argument("--corpus", default=None, help="folder of *_gut.txt works (default: the "
                   "installed shakespeare package)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--vocab-size", type=int, default=4096)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=8)
    p.add_argument("--n-embd", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--dropout", type=float, default=0.1)
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


def run(args: argparse.Namespace) -> int:
    """Run the chosen stage(s)."""
    import os

    import torch

    from gptviz.train import stages

    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    if args.stage in ("pretrain", "all"):
        stages.pretrain(args)
    if args.stage == "induct" or (args.stage == "all" and args.induct_iters > 0):
        stages.induct(args)
    if args.stage == "anneal" or (args.stage == "all" and args.anneal_iters > 0):
        stages.anneal(args)
    if args.stage in ("finetune", "all"):
        stages.finetune(args)
    if args.stage in ("report", "all"):
        stages.report(args)
    return 0
