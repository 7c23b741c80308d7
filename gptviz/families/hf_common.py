"""What the Hugging Face families share: reading ``config.json`` values with checks, and
mapping a ``transformers`` state dict onto our names.

Weight layouts: Hugging Face GPT-2 and GPT-1 store their projections as ``Conv1D`` modules
whose weight is ``[in, out]``; our :class:`torch.nn.Linear` wants ``[out, in]``, so those are
transposed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch

from gptviz.io.checkpoint import CheckpointError, model_from_state
from gptviz.io.config_checks import LIMITS, check_model_size, tensor_shapes
from gptviz.io.tensor_files import strip_prefixes
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT, Block

# Projections stored as transformers' Conv1D ([in, out]) in GPT-2 and GPT-1.
_CONV1D = re.compile(r"^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")


# Largest size config_int accepts at all (the model's sizes have their own, lower limits).
_MAX_SIZE = max(LIMITS.values())

# Attention-mask buffers some checkpoints carry (not weights).
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


def config_int(cfg: dict[str, Any], path: Path, *keys: str, default: int | None = None,
               optional: bool = False) -> int | None:
    """The first of ``keys`` present in ``cfg`` as a positive int (``2``, not ``"2"`` or
    ``2.5``), at most :data:`~gptviz.io.config_checks.LIMITS` ``["n_inner"]`` (a bound far
    above any real size; the model's own sizes are bounded again by
    :func:`~gptviz.io.config_checks.check_model_size`)."""
    for key in keys:
        if key in cfg and cfg[key] is not None:
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise CheckpointError(f"{path}: {key} must be a positive integer "
                                      f"(got {_shown(v)})")
            if v > _MAX_SIZE:
                raise CheckpointError(f"{path}: {key} {v:,} is beyond any real GPT (at most "
                                      f"{_MAX_SIZE:,} accepted)")
            return v
    if default is not None or optional:
        return default
    raise CheckpointError(f"{path}: missing {keys[0]!r}")


def config_float(cfg: dict[str, Any], path: Path, key: str, default: float) -> float:
    """``cfg[key]`` as a finite number > 0 (``default`` when absent or null)."""
    v = cfg.get(key, default)
    if v is None:
        return default
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    try:
        ok = ok and math.isfinite(v) and v > 0
    except OverflowError:  # an integer too large for a float
        ok = False
    if not ok:
        raise CheckpointError(f"{path}: {key} must be a positive number (got {_shown(v)})")
    return float(v)


def config_bool(cfg: dict[str, Any], path: Path, key: str, default: bool) -> bool:
    """``cfg[key]`` as true or false (``default`` when absent or null); the string
    ``"false"`` is refused, not taken as true."""
    v = cfg.get(key, default)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise CheckpointError(f"{path}: {key} must be true or false (got {_shown(v)})")
    return v


def config_choice(cfg: dict[str, Any], path: Path, key: str, default: str,
                  choices: Iterable[str]) -> str:
    """``cfg[key]``, one of ``choices`` (``default`` when absent)."""
    allowed = sorted(choices)
    v = cfg.get(key, default)
    if not isinstance(v, str) or v not in allowed:
        raise CheckpointError(f"{path}: {key} {_shown(v)} is not supported "
                              f"(supported: {', '.join(allowed)})")
    return v


def _shown(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def make_config(path: Path, **kwargs: Any) -> GPTConfig:
    try:
        return GPTConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def require_dir(directory: str | Path) -> Path:
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"{d}: no such file or directory")
    if not d.is_dir():
        raise CheckpointError(f"{d}: expected a model directory")
    return d


def untie_head(config: GPTConfig, state: dict[str, torch.Tensor], weights_path: Path,
               tie_word_embeddings: bool) -> tuple[GPTConfig, dict[str, torch.Tensor]]:
    """The config and state for the output head ``lm_head.weight`` (already renamed state).

    Tied (``tie_word_embeddings`` true, what GPT-2 does): ``lm_head`` is W_e and is dropped,
    as ``transformers`` ties it on load. Untied: a head equal to W_e is dropped too (the same
    function, half the memory); one that differs becomes our ``unembed.weight`` with
    ``tie_word_embeddings=False``.

    Raises
    ------
    CheckpointError
        Untied, but the file has no ``lm_head.weight``, or one of another shape than W_e.
    """
    head = state.pop("lm_head.weight", None)
    if tie_word_embeddings:
        return config, state
    wte = state.get("wte.weight")
    if head is None:
        raise CheckpointError(f"{weights_path}: tie_word_embeddings is false but the file has "
                              "no lm_head.weight (the untied output head)")
    if wte is not None and head.shape != wte.shape:
        raise CheckpointError(f"{weights_path}: lm_head.weight has shape {tuple(head.shape)}, "
                              f"the token embedding {tuple(wte.shape)}; they must match")
    if wte is not None and torch.equal(head, wte):
        return config, state
    state["unembed.weight"] = head
    return replace(config, tie_word_embeddings=False), state


def hf_model(config: GPTConfig, state: dict[str, torch.Tensor], weights_path: Path,
             rename: dict[str, str], tie_word_embeddings: bool,
             q_scale: Callable[[int], float] | None = None,
             config_path: Path | None = None) -> GPT:
    """Map a Hugging Face state dict onto our GPT and load it.

    The config is compared with the mapped weights
    (:func:`~gptviz.io.config_checks.check_model_size`) before the model is built."""
    state = strip_prefixes(state, ("transformer.",))
    state = {k: v for k, v in state.items()
             if not _MASK_BUFFER.match(k) and k != "position_ids"
             and not k.startswith("multiple_choice_head.")}
    state = {rename.get(k, k): v for k, v in state.items()}
    config, state = untie_head(config, state, weights_path, tie_word_embeddings)
    for k in list(state):
        if _CONV1D.match(k):
            if state[k].dim() != 2:
                raise CheckpointError(f"{weights_path}: {k} should be a matrix, got shape "
                                      f"{tuple(state[k].shape)}")
            state[k] = state[k].t().contiguous()  # Conv1D [in, out] -> Linear [out, in]
    check_model_size(config, tensor_shapes(state), config_path or weights_path, weights_path)
    model = model_from_state(config, state, weights_path)
    if q_scale is not None:
        # Fold a non-standard attention scale into the query projection, so that our
        # q·k / sqrt(hd) equals theirs exactly (up to rounding): only q rows change.
        C = config.n_embd
        with torch.no_grad():
            for i, block in enumerate(model.h):
                f = q_scale(i)
                if f != 1.0:
                    qkv = cast(Block, block).attn.c_attn  # a ModuleList yields plain Modules
                    qkv.weight[:C].mul_(f)
                    if qkv.bias is not None:
                        qkv.bias[:C].mul_(f)
    model.eval()
    return model
