"""Our own format: a folder written by :func:`gptviz.io.checkpoint.save_checkpoint`
(``config.json`` with our field names and no ``model_type``, ``model.safetensors``,
``tokenizer.json``, ``metadata.json``)."""

from __future__ import annotations

from pathlib import Path

from gptviz.io.checkpoint import CheckpointError, load_gptviz_checkpoint, read_json

load = load_gptviz_checkpoint


def recognises(path: Path) -> bool:
    """A folder whose ``config.json`` has ``n_layer`` and no ``model_type``."""
    if not path.is_dir():
        return False
    try:
        cfg = read_json(path / "config.json")
    except CheckpointError:
        return False
    return "n_layer" in cfg and cfg.get("model_type") is None
