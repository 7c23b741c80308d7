"""Ablation in a session: the heads it removes, and re-running the window when they change.

Ablation
--------
:meth:`~gptviz.engine.session.Session.set_ablation` removes heads
(:class:`gptviz.model.gpt.Ablation`): the window is recomputed with the heads removed and every
later step runs ablated; ``None`` restores the normal path. Steps on the redo stack are
replayed (same tokens, recomputed numbers).

Only what changed is recomputed (:func:`rerun_window`): blocks below the first layer whose
heads are removed differently (:func:`first_changed_layer`) compute the same keys, values
and residual stream as before, so the window re-runs from that layer's stored input; where
nothing changed, nothing runs.
"""

from __future__ import annotations

import numpy as np
import torch

from gptviz.engine.window import ContextWindow
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import Ablation

__all__ = ["device_ablation", "first_changed_layer", "rerun_window"]


def _as_tensor(values: object, like: torch.Tensor) -> torch.Tensor:
    """``values`` (array-like or tensor) on the device and dtype of ``like``."""
    t = values if torch.is_tensor(values) else torch.as_tensor(np.asarray(values))
    return t.to(like.device, like.dtype)


def device_ablation(ablation: Ablation | None, config: GPTConfig,
                    like: torch.Tensor) -> Ablation | None:
    """``ablation`` as the model takes it: ``keep``/``fill`` tensors on the device and dtype of
    ``like`` (a model parameter), checked against ``config``.

    Raises
    ------
    ValueError
        Not an :class:`~gptviz.model.gpt.Ablation`, ``keep`` is not ``(n_layer, n_head)`` or
        ``fill`` not ``(n_layer, n_head, head_dim)``, or they hold non-finite values.
    """
    if ablation is None:
        return None
    if not isinstance(ablation, Ablation):
        raise ValueError(f"ablation must be an Ablation or None "
                         f"(got {type(ablation).__name__})")
    keep = _as_tensor(ablation.keep, like)
    if tuple(keep.shape) != (config.n_layer, config.n_head):
        raise ValueError(f"ablation keep must have shape ({config.n_layer}, {config.n_head}) "
                         f"(got {tuple(keep.shape)})")
    fill = None
    if ablation.fill is not None:
        fill = _as_tensor(ablation.fill, like)
        want = (config.n_layer, config.n_head, config.head_dim)
        if tuple(fill.shape) != want:
            raise ValueError(f"ablation fill must have shape {want} "
                             f"(got {tuple(fill.shape)})")
    if not torch.isfinite(keep).all() or (fill is not None and not torch.isfinite(fill).all()):
        raise ValueError("ablation keep/fill must hold finite values")
    return Ablation(keep=keep, fill=fill)


def first_changed_layer(a: Ablation | None, b: Ablation | None, n_layer: int) -> int:
    """Lowest layer whose heads are removed differently by ``a`` and ``b`` (``n_layer``: none).

    Both hold tensors on the same device; ``None`` keeps every head. A removed head's output
    is ``fill`` (zeros when ``fill`` is None), so fills only matter where ``keep < 1``.
    """
    ref = a if a is not None else b
    if ref is None:
        return n_layer
    ones = torch.ones_like(ref.keep)  # (L, H): "None" keeps every head
    ka = a.keep if a is not None else ones
    kb = b.keep if b is not None else ones
    fa = a.fill if a is not None else None
    fb = b.fill if b is not None else None
    fill = fa if fa is not None else fb  # for the shape of a zero fill
    for layer in range(n_layer):
        if not torch.equal(ka[layer], kb[layer]):
            return layer
        if fill is None or not bool((ka[layer] < 1).any()):
            continue
        za = fa[layer] if fa is not None else torch.zeros_like(fill[layer])
        zb = fb[layer] if fb is not None else torch.zeros_like(fill[layer])
        if not torch.equal(za, zb):
            return layer
    return n_layer


def rerun_window(window: ContextWindow, tokens: list[int], previous: Ablation | None,
                 ablation: Ablation | None) -> None:
    """Bring ``window`` (computed for ``tokens`` under ``previous``) to ``ablation``.

    Nothing runs when both remove the same heads the same way; blocks from the first changed
    layer re-run when the window's rows are current; otherwise (layer 0 changed, or the
    buffers are not at ``tokens``) the whole window is recomputed.
    """
    layer = first_changed_layer(previous, ablation, window.model.config.n_layer)
    if layer == window.model.config.n_layer:
        return  # the same heads removed the same way: every number stays as it is
    if layer > 0 and window.holds(len(tokens)):
        window.rerun_from(layer, ablation)
    else:
        window.refill(tokens, ablation)
