"""Checks every later Hugging Face family's tests share (test_families_neo/neox/llama): a
tiny random ``transformers`` model saved to a folder and opened with
:func:`gptviz.families.load_model`, compared with ``transformers`` itself (eager attention)
on logits, every attention map, one-token KV-cache steps, head ablation by a hook that zeroes
the head's slice before the output projection, and the logit lens through the family's own
final norm; and every live analysis run on a session of it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gptviz import load_model
from gptviz.model.gpt import Ablation

TOL = 1e-4  # against transformers
STEP_TOL = 1e-5  # one-token KV-cache steps against one full forward
PROMPT = "Once upon a time there was a little model that wanted to see inside itself."


def randomise(hf_model: torch.nn.Module, seed: int = 11, std: float = 0.3) -> None:
    """Weights larger than the init (attention far from uniform); norm weights near 1."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif "norm" in name or "ln" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if name.endswith("weight")
                        else torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def save(hf_model: torch.nn.Module, directory: Path, tokenizer) -> Path:
    """The model as ``save_pretrained`` writes it (safetensors) plus our tokenizer.json."""
    hf_model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save(directory / "tokenizer.json")
    return directory


def ids_of(bundle, text: str = PROMPT, n: int = 16) -> torch.Tensor:
    ids = bundle.tokenizer.encode(text)[:n]
    assert len(ids) == n
    return torch.tensor([ids])


def compare_forward(bundle, hf_model, idx: torch.Tensor) -> dict[str, float]:
    """Logits and every attention map against ``transformers``; the largest differences."""
    with torch.inference_mode():
        want = hf_model(idx, output_attentions=True)
        got = bundle.model(idx, return_attn=True)
    assert want.logits.std() > 0.5  # not a near-constant output
    assert len(got.attentions) == len(want.attentions) == bundle.config.n_layer
    logits = float((got.logits - want.logits).abs().max())
    attn = 0.0
    for a, b in zip(got.attentions, want.attentions):
        assert a.shape == b.shape == (1, bundle.config.n_head, idx.shape[1], idx.shape[1])
        attn = max(attn, float((a - b).abs().max()))
    assert logits <= TOL and attn <= TOL, (logits, attn)
    return {"logits": logits, "attention": attn}


def compare_steps(model, idx: torch.Tensor) -> dict[str, float]:
    """decode_step one token at a time from an empty cache against one forward, logits and
    attention rows: <= 1e-5 in float64 (a wrong cached key, position or window shows as
    O(1)); in float32 within 1e-5 of the logits' size (with these weights the residual
    stream grows to ~50, where float32 rounding alone reaches 1e-5)."""
    wide = _steps(copy.deepcopy(model).double(), idx)
    assert max(wide.values()) <= STEP_TOL, wide
    narrow = _steps(model, idx)
    with torch.inference_mode():
        size = float(model(idx).logits.abs().max())
    assert narrow["logits"] <= STEP_TOL * max(1.0, size) and narrow["attention"] <= STEP_TOL
    return {"f64_logits": wide["logits"], "f64_attention": wide["attention"],
            "f32_logits": narrow["logits"], "f32_attention": narrow["attention"],
            "logit_size": size}


def _steps(model, idx: torch.Tensor) -> dict[str, float]:
    cfg = model.config
    T = idx.shape[1]
    with torch.inference_mode():
        full = model(idx, return_attn=True)
        cache = model.new_cache()
        attn = torch.zeros(cfg.n_layer, cfg.n_head, cfg.block_size,
                           dtype=model.wte.weight.dtype)
        logits, rows = [], []
        for t in range(T):
            lg, _ = model.decode_step(int(idx[0, t]), cache, attn_out=attn)
            logits.append(lg)
            rows.append(attn[:, :, :T].clone())
    d_logits = float((torch.stack(logits) - full.logits[0]).abs().max())
    d_attn = 0.0
    for t in range(T):
        want = torch.stack([a[0, :, t] for a in full.attentions])  # (L, nh, T)
        d_attn = max(d_attn, float((rows[t][..., :t + 1] - want[..., :t + 1]).abs().max()))
    return {"logits": d_logits, "attention": d_attn}


