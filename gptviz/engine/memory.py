"""How much memory a session's window may take: what is free, and the refusal when it is not.

A window grows with its text (:class:`~gptviz.engine.window.ContextWindow`); before each
growth it asks :func:`available_bytes` whether the new buffers fit, and refuses with
:class:`NotEnoughMemory` (a ``ValueError``: one clear line, the session unchanged) saying how
much they would take.
"""

from __future__ import annotations

__all__ = ["NotEnoughMemory", "available_bytes", "format_bytes"]


class NotEnoughMemory(ValueError):
    """The window's buffers for the asked context would not fit in the memory available."""


def available_bytes() -> int | None:
    """Memory the system can still give (``psutil`` when installed, else ``MemAvailable`` of
    ``/proc/meminfo``); ``None`` when neither is there to ask."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except Exception:
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the file says kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def format_bytes(n: float) -> str:
    """``n`` bytes as a short readable size (``"1.5 GB"``, decimal units)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"  # pragma: no cover
