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
* :mod:`gptviz.analysis.attribution` — direct logit attribution
  (:func:`direct_logit_attribution` -> :class:`Attribution`, :func:`attribute_parts`).
* :mod:`gptviz.analysis.patching` — :func:`activation_patching` -> :class:`PatchingResult`,
  and the single maps :func:`patch_heads`, :func:`patch_residual`,
  :func:`patch_head_positions` (on the pair that ``patching.prepare`` builds).
* :mod:`gptviz.analysis.head_writes` — what each head writes towards the output
  (:func:`head_writes_from`, :func:`head_write_logits`, :class:`HeadWrites`).
* :mod:`gptviz.analysis.neurons` — :func:`top_neurons`, :func:`neuron_activations`,
  :func:`value_vector_logits`.
* :mod:`gptviz.analysis.saliency` — :class:`Saliency`, :func:`token_logprob_fn`,
  :func:`ig_batch`.
* :mod:`gptviz.analysis.scores` — inside one head: :func:`head_projections`,
  :func:`raw_scores`, :func:`masked_scores`, :func:`value_weighted`, ...

Two functions share their module's name and are therefore *not* re-exported (the name would
hide the module): call them as ``gptviz.analysis.saliency.saliency`` and
``gptviz.analysis.head_writes.head_writes``.

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
from gptviz.analysis.attribution import (
    Attribution,
    attribute_parts,
    direct_logit_attribution,
    not_additive_reason,
    readout_direction,
)
from gptviz.analysis.compare import attention_difference, common_prefix_len
from gptviz.analysis.head_writes import (
    HeadWrites,
    check_direct_path,
    frozen_final_norm,
    head_write_logits,
    head_write_vectors,
    head_writes_from,
)
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
from gptviz.analysis.neurons import (
    NeuronsAtPosition,
    mlp_inputs,
    neuron_activations,
    neuron_value_tokens,
    top_neurons,
    top_neurons_from,
    value_vector_logits,
)
from gptviz.analysis.patching import (
    Cancelled,
    PatchingResult,
    PatchRun,
    activation_patching,
    patch_head_positions,
    patch_heads,
    patch_residual,
    run_traced,
)
from gptviz.analysis.rollout import attention_rollout, rollout_layers, rollout_row
from gptviz.analysis.saliency import Saliency, SaliencyMethod, ig_batch, token_logprob_fn
from gptviz.analysis.scores import (
    HeadProjections,
    WindowStream,
    attention_input,
    head_projections,
    kv_head_of,
    masked_cells,
    masked_scores,
    raw_scores,
    scale_text,
    score_formula,
    trace_extras,
    value_norms,
    value_weighted,
    window_residuals,
    window_scores,
    window_value_weighted,
)

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
    # attribution
    "Attribution", "not_additive_reason", "readout_direction", "attribute_parts",
    "direct_logit_attribution",
    # patching
    "Cancelled", "PatchRun", "PatchingResult", "run_traced", "patch_heads", "patch_residual",
    "patch_head_positions", "activation_patching",
    # head writes (head_writes() itself: gptviz.analysis.head_writes.head_writes)
    "HeadWrites", "frozen_final_norm", "head_write_vectors", "head_write_logits",
    "head_writes_from", "check_direct_path",
    # neurons
    "NeuronsAtPosition", "value_vector_logits", "neuron_value_tokens", "top_neurons",
    "top_neurons_from", "neuron_activations", "mlp_inputs",
    # saliency (saliency() itself: gptviz.analysis.saliency.saliency)
    "SaliencyMethod", "Saliency", "token_logprob_fn", "ig_batch",
    # inside one head
    "HeadProjections", "attention_input", "head_projections", "kv_head_of", "masked_cells",
    "raw_scores", "masked_scores", "value_norms", "value_weighted", "window_scores",
    "window_value_weighted", "window_residuals", "trace_extras", "WindowStream", "scale_text",
    "score_formula",
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
