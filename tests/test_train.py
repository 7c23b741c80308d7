"""Training pipeline: held-out works stay out, a few steps lower the loss, L3 = L2 + λ·L1."""

from __future__ import annotations

import argparse
import json
import math
import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gptviz.io.checkpoint import load_gptviz_checkpoint
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT
from gptviz.train.data import GENRE_OF, GENRES, HELD_OUT, split_works
from gptviz.train.stages import (
    anneal,
    batch_at,
    build_corpus,
    finetune,
    l3_loss,
    labelled_batch,
    loss_curve_svg,
    pretrain,
)

WORDS = """
    the and to of i you my a that in is not it me with be his your this but he have as
    thou so him will what thy all her no by do shall if are we thee our on lord now good
    love king sir come well more let must o here how would say what
""".split()

TRAIN_WORKS = ("hamlet_gut", "henry_v_gut", "tempest_gut", "sonnets_gut")


def _fake_work(name: str, n_words: int, rng: random.Random) -> str:
    # Each work carries a sentinel word repeated often enough that BPE would learn it as a
    # token if (and only if) the work reached the tokenizer's training data.
    sentinel = "zq" + "".join(rng.choice("bcdfghjklmnpvwx") for _ in range(6))
    lines = []
    for _ in range(n_words // 8):
        words = [rng.choice(WORDS) for _ in range(7)] + [sentinel]
        lines.append(" ".join(words).capitalize() + ".")
    return f"{name.upper()}\n\n" + "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def fake_corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    d = tmp_path_factory.mktemp("corpus")
    rng = random.Random(0)
    sentinels = {}
    for name in TRAIN_WORKS + HELD_OUT:
        text = _fake_work(name, 3000, rng)
        (d / f"{name}.txt").write_text(text)
        sentinels[name] = text.split()[8].rstrip(".")
    # A First Folio spelling file must be ignored.
    (d / "hamlet_gut_f.txt").write_text("FOLIO ONLY zzfolio " * 50)
    return d, sentinels


def test_held_out_works_are_excluded(fake_corpus, tmp_path):
    d, sentinels = fake_corpus
    train, held = split_works(d)
    assert set(held) == set(HELD_OUT)
    assert not set(train) & set(HELD_OUT)
    assert "hamlet_gut_f" not in train
    corpus = build_corpus(tmp_path, 400, d, log=lambda s: None)
    text = corpus.tokenizer.decode(corpus.train_ids.tolist())
    for name in TRAIN_WORKS:
        assert sentinels[name] in text
    vocab = set(corpus.tokenizer.hf.get_vocab())
    for name in HELD_OUT:
        # Not in the training stream, and never seen by the tokenizer's trainer: a sentinel
        # that occurs hundreds of times would otherwise have merged into a few tokens.
        assert sentinels[name] not in text
        assert not any(sentinels[name][2:6] in v for v in vocab)
        assert sentinels[name] in corpus.held_texts[name]
        assert len(corpus.tokenizer.encode(" " + sentinels[name])) >= 4
    assert "zzfolio" not in text


def test_real_genre_table_covers_every_play():
    assert set(GENRE_OF.values()) == set(GENRES)
    for w in HELD_OUT:
        assert w in GENRE_OF


def _args(tmp_path: Path, corpus: Path, iters: int) -> argparse.Namespace:
    return argparse.Namespace(
        run_dir=str(tmp_path / "run"), corpus=str(corpus), seed=3, vocab_size=300,
        n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0, iters=iters,
        batch_size=8, lr=3e-3, warmup=5, weight_decay=0.0, log_every=5, eval_every=10,
        ckpt_every=10)


def test_a_few_training_steps_lower_the_loss_and_resume(fake_corpus, tmp_path):
    d, _ = fake_corpus
    torch.manual_seed(0)
    pretrain(_args(tmp_path, d, 10), log=lambda s: None)
    # as if the run had logged iteration 12 and died before its next saved state
    with (tmp_path / "run" / "pretrain_log.jsonl").open("a") as f:
        f.write(json.dumps({"iter": 12, "loss": 9.0, "tok_s": 1.0, "elapsed": 1.0}) + "\n")
    messages: list[str] = []
    out = pretrain(_args(tmp_path, d, 40), log=messages.append)
    assert any("resuming at iteration 10" in m for m in messages)
    recs = [json.loads(line) for line in (tmp_path / "run" / "pretrain_log.jsonl").read_text()
            .splitlines()]
    assert [r["iter"] for r in recs] == list(range(5, 45, 5))  # 12 dropped: logged again
    assert recs[-1]["loss"] < recs[0]["loss"] - 0.5
    assert (out / "model.safetensors").is_file()
    svg = loss_curve_svg(recs)
    assert svg.startswith("<svg") and "polyline" in svg and "stroke-dasharray" not in svg
    marked = loss_curve_svg(recs, marks=[(20, "anneal")])
    assert "stroke-dasharray" in marked and ">anneal</text>" in marked


def _l3_case() -> tuple[GPT, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A tiny model with a genre head and a batch: (model, x, y, labels, cut)."""
    torch.manual_seed(0)
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=12, vocab_size=40, n_classes=3)
    model = GPT(cfg)
    x = torch.randint(0, 40, (4, 12))
    y = torch.randint(0, 40, (4, 12))
    labels = torch.tensor([0, 2, 1, 2])
    cut = torch.tensor([3, 11, 0, 7])
    return model, x, y, labels, cut


def test_l3_is_l2_plus_lambda_l1():
    model, x, y, labels, cut = _l3_case()
    total, l2, l1 = l3_loss(model, x, y, labels, cut, lam=0.25)
    # By hand: the LM loss over all positions, the class loss at each passage's cut.
    logits = model(x).logits
    l1_hand = F.cross_entropy(logits.reshape(-1, 40), y.reshape(-1))
    cls = torch.stack([model.classify(model(x[i:i + 1, :cut[i] + 1]).hidden)[0]
                       for i in range(4)])
    l2_hand = F.cross_entropy(cls, labels)
    assert torch.allclose(l1, l1_hand, atol=1e-5)
    assert torch.allclose(l2, l2_hand, atol=1e-5)
    assert torch.allclose(total, l2_hand + 0.25 * l1_hand, atol=1e-5)
    total.backward()
    assert model.classifier.weight.grad.abs().sum() > 0  # W_y learns from L2
    assert model.wte.weight.grad.abs().sum() > 0  # the body learns from both


def test_l3_body_grad_scales_only_the_class_gradient_below_the_head():
    model, x, y, labels, cut = _l3_case()

    def grads(body_grad: float, lam: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        total, _, _ = l3_loss(model, x, y, labels, cut, lam=lam, body_grad=body_grad)
        total.backward()
        return total.detach(), {k: p.grad.clone() for k, p in model.named_parameters()
                                if p.grad is not None}

    full_value, full = grads(1.0, 0.5)
    value, part = grads(0.1, 0.5)
    assert torch.equal(value, full_value)  # the loss is the same
    _, l2_zero = grads(0.0, 0.5)
    # The head's gradient does not change; the body's L2 share is scaled by body_grad:
    # g(0.1) = g_L1 + 0.1 * g_L2 and g(0) = g_L1, so g(0.1) - g(0) = 0.1 * (g(1) - g(0)).
    assert torch.allclose(part["classifier.weight"], full["classifier.weight"])
    for k in ("wte.weight", "h.0.attn.c_attn.weight", "h.1.mlp.c_fc.weight"):
        assert torch.allclose(part[k] - l2_zero[k], 0.1 * (full[k] - l2_zero[k]), atol=1e-6)
        assert not torch.allclose(full[k], l2_zero[k])  # L2 does reach the body at 1


def test_labelled_batches_are_balanced_and_reproducible(fake_corpus, tmp_path):
    d, _ = fake_corpus
    corpus = build_corpus(tmp_path, 300, d, log=lambda s: None)
    a = labelled_batch(corpus, 5, 1, 60, 32)
    b = labelled_batch(corpus, 5, 1, 60, 32)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    counts = torch.bincount(a[2], minlength=3)
    assert (counts > 5).all()
    # The head reads each passage at a random cut, at least 16 tokens in.
    assert ((a[3] >= 15) & (a[3] < 32)).all() and len(set(a[3].tolist())) > 5
    assert math.isclose(float(counts.sum()), 60)


def test_repeat_rows_write_a_real_passage_twice():
    data = np.arange(5000, dtype=np.uint16)
    x0, y0 = batch_at(data, 7, 2, 64, 16)
    assert torch.equal(y0[:, :-1], x0[:, 1:]) and ((x0[:, 1:] - x0[:, :-1]) == 1).all()
    x, y = batch_at(data, 7, 2, 64, 16, repeat_frac=0.5)
    seq = torch.cat([x, y[:, -1:]], dim=1)  # (B, 17): the 17-token rows
    repeated = (seq[:, 9:] == seq[:, :8]).all(dim=1)
    assert 16 <= int(repeated.sum()) <= 48  # about half the rows
    assert torch.equal(y[:, :-1], x[:, 1:])  # targets stay the next token
    plain = ~repeated
    assert ((seq[plain, 1:] - seq[plain, :-1]) == 1).all()


def test_copy_batches_score_only_the_second_copy():
    from gptviz.train.stages import copy_batch

    x, y = copy_batch(3, 1, 32, 24, 50, min_half=4)
    assert x.shape == y.shape == (32, 24)
    for b in range(32):
        scored = (y[b] != -100).nonzero().flatten()
        h = int(scored[0])  # the second copy starts at h and repeats x[:h]
        assert torch.equal(x[b, h:2 * h], x[b, :h])
        assert torch.equal(scored, torch.arange(h, 2 * h - 1))
        assert torch.equal(y[b, h:2 * h - 1], x[b, h + 1:2 * h])  # the token that followed


def test_mixed_loss_is_l1_on_text_rows_and_copy_loss_on_copy_rows():
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT
    from gptviz.train.stages import copy_batch, lm_loss, mixed_loss

    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=24, vocab_size=50,
                          dropout=0.0)).eval()
    x = torch.randint(0, 50, (3, 24))
    y = torch.randint(0, 50, (3, 24))
    xc, yc = copy_batch(0, 1, 2, 24, 50, min_half=4)
    l1, lc = mixed_loss(model, x, y, xc, yc, torch.device("cpu"))
    assert torch.allclose(l1, lm_loss(model, x, y), atol=1e-6)
    assert torch.allclose(lc, lm_loss(model, xc, yc), atol=1e-6)
    assert abs(l1.item() - lc.item()) > 1e-4  # two different losses, not one twice


def test_pretraining_with_copy_rows_logs_the_copy_loss_and_induction(fake_corpus, tmp_path):
    d, _ = fake_corpus
    torch.manual_seed(0)
    args = _args(tmp_path, d, 10)
    args.copy_rows, args.copy_weight = 2, 1.0
    pretrain(args, log=lambda s: None)
    recs = [json.loads(line) for line in (tmp_path / "run" / "pretrain_log.jsonl").read_text()
            .splitlines()]
    assert all(r["copy_loss"] > 0 for r in recs)
    assert 0.0 <= recs[-1]["induction_max"] <= 1.0


def test_anneal_continues_from_the_pretrained_model_and_finetune_starts_from_it(
        fake_corpus, tmp_path):
    d, _ = fake_corpus
    torch.manual_seed(0)
    args = _args(tmp_path, d, 20)
    args.copy_rows, args.copy_weight = 2, 1.0
    pretrain(args, log=lambda s: None)
    run = tmp_path / "run"
    before = load_gptviz_checkpoint(run / "pretrained").model.state_dict()
    args.anneal_iters, args.anneal_lr = 10, 1e-3
    args.anneal_copy_rows, args.anneal_copy_weight = 1, 0.5  # lighter than pre-training's
    messages: list[str] = []
    out = anneal(args, log=messages.append)
    recs = [json.loads(line) for line in (run / "anneal_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in recs] == [5, 10]
    assert all(r["copy_loss"] > 0 for r in recs) and "val_loss" in recs[-1]
    annealed = load_gptviz_checkpoint(out)
    assert annealed.metadata["anneal"]["iters"] == 10
    assert (annealed.metadata["anneal"]["copy_rows"],
            annealed.metadata["anneal"]["copy_weight"]) == (1, 0.5)
    assert annealed.metadata["iters"] == 20  # the pre-training record is kept
    after = annealed.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)  # it trained
    # It started from the pre-trained weights, not from a fresh initialisation: after ten
    # small steps the weights are still far closer to those than to a new model's.
    fresh = GPT(annealed.config).state_dict()
    k = "h.0.attn.c_attn.weight"
    assert (after[k] - before[k]).norm() < 0.5 * (after[k] - fresh[k]).norm()
    # A rerun with more iterations resumes from the saved state.
    args.anneal_iters = 15
    anneal(args, log=messages.append)
    assert any("resuming at iteration 10" in m for m in messages)
    # The model it started from changed (say the copying stage ran again): not resumed.
    weights = run / "pretrained" / "model.safetensors"
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns - 10**9))  # another file
    messages.clear()
    anneal(args, log=messages.append)
    assert any("starting over" in m for m in messages)
    assert not any("resuming" in m for m in messages)
    recs = [json.loads(line) for line in (run / "anneal_log.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in recs] == [5, 10, 15]  # a fresh log, from iteration 0
    args.ft_iters, args.ft_batch_size, args.ft_lr, args.lam, args.ft_eval_len = 5, 4, 1e-3, 0.5, 16
    finetune(args, log=messages.append)
    tuned = load_gptviz_checkpoint(run / "finetuned")
    assert tuned.metadata["anneal"]["iters"] == 15
    assert any("finetune: starting from annealed" in m for m in messages)
    # A later run without the anneal stage re-writes the pre-trained model: the annealed one
    # left in the folder is older than that and is not picked up.
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 10**10))
    finetune(args, log=messages.append)
    assert "anneal" not in load_gptviz_checkpoint(run / "finetuned").metadata
    assert any("finetune: starting from pretrained" in m for m in messages)
    # each fine-tuning run writes its own log (one record at iteration 5), not appended
    assert len((run / "finetune_log.jsonl").read_text().splitlines()) == 1
    # --ft-body-lr: the body learns at its own rate (0 here: it stays as it was) while the
    # genre head learns at --ft-lr.
    args.ft_body_lr = 0.0
    finetune(args, log=messages.append)
    base = load_gptviz_checkpoint(run / "pretrained").model.state_dict()
    frozen = load_gptviz_checkpoint(run / "finetuned")
    tuned_sd = frozen.model.state_dict()
    assert all(torch.equal(base[k], tuned_sd[k]) for k in base)
    torch.manual_seed(args.seed + 1)  # the head's initialisation in finetune
    init = GPT(frozen.config).state_dict()
    assert not torch.equal(init["classifier.weight"], tuned_sd["classifier.weight"])
    assert frozen.metadata["finetune"]["body_lr"] == 0.0
