"""Attention debugging from Python: one import for every analysis.

The functions live in small modules and are re-exported here:

* :mod:`gptviz.analysis.heads` — per-head scores from an attention array ``[L, H, T, T]`` and
  token ids (:func:`head_scores` -> :class:`HeadScores`), and the probe
  :func:`induction_scores`.
* :mod:`gptviz.analysis.lens` — :func:`logit_lens` -> :class:`LensResult`.
* :mod:`gptviz.analysis.rollout` — :func:`attention_rollout`, :func:`rollout_row`.
* :mod:`gptviz.analysis.ablation` — :func:`make_ablation` and its inverse
  :func:`read_ablation`, :func:`ablation_effect`, :func:`rerun_from_layer`.
* :mod:`gptviz.analysis.compare` — :func:`attention_difference`.

They take plain numpy arrays or the model itself, never the GUI or the engine. The
definitions are written out in ``docs/analysis.md``.

The same analyses on a running :class:`~gptviz.engine.Session`, with caches (what the app's
panels show), are the *live analyses*: one module each (``live_heads``, ``live_lens``,
``live_rollout``, ``live_effect``, ``live_compare``; head ablation as session state in
``live_ablation``), found by name in :mod:`gptviz.analysis.registry` (plug-ins of other
packages too) and run by :class:`gptviz.analysis.runner.AnalysisRunner`.

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

from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.ablation import (
    AblationHeads,
    ablated_heads,
    ablation_effect,
    clone_cache,
    effect_from_logprobs,
    first_ablated_layer,
    head_output_means,
    make_ablation,
    read_ablation,
    rerun_from_layer,
)
from gptviz.analysis.compare import attention_difference, common_prefix_len
from gptviz.analysis.heads import (
    SCORE_NAMES,
    HeadScores,
    attention_entropy,
    duplicate_token_mask,
    duplicate_token_scores,
    first_token_scores,
    head_scores,
    induction_scores,
    induction_target_mask,
    induction_text_scores,
    mean_attention_entropy,
    previous_token_scores,
    probe_induction_from_attention,
    repeated_random_tokens,
)
from gptviz.analysis.lens import LensResult, layer_names, lens_readout, logit_lens
from gptviz.analysis.rollout import attention_rollout, rollout_layers, rollout_row

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT

__all__ = [
    "SCORE_NAMES", "HeadScores", "head_scores", "previous_token_scores", "first_token_scores",
    "induction_text_scores", "duplicate_token_scores", "attention_entropy",
    "mean_attention_entropy", "induction_target_mask", "duplicate_token_mask",
    "repeated_random_tokens", "induction_scores", "probe_induction_from_attention",
    "LensResult", "logit_lens", "lens_readout", "layer_names",
    "attention_rollout", "rollout_row", "rollout_layers",
    "make_ablation", "read_ablation", "AblationHeads", "head_output_means", "ablation_effect",
    "effect_from_logprobs", "ablated_heads", "first_ablated_layer", "rerun_from_layer",
    "clone_cache",
    "attention_difference", "common_prefix_len",
    "attention_array",
]


def attention_array(model: GPT, ids: Any, ablation: Any = None) -> np.ndarray:
    """Run the model once on ``ids`` ``[T]`` and return its attention as ``[L, H, T, T]``
    float32 numpy (a convenience for notebooks and the CLI)."""
    import torch

    device = next(model.parameters()).device
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(1, -1).to(device)
    with torch.no_grad():
        out = model(x, return_attn=True, ablation=ablation, last_only=True)
    return torch.stack(out.attentions, dim=0)[:, 0].float().cpu().numpy()  # [L, H, T, T]


def __getattr__(name: str) -> object:
    """``bench_analysis`` and ``random_causal_attention`` of earlier releases: now in the
    benchmark layer (:mod:`gptviz.bench.analysis`)."""
    if name in ("bench_analysis", "random_causal_attention"):
        import importlib

        return getattr(importlib.import_module("gptviz.bench.analysis"), name)
    raise AttributeError(f"module 'gptviz.analysis' has no attribute {name!r}")
