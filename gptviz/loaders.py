"""Open checkpoints written by other tools: Hugging Face GPT-2 / GPT-1 directories and nanoGPT.

Everything is read offline from files the user already has; nothing is downloaded. No
untrusted pickle is ever executed: safetensors is preferred, ``.bin``/``.pt`` files go through
``torch.load(..., weights_only=True)`` (tensors and plain containers only), and nanoGPT's
``meta.pkl`` through an unpickler that only builds dicts of strings and integers.

Every problem (a missing, truncated or mismatched file, an unsupported variant) is raised as
one :class:`~gptviz.checkpoint.CheckpointError` whose message names the file and what is wrong.

Weight layouts
--------------
* Hugging Face GPT-2 and GPT-1 store their projections as ``Conv1D`` modules whose weight is
  ``[in, out]``; our :class:`torch.nn.Linear` wants ``[out, in]``, so those are transposed.
* nanoGPT already uses ``nn.Linear``: names only lose their ``transformer.`` (and
  ``_orig_mod.`` from ``torch.compile``) prefix. See :func:`to_nanogpt_state_dict` for the
  mapping in the other direction.

Activations
-----------
* GPT-2's ``activation_function`` ``"gelu_new"`` (and ``gelu_pytorch_tanh``, ``gelu_fast``) is the
  tanh approximation: our ``"gelu_tanh"``. Plain ``"gelu"`` is the exact erf GELU.
* GPT-1 in ``transformers`` does **not** use ``ACT2FN``: ``modeling_openai.ACT_FNS["gelu"]`` is
  ``gelu_new``, the tanh approximation (as in OpenAI's original code), so ``afn="gelu"`` maps
  to our ``"gelu_tanh"``. (``transformers.activations.ACT2FN["gelu"]`` is the exact GELU, but
  the GPT-1 model never uses it.)
* nanoGPT uses ``nn.GELU()``: the exact GELU.

Tokenizers
----------
* GPT-2: ``tokenizer.json`` when present, else byte-level BPE from ``vocab.json`` + ``merges.txt``.
  Any text round-trips exactly.
* GPT-1: ``tokenizer.json`` when present, else a BPE with the ``</w>`` end-of-word suffix, a
  lowercasing BERT normalizer and BERT pre-tokenizer (what ``transformers``'
  ``OpenAIGPTTokenizer`` builds). GPT-1's tokenizer **lowercases and splits off punctuation**:
  decoding gives back lowercased text with normalised spacing, never an exact round trip.
  Characters outside its vocabulary become ``<unk>``.
* nanoGPT: ``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` next to the checkpoint (GPT-2
  BPE, what nanoGPT uses through tiktoken), else a character-level ``meta.pkl`` (next to the
  checkpoint, or nanoGPT's ``data/<dataset>/meta.pkl`` layout).
"""

from __future__ import annotations

import builtins
import io
import math
import pickle
import re
from pathlib import Path
from typing import Any, Callable

import torch

from .checkpoint import CheckpointError, ModelBundle, _read_json, load_state, read_safetensors
from .config import GPTConfig
from .model import GPT
from .tokenizer import Tokenizer

__all__ = [
    "load_hf_gpt2", "load_hf_openai_gpt", "load_nanogpt", "to_nanogpt_state_dict",
    "torch_load_tensors", "openai_gpt_tokenizer", "char_tokenizer", "read_meta_pkl",
]

#: GPT-2 ``activation_function`` values and the identical function in :mod:`gptviz.model`.
GPT2_ACTIVATIONS = {
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": "gelu_tanh",
    "gelu_pytorch_tanh": "gelu_tanh",
    "gelu_python_tanh": "gelu_tanh",
    "gelu_fast": "gelu_tanh",
    "relu": "relu",
}

#: GPT-1 ``afn`` values (``transformers.models.openai.modeling_openai.ACT_FNS``) -> ours.
OPENAI_GPT_ACTIVATIONS = {
    "gelu": "gelu_tanh",  # ACT_FNS["gelu"] is gelu_new: the tanh approximation
    "relu": "relu",
}

# Projections stored as transformers' Conv1D ([in, out]) in GPT-2 and GPT-1.
_CONV1D = re.compile(r"^h\.\d+\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$")
# Attention-mask buffers some checkpoints carry (not weights).
_MASK_BUFFER = re.compile(r"^h\.\d+\.attn\.(bias|masked_bias)$")


