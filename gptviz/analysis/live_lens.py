"""The logit lens of a live session at the selected query, with display strings.

The same numbers as :func:`~gptviz.analysis.lens.logit_lens` under the session's ablation,
from one single-token pass over a copy of the session's KV cache up to the query
(:meth:`~gptviz.engine.Session.kv_cache_snapshot`) instead of the whole prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gptviz.analysis.lens import LensResult, layer_names, logit_lens, with_mid_points
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.query_run import blocks, capture_inputs

__all__ = ["LensSettings", "LensView", "LogitLensAtQuery", "lens_from_cache"]


@dataclass(frozen=True)
class LensSettings:
    """``k``: how many top tokens per layer; ``mid``: also the points between attention and
    feed-forward (``resid_mid``)."""

    k: int = 5
    mid: bool = False


@dataclass
class LensView:
    """The logit lens at one query, with display strings (see
    :class:`gptviz.analysis.lens.LensResult`)."""

    position: int                  # global position of the query
    token: str                     # its display string
    layers: list[str]              # n_layer + 1 names (2 n_layer + 1 with mid points)
    top_ids: np.ndarray            # int64 [L+1, k]
    top_probs: np.ndarray          # float32 [L+1, k]
    top_tokens: list[list[str]]
    target: int | None             # the actually-next token id, when known
    target_token: str | None
    target_probs: np.ndarray | None  # float32 [L+1]
    target_ranks: np.ndarray | None  # int64 [L+1], 0 = top
    n_ablated: int = 0


def lens_from_cache(s: Any, wids: np.ndarray, q_rel: int, k: int, mid: bool = False
                    ) -> LensResult | None:
    """The logit lens at window position ``q_rel`` from one single-token forward pass over a
    copy of the session's KV cache up to that position (the keys/values of the earlier
    positions, under the session's ablation), instead of running the whole prefix: the cost
    of one step. ``None`` when the session cannot give the cache for that position."""
    from gptviz.analysis import lens  # looked up at call time (tests replace the read-out)

    T = int(wids.shape[0])
    target = int(wids[q_rel + 1]) if q_rel + 1 < T else None
    with torch.inference_mode():
        try:
            cache = s.kv_cache_snapshot(q_rel)  # positions 0 .. q_rel - 1, room for q_rel
        except ValueError:
            return None
        idx = torch.tensor([[int(wids[q_rel])]], dtype=torch.long, device=cache.k.device)
        attn = [b.attn for b in blocks(s.model)] if mid else []
        with capture_inputs(attn, outputs=True) as got:
            out = s.model(idx, cache, return_resid=True, ablation=s.device_ablation,
                          last_only=True)
        vectors = [r[0, -1] for r in out.residuals]  # L+1 of [C]
        resid = (with_mid_points(s.model, vectors, [g[-1][0, -1] for g in got]) if mid
                 else torch.stack(vectors, dim=0))  # [points, C]
        top_i, top_p, t_probs, t_ranks = lens.lens_readout(s.model, resid, k=k, target=target)
    return LensResult(position=q_rel, token=int(wids[q_rel]),
                      layers=layer_names(s.config.n_layer, mid), top_ids=top_i,
                      top_probs=top_p, target=target, target_probs=t_probs,
                      target_ranks=t_ranks)


class LogitLensAtQuery(LiveAnalysis):
    """``"lens"``: a :class:`LensView` at the selected query."""

    name = "lens"
    settings_type = LensSettings

    def reset(self) -> None:
        self._views = LRUCache(4)

    def compute(self, inputs: AnalysisInputs, settings: LensSettings) -> LensView:
        s, wids, q_rel = inputs.session, inputs.ids, inputs.query
        k = max(1, min(int(settings.k), s.config.vocab_size))
        mid = bool(settings.mid)
        key = (inputs.text_key, q_rel, k, inputs.ablation.key, mid)
        lv = self._views.get(key)
        if lv is None:
            r = lens_from_cache(s, wids, q_rel, k, mid)
            if r is None:  # no usable cache: run the prefix (one forward pass)
                r = logit_lens(s.model, wids, position=q_rel, k=k, ablation=s.device_ablation,
                               mid=mid)
            lv = LensView(
                position=inputs.window_start + q_rel, token=s.display(int(wids[q_rel])),
                layers=list(r.layers), top_ids=r.top_ids,
                top_probs=np.asarray(r.top_probs, np.float32),
                top_tokens=[[s.display(int(i)) for i in row] for row in r.top_ids],
                target=r.target, target_token=None if r.target is None else s.display(r.target),
                target_probs=None if r.target_probs is None else
                np.asarray(r.target_probs, np.float32),
                target_ranks=r.target_ranks, n_ablated=len(inputs.ablation.heads))
            self._views.put(key, lv)
        return lv
