"""Speed of the other model families beside ``transformers``: Pythia-160m and SmolLM-135m shapes.

:func:`run_family_bench` builds each shape as a randomly initialised ``transformers`` model
(``GPTNeoXForCausalLM`` / ``LlamaForCausalLM``, eager attention), saves it with
``save_pretrained`` into a temporary directory and opens that with
:func:`gptviz.families.load_model` (the family loaders), so both sides run the SAME weights.
Then, at each context, it times one generated token with the attention of every layer and head
captured, the two tools taking turns (repetition by repetition, and which goes first), so both
see the same machine load:

* gptviz: :meth:`gptviz.engine.session.Session.step` (one-token forward with the KV cache,
  every layer's attention row copied into the session's history, top-20 probabilities);
* transformers: ``model(input_ids=token, past_key_values=cache, use_cache=True,
  output_attentions=True)`` one token at a time, then the softmax, its top 20 and the greedy
  next token, as a viewer built on it would do.

Context ``c`` means: a random prompt of ``c`` tokens is prefilled (not timed), then ``steps``
tokens are timed; ours are undone after each repetition, transformers' cache is a fresh copy
of the prompt's for each. Figures are medians over the repetitions.
"""

from __future__ import annotations

import copy
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptviz.bench.speed import (
    PROMPT_VOCAB,
    TOP_K,
    OursTimer,
    _byte_tokenizer_json,
    _quiet_transformers,
    _random_prompt,
    default_threads,
)
from gptviz.io.checkpoint import ModelBundle

__all__ = ["FamilyShape", "PYTHIA_160M", "SMOLLM_135M", "FAMILY_SHAPES", "build_family",
           "HFStepTimer", "bench_family", "run_family_bench", "format_family_table"]

CONTEXTS = (64, 512)