# ---------------------------------------------------------------------------- file reading
def torch_load_tensors(path: Path) -> Any:
    """``torch.load`` a ``.bin``/``.pt`` file without executing any pickled code.

    Uses ``weights_only=True``: only tensors and plain containers (dict, list, str, numbers)
    are rebuilt. A file that needs anything else is refused.

    Raises
    ------
    CheckpointError
        The file is missing, truncated or corrupt, or holds pickled objects other than
        tensors and plain containers.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file is missing")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights only" in msg.lower() or "weights_only" in msg:
            detail = _first_unsupported_global(msg)
            raise CheckpointError(
                f"{path}: the file contains pickled Python code/objects{detail} beyond tensors "
                "and plain containers; gptviz will not execute pickled code from a checkpoint. "
                "Re-save it as safetensors, or as a torch.save of plain tensors.") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt: "
                              f"{_short(msg)})") from None
    except Exception as e:  # RuntimeError (zip), EOFError, ValueError... on damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt: "
                              f"{_short(str(e))})") from None


def _first_unsupported_global(msg: str) -> str:
    m = re.search(r"unsupported global: GLOBAL ([\w.]+)", msg, re.IGNORECASE) \
        or re.search(r"unsupported GLOBAL ([\w.]+)", msg)
    if m:
        return f" (it asks for {m.group(1)})"
    m = re.search(r"Unsupported operand (\d+)", msg)
    if m:
        return f" (unsupported pickle opcode {m.group(1)})"
    return ""


def _short(msg: str, limit: int = 200) -> str:
    line = msg.strip().splitlines()[0] if msg.strip() else type(msg).__name__
    return line if len(line) <= limit else line[:limit] + "..."


def _load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a safetensors or torch file."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    obj = torch_load_tensors(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return obj


def _read_hf_weights(d: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Weights of a Hugging Face directory: safetensors first, then ``pytorch_model.bin``;
    sharded checkpoints (``*.index.json``) too. Returns the state and the file it came from."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (d / single).is_file():
            return _load_tensor_file(d / single), d / single
        if (d / index).is_file():
            idx = _read_json(d / index)
            weight_map = idx.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{d / index}: no 'weight_map' object")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(map(str, weight_map.values()))):
                shard_path = d / shard
                if Path(shard).is_absolute() or ".." in Path(shard).parts:
                    raise CheckpointError(f"{d / index}: shard {shard!r} is outside the directory")
                if not shard_path.is_file():
                    raise CheckpointError(f"{shard_path}: file is missing (listed in {index})")
                state.update(_load_tensor_file(shard_path))
            return state, d / index
    raise CheckpointError(f"{d}: no weights found: expected model.safetensors or "
                          "pytorch_model.bin")


# ---------------------------------------------------------------------------- config helpers
def _int(cfg: dict[str, Any], path: Path, *keys: str, default: int | None = None,
         optional: bool = False) -> int | None:
    """The first of ``keys`` present in ``cfg`` as a positive int."""
    for key in keys:
        if key in cfg and cfg[key] is not None:
            v = cfg[key]
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise CheckpointError(f"{path}: {key} must be a positive integer (got {v!r})")
            return v
    if default is not None or optional:
        return default
    raise CheckpointError(f"{path}: missing {keys[0]!r}")


def _float(cfg: dict[str, Any], path: Path, key: str, default: float) -> float:
    v = cfg.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise CheckpointError(f"{path}: {key} must be a positive number (got {v!r})")
    return float(v)


def _make_config(path: Path, **kwargs: Any) -> GPTConfig:
    try:
        return GPTConfig(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None


def _strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
                    ) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in state.items():
        changed = True
        while changed:
            changed = False
            for p in prefixes:
                if k.startswith(p):
                    k = k[len(p):]
                    changed = True
        out[k] = v
    return out


# ---------------------------------------------------------------------------- tokenizers
def _tokenizer_from_json(path: Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(path)
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise CheckpointError(f"{path}: not a valid tokenizers file ({_short(str(e))})") from None


def _bpe_files(d: Path, what: str) -> tuple[Path, Path] | None:
    """``(vocab.json, merges.txt)`` in ``d``; None if neither exists; error if one is missing."""
    vocab, merges = d / "vocab.json", d / "merges.txt"
    if vocab.is_file() and merges.is_file():
        return vocab, merges
    if vocab.is_file() or merges.is_file():
        missing = merges if vocab.is_file() else vocab
        raise CheckpointError(f"{missing}: file is missing ({what} needs both vocab.json and "
                              "merges.txt, or a tokenizer.json)")
    return None


def _gpt2_tokenizer(d: Path, what: str = "the GPT-2 tokenizer") -> tuple[Tokenizer, Path] | None:
    if (d / "tokenizer.json").is_file():
        return _tokenizer_from_json(d / "tokenizer.json"), d / "tokenizer.json"
    files = _bpe_files(d, what)
    if files is None:
        return None
    try:
        return Tokenizer.from_bpe_files(*files), files[0]
    except Exception as e:
        raise CheckpointError(f"{files[0]} / {files[1].name}: not a valid byte-level BPE "
                              f"vocabulary ({_short(str(e))})") from None


def openai_gpt_tokenizer(vocab: str | Path, merges: str | Path, unk_token: str = "<unk>"
                         ) -> Tokenizer:
    """GPT-1's tokenizer from ``vocab.json`` + ``merges.txt``.

    The same pipeline as ``transformers``' ``OpenAIGPTTokenizer``: BERT normalizer (lowercase,
    accents kept), BERT pre-tokenizer (split on whitespace and punctuation), BPE whose
    word-final pieces end in ``</w>``, and a BPE decoder that turns ``</w>`` back into spaces.
    It lowercases, so text does not round-trip exactly.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    bpe = models.BPE.from_file(str(vocab), str(merges), end_of_word_suffix="</w>",
                               continuing_subword_prefix="", fuse_unk=False,
                               unk_token=unk_token, dropout=None)
    hf = HFTokenizer(bpe)
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.BPEDecoder(suffix="</w>")
    return Tokenizer(hf)


