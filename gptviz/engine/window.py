"""The model's window over a session's tokens, and the buffers of what the model computed there.

Context window
--------------
The model sees at most ``B = block_size`` tokens. The window over the ``n`` tokens of the
session starts at ``window_start(n) = 0 if n <= B else ceil((n - B) / S) * S`` with the
stride ``S = B // 2``: a pure function of ``n`` (:func:`window_start_for`). When a step
crosses a stride boundary the window slides: the cache, the attention buffer and the next
distribution are recomputed for the new window with one full forward, the step reports
``slid=True`` and its ``window_start``, and positions (learned position embeddings,
attention indices) restart at 0 at ``window_start``. A prompt longer than ``B`` simply starts
with a slid window (the whole prompt is kept in
:attr:`~gptviz.engine.session.Session.tokens`). Undo/redo across a slide recompute the window
of the target length (values then agree with the incremental ones to float rounding, ~1e-7).

Buffers
-------
Because the model is causal, the attention rows of earlier positions never change when tokens
are appended. :class:`ContextWindow` keeps one lower-triangular buffer ``(L, H, cap, cap)``
that gets one row per step (``cap`` doubles up to ``block_size``), so the whole
``(L, H, T, T)`` attention of any moment is available without recomputation. Beside it: the
KV cache, the final activation and the residual stream entering every block, per window
position, and the next-token logits at the cursor. Rows past the cursor stay valid for the
undone steps (``valid``), which is what makes a redo free.
"""

from __future__ import annotations

import numpy as np
import torch

from gptviz.engine.candidates import NextTokenCandidates, next_token_candidates
from gptviz.model.gpt import GPT, Ablation

__all__ = ["ContextWindow", "window_start_for"]


