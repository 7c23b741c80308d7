"""How much memory a session's window may take: what is free, and the refusal when it is not.

A window grows with its text (:class:`~gptviz.engine.window.ContextWindow`); before each
growth it asks :func:`available_bytes` whether the new buffers fit, and refuses with
:class:`NotEnoughMemory` (a ``ValueError``: one clear line, the session unchanged) saying how
much they would take.
"""

from __future__ import annotations

__all__ = ["NotEnoughMemory", "available_bytes", "format_bytes", "limit_heap_fragmentation"]


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


_HEAP_SET = False


def limit_heap_fragmentation(threshold: int = 64 * 1024) -> bool:
    """Have glibc's ``malloc`` serve blocks of ``threshold`` bytes and more from their own
    mappings, for the whole process (once; ``False`` where there is no glibc).

    Why: each step allocates and frees buffers of the vocabulary's size (200 KB at GPT-2
    small's) while the steps it keeps allocate small blocks; glibc's default raises its mmap
    threshold after such frees, the big buffers then come from the heap, and the small blocks
    left between them keep the heap from being reused: resident memory grew ~9 KB a step at
    GPT-2 small's shape (block 256), 1.3 KB with this (``bench --soak``).
    """
    global _HEAP_SET
    if _HEAP_SET:
        return True
    try:
        import ctypes
        import ctypes.util

        name = ctypes.util.find_library("c")
        if name is None:
            return False
        libc = ctypes.CDLL(name)
        if not hasattr(libc, "mallopt") or not hasattr(libc, "gnu_get_libc_version"):
            return False
        _HEAP_SET = bool(libc.mallopt(-3, int(threshold)))  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError, ValueError):
        return False
    return _HEAP_SET
