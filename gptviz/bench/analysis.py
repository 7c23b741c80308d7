"""What the analyses cost: head scores and rollout on random attention, and an ablated re-run.

:func:`bench_analysis` times the numpy analyses of :mod:`gptviz.analysis` on random causal
attention (:func:`random_causal_attention`) and, on a random GPT-2-small-shaped model, a
normal cached step against the ways of applying an ablation: a full re-run, a re-run from the
ablated layer (:func:`~gptviz.analysis.ablation.rerun_from_layer`) and an ablated step. The
figures and targets are written out in ``docs/analysis.md``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.ablation import clone_cache, make_ablation, rerun_from_layer
from gptviz.analysis.heads import head_scores
from gptviz.analysis.rollout import attention_rollout, rollout_row

if TYPE_CHECKING:
    import torch

    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT, GPTOutput, KVCache

__all__ = ["bench_analysis", "random_causal_attention"]


def random_causal_attention(n_layer: int = 12, n_head: int = 12, t: int = 512,
                            seed: int = 0) -> np.ndarray:
    """Random causal attention rows ``[L, H, T, T]`` float32 (zero above the diagonal, rows
    sum to 1), for benchmarks and tests."""
    rng = np.random.default_rng(seed)
    att = rng.random((n_layer, n_head, t, t), dtype=np.float32)
    att *= np.tri(t, t, dtype=np.float32)
    att /= att.sum(axis=-1, keepdims=True)
    return att


def _median_ms(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _time_numpy_analyses(result: dict[str, Any], repeats: int, context: int, seed: int) -> None:
    """Head scores and rollout on random causal attention ``[12, 12, context, context]``."""
    att = random_causal_attention(12, 12, context, seed=seed)  # [12, 12, T, T]
    ids = np.random.default_rng(seed).integers(0, 50, size=context)  # repeats: every mask used
    result["head_scores_ms"] = _median_ms(lambda: head_scores(att, ids), repeats)
    result["rollout_ms"] = _median_ms(lambda: attention_rollout(att), max(1, repeats // 2))
    result["rollout_row_ms"] = _median_ms(lambda: rollout_row(att, -1), repeats)


@dataclass
class _CleanRun:
    """A model with its clean cache over the prompt, and the buffers a step writes into."""

    model: GPT
    cfg: GPTConfig
    context: int
    tokens: torch.Tensor  # (1, T+1): the prompt and one next token
    cache: KVCache
    clean: GPTOutput  # the prompt's forward: residuals of every layer
    rows: torch.Tensor  # (L, H, T+2): the attention rows the engine's buffer receives
    resid: torch.Tensor  # (L+1, C)

    @property
    def next_token(self) -> torch.Tensor:
        return self.tokens[:, self.context:]  # (1, 1)


def _time_clean(result: dict[str, Any], model: GPT, cfg: GPTConfig, tokens: torch.Tensor,
                context: int, model_repeats: int) -> _CleanRun:
    """The prefill over ``context`` tokens and one normal cached step after it."""
    import torch

    prompt = tokens[:, :context]  # (1, T)
    cache = model.new_cache()

    def prefill() -> GPTOutput:
        cache.length = 0
        return model(prompt, cache, return_attn=True, return_resid=True, last_only=True)

    result["prefill_ms"] = _median_ms(prefill, model_repeats)
    clean = prefill()  # cache now holds the prompt; clean.residuals: the stored stream
    run = _CleanRun(model, cfg, context, tokens, cache, clean,
                    rows=torch.empty(cfg.n_layer, cfg.n_head, context + 2),
                    resid=torch.empty(cfg.n_layer + 1, cfg.n_embd))
    token = int(run.next_token[0, 0])

    def step() -> tuple[torch.Tensor, torch.Tensor]:  # the engine's step (decode_step)
        cache.length = context
        return model.decode_step(token, cache, attn_out=run.rows, resid_out=run.resid)

    result["step_ms"] = _median_ms(step, max(5, model_repeats))
    return run


def _time_reruns(result: dict[str, Any], run: _CleanRun, model_repeats: int
                 ) -> tuple[dict[int, float], KVCache]:
    """The ways of applying an ablation of head 0 after the step: everything again, or only
    the blocks from the ablated layer on. Returns the per-layer re-run times and the cache
    of the middle layer's ablated re-run."""
    import torch

    model, cfg, cache = run.model, run.cfg, run.cache
    mid = cfg.n_layer // 2
    ablation_mid = make_ablation(cfg, [(mid, 0)])
    result["ablated_full_rerun_ms"] = _median_ms(
        lambda: model(run.tokens, ablation=ablation_mid, return_attn=True, last_only=True),
        model_repeats)

    # The cheaper re-run: the engine keeps the residual stream of every position (one
    # [T, C] per layer, appended at each step) and the clean cache; after a toggle it
    # clones the cache and recomputes only the blocks from the ablated layer on.
    step_out = model(run.next_token, cache, return_resid=True, last_only=True)  # its resid
    assert run.clean.residuals is not None and step_out.residuals is not None
    full_resid = [torch.cat([a, b], dim=1) for a, b in
                  zip(run.clean.residuals, step_out.residuals)]  # n_layer+1 of [1, T+1, C]
    result["clone_cache_ms"] = _median_ms(lambda: clone_cache(cache, layers=mid), model_repeats)
    from_layer: dict[int, float] = {}
    abl_cache = cache
    for layer in (0, mid, cfg.n_layer - 1):
        ablation = make_ablation(cfg, [(layer, 0)])

        def rerun(layer: int = layer, ablation: Any = ablation) -> KVCache:
            c = clone_cache(cache, layers=layer)  # the layers below are still valid
            rerun_from_layer(model, full_resid[layer], layer, ablation=ablation, cache=c,
                             return_attn=True, last_only=True)
            return c

        from_layer[layer] = _median_ms(rerun, model_repeats)
        if layer == mid:
            abl_cache = rerun()
    result["ablated_rerun_from_layer_ms"] = from_layer
    return from_layer, abl_cache


