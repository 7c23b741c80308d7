"""Speed of token-by-token generation with full attention capture.

:func:`run_bench` measures milliseconds per generated token of a
:class:`gptviz.engine.session.Session` (each step: one-token forward with the KV cache, the
attention row of every layer and head copied into the session's lower-triangular history,
top-20 probabilities and entropy of the distribution) at context 64 and 512, for

(a) a model of the bundled model's shape (``resources/model/config.json`` when present, else
    4 layers x 8 heads x 256 wide, vocab 4096) with ``block_size`` 1024 so that 512 fits, and
(b) a GPT-2-small shape (12 x 12 x 768, vocab 50257, block 1024),

both with random weights. When ``transformers`` is importable, each shape is built as a
randomly initialised ``GPT2LMHeadModel`` with eager attention, saved with ``save_pretrained``
into a temporary directory and opened with :func:`gptviz.load_model`, so both sides run the
SAME weights; ``GPT2LMHeadModel.generate(..., output_attentions=True, output_scores=True,
return_dict_in_generate=True)`` is then timed side by side, with the top-20 of every step's
scores taken as well.

Context ``c`` means: prefill a random prompt of ``c`` tokens, then time ``steps`` greedy steps.
Ours: the steps are timed directly, then undone (the next repetition recomputes them).
Transformers: the prompt's KV cache is computed once and a copy is handed to each ``generate``
call; per-token time is ``(t(steps) - t(1)) / (steps - 1)``, which cancels the fixed cost of a
``generate`` call. Each side first runs one untimed repetition (warm-up: buffers grown,
kernels touched). Figures are medians over the repetitions.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gptviz.io.checkpoint import DEFAULT_MODEL_DIR, ModelBundle
from gptviz.model.config import Activation, GPTConfig

CONTEXTS = (64, 512)
TOP_K = 20
BENCH_BLOCK = 1024
#: Random prompts use the 256 byte tokens (the bench tokenizer's whole vocabulary).
PROMPT_VOCAB = 256

#: our activation name -> transformers' GPT-2 ``activation_function``
_HF_ACT: dict[Activation, str] = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}


@dataclass(frozen=True)
class Shape:
    """The dimensions of a benchmarked model."""

    label: str
    n_layer: int
    n_head: int
    n_embd: int
    vocab_size: int
    block_size: int = BENCH_BLOCK
    activation: Activation = "gelu_tanh"


def bundled_shape() -> Shape:
    """The bundled model's shape (``block_size`` raised to 1024), or the planned default."""
    path = DEFAULT_MODEL_DIR / "config.json"
    if path.is_file():
        try:
            c = GPTConfig.from_json_file(path)
            return Shape("bundled-shape", c.n_layer, c.n_head, c.n_embd, c.vocab_size,
                         max(BENCH_BLOCK, c.block_size), c.activation)
        except (OSError, ValueError, TypeError):
            pass
    return Shape("bundled-shape", 4, 8, 256, 4096, BENCH_BLOCK, "gelu")


GPT2_SMALL = Shape("gpt2-small", 12, 12, 768, 50257, 1024, "gelu_tanh")


def default_threads() -> int:
    """The cores not already busy: ``cpu_count - loadavg(1 min)``, at least 1."""
    n = os.cpu_count() or 1
    try:
        busy = int(round(os.getloadavg()[0]))
    except (AttributeError, OSError):  # not on every platform
        busy = 0
    return max(1, n - busy)


def _hf_available() -> bool:
    try:
        import transformers  # noqa: F401
    except Exception:
        return False
    return True


def _byte_tokenizer_json(path: Path) -> None:
    """A 256-token byte-level BPE (no merges): enough for a loader that wants a tokenizer."""
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    hf = HFTokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.save(str(path))


