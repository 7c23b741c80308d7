"""Random-weight models of a chosen shape, for benchmarks, tests and running without the
bundled model. Nothing is downloaded: the tokenizer is trained (or synthesised) locally.

``python -m gptviz_app.runtime.demo_model DIR [--layers 4 --heads 8 --width 256]`` writes a
checkpoint that ``python main.py --model DIR`` opens.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SAMPLE_TEXT = (
    "Once upon a time there was a little model that wanted to see inside itself. "
    "It read every word, one token at a time, and looked back at the words before it. "
    "To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer "
    "the slings and arrows of outrageous fortune, or to take arms against a sea of troubles. "
    "Mr and Mrs Dursley, of number four, Privet Drive, were proud to say that they were "
    "perfectly normal, thank you very much. The quick brown fox jumps over the lazy dog. "
    "Attention is all you need; the heads attend to the previous token, to the first token, "
    "and to earlier copies of the same token.\n"
)


def train_tokenizer(vocab_size: int = 400, text: str = SAMPLE_TEXT):
    """A small byte-level BPE :class:`gptviz.Tokenizer` trained on ``text`` (any text encodes)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from gptviz import Tokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([text] * 4, trainer)
    return Tokenizer(hf)


def synthetic_tokenizer(vocab_size: int):
    """A byte-level BPE with exactly ``vocab_size`` ids: the 256 bytes plus merged byte pairs
    (printable pairs first). Builds instantly; used for GPT-2-sized vocabularies."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    from gptviz import Tokenizer
    from gptviz.io.tokenizer import _byte_decoder

    alphabet = sorted(_byte_decoder(), key=lambda c: _byte_decoder()[c])  # 256 stand-ins
    printable = [c for c in alphabet if c.isalnum()] + [c for c in alphabet if not c.isalnum()]
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = []
    for a in printable:
        for b in printable:
            if len(vocab) >= vocab_size:
                break
            vocab[a + b] = len(vocab)
            merges.append((a, b))
        if len(vocab) >= vocab_size:
            break
    hf = HFTokenizer(models.BPE(vocab=vocab, merges=merges))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return Tokenizer(hf)


def random_bundle(n_layer: int = 4, n_head: int = 8, n_embd: int = 256, block_size: int = 256,
                  vocab_size: int | None = None, n_classes: int = 0, name: str | None = None,
                  seed: int = 0, sharpness: float = 1.0):
    """A :class:`gptviz.ModelBundle` with random weights (GPT-2 style init).

    ``sharpness`` > 1 scales the query/key projections so that attention patterns are peaked
    instead of nearly uniform (more like a trained model's, for looking at the views).
    """
    import torch

    from gptviz import GPT, GPTConfig, ModelBundle

    tok = train_tokenizer() if vocab_size is None or vocab_size <= 1024 else \
        synthetic_tokenizer(vocab_size)
    vocab = vocab_size or tok.vocab_size
    names = tuple(f"class {i}" for i in range(n_classes))
    cfg = GPTConfig(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
                    vocab_size=vocab, n_classes=n_classes, class_names=names,
                    name=name or f"random-{n_layer}x{n_head}x{n_embd}")
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    if sharpness != 1.0:
        with torch.no_grad():
            qk_rows = (cfg.n_head + cfg.kv_heads) * cfg.head_dim  # 2 * n_embd here
            for block in model.h:
                block.attn.c_attn.weight[:qk_rows] *= sharpness ** 0.5  # q and k rows
    return ModelBundle(model=model, tokenizer=tok, metadata={"random": True},
                       source=f"<random {cfg.name}>", kind="gptviz")


def write_random_checkpoint(directory: str | Path, **kwargs) -> Path:
    """Save :func:`random_bundle` ``(**kwargs)`` as a gptviz checkpoint directory."""
    from gptviz import save_checkpoint

    b = random_bundle(**kwargs)
    return save_checkpoint(directory, b.model, b.tokenizer, b.metadata)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m gptviz_app.runtime.demo_model",
                                description=__doc__.splitlines()[0])
    p.add_argument("directory")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--block-size", type=int, default=256)
    p.add_argument("--vocab", type=int, default=None)
    p.add_argument("--classes", type=int, default=0)
    p.add_argument("--sharpness", type=float, default=1.0,
                   help="scale q/k so attention is peaked (e.g. 30), like a trained model's")
    a = p.parse_args(argv)
    d = write_random_checkpoint(a.directory, n_layer=a.layers, n_head=a.heads, n_embd=a.width,
                                block_size=a.block_size, vocab_size=a.vocab, n_classes=a.classes,
                                sharpness=a.sharpness)
    print(d)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