def char_tokenizer(stoi: dict[str, int]) -> Tokenizer:
    """A character-level tokenizer (nanoGPT's ``meta.pkl``): one id per character.

    Built as a ``tokenizers`` BPE with single-character tokens and no merges, no normalizer or
    pre-tokenizer (spaces and newlines are ordinary characters), and a decoder that simply
    concatenates. Characters outside the vocabulary are dropped by ``tokenizers``.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    hf = HFTokenizer(models.BPE(vocab=dict(stoi), merges=[]))
    hf.decoder = decoders.Fuse()
    return Tokenizer(hf)


class _MetaUnpickler(pickle.Unpickler):
    """Unpickler for nanoGPT's ``meta.pkl`` that can build nothing but dicts, strings and ints."""

    _ALLOWED = {("builtins", "dict"), ("builtins", "str"), ("builtins", "int")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def read_meta_pkl(path: Path) -> Tokenizer:
    """nanoGPT's character-level ``meta.pkl`` (``{'vocab_size', 'stoi', 'itos'}``) as a tokenizer,
    read without executing any code."""
    try:
        meta = _MetaUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: holds more than plain dicts of strings and integers "
                              f"({e}); gptviz will not execute pickled code") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable pickle (truncated or corrupt: "
                              f"{_short(str(e)) or type(e).__name__})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a dict with 'stoi'/'itos'")
    stoi = meta.get("stoi")
    if stoi is None and isinstance(meta.get("itos"), dict):
        stoi = {s: i for i, s in meta["itos"].items()}
    if not isinstance(stoi, dict) or not stoi:
        raise CheckpointError(f"{path}: no character vocabulary ('stoi' or 'itos'); only "
                              "character-level meta.pkl files are supported")
    ok = all(isinstance(s, str) and len(s) == 1 and isinstance(i, int) and not isinstance(i, bool)
             and i >= 0 for s, i in stoi.items())
    if not ok or len(set(stoi.values())) != len(stoi):
        raise CheckpointError(f"{path}: 'stoi' must map single characters to distinct ids >= 0")
    return char_tokenizer(stoi)