def build_models(shape: Shape, use_hf: bool, seed: int = 0) -> tuple[ModelBundle, Any]:
    """Our bundle and (when ``use_hf``) the eager-attention ``GPT2LMHeadModel`` on the same
    random weights, opened from a ``save_pretrained`` directory with :func:`load_model`."""
    from gptviz.families import load_model

    torch.manual_seed(seed)
    if not use_hf:
        from gptviz.io.tokenizer import Tokenizer
        from gptviz.model.gpt import GPT

        cfg = GPTConfig(n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd,
                        vocab_size=shape.vocab_size, block_size=shape.block_size,
                        activation=shape.activation, name=shape.label)
        with tempfile.TemporaryDirectory() as d:
            _byte_tokenizer_json(Path(d) / "tokenizer.json")
            tok = Tokenizer.from_file(Path(d) / "tokenizer.json")
        return ModelBundle(GPT(cfg).eval(), tok, source="<random>", kind="gptviz"), None

    from transformers import GPT2Config, GPT2LMHeadModel

    hf_cfg = GPT2Config(n_layer=shape.n_layer, n_head=shape.n_head, n_embd=shape.n_embd,
                        vocab_size=shape.vocab_size, n_positions=shape.block_size,
                        activation_function=_HF_ACT[shape.activation], resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=None, eos_token_id=None,
                        pad_token_id=None)
    hf = GPT2LMHeadModel(hf_cfg).eval()
    with tempfile.TemporaryDirectory(prefix="gptviz-bench-") as d:
        hf.save_pretrained(d)
        _byte_tokenizer_json(Path(d) / "tokenizer.json")
        bundle = load_model(d)
    bundle.source = f"<random {shape.label}>"
    hf.set_attn_implementation("eager")
    return bundle, hf


def parity(bundle: ModelBundle, hf: Any, n: int = 16) -> float:
    """Max abs difference of the logits of ours and transformers on a random prompt."""
    ids = torch.tensor([_random_prompt(n, PROMPT_VOCAB, 7)])
    with torch.inference_mode():
        return float((bundle.model(ids).logits - hf(ids).logits).abs().max())


def _random_prompt(n: int, vocab: int, seed: int) -> list[int]:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (n,), generator=g).tolist()


class OursTimer:
    """Times :meth:`Session.step` at one context: ``once()`` is one repetition."""

    def __init__(self, bundle: ModelBundle, ctx: int, steps: int) -> None:
        from gptviz.engine.sampling import SamplingSettings
        from gptviz.engine.session import Session

        self.ctx, self.steps = ctx, steps
        t0 = time.perf_counter()
        self.session = Session(bundle, _random_prompt(ctx, PROMPT_VOCAB, ctx),
                               SamplingSettings(greedy=True), top_k_report=TOP_K)
        self.prefill_ms = (time.perf_counter() - t0) * 1e3
        # Warm-up: one whole repetition, untimed. Its steps grow the buffers past the prompt
        # (from room for ctx + 16 positions to the next doubling) and touch every kernel and
        # allocation a timed repetition uses; with only a step or two the first timed
        # repetition paid for that growth and was often several times slower.
        self.once()

    def once(self) -> float:
        """ms per step over ``steps`` steps (then undone, so the next repetition recomputes)."""
        s = self.session
        t0 = time.perf_counter()
        for _ in range(self.steps):
            r = s.step()
            _ = (r.topk_ids, r.topk_probs, r.attention_row)
        ms = (time.perf_counter() - t0) * 1e3 / self.steps
        assert s.packed_attention().shape[-1] == self.ctx + self.steps
        s.undo(self.steps)
        return ms


class HFTimer:
    """Times ``GPT2LMHeadModel.generate`` at one context: ``once()`` is one repetition."""

    def __init__(self, hf: Any, ctx: int, steps: int) -> None:
        self.hf, self.ctx, self.steps = hf, ctx, steps
        self.prompt = torch.tensor([_random_prompt(ctx, PROMPT_VOCAB, ctx)])  # (1, ctx)
        with torch.inference_mode():
            self.prefix = hf(self.prompt[:, :-1], use_cache=True).past_key_values
        self.once()  # warm-up: one whole repetition, untimed (as OursTimer)

    def _run(self, n: int) -> float:
        cache = copy.deepcopy(self.prefix)  # generate extends it in place
        with torch.inference_mode():
            t0 = time.perf_counter()
            out = self.hf.generate(self.prompt, past_key_values=cache, max_new_tokens=n,
                                   min_new_tokens=n, do_sample=False, output_attentions=True,
                                   output_scores=True, return_dict_in_generate=True,
                                   pad_token_id=0)
            for sc in out.scores:
                torch.topk(torch.softmax(sc[0].float(), -1), TOP_K)
            elapsed = time.perf_counter() - t0
        assert out.sequences.shape[1] == self.ctx + n and len(out.attentions) == n
        return elapsed

    def once(self) -> float:
        """ms per generated token: ``(t(steps) - t(1)) / (steps - 1)``."""
        t_n, t_1 = self._run(self.steps), self._run(1)
        return max(t_n - t_1, 0.0) * 1e3 / (self.steps - 1)


