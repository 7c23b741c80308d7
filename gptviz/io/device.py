"""Where a model runs and in what precision: ``--device auto|cpu|cuda|mps`` and
``--dtype float32|bfloat16|float16``.

``auto`` takes CUDA when there is a CUDA device, else Apple's MPS, else the CPU. Asking for
a device this machine lacks is one clear :class:`ValueError`, before anything is loaded.
The weights are cast once, after loading; the engine keeps its attention history as float32
numpy on the CPU whatever the model's device and dtype.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from gptviz.io.checkpoint import ModelBundle

__all__ = ["DEVICES", "DTYPES", "available_devices", "resolve_device", "resolve_dtype",
           "place_model"]

#: The ``--device`` choices.
DEVICES = ("auto", "cpu", "cuda", "mps")

#: The ``--dtype`` choices and their torch types.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> list[str]:
    """The concrete devices this machine has, the CPU last (``["cuda", "cpu"]``)."""
    out = []
    if torch.cuda.is_available():
        out.append("cuda")
    if _mps_available():
        out.append("mps")
    return out + ["cpu"]


def resolve_device(name: str | None) -> str:
    """A device name as torch takes it: ``auto``/``None`` -> the best one available.

    Raises
    ------
    ValueError
        An unknown name, or a device this machine does not have.
    """
    if name is None or name == "auto":
        return available_devices()[0]
    kind = name.split(":", 1)[0]
    if kind not in DEVICES:
        raise ValueError(f"device {name!r} is not one of {', '.join(DEVICES)}")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: no CUDA device is available here (torch "
                         f"{torch.__version__} sees none); use cpu or auto")
    if kind == "mps" and not _mps_available():
        raise ValueError(f"device {name!r}: Apple's MPS is not available here; use cpu or auto")
    if kind == "cuda" and ":" in name:
        index = name.split(":", 1)[1]
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: this machine has "
                             f"{torch.cuda.device_count()} CUDA device(s)")
    return name


def resolve_dtype(name: str | None) -> torch.dtype:
    """``float32`` (default), ``bfloat16`` or ``float16`` as a torch dtype.

    Raises
    ------
    ValueError
        Another name.
    """
    if name is None:
        return torch.float32
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


def place_model(bundle: ModelBundle, device: str | None = None,
                dtype: str | None = None) -> ModelBundle:
    """Move ``bundle``'s model to ``device`` (``auto``: the best available) and cast it to
    ``dtype`` (``None``: keep float32), in place; returns the bundle.

    The metadata records ``device`` and ``dtype`` when they are not the CPU in float32.

    Raises
    ------
    ValueError
        See :func:`resolve_device` and :func:`resolve_dtype`.
    """
    dev = resolve_device(device)
    dt = resolve_dtype(dtype)
    bundle.model.to(device=torch.device(dev), dtype=dt)
    bundle.model.eval()
    if dev != "cpu" or dt != torch.float32:
        bundle.metadata["device"] = dev
        bundle.metadata["dtype"] = str(dt).removeprefix("torch.")
    return bundle