def _check_tokenizer(tok: Tokenizer, tok_path: Path, config: GPTConfig) -> None:
    if tok.vocab_size > config.vocab_size:
        raise CheckpointError(f"{tok_path}: tokenizer has {tok.vocab_size} tokens but the "
                              f"model's vocab_size is {config.vocab_size}")


# ---------------------------------------------------------------------------- HF common
def _hf_model(config: GPTConfig, state: dict[str, torch.Tensor], weights_path: Path,
              rename: dict[str, str], tie_word_embeddings: bool,
              q_scale: Callable[[int], float] | None = None) -> GPT:
    """Map a Hugging Face state dict onto our GPT and load it."""
    state = _strip_prefixes(state, ("transformer.",))
    state = {k: v for k, v in state.items()
             if not _MASK_BUFFER.match(k) and k != "position_ids"
             and not k.startswith("multiple_choice_head.")}
    state = {rename.get(k, k): v for k, v in state.items()}
    head = state.pop("lm_head.weight", None)
    if not tie_word_embeddings:
        wte = state.get("wte.weight")
        if head is None or wte is None or head.shape != wte.shape or not torch.equal(head, wte):
            raise CheckpointError(f"{weights_path}: the output head is not tied to the token "
                                  "embedding (tie_word_embeddings is false); gptviz models always "
                                  "use the tied head h·W_e^T")
    for k in list(state):
        if _CONV1D.match(k):
            if state[k].dim() != 2:
                raise CheckpointError(f"{weights_path}: {k} should be a matrix, got shape "
                                      f"{tuple(state[k].shape)}")
            state[k] = state[k].t().contiguous()  # Conv1D [in, out] -> Linear [out, in]
    model = GPT(config)
    load_state(model, state, weights_path)
    if q_scale is not None:
        # Fold a non-standard attention scale into the query projection, so that our
        # q·k / sqrt(hd) equals theirs exactly (up to rounding): only q rows change.
        C = config.n_embd
        with torch.no_grad():
            for i, block in enumerate(model.h):
                f = q_scale(i)
                if f != 1.0:
                    block.attn.c_attn.weight[:C].mul_(f)
                    if block.attn.c_attn.bias is not None:
                        block.attn.c_attn.bias[:C].mul_(f)
    model.eval()
    return model


def _require_dir(directory: str | Path) -> Path:
    d = Path(directory)
    if not d.exists():
        raise CheckpointError(f"{d}: no such file or directory")
    if not d.is_dir():
        raise CheckpointError(f"{d}: expected a model directory")
    return d