def measure(bundle: ModelBundle, hf: Any, ctx: int, steps: int, reps: int
            ) -> tuple[float, float | None, float]:
    """Median ms/token of ours and of transformers (``None`` without ``hf``), measured side by
    side: the repetitions alternate between the two (and which goes first), so both see the
    same machine load. Also returns our prefill time in ms."""
    ours = OursTimer(bundle, ctx, steps)
    theirs = HFTimer(hf, ctx, steps) if hf is not None else None
    a: list[float] = []
    b: list[float] = []
    for rep in range(reps):
        if theirs is not None and rep % 2:
            b.append(theirs.once())
        a.append(ours.once())
        if theirs is not None and not rep % 2:
            b.append(theirs.once())
    return statistics.median(a), (statistics.median(b) if b else None), ours.prefill_ms


def _quiet_transformers() -> None:
    """Silence transformers' progress bars and the deprecation notes of its cache API."""
    import warnings

    import transformers
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    warnings.filterwarnings("ignore", message=".*past_key_values.*")


def bench_shape(shape: Shape, contexts: tuple[int, ...], steps: int, reps: int, use_hf: bool,
                log: Callable[[str], None] | None = None
                ) -> tuple[list[dict[str, Any]], dict[str, float | None], float | None]:
    """Measure one shape at every context.

    Returns
    -------
    rows, ratios, parity
        One result row per context; the slow-down from the shortest to the longest context
        (ours and transformers'); the max abs logit difference with transformers on the same
        weights (``None`` without it).
    """
    if max(contexts) + steps + 2 > shape.block_size:
        raise ValueError(f"context {max(contexts)} + {steps} steps does not fit "
                         f"block_size {shape.block_size}")
    if log:
        log(f"building {shape.label} ({shape.n_layer}x{shape.n_head}x{shape.n_embd}, "
            f"vocab {shape.vocab_size})")
    bundle, hf = build_models(shape, use_hf)
    diff = None
    if hf is not None:
        diff = parity(bundle, hf)
        if diff > 1e-3:
            raise RuntimeError(f"{shape.label}: gptviz and transformers disagree on the same "
                               f"weights (max abs logit difference {diff:.2e})")
    by_ctx: dict[int, dict[str, Any]] = {}
    for ctx in contexts:
        ours, theirs, prefill_ms = measure(bundle, hf, ctx, steps, reps)
        by_ctx[ctx] = {"model": shape.label, "ctx": ctx,
                       "ours_ms_per_token": round(ours, 3),
                       "hf_ms_per_token": None if theirs is None else round(theirs, 3),
                       "ours_over_hf": None if not theirs else round(ours / theirs, 3),
                       "ours_prefill_ms": round(prefill_ms, 1)}
        if log:
            log(f"  ctx {ctx}: ours {ours:.2f} ms/token"
                + ("" if theirs is None else f", transformers {theirs:.2f} ms/token"))
    lo, hi = min(contexts), max(contexts)
    hf_lo, hf_hi = by_ctx[lo]["hf_ms_per_token"], by_ctx[hi]["hf_ms_per_token"]
    ratios = {
        f"ours_ctx{hi}_over_ctx{lo}": round(by_ctx[hi]["ours_ms_per_token"]
                                            / by_ctx[lo]["ours_ms_per_token"], 3),
        f"hf_ctx{hi}_over_ctx{lo}": (round(hf_hi / hf_lo, 3) if hf_lo and hf_hi else None),
    }
    return list(by_ctx.values()), ratios, diff


