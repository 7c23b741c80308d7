"""Attention rollout (Abnar & Zuidema, 2020) of a live session's window.

Heads are averaged per layer without the ablated ones (an ablated head moves nothing between
positions). The whole ``[T, T]`` map is computed only when asked for (``map``), and grows by
one row per generated token (rollout is causal: appending a token changes no earlier row);
otherwise only the query's row. Both read the session's attention a layer at a time
(:meth:`~gptviz.engine.session.Session.packed_attention`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.maps import masked_map
from gptviz.analysis.rollout import attention_rollout, rollout_row

__all__ = ["RolloutSettings", "RolloutView", "WindowRollout"]


@dataclass(frozen=True)
class RolloutSettings:
    """``map``: the whole map (else the query's row only); ``strip``: the row is wanted for
    shading the token strip (a display option, kept so that switching it asks again);
    ``residual``: model the residual connection (``0.5 A + 0.5 I``) as in the paper."""

    map: bool = False
    strip: bool = False
    residual: bool = True


@dataclass
class RolloutView:
    """The rollout of the window: the query's row, and the whole map when asked for."""

    row: np.ndarray                # float32 [T] (0 after the query)
    map: np.ndarray | None         # float32 [T, T], NaN above the diagonal; read-only
    query: int                     # global position of the row's query
    residual: bool


class WindowRollout(LiveAnalysis):
    """``"rollout"``: a :class:`RolloutView`."""

    name = "rollout"
    settings_type = RolloutSettings

    def reset(self) -> None:
        self._maps = LRUCache(2)
        self._rows = LRUCache(8)
        self._prev: tuple | None = None  # the last map, to extend by one row

    def compute(self, inputs: AnalysisInputs, settings: RolloutSettings) -> RolloutView:
        residual = bool(settings.residual)
        tk, q_rel = inputs.text_key, inputs.query
        key = (tk, inputs.ablation.key, residual)
        m = None
        if settings.map:
            m = self._map(inputs, key, residual)
            row = np.nan_to_num(m[q_rel])
        else:
            row = self._rows.get(key + (q_rel,))
            if row is None:
                row = rollout_row(inputs.session.packed_attention(), q_rel, residual=residual,
                                  head_mask=inputs.ablation.keep)
                row = np.asarray(row, np.float32)
                self._rows.put(key + (q_rel,), row)
        return RolloutView(row=np.asarray(row, np.float32), map=m,
                           query=inputs.window_start + q_rel, residual=residual)

    def _map(self, inputs: AnalysisInputs, key: tuple, residual: bool) -> np.ndarray:
        m = self._maps.get(key)
        if m is not None:
            return m
        s, tk, abl_key, mask = inputs.session, inputs.text_key, inputs.ablation.key, \
            inputs.ablation.keep
        att = s.packed_attention()  # [L, H, T, T], read a layer at a time
        T = att.shape[-1]
        prev = self._prev
        ws = tk[0]
        if (prev is not None and prev[0] == (ws, T - 1, abl_key, residual)
                and prev[1] == hash(np.asarray(s.window_tokens[:-1], np.int64).tobytes())):
            # causal: appending a token adds a row and changes none of the others
            m = np.full((T, T), np.nan, np.float32)
            m[:T - 1, :T - 1] = prev[2]
            m[T - 1] = rollout_row(att, T - 1, residual=residual, head_mask=mask)
        else:
            full = attention_rollout(att, residual=residual, head_mask=mask)
            m = masked_map(full.astype(np.float32))
        m.flags.writeable = False
        self._maps.put(key, m)
        self._prev = ((ws, T, abl_key, residual), tk[2], m)
        return m
