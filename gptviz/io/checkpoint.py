"""Our checkpoint format, the :class:`ModelBundle` every family loads into, and the checked
file readers they share.

A gptviz checkpoint is a directory holding

* ``config.json``        the :class:`~gptviz.model.config.GPTConfig` fields,
* ``model.safetensors``  the weights (no pickle anywhere),
* ``tokenizer.json``     a Hugging Face ``tokenizers`` file (byte-level BPE),
* ``metadata.json``      provenance and measured metrics (free-form JSON object).

:func:`gptviz.families.load_model` opens it and every other registered format.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gptviz.io.config_checks import check_config_fields, check_finite, check_model_size
from gptviz.io.errors import CheckpointError
from gptviz.io.files import MAX_JSON_DEPTH, file_problem, json_too_deep
from gptviz.io.resources import resource_path
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

__all__ = ["DEFAULT_MODEL_DIR", "CheckpointError", "ModelBundle", "read_json",
           "read_safetensors", "safetensors_shapes", "load_state", "model_from_state",
           "save_checkpoint", "load_gptviz_checkpoint", "require_file"]

#: The bundled default model shipped in ``resources/``.
DEFAULT_MODEL_DIR = resource_path("model")


@dataclass
class ModelBundle:
    """A loaded model with everything needed to run and describe it.

    Attributes
    ----------
    model
        The :class:`~gptviz.model.gpt.GPT` in eval mode.
    tokenizer
        Its :class:`~gptviz.io.tokenizer.Tokenizer`.
    metadata
        Provenance and metrics (may be empty).
    source
        Where it was loaded from.
    kind
        ``"gptviz"``, ``"hf-gpt2"``, ``"hf-openai-gpt"`` or ``"nanogpt"``.
    """

    model: GPT
    tokenizer: Tokenizer
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    kind: str = "gptviz"

    @property
    def config(self) -> GPTConfig:
        """The model's configuration."""
        return self.model.config

    @property
    def name(self) -> str:
        """Display name: the config name, else the directory name."""
        return self.config.name or Path(self.source).name

    def weights_hash(self) -> str:
        """SHA-256 over the weights (names, shapes and bytes), to tie session files to a model."""
        h = hashlib.sha256()
        for name, t in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(str(tuple(t.shape)).encode())
            h.update(t.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
        return h.hexdigest()


def require_file(path: Path, allow_empty: bool = True) -> None:
    """Raise a :class:`CheckpointError` unless ``path`` is a regular file (links followed):
    a directory, a pipe, a device or a dangling link is called what it is."""
    problem = file_problem(path)
    if problem is not None:
        raise CheckpointError(f"{path}: {problem}")
    if not allow_empty and path.stat().st_size == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes)")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``, or a :class:`CheckpointError` that names the file.

    Refused: anything but a regular file, bytes that are not UTF-8, invalid JSON, numbers
    longer than Python reads, nesting deeper than :data:`~gptviz.io.files.MAX_JSON_DEPTH`,
    and JSON that is not an object.
    """
    require_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    except RecursionError:
        raise CheckpointError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError as e:  # e.g. an integer of more digits than Python converts
        raise CheckpointError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    if json_too_deep(data):
        raise CheckpointError(f"{path}: JSON nested too deeply (more than {MAX_JSON_DEPTH} "
                              "levels of lists/objects)")
    return data


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """Read a safetensors file, turning any failure into a :class:`CheckpointError`.

    The tensors are in memory of their own, never views of the mapped file: a model
    holds them as its parameters (:func:`model_from_state`), and a view of a file that is
    then overwritten (a training run saving into the same folder) would crash the process
    (SIGBUS) on its next read; the views also start wherever the file's header puts them,
    unaligned. One copy, about as fast as reading the file another way.
    """
    from safetensors.torch import load_file

    require_file(path, allow_empty=False)
    try:
        return {k: v.clone() for k, v in load_file(str(path)).items()}
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file "
                              f"(truncated or corrupt: {e})") from None


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` from a safetensors header, without reading any tensor.

    Raises
    ------
    CheckpointError
        The file is missing, empty, not a regular file, or its header is unreadable.
    """
    from safetensors import safe_open

    require_file(path, allow_empty=False)
    try:
        with safe_open(str(path), framework="pt") as f:
            names = f.keys()  # safe_open is not iterable
            return {k: tuple(int(d) for d in f.get_slice(k).get_shape()) for k in names}
    except Exception as e:  # safetensors raises several types for truncated/corrupt files
        raise CheckpointError(f"{path}: not a readable safetensors file "
                              f"(truncated or corrupt: {e})") from None


