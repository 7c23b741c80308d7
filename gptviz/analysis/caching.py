"""The small caches the live analyses keep, and the key of the text they are computed on."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

__all__ = ["LRUCache", "text_key"]


class LRUCache:
    """A small dict that forgets the least recently used entry beyond ``size``."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.d: OrderedDict[Any, Any] = OrderedDict()

    def get(self, key: Any) -> Any:
        if key in self.d:
            self.d.move_to_end(key)
            return self.d[key]
        return None

    def put(self, key: Any, value: Any) -> None:
        self.d[key] = value
        self.d.move_to_end(key)
        while len(self.d) > self.size:
            self.d.popitem(last=False)

    def clear(self) -> None:
        self.d.clear()


def text_key(session: Any) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(key, ids)``: a hashable key of the text in the session's window (its start, length
    and a hash of its ids) and the window's ids ``[T]`` int64."""
    ids = np.asarray(session.window_tokens, dtype=np.int64)  # [T]
    return (int(session.window_start), int(ids.shape[0]), hash(ids.tobytes())), ids