def window_start_for(n: int, block_size: int) -> int:
    """First token of the model's window when the session holds ``n`` tokens.

    ``0`` while ``n <= block_size``, else ``ceil((n - B) / S) * S`` with ``S = B // 2``
    (at least 1), so the window always holds between ``B - S + 1`` and ``B`` tokens.
    """
    if n <= block_size:
        return 0
    stride = max(1, block_size // 2)
    return -(-(n - block_size) // stride) * stride


class ContextWindow:
    """The buffers of one session's window, and the forwards that fill them.

    Every method that runs the model takes the session's tokens (all of them, the window is
    cut from them) and the ablation to run with (device tensors, ``None``: the normal model).

    Attributes
    ----------
    start
        Global position of the window's first token.
    length
        Window positions up to the cursor (``T``); the KV cache's length.
    valid
        Window positions whose rows (cache, attention, hidden, residuals) are valid for the
        tokens up to the cursor followed by the undone steps (after a reset: by the steps it
        put aside); ``>= length``.
    cache
        The :class:`~gptviz.model.gpt.KVCache` (batch 1, ``block_size`` positions).
    attn
        ``(L, H, cap, cap)`` float32 numpy: row ``t`` is the attention of window position
        ``t``; ``cap`` grows with the window.
    hidden
        ``(block_size, C)``: the final activation of every window position.
    resid
        ``(L + 1, block_size, C)``: the residual stream entering every block (and after the
        last), so that a change in layer ``l`` re-runs only the blocks from ``l`` on.
    """

    def __init__(self, model: GPT) -> None:
        cfg = model.config
        param = model.wte.weight
        self.model = model
        self.block_size = cfg.block_size
        self.device = param.device
        with torch.inference_mode():
            self.cache = model.new_cache()
            self.hidden = torch.zeros(cfg.block_size, cfg.n_embd, device=param.device,
                                      dtype=param.dtype)  # (B, C)
            self.resid = torch.zeros(cfg.n_layer + 1, cfg.block_size, cfg.n_embd,
                                     device=param.device, dtype=param.dtype)  # (L+1, B, C)
        self.attn = np.zeros((cfg.n_layer, cfg.n_head, 0, 0), dtype=np.float32)  # (L, H, 0, 0)
        self.start = 0
        self.length = 0
        self.valid = 0
        self._next_logits: torch.Tensor | None = None  # (V,) at the cursor, None = stale
        self._next: NextTokenCandidates | None = None

    # ------------------------------------------------------------------ moving
    def holds(self, n: int) -> bool:
        """Whether the buffers already hold the window of the first ``n`` tokens (same window
        start, rows valid): moving there needs no forward."""
        start = window_start_for(n, self.block_size)
        return start == self.start and n - start <= self.valid

    def move_to(self, n: int) -> None:
        """Put the cursor after the first ``n`` tokens; only valid where :meth:`holds`."""
        self.length = n - self.start
        self.cache.length = self.length
        self.stale_next()

    def sync(self, tokens: list[int], ablation: Ablation | None) -> None:
        """Bring the buffers to ``tokens`` after undo or a redo: move the cursor where the
        rows are valid, else recompute the window."""
        if self.holds(len(tokens)):
            self.move_to(len(tokens))
        else:
            self.refill(tokens, ablation)

    def forget_rows_past_cursor(self) -> None:
        """The undone steps are gone: rows past the cursor no longer stand for anything."""
        self.valid = min(self.valid, self.length)

    # ------------------------------------------------------------------ forwards
    @torch.inference_mode()
    def refill(self, tokens: list[int], ablation: Ablation | None) -> None:
        """One full forward over the window of ``tokens``: cache, attention, hidden, residuals."""
        n = len(tokens)
        start = window_start_for(n, self.block_size)
        window = tokens[start:]
        T = len(window)
        idx = torch.tensor([window], dtype=torch.long, device=self.device)  # (1, T)
        self.cache.length = 0
        out = self.model(idx, self.cache, return_attn=True, return_resid=True,
                         ablation=ablation, last_only=True)
        assert out.residuals is not None and out.attentions is not None
        self.resid[:, :T] = torch.stack(out.residuals)[:, 0]  # (L+1, T, C)
        # Room to grow a little before the first doubling, so steps rarely reallocate.
        self._ensure_capacity(min(self.block_size, T + 16))
        self._store_attention(0, out.attentions, T)
        self.hidden[:T] = out.hidden[0]
        self.start = start
        self.length = T
        self.valid = T
        self.stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    @torch.inference_mode()
    def advance(self, tokens: list[int], ablation: Ablation | None) -> tuple[np.ndarray, bool]:
        """Feed the newest of ``tokens`` (one more than the buffers hold) into the model.

        Returns its attention row ``(L, H, S)`` (a copy) and whether the window slid: a slide
        recomputes the new window, else one KV-cache step.
        """
        n = len(tokens) - 1  # index of the new token
        if window_start_for(n + 1, self.block_size) != self.start:
            self.refill(tokens, ablation)
            T = n + 1 - self.start
            return self.attn[:, :, T - 1, :T].copy(), True  # (L, H, T)
        pos = n - self.start
        T = pos + 1
        self.cache.length = pos
        self._ensure_capacity(T)
        on_cpu = self.device.type == "cpu"
        # On the CPU the step writes its attention rows straight into the history buffer.
        rows = (torch.from_numpy(self.attn)[:, :, pos] if on_cpu  # (L, H, cap) view
                else torch.empty(self.attn.shape[:2] + (T,), device=self.device))
        logits, hidden = self.model.decode_step(tokens[-1], self.cache, attn_out=rows,
                                                resid_out=self.resid[:, pos],
                                                ablation=ablation)
        if not on_cpu:
            self.attn[:, :, pos, :T] = rows.cpu().numpy()
        row = self.attn[:, :, pos, :T].copy()  # (L, H, T)
        self.hidden[pos] = hidden
        self.length = T
        self.valid = T
        self.stale_next()
        self._next_logits = logits  # (V,)
        return row, False

    @torch.inference_mode()
    def rerun_from(self, layer: int, ablation: Ablation | None) -> None:
        """Re-run blocks ``layer ..`` over the window from the stored residual stream; the
        blocks below, their keys and values stay as they are. The caller makes sure the
        blocks below run the same way under ``ablation`` as they did."""
        T = self.length
        x = self.resid[layer, :T].unsqueeze(0)  # (1, T, C) entering block `layer`
        out = self.model.forward_from(x, layer, self.cache, return_attn=True,
                                      return_resid=True, ablation=ablation, last_only=True)
        assert out.residuals is not None and out.attentions is not None
        for i, r in enumerate(out.residuals[1:], start=layer + 1):
            self.resid[i, :T] = r[0]
        self._store_attention(layer, out.attentions, T)
        self.hidden[:T] = out.hidden[0]
        self.valid = T
        self.stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    # ------------------------------------------------------------------ next token
    def stale_next(self) -> None:
        """Forget the next-token distribution (the cursor moved or the numbers changed)."""
        self._next_logits = None
        self._next = None

    @torch.inference_mode()
    def next_logits(self) -> torch.Tensor:
        """``(V,)`` next-token logits at the cursor (from the stored final activation when
        the last forward did not leave them)."""
        if self._next_logits is None:
            h = self.hidden[self.length - 1].view(1, 1, -1)  # (1, 1, C)
            self._next_logits = self.model.lm_head(h)[0, 0]  # (V,)
        return self._next_logits

    @torch.inference_mode()
    def next_candidates(self, k: int) -> NextTokenCandidates:
        """The unfiltered next-token distribution at the cursor and its top ``k`` (computed
        once per cursor position)."""
        if self._next is None:
            self._next = next_token_candidates(self.next_logits(), k)
        return self._next

    # ------------------------------------------------------------------ buffers
    def _ensure_capacity(self, T: int) -> None:
        cap = self.attn.shape[-1]
        if cap >= T:
            return
        new = min(self.block_size, max(64, 2 * cap, 1 << (T - 1).bit_length()))
        L, H = self.attn.shape[:2]
        buf = np.zeros((L, H, new, new), dtype=np.float32)  # (L, H, cap, cap)
        buf[:, :, :cap, :cap] = self.attn
        self.attn = buf

    def _store_attention(self, first: int, attentions: list[torch.Tensor], T: int) -> None:
        """Copy layers ``first ..`` of a forward's attention, each ``(1, H, T, T)``, into the
        history buffer: one copy per layer, no stacked intermediate (at 12 x 12 heads and
        512 tokens the stack alone was 150 MB)."""
        buf = torch.from_numpy(self.attn)  # (L, H, cap, cap) view of the numpy buffer
        for i, att in enumerate(attentions, start=first):
            buf[i, :, :T, :T] = att[0]  # (H, T, T), to float32 on the CPU
