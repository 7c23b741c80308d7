"""The input of the stack at the selected query: h_0 = W_e[u] + W_p[t].

For the query's token u at window position t: the norms of the token part W_e[u] and of the
position part W_p[t] and their cosine, the tokens whose embeddings are nearest to W_e[u] by
cosine, and the cosine similarity of every pair of learned positions (cos(W_p[i], W_p[j])).
A family with rotary positions (or none) adds nothing to h_0 for the position: the result
says so (``positions``) and has no position part.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache

__all__ = ["EmbeddingSettings", "EmbeddingView", "EmbeddingAtQuery", "position_similarity",
           "nearest_tokens"]

#: Positions of the similarity map at most (a longer W_p is shown by its first ones).
MAX_MAP_POSITIONS = 1024


@dataclass(frozen=True)
class EmbeddingSettings:
    """``k``: how many nearest tokens."""

    k: int = 8


@dataclass
class EmbeddingView:
    """The embedding of the query token (see the module docstring).

    ``token_part``, ``position_part`` and ``h0`` are ``(C,)`` float32 (``position_part`` is
    ``None`` without learned positions); ``positions`` is the family's
    ``positional_embedding_type``; ``position_map`` ``(P, P)`` float32 cos(W_p[i], W_p[j])
    for the first P positions (``None`` without learned positions).
    """

    query: int                  # global position
    position: int               # window position t (the row of W_p)
    token_id: int
    token: str
    positions: str
    token_part: np.ndarray
    position_part: np.ndarray | None
    h0: np.ndarray
    token_norm: float
    position_norm: float | None
    h0_norm: float
    cosine: float | None        # cos(W_e[u], W_p[t])
    near_ids: np.ndarray        # int64 [k], nearest first, u itself excluded
    near_tokens: list[str]
    near_cos: np.ndarray        # float32 [k]
    position_map: np.ndarray | None


def nearest_tokens(we: torch.Tensor, u: int, k: int, n: int | None = None
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Ids ``[k]`` of the rows of ``we`` ``(V, C)`` (the first ``n`` only) nearest to row
    ``u`` by cosine, ``u`` excluded, and their cosines ``[k]`` float32."""
    w = we[:n] if n is not None else we
    w = w.float()
    cos = torch.nn.functional.cosine_similarity(w, we[u].float().unsqueeze(0), dim=-1)  # (V,)
    if u < cos.shape[0]:
        cos[u] = float("-inf")
    k = max(0, min(k, cos.shape[0] - 1))
    vals, ids = torch.topk(cos, k)
    return ids.cpu().numpy().astype(np.int64), vals.cpu().numpy().astype(np.float32)


def position_similarity(wp: torch.Tensor, n: int | None = None) -> np.ndarray:
    """``(P, P)`` float32 cos(W_p[i], W_p[j]) of the first ``n`` rows of ``wp`` ``(P, C)``."""
    w = wp[:n].float()
    unit = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).cpu().numpy().astype(np.float32)


class EmbeddingAtQuery(LiveAnalysis):
    """``"embedding"``: an :class:`EmbeddingView` of the selected query's token."""

    name = "embedding"
    settings_type = EmbeddingSettings

    def reset(self) -> None:
        self._views = LRUCache(8)
        self._map: np.ndarray | None = None  # once per model

    @torch.inference_mode()
    def compute(self, inputs: AnalysisInputs, settings: EmbeddingSettings) -> EmbeddingView:
        s = inputs.session
        t = inputs.query
        u = int(inputs.ids[t])
        k = max(1, min(int(settings.k), 50))
        key = (u, t, k, inputs.window_start)
        view = self._views.get(key)
        if view is not None:
            return view
        model = s.model
        we = model.wte.weight
        tok = we[u].float()
        wpe = model.wpe
        pos = wpe.weight[t].float() if wpe is not None else None
        h0 = tok + pos if pos is not None else tok.clone()
        if pos is not None and self._map is None:
            self._map = position_similarity(wpe.weight, MAX_MAP_POSITIONS)
        ids, cos = nearest_tokens(we, u, k, s.n_choosable)
        view = EmbeddingView(
            query=inputs.window_start + t, position=t, token_id=u, token=s.display(u),
            positions=s.config.positional_embedding_type,
            token_part=tok.cpu().numpy(),
            position_part=None if pos is None else pos.cpu().numpy(),
            h0=h0.cpu().numpy(), token_norm=float(tok.norm()),
            position_norm=None if pos is None else float(pos.norm()),
            h0_norm=float(h0.norm()),
            cosine=None if pos is None else float(
                torch.nn.functional.cosine_similarity(tok, pos, dim=0)),
            near_ids=ids, near_tokens=[s.display(int(i)) for i in ids], near_cos=cos,
            position_map=self._map if pos is not None else None)
        self._views.put(key, view)
        return view
