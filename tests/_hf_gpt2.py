"""A transformers GPT2LMHeadModel with random weights and the same model loaded by gptviz:
the independent reference of the analysis tests (forward hooks on the transformers model)."""

from __future__ import annotations

import torch
from hub_cache import bpe_tokenizer, randomize

SENTENCES = [
    "the cat sat on the mat and the dog sat on the log",
    "a b c d a b c d a b c d",
    "Once upon a time there was a model that wanted to see inside itself.",
]


def hf_and_ours(tmp_path, seed: int = 0, **kw):
    """``(hf_model, bundle)``: a random GPT-2 (2 layers, 4 heads, 32 wide) saved and loaded
    back through gptviz's GPT-2 family."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from gptviz.families import load_model

    tok = bpe_tokenizer(SENTENCES)
    args = dict(n_layer=2, n_head=4, n_embd=32, n_positions=64,
                vocab_size=tok.get_vocab_size(), bos_token_id=None, eos_token_id=None,
                attn_implementation="eager")
    args.update(kw)
    torch.manual_seed(seed)
    hf = GPT2LMHeadModel(GPT2Config(**args))
    randomize(hf, seed)
    hf.eval()
    d = tmp_path / f"gpt2-{seed}"
    hf.save_pretrained(d)
    tok.model.save(str(d))
    bundle = load_model(d)
    bundle.model.eval()
    return hf, bundle


def hooked_inputs(modules):
    """Forward pre-hooks recording each module's first input: ``(handles, got)``; remove the
    handles yourself."""
    got: list[list[torch.Tensor]] = [[] for _ in modules]
    handles = [m.register_forward_pre_hook(lambda _m, inp, i=i: got[i].append(inp[0].detach()))
               for i, m in enumerate(modules)]
    return handles, got