@dataclass(frozen=True)
class FamilyShape:
    """A benchmarked model of another family: the ``transformers`` class and config."""

    label: str
    family: str  # "gpt_neox" or "llama"
    config: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The dimensions, for the JSON output."""
        c = self.config
        return {"family": self.family, "n_layer": c["num_hidden_layers"],
                "n_head": c["num_attention_heads"],
                "n_kv_head": c.get("num_key_value_heads", c["num_attention_heads"]),
                "n_embd": c["hidden_size"], "intermediate": c["intermediate_size"],
                "vocab_size": c["vocab_size"], "tied": c["tie_word_embeddings"]}


#: EleutherAI/pythia-160m: partial rotary (25%), parallel attention and MLP, untied output.
PYTHIA_160M = FamilyShape("pythia-160m", "gpt_neox", dict(
    vocab_size=50304, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
    intermediate_size=3072, hidden_act="gelu", rotary_pct=0.25, rotary_emb_base=10000,
    use_parallel_residual=True, tie_word_embeddings=False, max_position_embeddings=2048,
    layer_norm_eps=1e-5))

#: HuggingFaceTB/SmolLM-135M: RMSNorm, rotary, gated SiLU MLP, 9 query heads on 3 kv heads,
#: tied output.
SMOLLM_135M = FamilyShape("smollm-135m", "llama", dict(
    vocab_size=49152, hidden_size=576, num_hidden_layers=30, num_attention_heads=9,
    num_key_value_heads=3, intermediate_size=1536, hidden_act="silu", rms_norm_eps=1e-5,
    rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    tie_word_embeddings=True, max_position_embeddings=2048))

FAMILY_SHAPES = (PYTHIA_160M, SMOLLM_135M)


def build_family(shape: FamilyShape, seed: int = 0) -> tuple[ModelBundle, Any]:
    """Our bundle and the eager-attention ``transformers`` model on the same random weights
    (written by ``save_pretrained``, read back by :func:`gptviz.families.load_model`)."""
    import transformers

    from gptviz.families import load_model

    classes = {"gpt_neox": ("GPTNeoXConfig", "GPTNeoXForCausalLM"),
               "llama": ("LlamaConfig", "LlamaForCausalLM")}
    cfg_cls, model_cls = (getattr(transformers, n) for n in classes[shape.family])
    torch.manual_seed(seed)
    hf_cfg = cfg_cls(**shape.config, attn_implementation="eager", bos_token_id=None,
                     eos_token_id=None, pad_token_id=None)
    hf = model_cls(hf_cfg).eval()
    with tempfile.TemporaryDirectory(prefix="gptviz-bench-") as d:
        hf.save_pretrained(d)
        _byte_tokenizer_json(Path(d) / "tokenizer.json")
        bundle = load_model(d)
    bundle.source = f"<random {shape.label}>"
    return bundle, hf


def parity(bundle: ModelBundle, hf: Any, n: int = 16) -> dict[str, float]:
    """Max abs difference of the logits and of the attention maps on a random prompt."""
    ids = torch.tensor([_random_prompt(n, PROMPT_VOCAB, 7)])  # (1, n)
    with torch.inference_mode():
        ours = bundle.model(ids, return_attn=True)
        theirs = hf(input_ids=ids, output_attentions=True)
    att = max(float((a - b).abs().max()) for a, b in zip(ours.attentions, theirs.attentions))
    return {"logits": float((ours.logits - theirs.logits).abs().max()), "attention": att}


class HFStepTimer:
    """Times one-token ``transformers`` forwards with ``output_attentions=True`` at one
    context: ``once()`` is one repetition of ``steps`` tokens."""

    def __init__(self, hf: Any, ctx: int, steps: int) -> None:
        self.hf, self.ctx, self.steps = hf, ctx, steps
        prompt = torch.tensor([_random_prompt(ctx, PROMPT_VOCAB, ctx)])  # (1, ctx)
        with torch.inference_mode():
            out = hf(input_ids=prompt, use_cache=True)
        self.prefix = out.past_key_values  # the prompt's cache, copied for each repetition
        self.first = int(out.logits[0, -1].argmax())
        self._run(2)  # warm-up

    def _run(self, n: int) -> float:
        cache = copy.deepcopy(self.prefix)  # a forward extends it in place
        token = torch.tensor([[self.first]])  # (1, 1)
        n_layer = self.hf.config.num_hidden_layers
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(n):
                out = self.hf(input_ids=token, past_key_values=cache, use_cache=True,
                              output_attentions=True)
                probs = torch.softmax(out.logits[0, -1].float(), -1)  # (V,)
                torch.topk(probs, TOP_K)
                token = probs.argmax().view(1, 1)
                cache = out.past_key_values
            elapsed = time.perf_counter() - t0
        assert len(out.attentions) == n_layer
        assert out.attentions[0].shape[-1] == self.ctx + n  # every key so far: captured
        return elapsed

    def once(self) -> float:
        """ms per generated token over ``steps`` tokens."""
        return self._run(self.steps) * 1e3 / self.steps


def _measure(bundle: ModelBundle, hf: Any, ctx: int, steps: int, reps: int
             ) -> tuple[float, float]:
    """Median ms/token of ours and of transformers, taking turns."""
    ours, theirs = OursTimer(bundle, ctx, steps), HFStepTimer(hf, ctx, steps)
    a: list[float] = []
    b: list[float] = []
    for rep in range(reps):
        first, second = (theirs, ours) if rep % 2 else (ours, theirs)
        for timer in (first, second):
            (a if timer is ours else b).append(timer.once())
    return statistics.median(a), statistics.median(b)


def bench_family(shape: FamilyShape, contexts: tuple[int, ...], steps: int, reps: int,
                 log: Callable[[str], None] | None = None
                 ) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Measure one family shape at every context.

    Returns
    -------
    rows, parity
        One result row per context, and the max abs differences with transformers on the
        same weights (logits, attention).

    Raises
    ------
    RuntimeError
        The two disagree on the same weights (logits or attention differ by more than 1e-3).
    """
    if log:
        s = shape.summary()
        log(f"building {shape.label} ({s['family']}: {s['n_layer']}x{s['n_head']}"
            f"/{s['n_kv_head']}x{s['n_embd']}, vocab {s['vocab_size']})")
    bundle, hf = build_family(shape)
    diff = parity(bundle, hf)
    if max(diff.values()) > 1e-3:
        raise RuntimeError(f"{shape.label}: gptviz and transformers disagree on the same "
                           f"weights ({diff})")
    rows = []
    for ctx in contexts:
        ours, theirs = _measure(bundle, hf, ctx, steps, reps)
        rows.append({"model": shape.label, "family": shape.family, "ctx": ctx,
                     "ours_ms_per_token": round(ours, 3), "hf_ms_per_token": round(theirs, 3),
                     "ours_over_hf": round(ours / theirs, 3)})
        if log:
            log(f"  ctx {ctx}: gptviz {ours:.2f} ms/token, transformers {theirs:.2f} ms/token")
    del bundle, hf
    gc.collect()  # the next shape's two copies of the weights replace these
    return rows, {k: float(f"{v:.3g}") for k, v in diff.items()}


