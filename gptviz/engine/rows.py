"""A step's attention row, read back when asked for instead of kept with every step.

Every :class:`~gptviz.engine.history.StepResult` used to carry its ``(L, H, S)`` attention row
beside the window's history that already holds it (24 KB a step at the bundled model's size,
370 KB at GPT-2 small's). A step now keeps a :class:`RowSource`: its *token path* and the
ablation it was computed with. Reading :attr:`StepResult.attention_row`

* takes the row from the window's attention history while the window holds it (same window
  start, the row still valid, same tokens before it, same ablation): the common case, and
  free;
* else recomputes it: a forward over the tokens of its window before it, then the same
  one-token step the session took, under the ablation it had (rounded through the history's
  dtype, as a stored row would be).

Token paths
-----------
A path is an immutable chain shared by all the steps of a timeline: ``(None, prompt_ids)``
for the prompt, ``(parent_path, token_id)`` for each step after it. It costs one small tuple a
step, survives undo, redo, branches and resets (a branch starts a new chain from the shared
prefix), and gives any step's tokens back (:func:`path_tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from gptviz.model.gpt import Ablation, KVCache

__all__ = ["RowSource", "StepRows", "TokenPath", "path_tokens", "prompt_path"]

#: ``(None, prompt_ids)`` or ``(parent_path, token_id)``.
TokenPath = tuple[Any, Any]


def prompt_path(ids: Sequence[int]) -> TokenPath:
    """The root of a timeline's token paths: the prompt."""
    return (None, tuple(int(i) for i in ids))


def path_tokens(path: TokenPath, index: int, start: int) -> list[int]:
    """Token ids at global positions ``start .. index`` of ``path`` (whose last token is at
    ``index``)."""
    need = index - start + 1
    tail: list[int] = []
    node = path
    while len(tail) < need and node[0] is not None:
        tail.append(node[1])
        node = node[0]
    if len(tail) < need:  # the rest comes from the prompt
        prompt = node[1]
        tail.extend(reversed(prompt[start:start + need - len(tail)]))
    return tail[::-1]


class RowSource:
    """Where one step's attention row is read from (see the module notes)."""

    __slots__ = ("reader", "path", "ablation")

    def __init__(self, reader: StepRows, path: TokenPath, ablation: Ablation | None) -> None:
        self.reader, self.path, self.ablation = reader, path, ablation

    def row(self, index: int, window_start: int) -> np.ndarray:
        """``(L, H, index - window_start + 1)`` float32, a new array."""
        return self.reader.row_of(index, window_start, self.path, self.ablation)


class StepRows:
    """Reads steps' rows from a session's window, or recomputes them (one per session)."""

    def __init__(self, window: Any) -> None:
        self.window = window  # a ContextWindow

    def source(self, path: TokenPath, ablation: Ablation | None) -> RowSource:
        """The :class:`RowSource` of a step on ``path`` computed under ``ablation``."""
        return RowSource(self, path, ablation)

    def row_of(self, index: int, window_start: int, path: TokenPath,
               ablation: Ablation | None) -> np.ndarray:
        """The attention row of the token at ``index`` on ``path`` over its window."""
        w = self.window
        pos = index - window_start
        if window_start == w.start and pos < w.valid and ablation is w.ablation:
            if w.owners[pos] is path:
                return w.attention_row(pos)
            if path_tokens(path, index, window_start) == w.ids[:pos + 1]:
                w.owners[pos] = path  # next time without comparing
                return w.attention_row(pos)
        return self._recompute(path_tokens(path, index, window_start), ablation)

    @torch.inference_mode()
    def _recompute(self, ids: list[int], ablation: Ablation | None) -> np.ndarray:
        """The last token's row over ``ids``: the earlier ones through the model into a
        fresh cache, then one step, as the session took it."""
        model = self.window.model
        p = model.wte.weight
        cache = KVCache(model.config, batch=1, device=p.device, dtype=p.dtype,
                        capacity=len(ids))
        if len(ids) > 1:
            idx = torch.tensor([ids[:-1]], dtype=torch.long, device=p.device)  # (1, T - 1)
            model(idx, cache, ablation=ablation, last_only=True)
        cfg = model.config
        rows = torch.empty((cfg.n_layer, cfg.n_head, len(ids)), device=p.device)  # (L, H, T)
        model.decode_step(ids[-1], cache, attn_out=rows, ablation=ablation)
        stored = rows.cpu().numpy().astype(self.window.attn.dtype)  # as the history keeps it
        return stored.astype(np.float32)
