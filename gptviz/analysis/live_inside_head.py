"""Inside one attention head, at the selected layer, head and query of a live session.

For query i: its query vector q_i, every key's raw score s_ij = q_i·k_j · scale (the future
keys j > i shown as -inf: masked before the softmax), the softmax weights α_ij, the values
v_j and the head's output o_i = Σ_j α_ij v_j, plus the per-dimension products q_d·k_d of
every key (bertviz's neuron view). All from the residual stream of the session's window
(:class:`~gptviz.analysis.scores.WindowStream`) with the model's own pieces
(:mod:`gptviz.analysis.scores`); with rotary positions q and k are the rotated vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache, NoSettings
from gptviz.analysis.scores import (
    WindowStream,
    head_projections,
    kv_head_of,
    masked_cells,
    scale_text,
    score_formula,
)

__all__ = ["InsideHead", "InsideHeadAtQuery"]


@dataclass
class InsideHead:
    """One head at one query (window positions 0 .. T-1; ``query`` is global).

    Attributes
    ----------
    layer, head, kv_head
        The head, and the key/value head it reads (grouped-query attention).
    query, q_rel, window_start
        The query's global and window position, and the window's start.
    tokens
        Display strings of the window's T tokens.
    q
        ``(hd,)`` float32 query vector (rotated with rotary positions).
    keys, values
        ``(T, hd)`` float32 key (rotated likewise) and value vectors of every position.
    scores
        ``(T,)`` float32 q·k times the scale, for every key, the future included.
    masked
        ``(T,)`` bool: keys set to -inf before the softmax.
    weights
        ``(T,)`` float32 softmax over the unmasked scores (0 where masked).
    output
        ``(hd,)`` float32 Σ_j α_j v_j.
    products
        ``(T, hd)`` float32 q_d · k_jd: row j sums to the unscaled score of key j.
    scale, scale_text, formula
        The factor on q·k, as written, and the family's score formula.
    rotary, rotary_dim, grouped, average
        The family uses rotary positions (over ``rotary_dim`` of hd dimensions); query heads
        share key/value heads; the view shows the layer's average (this is ``head`` then).
    """

    layer: int
    head: int
    kv_head: int
    query: int
    q_rel: int
    window_start: int
    tokens: list[str]
    q: np.ndarray
    keys: np.ndarray
    values: np.ndarray
    scores: np.ndarray
    masked: np.ndarray
    weights: np.ndarray
    output: np.ndarray
    products: np.ndarray
    scale: float
    scale_text: str
    formula: str
    rotary: bool = False
    rotary_dim: int = 0
    grouped: bool = False
    average: bool = False

    @property
    def head_dim(self) -> int:
        return int(self.q.shape[0])

    def top_products(self, key: int, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Dimensions of ``products[key]`` by absolute size, largest first, and the
        products (``n`` of them; all by default)."""
        row = self.products[key]
        order = np.argsort(-np.abs(row), kind="stable")[:n]
        return order, row[order]


class InsideHeadAtQuery(LiveAnalysis):
    """``"inside_head"``: an :class:`InsideHead` at the selected layer, head and query."""

    name = "inside_head"
    settings_type = NoSettings

    def reset(self) -> None:
        self.stream = WindowStream.shared
        self._views = LRUCache(8)

    def compute(self, inputs: AnalysisInputs, settings: NoSettings) -> InsideHead:
        s = inputs.session
        cfg = s.config
        layer = min(max(0, inputs.layer), cfg.n_layer - 1)
        head = min(max(0, inputs.head), cfg.n_head - 1)
        key = (inputs.text_key, inputs.ablation.key, layer, head, inputs.query, inputs.average)
        view = self._views.get(key)
        if view is None:
            view = self._compute(inputs, layer, head)
            self._views.put(key, view)
        return view

    @torch.inference_mode()
    def _compute(self, inputs: AnalysisInputs, layer: int, head: int) -> InsideHead:
        s = inputs.session
        model, cfg = s.model, s.config
        T, i = inputs.T, inputs.query
        resid = self.stream(s).get(s, inputs.ids)  # (L + 1, T, C)
        p = head_projections(model, layer, resid[layer])
        g = kv_head_of(model, head)
        q = p.q[head, i].float()  # (hd,)
        k = p.k[g].float()  # (T, hd)
        v = p.v[g].float()  # (T, hd)
        products = q.unsqueeze(0) * k  # (T, hd)
        scores = products.sum(-1) * cfg.scale  # (T,)
        mask = masked_cells(model, layer, T)[i]  # (T,) keys after the query
        weights = torch.softmax(scores.masked_fill(mask, float("-inf")), dim=-1)  # (T,)
        output = weights @ v  # (hd,)
        display = s.display_tokens()[inputs.window_start:]
        return InsideHead(
            layer=layer, head=head, kv_head=g, query=inputs.window_start + i, q_rel=i,
            window_start=inputs.window_start, tokens=list(display),
            q=q.cpu().numpy(), keys=k.cpu().numpy(), values=v.cpu().numpy(),
            scores=scores.cpu().numpy(), masked=mask.cpu().numpy(),
            weights=weights.cpu().numpy(), output=output.cpu().numpy(),
            products=products.cpu().numpy(), scale=float(cfg.scale),
            scale_text=scale_text(model), formula=score_formula(model),
            rotary=cfg.positional_embedding_type == "rotary", rotary_dim=cfg.rotary_width,
            grouped=cfg.kv_heads != cfg.n_head, average=inputs.average)
