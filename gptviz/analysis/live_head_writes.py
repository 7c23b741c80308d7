"""What every head writes at the selected query of a live session, with display strings.

:func:`~gptviz.analysis.head_writes.head_writes_from` of the heads' outputs and the final
residual stream at the query, from one single-token pass over a copy of the session's KV cache
(under its ablation; :func:`~gptviz.analysis.query_run.run_at_query`). The tracked target is
the token after the query, or at the newest token the model's most probable next one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gptviz.analysis.head_writes import HeadWrites, check_direct_path, head_writes_from
from gptviz.analysis.live import AnalysisInputs, LiveAnalysis, LRUCache
from gptviz.analysis.query_run import run_at_query

__all__ = ["HeadWritesSettings", "HeadWritesView", "HeadWritesAtQuery"]


@dataclass(frozen=True)
class HeadWritesSettings:
    """``k``: promoted and suppressed tokens per head."""

    k: int = 8


@dataclass
class HeadWritesView:
    """:class:`~gptviz.analysis.head_writes.HeadWrites` at the query, with strings."""

    position: int                      # global position of the query
    token: str
    writes: HeadWrites                 # window-relative position inside
    promoted_tokens: list[list[list[str]]]    # [L][H][k]
    suppressed_tokens: list[list[list[str]]]  # [L][H][k]
    target_token: str | None           # the next token, or the model's top prediction
    target_predicted: bool = False     # the target is the prediction (no next token yet)
    ablated: tuple[tuple[int, int], ...] = ()

    def summary(self, layer: int, head: int, n: int = 3) -> str:
        """One line: the head's top ``n`` promoted and suppressed tokens."""
        up = " ".join(repr(t) for t in self.promoted_tokens[layer][head][:n])
        dn = " ".join(repr(t) for t in self.suppressed_tokens[layer][head][:n])
        return f"writes + {up}  − {dn}"


class HeadWritesAtQuery(LiveAnalysis):
    """``"head_writes"``: a :class:`HeadWritesView` at the selected query."""

    name = "head_writes"
    settings_type = HeadWritesSettings

    def reset(self) -> None:
        self._views = LRUCache(4)

    def compute(self, inputs: AnalysisInputs, settings: HeadWritesSettings) -> HeadWritesView:
        s, wids, q = inputs.session, inputs.ids, inputs.query
        check_direct_path(s.model)
        k = max(1, min(int(settings.k), s.config.vocab_size))
        key = (inputs.text_key, q, k, inputs.ablation.key)
        view = self._views.get(key)
        if view is None:
            out = run_at_query(s, wids, q, return_head_out=True, return_resid=True)
            assert out.head_outputs is not None and out.residuals is not None
            with torch.inference_mode():
                z = torch.stack([zl[0, :, -1] for zl in out.head_outputs])  # (L, nh, hd)
                x_final = out.residuals[-1][0, -1]  # (C,)
                predicted = q + 1 >= wids.shape[0]  # the newest token: no next one yet
                target = (int(out.logits[0, -1].argmax()) if predicted
                          else int(wids[q + 1]))
                hw = head_writes_from(s.model, z, x_final, k=k, position=q,
                                      token=int(wids[q]), target=target)

            def strings(a: np.ndarray) -> list[list[list[str]]]:
                return [[[s.display(int(i)) for i in row] for row in layer] for layer in a]

            view = HeadWritesView(
                position=inputs.window_start + q, token=s.display(int(wids[q])), writes=hw,
                promoted_tokens=strings(hw.promoted_ids),
                suppressed_tokens=strings(hw.suppressed_ids),
                target_token=s.display(target), target_predicted=predicted,
                ablated=tuple(inputs.ablation.heads))
            self._views.put(key, view)
        return view
