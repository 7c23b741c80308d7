"""Tensor files read without running code: safetensors, ``torch.load(weights_only=True)``,
and Hugging Face weight folders (single or sharded).

No untrusted pickle is ever executed: ``.bin``/``.pt`` files rebuild only tensors and plain
containers; every failure is one :class:`~gptviz.io.checkpoint.CheckpointError` that names
the file.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from gptviz.io.checkpoint import CheckpointError, read_json, read_safetensors, require_file
from gptviz.io.files import file_problem

__all__ = ["torch_load_tensors", "load_tensor_file", "read_hf_weights", "strip_prefixes",
           "short_message"]


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
    require_file(path, allow_empty=False)
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        if "weights only" in msg.lower() or "weights_only" in msg:
            detail = _unsupported_global(msg)
            raise CheckpointError(
                f"{path}: the file contains pickled Python code/objects{detail} beyond tensors "
                "and plain containers; gptviz will not execute pickled code from a checkpoint. "
                "Re-save it as safetensors, or as a torch.save of plain tensors.") from None
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt: "
                              f"{short_message(msg)})") from None
    except Exception as e:  # RuntimeError (zip), EOFError, ValueError... on damaged files
        raise CheckpointError(f"{path}: not a readable PyTorch file (truncated or corrupt: "
                              f"{short_message(str(e), e)})") from None


def _unsupported_global(msg: str) -> str:
    m = re.search(r"unsupported global: GLOBAL ([\w.]+)", msg, re.IGNORECASE) \
        or re.search(r"unsupported GLOBAL ([\w.]+)", msg)
    if m:
        return f" (it asks for {m.group(1)})"
    m = re.search(r"Unsupported operand (\d+)", msg)
    if m:
        return f" (unsupported pickle opcode {m.group(1)})"
    return ""


def short_message(msg: str, error: BaseException | None = None, limit: int = 200) -> str:
    """The first line of an error message, cut at ``limit`` characters; an empty message
    is replaced by the error's type name (``EOFError``), or ``"no details"``."""
    line = msg.strip().splitlines()[0] if msg.strip() else ""
    if not line:
        return type(error).__name__ if error is not None else "no details"
    return line if len(line) <= limit else line[:limit] + "..."


def load_tensor_file(path: Path) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a safetensors or torch file."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    obj = torch_load_tensors(path)
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a state dict of tensors")
    return obj


def read_hf_weights(d: Path) -> tuple[dict[str, torch.Tensor], Path]:
    """Weights of a Hugging Face directory: safetensors first, then ``pytorch_model.bin``;
    sharded checkpoints (``*.index.json``) too. Returns the state and the file it came from."""
    for single, index in (("model.safetensors", "model.safetensors.index.json"),
                          ("pytorch_model.bin", "pytorch_model.bin.index.json")):
        if (d / single).is_file():
            return load_tensor_file(d / single), d / single
        if (d / index).is_file():
            idx = read_json(d / index)
            weight_map = idx.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise CheckpointError(f"{d / index}: no 'weight_map' object")
            state: dict[str, torch.Tensor] = {}
            for shard in sorted(set(map(str, weight_map.values()))):
                shard_path = d / shard
                if "\x00" in shard or shard.strip() in ("", "."):
                    raise CheckpointError(f"{d / index}: shard name {shard!r:.60} is not a "
                                          "file name")
                if Path(shard).is_absolute() or ".." in Path(shard).parts:
                    raise CheckpointError(f"{d / index}: shard {shard!r} is outside the directory")
                problem = file_problem(shard_path)
                if problem is not None:
                    raise CheckpointError(f"{shard_path}: {problem} (listed in {index})")
                state.update(load_tensor_file(shard_path))
            return state, d / index
    raise CheckpointError(f"{d}: no weights found: expected model.safetensors or "
                          "pytorch_model.bin")


def strip_prefixes(state: dict[str, torch.Tensor], prefixes: tuple[str, ...]
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
