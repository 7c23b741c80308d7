"""Checks on a model's configuration and weights before a GPT is built.

A ``config.json`` or nanoGPT's ``model_args`` is text anyone can edit: ``"n_layer": 1e6``
would build a million blocks, ``"bias": "no"`` is a true string, ``NaN`` an epsilon. Every
family checks, before :class:`~gptviz.model.gpt.GPT` allocates anything:

* :func:`check_config_fields`: the fields of our own ``config.json`` have the types of
  :class:`~gptviz.model.config.GPTConfig` (a whole number, true/false, a finite number, one
  of the allowed words), positive sizes, a positive epsilon;
* :func:`check_model_size`: the sizes are within :data:`LIMITS` and agree with the weight
  file: a model needs at least :func:`min_parameters` values and four matrices per layer,
  which the file must about hold, and with its attention masks it must fit in half of
  this machine's memory.

Then :func:`check_finite` refuses weights holding NaN or infinity. Every failure is one
:class:`~gptviz.io.errors.CheckpointError` that names the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from gptviz.io.errors import CheckpointError
from gptviz.model.config import GPTConfig

__all__ = ["LIMITS", "check_config_fields", "check_model_size", "check_finite",
           "min_parameters", "tensor_shapes"]

#: Largest accepted value of each size, far above any real GPT (GPT-3: 96 layers, 12,288
#: wide, 50,257 tokens); a config past one is refused as absurd before anything else.
LIMITS = {
    "n_layer": 1024, "n_head": 4096, "n_kv_head": 4096, "n_embd": 65536,
    "block_size": 1 << 20, "vocab_size": 1 << 22, "n_inner": 1 << 20, "n_classes": 1 << 16,
    "rotary_dim": 65536, "window_size": 1 << 20,
}
_POSITIVE = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "n_inner", "n_kv_head",
             "rotary_dim", "window_size")
_MATRICES_PER_LAYER = 4  # attention in and out, feed-forward in and out: in every variant
_SLACK, _SLACK_VALUES = 4, 1 << 20  # a config may ask for 4x the file's values + 1M


def _shown(v: Any) -> str:
    """``repr`` of a config value, cut short (a hostile file may hold a megabyte string)."""
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def _finite(v: Any) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _type_problem(v: Any, hint: Any) -> str | None:
    """What is wrong with ``v`` as a value of type ``hint`` (``None``: nothing, or unknown)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Union or origin is types.UnionType:
        if v is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _type_problem(v, rest[0]) if len(rest) == 1 else None
    if origin is typing.Literal:  # which word is allowed is GPTConfig's own check
        if isinstance(v, type(args[0])) and not isinstance(v, bool):
            return None
        return f"must be one of {', '.join(map(repr, args))}"
    if hint is bool:
        return None if isinstance(v, bool) else "must be true or false"
    if hint is int:
        return None if isinstance(v, int) and not isinstance(v, bool) else \
            "must be a whole number"
    if hint is float:
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
        return None if ok else "must be a finite number"
    if hint is str:
        return None if isinstance(v, str) else "must be a string"
    if origin is tuple and args and (args[0] is str or typing.get_origin(args[0]) is
                                     typing.Literal):  # which words: GPTConfig's own check
        ok = isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v)
        return None if ok else "must be a list of strings"
    if dataclasses.is_dataclass(hint):  # a nested object such as rope_scaling
        if not isinstance(v, dict):
            return "must be an object"
        bad = [k for k, x in v.items() if isinstance(x, float) and not _finite(x)]
        return f"must hold finite numbers ({bad[0]!r:.40} does not)" if bad else None
    return None


def _config_hints() -> dict[str, Any]:
    """GPTConfig's field types (empty if they cannot be resolved: GPTConfig then checks)."""
    try:
        hints = typing.get_type_hints(GPTConfig)
    except Exception:  # noqa: BLE001 - an annotation this Python cannot evaluate
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(GPTConfig) if f.name in hints}


def check_config_fields(raw: Mapping[str, Any], path: Path) -> None:
    """Check the types and ranges of the GPTConfig fields in a raw config dict.

    Unknown keys are ignored (as :meth:`GPTConfig.from_dict` does). Sizes must be positive
    whole numbers within :data:`LIMITS`, flags true or false (not ``"false"``), numbers
    finite, ``layer_norm_eps`` > 0 and ``dropout`` in [0, 1).

    Raises
    ------
    CheckpointError
        Naming ``path`` and every bad field.
    """
    problems = []
    for name, hint in _config_hints().items():
        if name not in raw:
            continue
        v = raw[name]
        problem = _type_problem(v, hint)
        if problem is None and isinstance(v, (int, float)) and not isinstance(v, bool):
            problem = _range_problem(name, v)
        if problem is not None:
            problems.append(f"{name} {problem} (got {_shown(v)})")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems))


def _range_problem(name: str, v: int | float) -> str | None:
    if name in _POSITIVE and v <= 0:
        return "must be positive"
    if name in LIMITS and v > LIMITS[name]:
        return f"is beyond any real GPT (at most {LIMITS[name]:,} accepted)"
    if name == "layer_norm_eps" and not v > 0:
        return "must be a positive number"
    if name == "dropout" and not 0 <= v < 1:
        return "must be in [0, 1)"
    if name == "n_classes" and v < 0:
        return "must be >= 0"
    return None


