"""What the later Hugging Face decoder families (GPT-Neo, GPT-NeoX, Llama, Qwen2) share:
their rotary settings in either spelling of ``config.json``, the weights taken by name, the
model built and checked, and the tokenizer.

``config.json`` spells the rotary settings two ways: as checkpoints on the Hub have them
(``rope_theta`` or GPT-NeoX's ``rotary_emb_base``, ``rotary_pct`` or
``partial_rotary_factor``, ``rope_scaling``) and as ``transformers`` 5 writes them (one
``rope_parameters`` object holding ``rope_theta``, ``partial_rotary_factor``, ``rope_type``
and the scaling values). Both are read; a scaling we do not compute is refused by name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from gptviz.families.hf_common import config_float, make_config
from gptviz.io.checkpoint import CheckpointError, ModelBundle, model_from_state, read_json
from gptviz.io.config_checks import check_model_size, tensor_shapes
from gptviz.io.tokenizer_files import check_tokenizer, gpt2_tokenizer
from gptviz.model.config import GPTConfig, RopeScaling
from gptviz.model.gpt import GPT

__all__ = ["model_type", "rope_settings", "take", "stack_rows", "build_model", "hf_tokenizer",
           "bundle"]

# Buffers older checkpoints carry besides weights (masks, rotary tables): rebuilt, not read.
_BUFFERS = ("rotary_emb.inv_freq", ".attn.bias", ".attn.masked_bias", ".attention.bias",
            ".attention.masked_bias", "position_ids")

# rope_type values that leave the frequencies as they are.
_UNSCALED = ("default", None)


def model_type(path: Path) -> object:
    """``model_type`` of the folder's ``config.json``; ``None`` if there is none (never
    raises: the registry asks every family)."""
    try:
        return read_json(path / "config.json").get("model_type") if path.is_dir() else None
    except CheckpointError:
        return None


def rope_settings(cfg: dict[str, Any], path: Path, head_dim: int, *,
                  base_keys: tuple[str, ...] = ("rope_theta",),
                  pct_keys: tuple[str, ...] = ("partial_rotary_factor",),
                  default_pct: float = 1.0) -> tuple[float, int | None, RopeScaling | None]:
    """The rotary base, rotated dimensions (``None``: the whole head) and scaling.

    Parameters
    ----------
    cfg, path
        The parsed ``config.json`` and its path (named in errors).
    head_dim
        Width of one head.
    base_keys, pct_keys
        This family's own names of the base and of the rotated share (GPT-NeoX:
        ``rotary_emb_base``, ``rotary_pct``), read when ``rope_parameters`` lacks them.
    default_pct
        The rotated share when no key gives one (GPT-NeoX: 0.25).

    Raises
    ------
    CheckpointError
        A scaling type other than linear, dynamic and llama3, bad values, or a share that
        rotates an odd or zero number of dimensions.
    """
    params = cfg.get("rope_parameters")
    if params is not None and not isinstance(params, dict):
        raise CheckpointError(f"{path}: rope_parameters must be an object")
    params = dict(params or {})
    legacy = cfg.get("rope_scaling")
    if legacy is not None and not isinstance(legacy, dict):
        raise CheckpointError(f"{path}: rope_scaling must be an object or null")
    for key in base_keys + ("rope_theta",):
        if "rope_theta" not in params and cfg.get(key) is not None:
            params["rope_theta"] = cfg[key]
    for key in pct_keys + ("partial_rotary_factor",):
        if "partial_rotary_factor" not in params and cfg.get(key) is not None:
            params["partial_rotary_factor"] = cfg[key]
    said = [d.get("rope_type", d.get("type")) for d in (params, legacy or {})]
    if None not in said and said[0] != said[1]:  # which one transformers reads: not ours to guess
        raise CheckpointError(f"{path}: rope_parameters says rope type {said[0]!r:.40} but "
                              f"rope_scaling says {said[1]!r:.40}")
    scaling_dict = {**params, **(legacy or {})}
    base = config_float(params, path, "rope_theta", 10000.0)
    pct = config_float(params, path, "partial_rotary_factor", default_pct)
    if pct > 1.0:
        raise CheckpointError(f"{path}: partial_rotary_factor {pct} is above 1")
    rd = int(head_dim * pct)  # as transformers rounds it
    if rd == 0 or rd % 2:
        raise CheckpointError(f"{path}: a rotary share of {pct} rotates {rd} of the {head_dim} "
                              "dimensions of a head; gptviz needs an even number above 0")
    kind = scaling_dict.get("rope_type", scaling_dict.get("type"))
    if kind in _UNSCALED:
        scaling = None
    elif kind not in ("linear", "dynamic", "llama3"):
        raise CheckpointError(f"{path}: rope scaling {kind!r:.40} is not supported (supported: "
                              "default, linear, dynamic, llama3)")
    else:
        try:
            scaling = RopeScaling.from_dict({**scaling_dict, "rope_type": kind})
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: {e}") from None
        problems = scaling.problems()
        if problems:
            raise CheckpointError(f"{path}: {problems[0]}")
    return base, (None if rd == head_dim else rd), scaling


def take(state: dict[str, torch.Tensor], key: str, path: Path) -> torch.Tensor:
    """Remove and return ``state[key]``; a clear error naming the file when it is missing."""
    try:
        return state.pop(key)
    except KeyError:
        raise CheckpointError(f"{path}: weights do not match the config: missing tensor "
                              f"{key}") from None


def stack_rows(parts: list[torch.Tensor], key: str, path: Path) -> torch.Tensor:
    """The separate q/k/v tensors stacked along their rows into our fused ``key``; a clear
    error naming the file when they cannot be (another number of dimensions or columns)."""
    shapes = [tuple(t.shape) for t in parts]
    if any(len(s) == 0 or len(s) != len(shapes[0]) or s[1:] != shapes[0][1:] for s in shapes):
        raise CheckpointError(f"{path}: the q, k and v tensors of {key} have shapes "
                              f"{', '.join(map(str, shapes))}; they cannot be stacked")
    return torch.cat(parts)


def output_head(state: dict[str, torch.Tensor], key: str, tied: bool,
                out: dict[str, torch.Tensor], path: Path) -> None:
    """Move the output head ``key`` into ``out`` as ``unembed.weight`` (untied), or drop it
    (tied: files may store the tied copy; it must then equal the embedding)."""
    head = state.pop(key, None)
    if not tied:
        out["unembed.weight"] = head if head is not None else take({}, key, path)
    elif head is not None and not torch.equal(head, out["wte.weight"]):
        raise CheckpointError(f"{path}: {key} differs from the token embedding although "
                              "tie_word_embeddings is true")


def build_model(config: GPTConfig, mapped: dict[str, torch.Tensor], left: dict[str, Any],
                weights_path: Path, config_path: Path) -> GPT:
    """Our GPT holding the ``mapped`` weights (our names), in eval mode.

    ``left`` is what the family did not map; anything there but buffers is refused (a
    weight we would silently ignore). The sizes are checked against the file
    (:func:`~gptviz.io.config_checks.check_model_size`) before the model is built.
    """
    extra = sorted(k for k in left if not k.endswith(_BUFFERS))
    if extra:
        raise CheckpointError(f"{weights_path}: {len(extra)} tensors gptviz does not know how "
                              f"to use (e.g. {', '.join(extra[:3])})")
    check_model_size(config, tensor_shapes(mapped), config_path, weights_path)
    model = model_from_state(config, mapped, weights_path)
    return model.eval()


def hf_tokenizer(d: Path, config: GPTConfig, what: str):
    """The folder's ``tokenizer.json`` (or GPT-2 style ``vocab.json`` + ``merges.txt``), checked
    against the vocabulary; one clear error when there is neither."""
    found = gpt2_tokenizer(d, what)
    if found is None:
        raise CheckpointError(f"{d}: no tokenizer found: put {what}'s tokenizer.json (or "
                              "vocab.json and merges.txt) in the model directory; a "
                              "SentencePiece tokenizer.model alone is not read")
    tokenizer, tok_path = found
    check_tokenizer(tokenizer, tok_path, config)
    return tokenizer


def bundle(d: Path, config_kwargs: dict[str, Any], mapped: dict[str, torch.Tensor],
           left: dict[str, Any], weights_path: Path, kind: str, what: str,
           metadata: dict[str, Any]) -> ModelBundle:
    """Config, model and tokenizer of one family's folder, as a :class:`ModelBundle`."""
    cfg_path = d / "config.json"
    config = make_config(cfg_path, **config_kwargs, name=d.resolve().name)
    model = build_model(config, mapped, left, weights_path, cfg_path)
    tokenizer = hf_tokenizer(d, config, what)
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(d),
                       kind=kind)