def run_bench(quick: bool = False, steps: int | None = None, reps: int | None = None,
              use_hf: bool | None = None, shapes: list[Shape] | None = None,
              contexts: tuple[int, ...] = CONTEXTS, threads: int | None = None,
              log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and return its results as a JSON-ready dict.

    Parameters
    ----------
    quick
        Fewer steps and repetitions (about a third of the time).
    steps, reps
        Override the number of timed steps per repetition and of repetitions.
    use_hf
        Compare with ``transformers``; ``None`` means when it is importable.
    shapes, contexts
        What to measure (default: bundled shape and GPT-2 small, at 64 and 512).
    threads
        torch threads for both sides. Default: the machine's idle cores, i.e. the core count
        minus the 1-minute load average (at least 1): on a machine shared with a busy job,
        threads that wait for a busy core make every small op slow and the figures noisy.
    log
        Optional ``callable(str)`` for progress lines.
    """
    steps = (12 if quick else 32) if steps is None else steps
    reps = (3 if quick else 5) if reps is None else reps
    if steps < 2 or reps < 1:
        raise ValueError("bench needs --steps >= 2 and --reps >= 1")
    use_hf = _hf_available() if use_hf is None else use_hf
    shapes = shapes or [bundled_shape(), GPT2_SMALL]
    threads = threads or default_threads()
    if threads < 1:
        raise ValueError(f"--threads must be >= 1 (got {threads})")
    torch.set_num_threads(threads)
    if use_hf:
        _quiet_transformers()
    started = time.perf_counter()
    rows: list[dict[str, Any]] = []
    ratios: dict[str, dict[str, float | None]] = {}
    parities: dict[str, float] = {}
    for shape in shapes:
        shape_rows, ratios[shape.label], diff = bench_shape(shape, contexts, steps, reps,
                                                            use_hf, log)
        rows.extend(shape_rows)
        if diff is not None:
            parities[shape.label] = diff
    try:
        import transformers
        hf_version = transformers.__version__ if use_hf else None
    except Exception:
        hf_version = None
    return {
        "unit": "ms per generated token (median over repetitions)",
        "what": "one-token step with KV cache, attention of every layer/head captured, "
                f"top-{TOP_K} probabilities; greedy",
        "steps": steps, "reps": reps, "threads": threads, "quick": quick,
        "torch": torch.__version__, "transformers": hf_version,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "shapes": {s.label: {"n_layer": s.n_layer, "n_head": s.n_head, "n_embd": s.n_embd,
                             "vocab_size": s.vocab_size, "block_size": s.block_size}
                   for s in shapes},
        "results": rows,
        "ratios": ratios,
        "max_abs_logit_diff_vs_hf": parities,
        "total_s": round(time.perf_counter() - started, 1),
    }


def format_table(res: dict[str, Any]) -> str:
    """The results as a plain-text (and Markdown) table."""
    lines = ["| model | context | gptviz ms/token | transformers ms/token "
             "| gptviz / transformers |",
             "|---|---:|---:|---:|---:|"]
    for r in res["results"]:
        hf = "n/a" if r["hf_ms_per_token"] is None else f"{r['hf_ms_per_token']:.2f}"
        ratio = "n/a" if r["ours_over_hf"] is None else f"{r['ours_over_hf']:.2f}x"
        lines.append(f"| {r['model']} | {r['ctx']} | {r['ours_ms_per_token']:.2f} "
                     f"| {hf} | {ratio} |")
    for label, q in res["ratios"].items():
        parts = [f"{k.replace('_', ' ')} = {v:.2f}" for k, v in q.items() if v is not None]
        lines.append(f"\n{label}: " + ", ".join(parts))
    lines.append(f"\n{res['steps']} steps x {res['reps']} repetitions, {res['threads']} threads, "
                 f"torch {res['torch']}, transformers {res['transformers'] or 'not used'}; "
                 f"{res['total_s']} s in all")
    return "\n".join(lines)


def dumps(res: dict[str, Any]) -> str:
    """JSON text of the results."""
    return json.dumps(res, indent=2)