def _time_ablated_step(result: dict[str, Any], run: _CleanRun, abl_cache: KVCache,
                       model_repeats: int) -> None:
    """One cached step of the model with the middle layer's head 0 ablated."""
    ablation_mid = make_ablation(run.cfg, [(run.cfg.n_layer // 2, 0)])
    token = int(run.next_token[0, 0])  # any next token: cost does not depend on it

    def ablated_step() -> tuple[torch.Tensor, torch.Tensor]:
        abl_cache.length = run.context + 1
        return run.model.decode_step(token, abl_cache, attn_out=run.rows,
                                     resid_out=run.resid, ablation=ablation_mid)

    result["ablated_step_ms"] = _median_ms(ablated_step, max(5, model_repeats))


def _time_attribution(result: dict[str, Any], run: _CleanRun, model_repeats: int) -> None:
    """Direct logit attribution of the newest position, as the live analysis computes it
    after a step: head outputs from the step's attention rows and the cached values, then
    the pieces through the frozen final norm; and activation patching of every head on a
    20-token prompt pair (one batched run per layer)."""
    import torch

    from gptviz.analysis.attribution import attribute_parts
    from gptviz.analysis.live_attribution import head_outputs
    from gptviz.analysis.patching import activation_patching

    model, cfg = run.model, run.cfg
    S = run.context + 1
    run.cache.length = run.context
    model.decode_step(int(run.next_token[0, 0]), run.cache, attn_out=run.rows,
                      resid_out=run.resid)
    att = run.rows[:, :, :S].numpy()  # (L, H, S)

    def attribute() -> Any:
        z = head_outputs(cfg, att, run.cache.v[:, 0, :, :S])  # (L, H, hd)
        return attribute_parts(model, run.resid, z, target=1, vs=2)

    result["dla_ms"] = _median_ms(attribute, max(5, model_repeats))
    gen = torch.Generator().manual_seed(1)
    clean, corrupt = (torch.randint(0, cfg.vocab_size, (20,), generator=gen).tolist()
                      for _ in range(2))
    t0 = time.perf_counter()
    activation_patching(model, clean, corrupt, 1, 2, heads=True, resid=False)
    result["patch_heads_20_ms"] = (time.perf_counter() - t0) * 1e3


def _add_ratios(result: dict[str, Any], from_layer: dict[int, float]) -> None:
    s = result["step_ms"]
    result["ratio_full_rerun_to_step"] = result["ablated_full_rerun_ms"] / s
    result["ratio_rerun_from_layer_to_step"] = {k: v / s for k, v in from_layer.items()}
    result["ratio_ablated_step_to_step"] = result["ablated_step_ms"] / s
    # The same window computed without the ablation costs a prefill: a toggle's exact re-run
    # against that is the price of the ablation itself.
    result["ratio_rerun_from_layer_to_prefill"] = {
        k: v / result["prefill_ms"] for k, v in from_layer.items()}


def _time_model(result: dict[str, Any], context: int, model_repeats: int, seed: int,
                config: GPTConfig | None) -> None:
    """Build the random model and time the step and the ablated re-runs on it."""
    import torch

    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    result["torch_threads"] = torch.get_num_threads()
    torch.manual_seed(seed)
    cfg = config or GPTConfig(n_layer=12, n_head=12, n_embd=768, vocab_size=50257,
                              block_size=1024, activation="gelu_tanh", name="gpt2-small-random")
    if cfg.block_size <= context:
        raise ValueError(f"block_size {cfg.block_size} must exceed the context {context}")
    result["model"] = {k: getattr(cfg, k) for k in ("n_layer", "n_head", "n_embd", "vocab_size")}
    model = GPT(cfg).eval()
    gen = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, cfg.vocab_size, (1, context + 1), generator=gen)  # [1, T+1]
    with torch.no_grad():
        run = _time_clean(result, model, cfg, tokens, context, model_repeats)
        from_layer, abl_cache = _time_reruns(result, run, model_repeats)
        _time_ablated_step(result, run, abl_cache, model_repeats)
        _time_attribution(result, run, model_repeats)
    _add_ratios(result, from_layer)
    result["ratio_dla_to_step"] = result["dla_ms"] / result["step_ms"]
    result["ratio_patch_heads_20_to_prefill"] = result["patch_heads_20_ms"] / result["prefill_ms"]


def bench_analysis(repeats: int = 5, context: int = 512, model_repeats: int = 3,
                   with_model: bool = True, seed: int = 0,
                   config: GPTConfig | None = None) -> dict[str, Any]:
    """Time the analyses and the cost of an ablated re-run.

    Parameters
    ----------
    repeats
        Timed runs of each numpy measurement (the median is reported).
    context
        Tokens of context (512 for the speed targets).
    model_repeats
        Timed runs of each model measurement.
    with_model
        Also build the GPT-2-small-shaped random model (12 layers × 12 heads, 768 wide,
        vocabulary 50257; a few seconds and ~0.5 GB) and time the ablation re-runs.
    seed
        Seed of the random attention, weights and tokens.
    config
        Another model shape for the re-run timings (tests use a tiny one); default GPT-2
        small. Its ``block_size`` must exceed ``context``.

    Returns
    -------
    dict
        Milliseconds (medians), with keys

        * ``head_scores_ms``: :func:`~gptviz.analysis.head_scores` on random causal attention
          ``[12, 12, context, context]`` float32 (target ≤ 50 ms);
        * ``rollout_ms``, ``rollout_row_ms``: the full rollout map and one row;
        * ``prefill_ms``: the model over ``context`` tokens with a cache (return_attn);
        * ``step_ms``: one normal cached step at ``context`` as the engine takes it
          (:meth:`~gptviz.model.gpt.GPT.decode_step`, attention rows and residuals captured);
        * ``ablated_full_rerun_ms``: the whole ``context + 1`` tokens again with one head
          ablated (no cache; what an engine that re-runs everything pays);
        * ``ablated_rerun_from_layer_ms``: ``{layer: ms}``, re-running only blocks
          ``>= layer`` from the stored residual stream into a clone of the clean cache
          (:func:`~gptviz.analysis.rerun_from_layer`), for a head in layer 0, the middle and
          the last layer;
        * ``clone_cache_ms``: copying the clean cache's layers below the middle one
          (included in the line above);
        * ``ablated_step_ms``: one cached step of the ablated model once its cache is built;
        * ``ratio_*_to_step``: each re-run divided by ``step_ms`` (target ≤ 2 for the
          ablated step);
        * ``ratio_rerun_from_layer_to_prefill``: each toggle's exact re-run divided by the
          un-ablated forward over the same window (``prefill_ms``);
        * ``dla_ms``, ``ratio_dla_to_step``: direct logit attribution of the newest position
          as the live analysis computes it after a step (target ratio ≤ 0.5);
        * ``patch_heads_20_ms``: activation patching of every head on a 20-token prompt
          pair (one run; target ≤ 10 s at GPT-2 small on 2 cores), and
          ``ratio_patch_heads_20_to_prefill`` against ``prefill_ms`` (steadier on a busy
          machine);
        * ``torch_threads``, ``context``, ``model`` (the shape timed).
    """
    result: dict[str, Any] = {"context": context}
    _time_numpy_analyses(result, repeats, context, seed)
    if with_model:
        _time_model(result, context, model_repeats, seed, config)
    return result
