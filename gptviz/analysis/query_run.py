"""One more forward pass at one position: shared by the analyses that read the model inside
(head writes, neurons) at the selected query, and forward hooks that are always removed.

:func:`run_prefix` runs ``ids[:position + 1]`` from scratch; :func:`run_at_query` runs only
the query of a live session over a copy of its KV cache (the cost of one step), falling back
to the prefix when the session cannot give that cache. Both go through the modules'
``forward`` (not the flat ``decode_step``), so module hooks see every block.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from gptviz.model.gpt import GPT, Ablation, GPTOutput

__all__ = ["check_position", "run_prefix", "run_at_query", "capture_inputs", "model_device",
           "blocks"]


def model_device(model: GPT) -> torch.device:
    """The device of the model's weights."""
    return next(model.parameters()).device


def blocks(model: GPT) -> list[Any]:
    """The model's blocks (typed loosely: their submodules are read by name)."""
    return list(model.h)


def check_position(ids: Sequence[int] | np.ndarray | torch.Tensor, position: int
                   ) -> tuple[torch.Tensor, int]:
    """``(ids as a [T] int64 tensor, position made non-negative)``; ValueError when the text is
    empty or the position outside it."""
    ids_t = torch.as_tensor(np.asarray(ids), dtype=torch.long).reshape(-1)
    t = int(ids_t.shape[0])
    if t == 0:
        raise ValueError("need at least one token")
    pos = position + t if position < 0 else position
    if not 0 <= pos < t:
        raise ValueError(f"position {position} is outside the text of {t} tokens")
    return ids_t, int(pos)


@torch.no_grad()
def run_prefix(model: GPT, ids: torch.Tensor, position: int, ablation: Ablation | None = None,
               **kw: Any) -> GPTOutput:
    """``model`` over ``ids[:position + 1]`` (``ids`` ``[T]``), logits of the last position only;
    ``kw`` are :meth:`GPT.forward`'s ``return_*`` flags."""
    idx = ids[None, :position + 1].to(model_device(model))  # (1, position + 1)
    return model(idx, ablation=ablation, last_only=True, **kw)


def run_at_query(session: Any, wids: np.ndarray, q_rel: int, **kw: Any) -> GPTOutput:
    """The session's model (with its ablation) at window position ``q_rel`` only, over a copy
    of the session's keys and values of the positions before it; the whole prefix when the
    session cannot give that cache. Per-position outputs then cover the query alone."""
    s = session
    with torch.inference_mode():
        try:
            cache = s.kv_cache_snapshot(q_rel)  # positions 0 .. q_rel - 1, room for q_rel
        except ValueError:
            ids = torch.as_tensor(np.asarray(wids), dtype=torch.long)
            out = run_prefix(s.model, ids, q_rel, s.device_ablation, **kw)
            return _last_position(out)
        idx = torch.tensor([[int(wids[q_rel])]], dtype=torch.long, device=cache.k.device)
        return s.model(idx, cache, ablation=s.device_ablation, last_only=True, **kw)


def _last_position(out: GPTOutput) -> GPTOutput:
    """``out`` with its per-position lists cut to the last position (as a one-token pass)."""
    if out.residuals is not None:
        out.residuals = [r[:, -1:] for r in out.residuals]
    if out.head_outputs is not None:
        out.head_outputs = [z[:, :, -1:] for z in out.head_outputs]
    out.hidden = out.hidden[:, -1:]
    return out


@contextmanager
def capture_inputs(modules: Sequence[torch.nn.Module], outputs: bool = False
                   ) -> Iterator[list[list[Any]]]:
    """Record what each module receives (its first positional input) or, with ``outputs``,
    what it returns, on every call while the block runs: ``got[i]`` lists module ``i``'s
    tensors (detached). The hooks are removed on the way out, also after an error."""
    got: list[list[Any]] = [[] for _ in modules]
    handles = []
    try:
        for i, m in enumerate(modules):
            if outputs:
                handles.append(m.register_forward_hook(
                    lambda _m, _inp, out, i=i: got[i].append(
                        (out[0] if isinstance(out, tuple) else out).detach())))
            else:
                handles.append(m.register_forward_pre_hook(
                    lambda _m, inp, i=i: got[i].append(inp[0].detach())))
        yield got
    finally:
        for h in handles:
            h.remove()
