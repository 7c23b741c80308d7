"""Shared test fixtures: tiny models built from a config, no downloads."""

from __future__ import annotations

import os

# GUI tests run headless; must be set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import sys
from pathlib import Path

import pytest
import torch

# The checkout under test: its gptviz first on the path, its app/ as gptviz_app.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from main import use_checkout_app  # noqa: E402

use_checkout_app()

# Tiny models gain nothing from threads, and the machine is shared with other jobs.
torch.set_num_threads(1)


# ---------------------------------------------------------------------- tiny models
# A tiny byte-level BPE tokenizer (trained once per test session on a few sentences) and
# tiny GPTs with random weights: `tiny_bundle` (a ModelBundle) and
# `tiny_bundle_factory(**config_overrides)` for other shapes (e.g. ln_placement="post",
# block_size=16, n_classes=3). Weights are drawn larger than GPT's init so that attention
# patterns and next-token distributions are far from uniform.

_TINY_TEXT = [
    "The quick brown fox jumps over the lazy dog.",
    "Once upon a time there was a little model that wanted to see inside itself.",
    "Attention is all you need, said the transformer to the recurrent network.",
    "A GPT reads left to right: each token sees only the tokens before it.",
    "Hello, world! 12345 67890 -- the end.\nNew line, new tokens.\tTabs too.",
]


@pytest.fixture(scope="session")
def tiny_tokenizer():
    """A byte-level BPE ``gptviz.Tokenizer`` (256 byte tokens + ~100 merges)."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    from gptviz.io.tokenizer import Tokenizer

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator(_TINY_TEXT, trainer=trainer)
    return Tokenizer(hf)


def _tiny_bundle(tokenizer, seed: int = 0, **overrides):
    from gptviz.io.checkpoint import ModelBundle
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    cfg = dict(n_layer=2, n_head=4, n_embd=32, block_size=64, vocab_size=tokenizer.vocab_size,
               name="tiny")
    cfg.update(overrides)
    config = GPTConfig(**cfg)
    torch.manual_seed(seed)
    model = GPT(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0.0, 0.3)
            elif "ln" in name and name.endswith("weight"):
                p.uniform_(0.5, 1.5)
            else:
                p.normal_(0.0, 0.1)
    model.eval()
    return ModelBundle(model=model, tokenizer=tokenizer, metadata={"test": True},
                       source="<tiny>", kind="gptviz")


@pytest.fixture
def tiny_bundle_factory(tiny_tokenizer):
    """``factory(seed=0, **config_overrides) -> ModelBundle`` with random weights."""
    def factory(seed: int = 0, **overrides):
        return _tiny_bundle(tiny_tokenizer, seed=seed, **overrides)
    return factory


@pytest.fixture
def tiny_bundle(tiny_tokenizer):
    """A 2-layer, 4-head, 32-wide, block-64 GPT on the tiny tokenizer (random weights)."""
    return _tiny_bundle(tiny_tokenizer)
