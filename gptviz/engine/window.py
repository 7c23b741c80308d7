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
are appended. :class:`ContextWindow` keeps them all in an
:class:`~gptviz.engine.attention_store.AttentionHistory` (packed lower-triangular rows, float16
for big models, read back as float32) that gets one row per step, so the whole
``(L, H, T, T)`` attention of any moment is available without recomputation
(:meth:`ContextWindow.attention_maps`, :meth:`ContextWindow.attention_row`). Beside it: the KV
cache, the final activation and the residual stream entering every block, per window position,
and the next-token logits at the cursor. All of them have room for ``capacity`` positions,
which doubles as the window grows (up to ``block_size``: nothing is allocated for the positions
a text has not reached); each growth first checks that the new buffers fit in the memory
available (:mod:`gptviz.engine.memory`). Rows past the cursor stay valid for the undone steps
(``valid``), which is what makes a redo free. A long window is computed a block of queries at
a time (:func:`chunk_rows`), so that the forward's own ``(H, T, T)`` maps stay small.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from gptviz.engine.attention_store import AttentionHistory, history_dtype
from gptviz.engine.candidates import NextTokenCandidates, next_token_candidates
from gptviz.engine.interrupt import check_interrupt
from gptviz.engine.memory import NotEnoughMemory, available_bytes, format_bytes
from gptviz.model.gpt import GPT, Ablation, KVCache

__all__ = ["ContextWindow", "chunk_rows", "window_start_for"]

#: Bytes the attention maps of one forward (all layers, returned together) may take.
FORWARD_BUDGET = 256 * 2 ** 20
#: Positions the buffers have room for at first.
FIRST_CAPACITY = 64
#: numpy dtype of the torch dtypes a history can be stored in.
_NUMPY = {torch.float32: np.dtype(np.float32), torch.float16: np.dtype(np.float16)}