def run_family_bench(quick: bool = False, steps: int | None = None, reps: int | None = None,
                     shapes: tuple[FamilyShape, ...] = FAMILY_SHAPES,
                     contexts: tuple[int, ...] = CONTEXTS, threads: int | None = None,
                     log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the family benchmark and return its results as a JSON-ready dict.

    Parameters
    ----------
    quick
        Fewer steps and repetitions, context 64 only (about a quarter of the time).
    steps, reps
        Override the timed tokens per repetition and the repetitions.
    shapes, contexts
        What to measure (default Pythia-160m and SmolLM-135m shapes at 64 and 512).
    threads
        torch threads for both sides (default: the idle cores, as :func:`run_bench`).
    log
        Optional ``callable(str)`` for progress lines.

    Raises
    ------
    ValueError
        Fewer than 2 steps or 1 repetition, or ``transformers`` is not installed.
    """
    try:
        import transformers
    except ImportError:
        raise ValueError("the family benchmark needs transformers (pip install "
                         "transformers)") from None
    steps = (8 if quick else 24) if steps is None else steps
    reps = (3 if quick else 5) if reps is None else reps
    if steps < 2 or reps < 1:
        raise ValueError("bench needs --steps >= 2 and --reps >= 1")
    contexts = contexts[:1] if quick else contexts
    threads = threads or default_threads()
    torch.set_num_threads(threads)
    _quiet_transformers()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    parities: dict[str, dict[str, float]] = {}
    for shape in shapes:
        shape_rows, parities[shape.label] = bench_family(shape, contexts, steps, reps, log)
        rows.extend(shape_rows)
    return {
        "unit": "ms per generated token (median over repetitions)",
        "what": "gptviz Session.step vs transformers model(..., past_key_values, use_cache, "
                "output_attentions=True) one token at a time, same random weights, eager "
                f"attention, top-{TOP_K} probabilities; greedy",
        "steps": steps, "reps": reps, "threads": threads, "quick": quick,
        "transformers": transformers.__version__,
        "shapes": {s.label: s.summary() for s in shapes},
        "results": rows,
        "max_abs_diff_vs_hf": parities,
        "total_s": round(time.perf_counter() - started, 1),
    }


def format_family_table(res: dict[str, Any]) -> str:
    """The family results as a plain-text (and Markdown) table."""
    lines = ["| model | family | context | gptviz ms/token | transformers ms/token "
             "| gptviz / transformers |",
             "|---|---|---:|---:|---:|---:|"]
    for r in res["results"]:
        lines.append(f"| {r['model']} | {r['family']} | {r['ctx']} | "
                     f"{r['ours_ms_per_token']:.2f} | {r['hf_ms_per_token']:.2f} | "
                     f"{r['ours_over_hf']:.2f}x |")
    diffs = "; ".join(f"{k}: logits {v['logits']:.1e}, attention {v['attention']:.1e}"
                      for k, v in res["max_abs_diff_vs_hf"].items())
    lines.append(f"\nsame weights, max abs difference with transformers: {diffs}")
    lines.append(f"{res['steps']} tokens x {res['reps']} repetitions, {res['threads']} threads, "
                 f"transformers {res['transformers']}; {res['total_s']} s in all")
    return "\n".join(lines)
