"""A fake Hugging Face hub cache for the tests: tiny random ``transformers`` models saved in
the real layout (``models--org--name/blobs/<sha>``, ``snapshots/<commit>/<file>`` as links
to the blobs, ``refs/main``), as ``hf download`` leaves it. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A GPT reads left to right, one token at a time.",
    "Attention! Every head looks back, never forward.",
    "hello world, hello model, hello attention maps",
] * 3
PROBE = "The lazy model reads attention maps, one token at a time!"


def bpe_tokenizer(sentences=SENTENCES):
    """A tiny GPT-2-style byte-level BPE tokenizer trained on ``sentences``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(sentences, trainer)
    return tok


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights: random norm gains and biases, sharp attention."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "ln" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            elif name.endswith("bias"):
                p.copy_(0.2 * r)
            elif "wte" in name or "wpe" in name or "embed" in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(0.15 * r)


def peak_over_uniform(attentions) -> float:
    """How far the sharpest attention row is from uniform: the largest weight times the
    number of keys the row may see, over every layer, head and query row after the first.

    1.0 means every row is uniform (a wrong scale or mask would give that); the trained BPE
    tokenizers of these tests tie merges in a random order, so a probe's ids (and any one
    row's weights) change from run to run: the check looks at every row, not one.
    """
    best = 0.0
    for a in attentions:  # (1, nh, T, T)
        T = a.shape[-1]
        seen = torch.arange(1, T + 1, dtype=a.dtype)  # keys row i may see: i + 1
        best = max(best, (a[0, :, 1:].amax(-1) * seen[1:]).max().item())
    return best


def tiny_gpt2(vocab_size: int, seed: int = 0, **kw):
    """A random ``GPT2LMHeadModel`` of 2 layers, 2 heads, 32 channels."""
    from transformers import GPT2Config, GPT2LMHeadModel

    args = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=vocab_size,
                bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    args.update(kw)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**args))
    randomize(model, seed)
    return model.eval()


def save_model_dir(model, tok, d: Path, **save_kw) -> Path:
    """``save_pretrained`` plus ``tokenizer.json`` into ``d``."""
    model.save_pretrained(d, **save_kw)
    tok.save(str(d / "tokenizer.json"))
    return d


def add_to_cache(cache: Path, repo_id: str, src: Path, commit: str | None = None,
                 ref: str | None = "main") -> Path:
    """Put the files of ``src`` in ``cache`` as the snapshot ``commit`` of ``repo_id`` (files
    become blobs named by their hash, the snapshot holds relative links to them) and point
    ``refs/<ref>`` at it. Returns the snapshot folder."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    if commit is None:
        commit = hashlib.sha1(f"{repo_id}:{ref}:{len(list(src.iterdir()))}".encode()).hexdigest()
    snap = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snap.mkdir(parents=True, exist_ok=True)
    for f in sorted(src.rglob("*")):
        if not f.is_file():
            continue
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        if not blob.exists():
            shutil.copyfile(f, blob)
        link = snap / f.relative_to(src)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snap


def fake_config_only(cache: Path, repo_id: str, config: dict) -> Path:
    """A cached repository with only a ``config.json`` (a model of another kind)."""
    src = cache.parent / ("src-" + repo_id.replace("/", "--"))
    src.mkdir(parents=True, exist_ok=True)
    (src / "config.json").write_text(json.dumps(config))
    return add_to_cache(cache, repo_id, src)


def refuse_network(monkeypatch) -> None:
    """Every connection and host lookup fails the test (gptviz never downloads); and gptviz
    must be offline without being told so (``HF_HUB_OFFLINE`` unset)."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network use: {args!r:.80}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


@contextmanager
def fail_after(seconds: int, why: str = "blocked") -> Iterator[None]:
    """Raise ``TimeoutError(why)`` in the body after ``seconds`` instead of hanging (a blind
    read of a named pipe blocks forever)."""
    def fail(*args):
        raise TimeoutError(why)

    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def good_and_bad_cache(root: Path, good: str, bad: str) -> Path:
    """A cache under ``root`` with ``org/good`` and ``org/bad`` (the same tiny GPT-2 at
    commits ``good`` and ``bad``): the one the hostile tests damage."""
    tok = bpe_tokenizer()
    src = save_model_dir(tiny_gpt2(tok.get_vocab_size()), tok, root / "src")
    cache = root / "hub"
    cache.mkdir()
    add_to_cache(cache, "org/good", src, commit=good)
    add_to_cache(cache, "org/bad", src, commit=bad)
    return cache
