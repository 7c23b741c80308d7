"""The nanoGPT family: ``ckpt.pt`` (``{'model_args', 'model', ...}``), a file or a folder
holding one.

nanoGPT already uses ``nn.Linear``: names only lose their ``transformer.`` (and
``_orig_mod.`` from ``torch.compile``) prefix; its GELU is the exact one. Tokenizer:
``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` next to the checkpoint (GPT-2 BPE, what
nanoGPT uses through tiktoken), else a character-level ``meta.pkl`` (next to the checkpoint,
or nanoGPT's ``data/<dataset>/meta.pkl`` layout).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import torch

from gptviz.families.hf_common import config_int, make_config, untie_head
from gptviz.io.checkpoint import CheckpointError, ModelBundle, model_from_state
from gptviz.io.config_checks import check_finite, check_model_size, tensor_shapes
from gptviz.io.tensor_files import strip_prefixes, torch_load_tensors
from gptviz.io.tokenizer import Tokenizer
from gptviz.io.tokenizer_files import check_tokenizer, gpt2_tokenizer, read_meta_pkl
from gptviz.model.gpt import GPT

#: File suffixes of a nanoGPT checkpoint given as a file.
SUFFIXES = (".pt", ".pth", ".ckpt")


def to_nanogpt_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our GPT's weights under nanoGPT's names (the inverse of what :func:`load_nanogpt` reads).

    ``wte``/``wpe``/``h.N.*``/``ln_f`` get the ``transformer.`` prefix (both use ``nn.Linear``
    layout, so nothing is transposed) and ``lm_head.weight`` is the tied ``wte`` weight.

    Raises
    ------
    ValueError
        When the model is not something nanoGPT can express (post-LN, no final LN, another
        activation, a custom feed-forward width or epsilon, a fine-tuning head, an untied
        head, positions other than learned, RMSNorm, a gated or parallel feed-forward layer,
        grouped-query attention, another attention scale).
    """
    c = model.config
    problems = []
    if c.ln_placement != "pre" or not c.final_ln:
        problems.append("nanoGPT is pre-LN with a final LayerNorm")
    if c.activation != "gelu":
        problems.append("nanoGPT uses the exact GELU")
    if c.d_ff != 4 * c.n_embd:
        problems.append("nanoGPT's feed-forward width is 4 * n_embd")
    if c.layer_norm_eps != 1e-5:
        problems.append("nanoGPT's LayerNorm epsilon is 1e-5")
    if model.classifier is not None:
        problems.append("nanoGPT has no fine-tuning head")
    if not c.tie_word_embeddings:
        problems.append("nanoGPT's output head is tied to wte")
    if c.positional_embedding_type != "learned":
        problems.append("nanoGPT learns its position embedding (wpe)")
    if any(kind == "local" for kind in c.attention_layers or ()):
        problems.append("nanoGPT attends globally in every layer (no local windows)")
    if c.norm_type != "layernorm" or c.mlp_type != "standard" or c.parallel_attn:
        problems.append("nanoGPT's blocks are LayerNorm, attention, then a plain feed-forward "
                        "layer")
    if c.kv_heads != c.n_head:
        problems.append("nanoGPT has one key/value head per query head")
    if c.scale != 1.0 / math.sqrt(c.head_dim):
        problems.append("nanoGPT scales attention by 1/sqrt(head_dim)")
    if problems:
        raise ValueError("model cannot be written as nanoGPT: " + "; ".join(problems))
    out = {f"transformer.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


_NANOGPT_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def jsonable(x: Any, depth: int = 0) -> Any:
    """Plain-JSON form of checkpoint bookkeeping (tensors of one value become numbers)."""
    if depth > 4:
        return None
    if isinstance(x, torch.Tensor):
        return x.item() if x.numel() == 1 else None
    if isinstance(x, float):
        return x if math.isfinite(x) else str(x)
    if isinstance(x, (str, int, bool)) or x is None:
        return x
    if isinstance(x, (list, tuple)):
        return [jsonable(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): jsonable(v, depth + 1) for k, v in x.items()}
    return None


def _nanogpt_tokenizer(path: Path, ckpt: dict[str, Any]) -> tuple[Tokenizer, Path]:
    d = path.parent
    found = gpt2_tokenizer(d, "the nanoGPT tokenizer")
    if found is not None:
        return found
    candidates = [d / "meta.pkl"]
    train_cfg = ckpt.get("config")
    dataset = train_cfg.get("dataset") if isinstance(train_cfg, dict) else None
    if isinstance(dataset, str) and re.fullmatch(r"[\w.-]+", dataset) \
            and dataset not in (".", ".."):
        # nanoGPT's layout: out-<name>/ckpt.pt next to data/<dataset>/meta.pkl
        candidates.append(d.parent / "data" / dataset / "meta.pkl")
    for meta in candidates:
        if meta.is_file():
            return read_meta_pkl(meta), meta
    raise CheckpointError(
        f"{path}: no tokenizer found next to the checkpoint: put tokenizer.json, or vocab.json "
        f"and merges.txt (GPT-2 BPE, what nanoGPT uses by default), or the character-level "
        f"meta.pkl of its dataset, in {d}")


def load_nanogpt(path: str | Path) -> ModelBundle:
    """Open a nanoGPT checkpoint (``ckpt.pt``: ``{'model_args', 'model', ...}``).

    Loaded with ``torch.load(..., weights_only=True)``; a file that needs arbitrary pickled
    objects is refused. Pre-LN, final LN, exact GELU, bias per ``model_args``; the
    ``_orig_mod.`` prefix of ``torch.compile`` is removed; an ``lm_head.weight`` that differs
    from ``wte`` (a nanoGPT modified to untie them) becomes our untied ``unembed.weight``.
    ``iter_num``, ``best_val_loss`` and the training ``config`` go into the metadata.
    Tokenizer: see the module docstring.

    Raises
    ------
    CheckpointError
        Missing/broken files, pickled code, or weights that do not fit ``model_args``.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or directory")
    if path.is_dir():
        path = path / "ckpt.pt"
    ckpt = torch_load_tensors(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model_args"), dict) \
            or not isinstance(ckpt.get("model"), dict):
        raise CheckpointError(f"{path}: not a nanoGPT checkpoint (expected a dict with "
                              "'model_args' and 'model')")
    args = ckpt["model_args"]
    for key in _NANOGPT_ARGS:
        if key not in args:
            raise CheckpointError(f"{path}: model_args has no {key!r}")
    bias = args.get("bias", True)
    if not isinstance(bias, bool):
        raise CheckpointError(f"{path}: model_args['bias'] must be true or false (got {bias!r})")
    config = make_config(
        path,
        **{k: config_int(args, path, k) for k in _NANOGPT_ARGS},
        dropout=0.0, ln_placement="pre", final_ln=True, activation="gelu", bias=bias,
        layer_norm_eps=1e-5, name=path.parent.resolve().name if path.name == "ckpt.pt"
        else path.stem,
    )
    raw = ckpt["model"]
    if not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    state = strip_prefixes({str(k): v for k, v in raw.items()},
                            ("_orig_mod.", "module.", "transformer."))
    state = {k: v for k, v in state.items() if not re.fullmatch(r"h\.\d+\.attn\.bias", k)}
    check_finite(state, path)  # before comparing the head with wte: NaN never equals NaN
    # nanoGPT ties lm_head to wte; a modified one that unties it gets our unembed.weight.
    config, state = untie_head(config, state, path,
                               tie_word_embeddings="lm_head.weight" not in state)
    check_model_size(config, tensor_shapes(state), path, path)  # before anything is built
    model = model_from_state(config, state, path)
    model.eval()
    tokenizer, tok_path = _nanogpt_tokenizer(path, ckpt)
    check_tokenizer(tokenizer, tok_path, config)
    metadata: dict[str, Any] = {"source_format": "nanoGPT", "tokenizer_file": tok_path.name}
    for key in ("iter_num", "best_val_loss", "config"):
        if key in ckpt:
            metadata[key] = jsonable(ckpt[key])
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(path),
                       kind="nanogpt")


def recognises(path: Path) -> bool:
    """A ``.pt``/``.pth``/``.ckpt`` file, or a folder holding ``ckpt.pt``."""
    return (path.is_file() and path.suffix in SUFFIXES) or (path / "ckpt.pt").is_file()