def min_parameters(config: GPTConfig) -> int:
    """A lower bound of the model's parameter count, from the sizes alone.

    The token embedding, the learned positions, an untied output head, the fine-tuning
    head, and per layer the query and output projections (``n_embd²`` each) and the two
    feed-forward matrices (a third one when gated). Keys, values, biases and norms are left
    out, so the bound holds for every variant; the true count is at most about twice it.
    """
    C, V, L = config.n_embd, config.vocab_size, config.n_layer
    d_ff = config.n_inner if config.n_inner is not None else 4 * C
    total = V * C
    if getattr(config, "positional_embedding_type", "learned") == "learned":
        total += config.block_size * C
    if getattr(config, "tie_word_embeddings", True) is False:
        total += V * C
    total += max(0, int(config.n_classes)) * C
    ff = (3 if getattr(config, "mlp_type", "standard") == "gated" else 2) * C * d_ff
    return total + L * (2 * C * C + ff)


def _buffer_bytes(config: GPTConfig) -> int:
    """Bytes of the buffers a GPT builds besides its weights: each layer's (T, T) causal mask
    of booleans, and with rotary positions two (T, head_dim) float32 tables."""
    T = config.block_size
    total = config.n_layer * T * T
    if getattr(config, "positional_embedding_type", "learned") == "rotary":
        total += 2 * 4 * T * (config.n_embd // max(1, config.n_head))
    return total


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def tensor_shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of a state dict (what :func:`check_model_size` compares)."""
    return {k: tuple(v.shape) for k, v in state.items()}


def _gb(n: int) -> str:
    return f"{n / 1e9:.1f} GB"


def check_model_size(config: GPTConfig, shapes: Mapping[str, Sequence[int]], config_path: Path,
                     weights_path: Path) -> None:
    """Refuse a config that no weight file of this size can fill, before building the model.

    Parameters
    ----------
    config
        The configuration (built, but no model yet).
    shapes
        ``{name: shape}`` of the weights (a safetensors header, or a loaded state dict).
    config_path, weights_path
        Named in the messages.

    Raises
    ------
    CheckpointError
        A size is past :data:`LIMITS`; the file holds fewer tensors than the layers need
        (four matrices each); :func:`min_parameters` is more than four times the file's
        values (plus a million: smaller differences are left to the loader, which names the
        tensors); or the model would take more than half of the machine's memory.
    """
    for name, limit in LIMITS.items():
        v = getattr(config, name, None)
        if isinstance(v, int) and v > limit:
            raise CheckpointError(f"{config_path}: {name} {v:,} is beyond any real GPT "
                                  f"(at most {limit:,} accepted)")
    needed = 1 + _MATRICES_PER_LAYER * config.n_layer
    if len(shapes) < needed:
        raise CheckpointError(
            f"{config_path}: the config describes {config.n_layer} layers (at least {needed} "
            f"weight tensors) but {weights_path} holds {len(shapes)} tensors")
    have = sum(math.prod(int(d) for d in s) for s in shapes.values())
    least = min_parameters(config)
    # A model a few times the file's size costs little to build, and the loader then names
    # the exact tensors that differ; past that the sizes cannot be the file's.
    if least > _SLACK * have + _SLACK_VALUES:
        raise CheckpointError(
            f"{config_path}: the config describes a model of at least {least:,} parameters "
            f"but {weights_path} holds only {have:,} values (n_layer {config.n_layer}, "
            f"n_embd {config.n_embd}, vocab_size {config.vocab_size}, block_size "
            f"{config.block_size})")
    buffers, ram = _buffer_bytes(config), _physical_memory()
    if ram is not None and buffers + 4 * least > ram // 2:
        raise CheckpointError(
            f"{config_path}: the model would need about {_gb(buffers + 4 * least)} of memory "
            f"({config.n_layer} attention masks of block_size {config.block_size}² take "
            f"{_gb(buffers)}), more than half of this machine's {_gb(ram)}")


# Float types torch.aminmax reads (not the float8 ones).
_MINMAX_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_finite(state: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
                 path: Path) -> None:
    """Refuse weights that hold NaN or infinity (the model would print nonsense).

    Raises
    ------
    CheckpointError
        Naming the file, the first bad tensor and how many of its values are not finite.
    """
    items = state.items() if isinstance(state, Mapping) else state
    for name, t in items:
        if not (t.is_floating_point() or t.is_complex()) or t.numel() == 0:
            continue
        if t.dtype in _MINMAX_DTYPES:
            # One read of the tensor, nothing allocated: min and max are finite exactly when
            # every value is (both propagate NaN; an infinity is the min or the max).
            # isfinite(t).all() writes and reads a mask as large: 20x slower (GPT-2 small:
            # 0.5 s -> 25 ms on one thread).
            lo, hi = torch.aminmax(t)
            if bool(torch.isfinite(lo) & torch.isfinite(hi)):
                continue
        finite = torch.isfinite(t)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise CheckpointError(f"{path}: tensor {name} holds {bad:,} NaN or infinite "
                                  f"value(s) of {t.numel():,}; the weights are corrupt")