def window_start_for(n: int, block_size: int, stride: int | None = None) -> int:
    """First token of the model's window when the session holds ``n`` tokens.

    ``0`` while ``n <= block_size``, else ``ceil((n - B) / S) * S`` with the stride ``S``
    (default ``B // 2``; clipped to ``[1, B]``), so the window always holds between
    ``B - S + 1`` and ``B`` tokens. A smaller stride keeps more context after a slide and
    slides more often (each slide is one forward over the new window).
    """
    if n <= block_size:
        return 0
    stride = max(1, min(block_size, block_size // 2 if stride is None else int(stride)))
    return -(-(n - block_size) // stride) * stride


def chunk_rows(n_layer: int, n_head: int, T: int, budget: int = FORWARD_BUDGET) -> int:
    """Queries per forward over a window of ``T`` tokens, so that the ``(H, c, T)`` float32
    maps of all ``L`` layers stay within ``budget`` bytes (at least 16; ``T``: one forward)."""
    per_query = n_layer * n_head * T * 4
    return max(1, min(T, max(16, budget // max(1, per_query))))


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
    capacity
        Positions every buffer has room for (grows up to ``block_size``).
    ids, owners
        Per valid position: the token id the rows were computed for, and the step (the
        caller's token-path object) that put it there, ``None`` when unknown.
    ablation
        The ablation the valid rows were computed with.
    cache
        The :class:`~gptviz.model.gpt.KVCache` (batch 1, ``capacity`` positions).
    attn
        The :class:`~gptviz.engine.attention_store.AttentionHistory`: row ``t`` is the
        attention of window position ``t``.
    hidden
        ``(capacity, C)``: the final activation of every window position.
    resid
        ``(L + 1, capacity, C)``: the residual stream entering every block (and after the
        last), so that a change in layer ``l`` re-runs only the blocks from ``l`` on.
    """

    def __init__(self, model: GPT, attn_dtype: np.dtype | type | None = None) -> None:
        cfg = model.config
        param = model.wte.weight
        self.model = model
        self.block_size = cfg.block_size
        self.stride: int | None = None  # of the window's slides (None: block_size // 2)
        self.device = param.device
        self.capacity = 0
        self.cache = KVCache(cfg, batch=1, device=param.device, dtype=param.dtype,
                             capacity=min(cfg.block_size, FIRST_CAPACITY))
        self.hidden = torch.zeros(0, cfg.n_embd, device=param.device, dtype=param.dtype)
        self.resid = torch.zeros(cfg.n_layer + 1, 0, cfg.n_embd, device=param.device,
                                 dtype=param.dtype)
        dtype = history_dtype(cfg.n_layer, cfg.n_head, cfg.block_size) if attn_dtype is None \
            else attn_dtype
        self.attn = AttentionHistory(cfg.n_layer, cfg.n_head, dtype)
        self._grow(min(cfg.block_size, FIRST_CAPACITY))
        self.start = 0
        self.length = 0
        self.valid = 0
        self.ids: list[int] = []
        self.owners: list[Any] = []
        self.ablation: Ablation | None = None
        self._next_logits: torch.Tensor | None = None  # (V,) at the cursor, None = stale
        self._next: NextTokenCandidates | None = None
        self._rows: torch.Tensor | None = None  # (L, H, capacity): see _row_buffer

    # ------------------------------------------------------------------ moving
    def holds(self, n: int) -> bool:
        """Whether the buffers already hold the window of the first ``n`` tokens (same window
        start, rows valid): moving there needs no forward."""
        start = window_start_for(n, self.block_size, self.stride)
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
        """A full forward over the window of ``tokens`` (a block of queries at a time):
        cache, attention, hidden, residuals.

        Raises
        ------
        NotEnoughMemory
            The window's buffers would not fit (nothing changed).
        """
        n = len(tokens)
        start = window_start_for(n, self.block_size, self.stride)
        window = tokens[start:]
        T = len(window)
        # Room to grow a little before the first doubling, so steps rarely reallocate.
        self.reserve(T, min(self.block_size, T + 16))
        self.cache.length = 0
        c = chunk_rows(self.model.config.n_layer, self.model.config.n_head, T)
        for p0 in range(0, T, c):
            check_interrupt()  # a caller closing down stops here (the buffers are then junk)
            p1 = min(T, p0 + c)
            idx = torch.tensor([window[p0:p1]], dtype=torch.long, device=self.device)  # (1, c)
            out = self.model(idx, self.cache, return_attn=True, return_resid=True,
                             ablation=ablation, last_only=True)
            self._store(0, out, p0, p1)
        self.start = start
        self.length = T
        self.valid = T
        self.ids = list(window)
        self.owners = [None] * T
        self.ablation = ablation
        self.stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    @torch.inference_mode()
    def advance(self, tokens: list[int], ablation: Ablation | None, owner: Any = None) -> bool:
        """Feed the newest of ``tokens`` (one more than the buffers hold) into the model;
        ``owner`` is recorded as the step of that position (:attr:`owners`).

        Returns whether the window slid: a slide recomputes the new window, else one
        KV-cache step writes the new attention rows into the history in place.
        """
        n = len(tokens) - 1  # index of the new token
        if window_start_for(n + 1, self.block_size, self.stride) != self.start:
            self.refill(tokens, ablation)
            self.owners[-1] = owner
            return True
        pos = n - self.start
        T = pos + 1
        self.reserve(T)
        self.cache.length = pos
        # On the CPU with a history of the model's dtype the step writes its attention rows
        # straight into the history; else into a buffer of the model's dtype kept for every
        # step (the softmax writes there, no allocation per layer), then one copy of all rows.
        direct = self.device.type == "cpu" and self.attn.dtype == _NUMPY.get(self.cache.k.dtype)
        rows = self.attn.row_tensor(pos) if direct else self._row_buffer(T)  # (L, H, T)
        logits, hidden = self.model.decode_step(tokens[-1], self.cache, attn_out=rows,
                                                resid_out=self.resid[:, pos],
                                                ablation=ablation)
        if not direct:
            self.attn.write_row(pos, rows)
        self.hidden[pos] = hidden
        del self.ids[pos:], self.owners[pos:]
        self.ids.append(tokens[-1])
        self.owners.append(owner)
        self.ablation = ablation
        self.length = T
        self.valid = T
        self.stale_next()
        self._next_logits = logits  # (V,)
        return False

    def _row_buffer(self, T: int) -> torch.Tensor:
        """``(L, H, T)`` view of a buffer of the model's dtype and device with room for
        ``capacity`` keys, for steps whose rows the history cannot take directly."""
        buf = self._rows
        if buf is None or buf.shape[-1] < self.capacity:
            buf = self._rows = torch.empty((self.attn.L, self.attn.H, self.capacity),
                                           dtype=self.cache.k.dtype, device=self.device)
        return buf.narrow(2, 0, T)

    @torch.inference_mode()
    def rerun_from(self, layer: int, ablation: Ablation | None) -> None:
        """Re-run blocks ``layer ..`` over the window from the stored residual stream; the
        blocks below, their keys and values stay as they are. The caller makes sure the
        blocks below run the same way under ``ablation`` as they did."""
        T = self.length
        c = chunk_rows(self.model.config.n_layer - layer, self.model.config.n_head, T)
        for p0 in range(0, T, c):
            check_interrupt()
            p1 = min(T, p0 + c)
            x = self.resid[layer, p0:p1].unsqueeze(0)  # (1, c, C) entering block `layer`
            out = self.model.forward_from(x, layer, self.cache, p0, return_attn=True,
                                          return_resid=True, ablation=ablation,
                                          last_only=True)
            self._store(layer, out, p0, p1)
        self.valid = T
        self.ablation = ablation
        self.stale_next()
        self._next_logits = out.logits[0, -1]  # (V,)

    def _store(self, layer: int, out: Any, p0: int, p1: int) -> None:
        """Copy what a forward of positions ``p0 .. p1 - 1`` from block ``layer`` on gave
        (attention ``(1, H, c, p1)`` per layer, residuals, final activation) into the
        buffers, one layer at a time (no stacked intermediate)."""
        assert out.residuals is not None and out.attentions is not None
        for i, r in enumerate(out.residuals[1:], start=layer + 1):
            self.resid[i, p0:p1] = r[0]
        if layer == 0:
            self.resid[0, p0:p1] = out.residuals[0][0]
        for i, att in enumerate(out.attentions, start=layer):
            self.attn.write_block(i, att[0], p0)  # (H, c, p1), to the history's dtype
        self.hidden[p0:p1] = out.hidden[0]
        # Let this block's maps go now, not when the next forward's output replaces `out`
        # (two blocks' maps at once: +255 MB at the peak of a GPT-2-medium prefill).
        out.attentions = out.residuals = None

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

    # ------------------------------------------------------------------ reading
    def attention_maps(self, layers: slice | int = slice(None),
                       heads: slice | int = slice(None)) -> np.ndarray:
        """The window's ``(T, T)`` attention maps of ``layers`` x ``heads`` up to the cursor
        (``(L, H, T, T)`` by default; an int drops its axis), float32, a new array."""
        return self.attn.maps(self.length, layers, heads)

    def attention_row(self, pos: int) -> np.ndarray:
        """``(L, H, pos + 1)`` float32: the attention of window position ``pos`` (a valid
        row, ``0 <= pos < valid``), a new array."""
        if not 0 <= pos < self.valid:
            raise ValueError(f"window position {pos} is outside 0..{self.valid - 1}")
        return self.attn.row(pos)

    # ------------------------------------------------------------------ buffers
    def nbytes(self) -> dict[str, int]:
        """Bytes each buffer holds now: ``attention`` (CPU), ``kv_cache``, ``residuals``
        and ``hidden`` (the model's device)."""
        def size(t: torch.Tensor) -> int:
            return t.numel() * t.element_size()

        return {"attention": self.attn.nbytes,
                "kv_cache": size(self.cache.k) + size(self.cache.v),
                "residuals": size(self.resid), "hidden": size(self.hidden)}

    def bytes_for(self, rows: int) -> dict[str, int]:
        """What :meth:`nbytes` would say with room for ``rows`` positions."""
        cfg = self.model.config
        item = self.model.wte.weight.element_size()
        kv = 2 * cfg.n_layer * cfg.kv_heads * cfg.head_dim * rows * item
        return {"attention": self.attn.bytes_for(rows), "kv_cache": kv,
                "residuals": (cfg.n_layer + 1) * rows * cfg.n_embd * item,
                "hidden": rows * cfg.n_embd * item}

    def _grown(self, T: int) -> int:
        """Capacity after growing to hold ``T`` positions (doubling, at most ``block_size``)."""
        if self.capacity >= T:
            return self.capacity
        return min(self.block_size, max(FIRST_CAPACITY, 2 * self.capacity,
                                        1 << (T - 1).bit_length()))

    def check_room(self, n: int) -> None:
        """Refuse (:class:`~gptviz.engine.memory.NotEnoughMemory`) when holding the window
        of ``n`` tokens would need buffers that do not fit in the memory available."""
        T = n - window_start_for(n, self.block_size, self.stride)
        self._check(self._grown(T), T)

    def _check(self, rows: int, T: int) -> None:
        if rows <= self.capacity:
            return
        need = self.bytes_for(rows)
        on_cpu = self.device.type == "cpu"
        host = sum(need.values()) if on_cpu else need["attention"]
        free = available_bytes()
        if free is not None and host > free:
            parts = ", ".join(f"{format_bytes(v)} {k.replace('_', ' ')}"
                              for k, v in need.items() if on_cpu or k == "attention")
            raise NotEnoughMemory(
                f"a window of {T} tokens needs {format_bytes(host)} of memory ({parts}); "
                f"only {format_bytes(free)} is available")

    def reserve(self, T: int, want: int | None = None) -> None:
        """Room for ``T`` positions (growing to ``want`` or the next doubling); checks the
        memory first and changes nothing when it does not fit."""
        if self.capacity >= T:
            return
        rows = max(self._grown(T), min(self.block_size, want or 0))
        self._check(rows, T)
        self._grow(rows)

    def _grow(self, rows: int) -> None:
        """Every buffer to ``rows`` positions, what they hold copied over."""
        old = self.capacity
        cfg = self.model.config
        p = self.model.wte.weight
        with torch.inference_mode():
            if self.cache.block_size < rows:
                cache = KVCache(cfg, batch=1, device=p.device, dtype=p.dtype, capacity=rows)
                cache.k[:, :, :, :old] = self.cache.k[:, :, :, :old]
                cache.v[:, :, :, :old] = self.cache.v[:, :, :, :old]
                cache.length = self.cache.length
                self.cache = cache
            hidden = torch.zeros(rows, cfg.n_embd, device=p.device, dtype=p.dtype)  # (cap, C)
            hidden[:old] = self.hidden[:old]
            resid = torch.zeros(cfg.n_layer + 1, rows, cfg.n_embd, device=p.device,
                                dtype=p.dtype)  # (L+1, cap, C)
            resid[:, :old] = self.resid[:, :old]
        self.hidden, self.resid = hidden, resid
        self.attn.reserve(rows)
        self.capacity = rows
