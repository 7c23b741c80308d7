"""Language-model evaluation: loss per token and bits per character on plain text.

Bits per character (total loss in bits divided by the number of characters) does not depend
on the tokenizer, so models with different vocabularies can be compared.

Texts longer than the context are scored with overlapping windows of ``block_size`` tokens
and a stride of ``block_size // 2``: the first window scores all its tokens, every later one
only the tokens not scored before, so each token (but the first) is predicted exactly once
with at least half a context of history.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F

from gptviz.io.checkpoint import ModelBundle

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT


@torch.inference_mode()
def token_losses(model: GPT, ids: list[int], batch_size: int = 16) -> torch.Tensor:
    """Loss (nats) of every token after the first, shape ``(len(ids) - 1,)``.

    Parameters
    ----------
    model
        A :class:`~gptviz.model.gpt.GPT`.
    ids
        Token ids of the whole text.
    batch_size
        Windows evaluated per forward pass.
    """
    block = model.config.block_size
    n = len(ids)
    if n < 2:
        raise ValueError("need at least two tokens to measure a loss")
    stride = max(1, block // 2)
    data = torch.tensor(ids, dtype=torch.long)
    # (start, first target index scored inside the window)
    windows: list[tuple[int, int]] = []
    start, scored_until = 0, 0  # tokens [1, scored_until] already have a loss
    while scored_until < n - 1:
        end = min(start + block, n)
        start = max(0, end - block)
        first = max(scored_until + 1, start + 1)
        windows.append((start, first))
        scored_until = end - 1
        start = start + stride
    out = torch.empty(n - 1)
    for i in range(0, len(windows), batch_size):
        chunk = windows[i:i + batch_size]
        length = max(min(block, n - s) for s, _ in chunk)
        x = torch.zeros(len(chunk), length, dtype=torch.long)
        lens = []
        for j, (s, _) in enumerate(chunk):
            seg = data[s:s + length]
            x[j, :len(seg)] = seg
            lens.append(len(seg))
        logits = model(x).logits.float()  # (B, T, V)
        for j, (s, first) in enumerate(chunk):
            L = lens[j]
            tgt = data[s + 1:s + L]  # (L-1,)
            loss = F.cross_entropy(logits[j, :L - 1], tgt, reduction="none")  # (L-1,)
            k0 = first - (s + 1)  # skip targets scored by an earlier window
            out[first - 1:s + L - 1] = loss[k0:]
    return out


def evaluate_text(bundle: ModelBundle, text: str) -> dict[str, Any]:
    """Loss per token and bits per character of ``bundle`` on ``text``.

    Returns
    -------
    dict
        ``tokens``, ``characters``, ``scored_tokens``, ``scored_characters``,
        ``loss_per_token`` (nats), ``bits_per_character``. The first token has no prediction;
        the loss counts the other ``tokens - 1`` (scored) and the characters they cover.
    """
    ids = bundle.tokenizer.encode(text)
    losses = token_losses(bundle.model, ids)
    first_chars = len(bundle.tokenizer.decode(ids[:1]))
    chars = len(text) - first_chars
    total = float(losses.sum())
    return {
        "tokens": len(ids),
        "characters": len(text),
        "scored_tokens": len(losses),
        "scored_characters": chars,
        "loss_per_token": total / len(losses),
        "bits_per_character": total / math.log(2) / max(1, chars),
    }


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Pool several :func:`evaluate_text` results into one (weighted by what each scored)."""
    nats = sum(r["loss_per_token"] * r["scored_tokens"] for r in results)
    toks = sum(r["scored_tokens"] for r in results)
    chars = sum(r["scored_characters"] for r in results)
    return {
        "tokens": sum(r["tokens"] for r in results),
        "characters": sum(r["characters"] for r in results),
        "scored_tokens": toks,
        "scored_characters": chars,
        "loss_per_token": nats / toks,
        "bits_per_character": nats / math.log(2) / max(1, chars),
    }