def compare_ablation(bundle, hf_model, out_proj: Callable[[Any, int], torch.nn.Module],
                     idx: torch.Tensor, layer: int, head: int) -> float:
    """Our zero-ablation of query head ``head`` in ``layer`` against ``transformers`` with a
    hook zeroing that head's slice of the output projection's input."""
    cfg = bundle.config
    hd = cfg.head_dim

    def zero_head(_module, args):
        x = args[0].clone()
        x[..., head * hd:(head + 1) * hd] = 0
        return (x,)

    handle = out_proj(hf_model, layer).register_forward_pre_hook(zero_head)
    try:
        with torch.inference_mode():
            want = hf_model(idx).logits
    finally:
        handle.remove()
    keep = torch.ones(cfg.n_layer, cfg.n_head)
    keep[layer, head] = 0
    with torch.inference_mode():
        got = bundle.model(idx, ablation=Ablation(keep)).logits
        plain = bundle.model(idx).logits
    assert float((plain - want).abs().max()) > 1e-2  # the head mattered
    diff = float((got - want).abs().max())
    assert diff <= TOL, diff
    return diff


def compare_lens(bundle, hf_model, final_norm: torch.nn.Module, head: torch.nn.Module,
                 idx: torch.Tensor) -> float:
    """The logit lens at the last position, every layer, against ``transformers``' hidden
    states read through its own final norm and output head."""
    from gptviz.analysis import logit_lens

    with torch.inference_mode():
        hs = hf_model(idx, output_hidden_states=True).hidden_states
        # transformers' last hidden state already went through the final norm
        points = [final_norm(h[0, -1]) for h in hs[:-1]] + [hs[-1][0, -1]]
        probs = torch.stack([head(p).softmax(-1) for p in points])  # (L + 1, V)
    res = logit_lens(bundle.model, idx[0].numpy(), position=-1, k=5)
    want_ids = probs.topk(5, dim=-1).indices.numpy()
    got_probs = np.asarray(res.top_probs)
    want_probs = np.take_along_axis(probs.numpy(), np.asarray(res.top_ids), axis=-1)
    assert got_probs.shape == want_probs.shape == (bundle.config.n_layer + 1, 5)
    assert (np.asarray(res.top_ids)[:, 0] == want_ids[:, 0]).all()
    diff = float(np.abs(got_probs - want_probs).max())
    assert diff <= TOL, diff
    return diff


def _numbers(obj: Any, seen: set[int] | None = None, depth: int = 0):
    """Every float array/number reachable from an analysis result."""
    seen = set() if seen is None else seen
    if id(obj) in seen or depth > 6:
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield obj
    elif isinstance(obj, float):
        yield np.asarray([obj])
    elif isinstance(obj, (list, tuple)):
        for x in obj:
            yield from _numbers(x, seen, depth + 1)
    elif isinstance(obj, dict):
        for x in obj.values():
            yield from _numbers(x, seen, depth + 1)
    elif hasattr(obj, "__dataclass_fields__"):
        for name in obj.__dataclass_fields__:
            yield from _numbers(getattr(obj, name), seen, depth + 1)


def run_every_analysis(bundle) -> list[str]:
    """Every registered live analysis on a session of ``bundle`` (a head ablated, a few
    steps, a pinned comparison): none fails, every result holds numbers and none infinite.
    Returns the analyses that gave numbers."""
    from gptviz.analysis.registry import analysis_names
    from gptviz.analysis.runner import AnalysisRunner, AnalysisSpec
    from gptviz.engine.session import Session

    s = Session(bundle, PROMPT[:40])
    names = list(analysis_names())
    runner = AnalysisRunner(AnalysisSpec(dict.fromkeys(names)))
    runner.command(s, "compare.pin")
    for _ in range(3):
        s.step()
    runner.command(s, "toggle_head", layer=bundle.config.n_layer - 1, head=1)
    res = runner.run(s, query=len(s.window_tokens) - 2, layer=1, head=1, average=False)
    assert not res.errors, res.errors
    with_numbers = []
    for name in names:
        arrays = list(_numbers(res.get(name)))
        if arrays:
            with_numbers.append(name)
        for a in arrays:
            assert not np.isinf(a).any(), name
            assert a.size == 0 or not np.isnan(a).all(), name
    for must in ("heads", "lens", "rollout", "effect", "compare"):
        assert must in with_numbers, must
    return with_numbers


def load(directory: Path):
    bundle = load_model(directory)
    assert bundle.model.training is False
    return bundle
