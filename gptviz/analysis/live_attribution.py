"""Direct logit attribution of a live session's selected token, per step.

The same numbers as :func:`~gptviz.analysis.attribution.direct_logit_attribution` under the
session's ablation, without a forward pass: the window already holds everything, the
residual stream entering every block at every position, every layer's attention rows and the
values in the KV cache. A head's output at the query is its attention row times its values
(z = A[q, :q+1] V[:q+1]; a removed head's is its ``fill``), and the pieces follow from
:func:`~gptviz.analysis.attribution.attribute_parts`: a few matrix-vector products per
layer, far less than a step. Where the window's buffers cannot be read, the query is run
once over a copy of the KV cache (the cost of a step).

What is attributed is the selected token (the query, by default the newest one): its logit
at the position before it, where it was chosen, the distribution the next-token panel shows
after a step. A setting can name another target token, and ``vs`` makes it a difference
target - other (another candidate of that distribution). At the window's first token nothing
came before it: the prediction made there is attributed, for the token after it (or, when
there is none yet, the model's most likely next token).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gptviz.analysis.attribution import Attribution, attribute_parts, not_additive_reason
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache

__all__ = ["AttributionSettings", "AttributionView", "LogitAttributionAtQuery",
           "head_outputs", "session_parts"]


@dataclass(frozen=True)
class AttributionSettings:
    """``target``: token id to attribute (``None``: the chosen / most likely next token);
    ``vs``: the other token of a difference (``None``: the plain logit)."""

    target: int | None = None
    vs: int | None = None


@dataclass
class AttributionView:
    """One attribution with display strings; ``reason`` instead of numbers when the model's
    pieces cannot add up (``attribution`` is then ``None``)."""

    position: int                    # global position whose logits are attributed
    token: str                       # its display string
    target_id: int
    target_token: str
    target_kind: str                 # "chosen", "likely" (most probable next) or "picked"
    vs_id: int | None
    vs_token: str | None
    attribution: Attribution | None
    reason: str | None = None
    n_ablated: int = 0


def _window_buffers(s: Any) -> Any:
    """The session's context window (its residual-stream and KV buffers), or ``None``."""
    w = getattr(s, "_window", None)
    return w if w is not None and hasattr(w, "resid") and hasattr(w, "cache") else None


def session_parts(s: Any, q: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(resid, z)`` at window position ``q`` of session ``s``: the residual stream
    ``(L + 1, C)`` and the head outputs ``(L, H, hd)`` under the session's ablation."""
    cfg = s.config
    w = _window_buffers(s)
    abl = s.device_ablation
    if w is None:  # run the query once over a copy of the cache
        cache = s.kv_cache_snapshot(q)
        idx = torch.tensor([[int(s.window_tokens[q])]], dtype=torch.long, device=cache.k.device)
        out = s.model(idx, cache, return_resid=True, return_head_out=True, ablation=abl,
                      last_only=True)
        return (torch.stack([r[0, -1] for r in out.residuals]),
                torch.stack([h[0, :, -1] for h in out.head_outputs]))
    att = s.attention_row(q)  # (L, H, S): one row, not the whole window
    return w.resid[:, q], head_outputs(cfg, att, w.cache.v[:, 0, :, :q + 1], abl)


def head_outputs(cfg: Any, att: np.ndarray, v: torch.Tensor, abl: Any = None) -> torch.Tensor:
    """Every head's output ``(L, H, hd)`` at one query from its attention rows ``att``
    ``(L, H, S)`` and the cached values ``v`` ``(L, nkv, S, hd)``, then ``abl`` (an
    :class:`~gptviz.model.gpt.Ablation` of device tensors, or ``None``) as the model applies
    it: z * keep + (1 - keep) * fill."""
    if cfg.kv_heads != cfg.n_head:
        v = v.repeat_interleave(cfg.n_head // cfg.kv_heads, dim=1)  # (L, H, S, hd)
    a = torch.from_numpy(np.ascontiguousarray(att)).to(v.device, v.dtype)  # (L, H, S)
    z = torch.einsum("lhs,lhsd->lhd", a, v)  # (L, H, hd)
    if abl is not None:
        keep = abl.keep.to(z.dtype).unsqueeze(-1)  # (L, H, 1)
        z = z * keep
        if abl.fill is not None:
            z = z + (1 - keep) * abl.fill.to(z.dtype)
    return z


class LogitAttributionAtQuery(LiveAnalysis):
    """``"attribution"``: an :class:`AttributionView` of the selected token."""

    name = "attribution"
    settings_type = AttributionSettings

    def reset(self) -> None:
        self._views = LRUCache(4)

    @staticmethod
    def _target(inputs: AnalysisInputs, settings: AttributionSettings
                ) -> tuple[int, int, str]:
        """``(p, target, kind)``: the window position whose logits are attributed, the token
        and how it was found ("chosen", "likely" or "picked")."""
        q, T = inputs.query, inputs.T
        p = q - 1 if q >= 1 else 0
        if settings.target is not None:
            return p, int(settings.target), "picked"
        if p + 1 < T:
            return p, int(inputs.ids[p + 1]), "chosen"
        ids, _probs, _h = inputs.session.next_distribution()  # the cursor's, already computed
        return p, int(ids[0]), "likely"

    def compute(self, inputs: AnalysisInputs, settings: AttributionSettings) -> AttributionView:
        s, q = inputs.session, inputs.query
        V = s.config.vocab_size
        for name in ("target", "vs"):
            t = getattr(settings, name)
            if t is not None and not 0 <= int(t) < V:
                raise ValueError(f"{name} token id {t} is outside the vocabulary (0..{V - 1})")
        q, target, kind = self._target(inputs, settings)
        vs = settings.vs
        key = (inputs.text_key, q, target, vs, inputs.ablation.key)
        view = self._views.get(key)
        if view is not None:
            return view
        reason = not_additive_reason(s.config)
        attr = None
        if reason is None:
            with torch.inference_mode():
                resid, z = session_parts(s, q)
                attr = attribute_parts(s.model, resid, z, target, vs,
                                       position=inputs.window_start + q)
        view = AttributionView(
            position=inputs.window_start + q, token=s.display(int(inputs.ids[q])),
            target_id=target, target_token=s.display(target), target_kind=kind,
            vs_id=vs, vs_token=None if vs is None else s.display(int(vs)),
            attribution=attr, reason=reason, n_ablated=len(inputs.ablation.heads))
        self._views.put(key, view)
        return view