# ---------------------------------------------------------------------------- GPT-2
def load_hf_gpt2(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``GPT2LMHeadModel`` directory.

    Reads ``config.json``, weights from ``model.safetensors`` (preferred) or
    ``pytorch_model.bin`` (``weights_only``), and ``tokenizer.json`` or ``vocab.json`` +
    ``merges.txt``. Keys may carry the ``transformer.`` prefix or not; the tied ``lm_head``
    is ignored. ``scale_attn_by_inverse_layer_idx`` and ``scale_attn_weights=False`` are
    supported by folding the extra factor into the query projection;
    ``reorder_and_upcast_attn`` only changes mixed-precision numerics and is the same
    function in float32. Cross-attention variants are refused.

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant, or weights that do not fit the config.
    """
    d = _require_dir(directory)
    cfg_path = d / "config.json"
    cfg = _read_json(cfg_path)
    if cfg.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, not 'gpt2'")
    if cfg.get("add_cross_attention"):
        raise CheckpointError(f"{cfg_path}: add_cross_attention is true (an encoder-decoder "
                              "GPT-2); gptviz opens decoder-only GPT-2 models")
    act_name = cfg.get("activation_function", "gelu_new")
    if act_name not in GPT2_ACTIVATIONS:
        raise CheckpointError(f"{cfg_path}: activation_function {act_name!r} is not supported "
                              f"(supported: {', '.join(sorted(GPT2_ACTIVATIONS))})")
    n_layer = _int(cfg, cfg_path, "n_layer", "num_hidden_layers")
    n_head = _int(cfg, cfg_path, "n_head", "num_attention_heads")
    n_embd = _int(cfg, cfg_path, "n_embd", "hidden_size")
    config = _make_config(
        cfg_path,
        n_layer=n_layer, n_head=n_head, n_embd=n_embd,
        block_size=_int(cfg, cfg_path, "n_positions", "n_ctx", "max_position_embeddings"),
        vocab_size=_int(cfg, cfg_path, "vocab_size"),
        dropout=0.0, ln_placement="pre", final_ln=True,
        activation=GPT2_ACTIVATIONS[act_name], bias=True,
        layer_norm_eps=_float(cfg, cfg_path, "layer_norm_epsilon", 1e-5),
        n_inner=_int(cfg, cfg_path, "n_inner", optional=True),
        name=d.resolve().name,
    )
    scale_weights = cfg.get("scale_attn_weights", True)
    by_layer = cfg.get("scale_attn_by_inverse_layer_idx", False)
    q_scale = None
    if not scale_weights or by_layer:
        hd = config.head_dim

        def q_scale(i: int) -> float:
            s = (hd ** -0.5 if scale_weights else 1.0) / (float(i + 1) if by_layer else 1.0)
            return s * math.sqrt(hd)

    state, weights_path = _read_hf_weights(d)
    model = _hf_model(config, state, weights_path, rename={},
                      tie_word_embeddings=cfg.get("tie_word_embeddings", True) is not False,
                      q_scale=q_scale)
    found = _gpt2_tokenizer(d)
    if found is None:
        raise CheckpointError(f"{d}: no tokenizer found: put tokenizer.json, or vocab.json and "
                              "merges.txt (GPT-2 byte-level BPE), in the model directory")
    tokenizer, tok_path = found
    _check_tokenizer(tokenizer, tok_path, config)
    metadata = {"source_format": "huggingface GPT2LMHeadModel",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "activation_function": act_name}
    if q_scale is not None:
        metadata["attention_scale_folded_into_query"] = True
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(d),
                       kind="hf-gpt2")


# ---------------------------------------------------------------------------- GPT-1
def load_hf_openai_gpt(directory: str | Path) -> ModelBundle:
    """Open a Hugging Face ``OpenAIGPTLMHeadModel`` (GPT-1) directory.

    Post-LayerNorm blocks, no final LayerNorm, tanh-approximated GELU (what ``afn="gelu"``
    means in ``transformers``' GPT-1), Conv1D weights transposed, tied head. Tokenizer:
    ``tokenizer.json`` or ``vocab.json`` + ``merges.txt`` (see :func:`openai_gpt_tokenizer`;
    it lowercases, so text does not round-trip exactly).

    Raises
    ------
    CheckpointError
        Missing/broken files, an unsupported variant, or weights that do not fit the config.
    """
    d = _require_dir(directory)
    cfg_path = d / "config.json"
    cfg = _read_json(cfg_path)
    if cfg.get("model_type", "openai-gpt") != "openai-gpt":
        raise CheckpointError(f"{cfg_path}: model_type is {cfg.get('model_type')!r}, "
                              "not 'openai-gpt'")
    afn = cfg.get("afn", "gelu")
    if afn not in OPENAI_GPT_ACTIVATIONS:
        raise CheckpointError(f"{cfg_path}: afn {afn!r} is not supported "
                              f"(supported: {', '.join(sorted(OPENAI_GPT_ACTIVATIONS))})")
    config = _make_config(
        cfg_path,
        n_layer=_int(cfg, cfg_path, "n_layer", "num_hidden_layers"),
        n_head=_int(cfg, cfg_path, "n_head", "num_attention_heads"),
        n_embd=_int(cfg, cfg_path, "n_embd", "hidden_size"),
        block_size=_int(cfg, cfg_path, "n_positions", "n_ctx", "max_position_embeddings"),
        vocab_size=_int(cfg, cfg_path, "vocab_size"),
        dropout=0.0, ln_placement="post", final_ln=False,
        activation=OPENAI_GPT_ACTIVATIONS[afn], bias=True,
        layer_norm_eps=_float(cfg, cfg_path, "layer_norm_epsilon", 1e-5),
        name=d.resolve().name,
    )
    state, weights_path = _read_hf_weights(d)
    model = _hf_model(config, state, weights_path,
                      rename={"tokens_embed.weight": "wte.weight",
                              "positions_embed.weight": "wpe.weight"},
                      tie_word_embeddings=cfg.get("tie_word_embeddings", True) is not False)
    if (d / "tokenizer.json").is_file():
        tok_path = d / "tokenizer.json"
        tokenizer = _tokenizer_from_json(tok_path)
    else:
        files = _bpe_files(d, "the GPT-1 tokenizer")
        if files is None:
            raise CheckpointError(f"{d}: no tokenizer found: put tokenizer.json, or vocab.json "
                                  "and merges.txt (GPT-1 BPE), in the model directory")
        tok_path = files[0]
        try:
            tokenizer = openai_gpt_tokenizer(*files)
        except Exception as e:
            raise CheckpointError(f"{files[0]} / {files[1].name}: not a valid BPE vocabulary "
                                  f"({_short(str(e))})") from None
    _check_tokenizer(tokenizer, tok_path, config)
    metadata = {"source_format": "huggingface OpenAIGPTLMHeadModel",
                "architectures": cfg.get("architectures"),
                "transformers_version": cfg.get("transformers_version"),
                "afn": afn,
                "tokenizer_note": "GPT-1's tokenizer lowercases and splits punctuation: "
                                  "decoded text is not an exact round trip"}
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(d),
                       kind="hf-openai-gpt")


# ---------------------------------------------------------------------------- nanoGPT
def to_nanogpt_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    """Our GPT's weights under nanoGPT's names (the inverse of what :func:`load_nanogpt` reads).

    ``wte``/``wpe``/``h.N.*``/``ln_f`` get the ``transformer.`` prefix (both use ``nn.Linear``
    layout, so nothing is transposed) and ``lm_head.weight`` is the tied ``wte`` weight.

    Raises
    ------
    ValueError
        When the model is not something nanoGPT can express (post-LN, no final LN, another
        activation, a custom feed-forward width or epsilon, a fine-tuning head).
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
    if problems:
        raise ValueError("model cannot be written as nanoGPT: " + "; ".join(problems))
    out = {f"transformer.{k}": v.detach().clone() for k, v in model.state_dict().items()}
    out["lm_head.weight"] = out["transformer.wte.weight"]
    return out


_NANOGPT_ARGS = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")


def _jsonable(x: Any, depth: int = 0) -> Any:
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
        return [_jsonable(v, depth + 1) for v in x]
    if isinstance(x, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in x.items()}
    return None


def _nanogpt_tokenizer(path: Path, ckpt: dict[str, Any]) -> tuple[Tokenizer, Path]:
    d = path.parent
    found = _gpt2_tokenizer(d, "the nanoGPT tokenizer")
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
    ``_orig_mod.`` prefix of ``torch.compile`` is removed. ``iter_num``, ``best_val_loss`` and
    the training ``config`` go into the metadata. Tokenizer: see the module docstring.

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
    config = _make_config(
        path,
        **{k: _int(args, path, k) for k in _NANOGPT_ARGS},
        dropout=0.0, ln_placement="pre", final_ln=True, activation="gelu", bias=bias,
        layer_norm_eps=1e-5, name=path.parent.resolve().name if path.name == "ckpt.pt"
        else path.stem,
    )
    raw = ckpt["model"]
    if not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: 'model' must be a state dict of tensors")
    state = _strip_prefixes({str(k): v for k, v in raw.items()},
                            ("_orig_mod.", "module.", "transformer."))
    state = {k: v for k, v in state.items() if not re.fullmatch(r"h\.\d+\.attn\.bias", k)}
    head = state.pop("lm_head.weight", None)
    wte = state.get("wte.weight")
    if head is not None and wte is not None and (head.shape != wte.shape
                                                 or not torch.equal(head, wte)):
        raise CheckpointError(f"{path}: lm_head.weight differs from transformer.wte.weight; "
                              "gptviz models use the tied head h·W_e^T")
    model = GPT(config)
    load_state(model, state, path)
    model.eval()
    tokenizer, tok_path = _nanogpt_tokenizer(path, ckpt)
    _check_tokenizer(tokenizer, tok_path, config)
    metadata: dict[str, Any] = {"source_format": "nanoGPT", "tokenizer_file": tok_path.name}
    for key in ("iter_num", "best_val_loss", "config"):
        if key in ckpt:
            metadata[key] = _jsonable(ckpt[key])
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata, source=str(path),
                       kind="nanogpt")