def _check_names(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor],
                 path: Path) -> None:
    """Refuse ``state`` unless it holds exactly the tensors of ``own``, of their shapes."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k} {tuple(state[k].shape)} != {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
        if wrong:
            parts.append(f"shape mismatch: {'; '.join(wrong[:3])}")
        raise CheckpointError(f"{path}: weights do not match the config: " + "; ".join(parts))


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: Path) -> None:
    """Copy ``state`` into ``model``, naming the file and the first mismatches on failure."""
    own = model.state_dict()
    _check_names(own, state, path)
    check_finite(state, path)
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


#: Where torch's CPU allocator starts every block (bytes).
_ALIGNMENT = 64


def model_from_state(config: GPTConfig, state: dict[str, torch.Tensor], path: Path) -> GPT:
    """The :class:`~gptviz.model.gpt.GPT` of ``config`` holding the weights ``state`` (our
    names), checked as :func:`load_state` checks them, in training mode.

    Built without the random initialisation the weights would overwrite: the modules are
    made on the ``meta`` device (names and shapes only), then the tensors become the
    parameters (:meth:`~gptviz.model.gpt.GPT.assign_weights`), converted to the model's
    dtype. A tensor is copied only where it is not what copying it into a fresh parameter
    gave before: not contiguous, or not starting on an allocation's boundary (kernels sum in
    another order on unaligned memory: measured, the one-token step differs in the last
    bits), or sharing memory with another (changing one in place must not change the
    other). So the same numbers come out as from ``GPT(config)`` + :func:`load_state`.
    ``state`` must not be used afterwards.

    Raises
    ------
    CheckpointError
        Names, shapes or values (NaN, infinity) that do not fit, naming ``path``.
    """
    with torch.device("meta"):  # nothing allocated, nothing drawn
        model = GPT(config, init_weights=False)
    own = model.state_dict()
    _check_names(own, state, path)
    check_finite(state, path)
    weights: dict[str, torch.Tensor] = {}
    storages: set[int] = set()
    for k, v in state.items():
        t = v.detach().to(own[k].dtype).contiguous()
        # A tied copy or views of one buffer share a storage; a view may start anywhere; a
        # view of a bigger buffer (a flat save) would keep all of it alive behind one weight
        storage = t.untyped_storage()
        if (storage.data_ptr() in storages or t.data_ptr() % _ALIGNMENT
                or storage.nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        storages.add(t.untyped_storage().data_ptr())
        weights[k] = t
    return model.assign_weights(weights)


def save_checkpoint(directory: str | Path, model: GPT, tokenizer: Tokenizer,
                    metadata: dict[str, Any] | None = None) -> Path:
    """Write a gptviz checkpoint directory.

    Parameters
    ----------
    directory
        Target directory (created if needed).
    model, tokenizer
        What to save.
    metadata
        Provenance and metrics for ``metadata.json``.

    Returns
    -------
    Path
        The directory.
    """
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.json").write_text(model.config.to_json() + "\n", encoding="utf-8")
    # wte is the output head too: saved once (tied), so no shared-storage problem.
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(d / "model.safetensors"), metadata={"format": "gptviz"})
    tokenizer.save(d / "tokenizer.json")
    (d / "metadata.json").write_text(json.dumps(metadata or {}, indent=2) + "\n", encoding="utf-8")
    return d


def load_gptviz_checkpoint(directory: str | Path) -> ModelBundle:
    """Load a directory written by :func:`save_checkpoint`.

    ``config.json`` is checked field by field, then against the safetensors header (sizes
    the file cannot back are refused before the model is built), and the weights must be
    finite (:mod:`gptviz.io.config_checks`).

    Raises
    ------
    CheckpointError
        Naming the file and what is wrong with it.
    """
    d = Path(directory)
    cfg_path, weights_path = d / "config.json", d / "model.safetensors"
    raw = read_json(cfg_path)
    check_config_fields(raw, cfg_path)
    try:
        config = GPTConfig.from_dict(raw)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    tok_path = d / "tokenizer.json"
    require_file(tok_path)
    try:
        tokenizer = Tokenizer.from_file(tok_path)
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise CheckpointError(f"{tok_path}: not a valid tokenizers file ({e})") from None
    if tokenizer.vocab_size > config.vocab_size:
        raise CheckpointError(f"{tok_path}: tokenizer has {tokenizer.vocab_size} tokens but the "
                              f"model's vocab_size is {config.vocab_size}")
    check_model_size(config, safetensors_shapes(weights_path), cfg_path, weights_path)
    model = model_from_state(config, read_safetensors(weights_path), weights_path)
    model.eval()
    meta_path = d / "metadata.json"
    metadata = read_json(meta_path) if meta_path.exists() else {}
    return ModelBundle(model=model, tokenizer=tokenizer, metadata=metadata,
                       source=str(d), kind="gptviz")
