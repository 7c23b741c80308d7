"""The main map's stages of one head: weights, raw scores, masked scores, value-weighted.

* ``weights``: the attention α (what the session holds);
* ``raw``: s_ij = q_i·k_j times the family's scale for every cell, the future included (what
  the model computes before the mask);
* ``masked``: the same with -inf where the model masks (above the diagonal): softmax of a
  row gives the weights;
* ``value``: ‖α_ij · v_j W_O^h‖ (Kobayashi et al., 2020), NaN where masked.

The head grid's value-weighted thumbnails (:meth:`StageMaps.grid_value`) show every head's
value-weighted map with each row divided by its sum, so that they read on the weights' 0..1
scale. Computed from the session's residual stream (:class:`~gptviz.analysis.scores.WindowStream`),
cached per text, ablation and head.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gptviz.analysis.caching import LRUCache, text_key
from gptviz.analysis.scores import (
    WindowStream,
    head_projections,
    masked_cells,
    masked_scores,
    raw_scores,
    value_norms,
    value_weighted,
)

__all__ = ["STAGES", "StageMaps"]

#: The stages in menu order: (key, label).
STAGES: tuple[tuple[str, str], ...] = (
    ("weights", "Weights"),
    ("raw", "Raw scores"),
    ("masked", "Masked scores"),
    ("value", "Value-weighted"),
)


class StageMaps:
    """Stage maps of a session's window (see the module docstring), cached."""

    def __init__(self) -> None:
        self.stream = WindowStream.shared
        self._maps = LRUCache(6)
        self._grids = LRUCache(2)

    def _key(self, session: Any) -> tuple[tuple[Any, ...], np.ndarray]:
        key, ids = text_key(session)
        return (key, id(session), id(session.device_ablation)), ids

    @torch.inference_mode()
    def _layer(self, session: Any, ids: np.ndarray, layer: int
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Raw scores ``(nh, T, T)``, attention ``(nh, T, T)`` and values of ``layer``."""
        model = session.model
        resid = self.stream(session).get(session, ids)  # (L + 1, T, C)
        p = head_projections(model, layer, resid[layer])
        raw = raw_scores(model, p).float()  # (nh, T, T)
        att = torch.softmax(masked_scores(model, layer, raw), dim=-1)  # (nh, T, T)
        return raw, att, p.v.float()

    @torch.inference_mode()
    def head(self, session: Any, layer: int, head: int, average: bool, stage: str
             ) -> np.ndarray:
        """The ``[T, T]`` float32 map of ``stage`` for one head (or the layer's mean over its
        heads with ``average``). Raises ``ValueError`` for an unknown stage."""
        if stage not in dict(STAGES) or stage == "weights":
            raise ValueError(f"unknown map stage {stage!r} (known: raw, masked, value)")
        key, ids = self._key(session)
        full = key + (layer, head, average, stage)
        out = self._maps.get(full)
        if out is not None:
            return out
        model = session.model
        raw, att, v = self._layer(session, ids, layer)
        T = raw.shape[-1]
        mask = masked_cells(model, layer, T)  # (T, T)
        if stage == "raw":
            m = raw
        elif stage == "masked":
            m = raw.masked_fill(mask, float("-inf"))
        else:
            m = value_weighted(model, layer, att, v).masked_fill(mask, float("nan"))
        m = m.mean(dim=0) if average else m[head]  # (T, T)
        out = np.ascontiguousarray(m.cpu().numpy(), dtype=np.float32)
        out.flags.writeable = False
        self._maps.put(full, out)
        return out

    @torch.inference_mode()
    def grid_value(self, session: Any) -> np.ndarray:
        """``[L, H, T, T]`` float32 value-weighted maps of every head, each row divided by its
        sum (a distribution over the keys, 0 where masked): the session's attention times
        ‖v_j W_O^h‖ of the values in its KV cache (no projection of the window re-run)."""
        key, _ids = self._key(session)
        out = self._grids.get(key)
        if out is not None:
            return out
        model = session.model
        att = session.packed_attention()  # (L, H, T, T), read a layer at a time
        T = att.shape[-1]
        cache = session.kv_cache_snapshot(T, room=0)  # a copy of the window's keys and values
        out = np.empty(att.shape, np.float32)
        for layer in range(session.config.n_layer):
            v = cache.v[layer, 0, :, :T].float()  # (nkv, T, hd)
            norms = value_norms(model, layer, v).cpu().numpy()  # (nh, T)
            vw = out[layer]  # (nh, T, T), computed in place: no temporaries of that size
            np.multiply(att.layer(layer), norms[:, None, :], out=vw)
            np.divide(vw, np.maximum(vw.sum(-1, keepdims=True), 1e-30), out=vw)
        self._grids.put(key, out)
        return out
