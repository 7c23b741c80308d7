"""Attention debugging from Python: one import for every analysis, plus their benchmark.

The functions live in small modules and are re-exported here:

* :mod:`gptviz.analysis.heads` — per-head scores from an attention array ``[L, H, T, T]`` and token ids
  (:func:`head_scores` -> :class:`HeadScores`), and the probe :func:`induction_scores`.
* :mod:`gptviz.analysis.lens` — :func:`logit_lens` -> :class:`LensResult`.
* :mod:`gptviz.analysis.rollout` — :func:`attention_rollout`, :func:`rollout_row`.
* :mod:`gptviz.analysis.ablation` — :func:`make_ablation`, :func:`ablation_effect`,
  :func:`rerun_from_layer`.
* :mod:`gptviz.analysis.compare` — :func:`attention_difference`.

They take plain numpy arrays or the model itself, never the GUI or the engine. The
definitions are written out in ``docs/analysis.md``.

Examples
--------
>>> import torch, numpy as np
>>> from gptviz import load_model
>>> from gptviz.analysis import head_scores, induction_scores, logit_lens
>>> b = load_model()                                            # doctest: +SKIP
>>> ids = b.tokenizer.encode("To be, or not to be")             # doctest: +SKIP
>>> out = b.model(torch.tensor([ids]), return_attn=True)        # doctest: +SKIP
>>> att = torch.stack(out.attentions)[:, 0].numpy()             # [L, H, T, T]  # doctest: +SKIP
>>> head_scores(att, ids).to_dict()                             # doctest: +SKIP
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.ablation import (ablated_heads, ablation_effect, clone_cache, first_ablated_layer,
                       head_output_means, make_ablation, rerun_from_layer)
from gptviz.analysis.compare import attention_difference, common_prefix_len
from gptviz.analysis.heads import (SCORE_NAMES, HeadScores, attention_entropy, duplicate_token_mask,
                    duplicate_token_scores, first_token_scores, head_scores,
                    induction_scores, induction_target_mask, induction_text_scores,
                    mean_attention_entropy, previous_token_scores,
                    probe_induction_from_attention, repeated_random_tokens)
from gptviz.analysis.lens import LensResult, layer_names, lens_readout, logit_lens
from gptviz.analysis.rollout import attention_rollout, rollout_layers, rollout_row

if TYPE_CHECKING:
    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

__all__ = [
    "SCORE_NAMES", "HeadScores", "head_scores", "previous_token_scores", "first_token_scores",
    "induction_text_scores", "duplicate_token_scores", "attention_entropy",
    "mean_attention_entropy", "induction_target_mask", "duplicate_token_mask",
    "repeated_random_tokens", "induction_scores", "probe_induction_from_attention",
    "LensResult", "logit_lens", "lens_readout", "layer_names",
    "attention_rollout", "rollout_row", "rollout_layers",
    "make_ablation", "head_output_means", "ablation_effect", "ablated_heads",
    "first_ablated_layer", "rerun_from_layer", "clone_cache",
    "attention_difference", "common_prefix_len",
    "attention_array", "bench_analysis", "random_causal_attention",
]


def attention_array(model: "GPT", ids: Any, ablation: Any = None) -> np.ndarray:
    """Run the model once on ``ids`` ``[T]`` and return its attention as ``[L, H, T, T]``
    float32 numpy (a convenience for notebooks and the CLI)."""
    import torch

    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(1, -1).to(device)
    with torch.no_grad():
        out = model(x, return_attn=True, ablation=ablation, last_only=True)
    return torch.stack(out.attentions, dim=0)[:, 0].float().cpu().numpy()  # [L, H, T, T]


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


def bench_analysis(repeats: int = 5, context: int = 512, model_repeats: int = 3,
                   with_model: bool = True, seed: int = 0,
                   config: "GPTConfig | None" = None) -> dict[str, Any]:
    """Time the analyses and the cost of an ablated re-run.

    Parameters
    ----------
    repeats
        Timed runs of each numpy measurement (the median is reported).
    context
        Tokens of context (512 for the issue's targets).
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

        * ``head_scores_ms``: :func:`head_scores` on random causal attention
          ``[12, 12, context, context]`` float32 (target ≤ 50 ms);
        * ``rollout_ms``, ``rollout_row_ms``: the full rollout map and one row;
        * ``prefill_ms``: the model over ``context`` tokens with a cache (return_attn);
        * ``step_ms``: one normal cached step at ``context`` as the engine takes it
          (:meth:`~gptviz.model.gpt.GPT.decode_step`, attention rows and residuals captured);
        * ``ablated_full_rerun_ms``: the whole ``context + 1`` tokens again with one head
          ablated (no cache; what an engine that re-runs everything pays);
        * ``ablated_rerun_from_layer_ms``: ``{layer: ms}``, re-running only blocks
          ``>= layer`` from the stored residual stream into a clone of the clean cache
          (:func:`rerun_from_layer`), for a head in layer 0, the middle and the last layer;
        * ``clone_cache_ms``: copying the clean cache's layers below the middle one
          (included in the line above);
        * ``ablated_step_ms``: one cached step of the ablated model once its cache is built;
        * ``ratio_*_to_step``: each re-run divided by ``step_ms`` (target ≤ 2 for the
          ablated step);
        * ``ratio_rerun_from_layer_to_prefill``: each toggle's exact re-run divided by the
          un-ablated forward over the same window (``prefill_ms``);
        * ``torch_threads``, ``context``.
    """
    result: dict[str, Any] = {"context": context}
    att = random_causal_attention(12, 12, context, seed=seed)  # [12, 12, T, T]
    ids = np.random.default_rng(seed).integers(0, 50, size=context)  # repeats: every mask used
    result["head_scores_ms"] = _median_ms(lambda: head_scores(att, ids), repeats)
    result["rollout_ms"] = _median_ms(lambda: attention_rollout(att), max(1, repeats // 2))
    result["rollout_row_ms"] = _median_ms(lambda: rollout_row(att, -1), repeats)
    del att
    if not with_model:
        return result

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
    prompt, nxt = tokens[:, :context], tokens[:, context:]

    with torch.no_grad():
        cache = model.new_cache()

        def prefill() -> Any:
            cache.length = 0
            return model(prompt, cache, return_attn=True, return_resid=True, last_only=True)

        result["prefill_ms"] = _median_ms(prefill, model_repeats)
        clean = prefill()  # cache now holds the prompt; clean.residuals: the stored stream

        L, H = cfg.n_layer, cfg.n_head
        rows = torch.empty(L, H, context + 2)  # (L, H, S): what the engine's buffer receives
        resid = torch.empty(L + 1, cfg.n_embd)
        token = int(nxt[0, 0])

        def step() -> Any:  # the engine's one-token step (GPT.decode_step)
            cache.length = context
            return model.decode_step(token, cache, attn_out=rows, resid_out=resid)

        result["step_ms"] = _median_ms(step, max(5, model_repeats))

        mid = cfg.n_layer // 2
        ablation_mid = make_ablation(cfg, [(mid, 0)])
        result["ablated_full_rerun_ms"] = _median_ms(
            lambda: model(tokens, ablation=ablation_mid, return_attn=True, last_only=True),
            model_repeats)

        # The cheaper re-run: the engine keeps the residual stream of every position (one
        # [T, C] per layer, appended at each step) and the clean cache; after a toggle it
        # clones the cache and recomputes only the blocks from the ablated layer on.
        step_out = model(nxt, cache, return_resid=True, last_only=True)  # resid of the new token
        full_resid = [torch.cat([a, b], dim=1) for a, b in
                      zip(clean.residuals, step_out.residuals)]  # n_layer+1 of [1, T+1, C]
        result["clone_cache_ms"] = _median_ms(lambda: clone_cache(cache, layers=mid),
                                              model_repeats)
        from_layer: dict[int, float] = {}
        abl_cache = None
        for layer in (0, mid, cfg.n_layer - 1):
            ablation = make_ablation(cfg, [(layer, 0)])

            def rerun(layer: int = layer, ablation: Any = ablation) -> Any:
                c = clone_cache(cache, layers=layer)  # the layers below are still valid
                rerun_from_layer(model, full_resid[layer], layer, ablation=ablation, cache=c,
                                 return_attn=True, last_only=True)
                return c

            from_layer[layer] = _median_ms(rerun, model_repeats)
            if layer == mid:
                abl_cache = rerun()
        result["ablated_rerun_from_layer_ms"] = from_layer

        step2 = nxt  # any next token: cost does not depend on it

        def ablated_step() -> Any:
            abl_cache.length = context + 1
            return model.decode_step(int(step2[0, 0]), abl_cache, attn_out=rows,
                                     resid_out=resid, ablation=ablation_mid)

        result["ablated_step_ms"] = _median_ms(ablated_step, max(5, model_repeats))

    s = result["step_ms"]
    result["ratio_full_rerun_to_step"] = result["ablated_full_rerun_ms"] / s
    result["ratio_rerun_from_layer_to_step"] = {k: v / s for k, v in from_layer.items()}
    result["ratio_ablated_step_to_step"] = result["ablated_step_ms"] / s
    # The same window computed without the ablation costs a prefill: a toggle's exact re-run
    # against that is the price of the ablation itself.
    result["ratio_rerun_from_layer_to_prefill"] = {
        k: v / result["prefill_ms"] for k, v in from_layer.items()}
    return result
