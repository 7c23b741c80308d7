"""The attention history of a window, stored as packed lower-triangular rows.

Layout
------
Causal attention is lower-triangular: row ``t`` of a ``(T, T)`` map has ``t + 1`` weights
(keys ``0 .. t``), the rest is zero. :class:`AttentionHistory` keeps only those weights,
row after row, in one ``(L, H, P)`` array: row ``t`` of every head lies at
``[offset(t), offset(t) + t + 1)`` with ``offset(t) = t (t + 1) / 2``, so ``rows`` rows take
``P = rows (rows + 1) / 2`` numbers instead of ``rows ** 2``. A row's place does not depend on
how many rows there is room for: growing is one copy of what is there, and a one-token step
writes its rows in place (the decode path fills them directly,
:meth:`AttentionHistory.row_tensor`).

Numbers are stored as float16 once the float32 triangle at the model's full window would pass
:data:`FLOAT32_LIMIT` bytes (weights are in [0, 1]: float16 keeps them within 2.5e-4), float32
below that (exact, and it costs little). Every read gives float32: one head's ``(T, T)`` map,
one layer ``(H, T, T)``, the whole ``(L, H, T, T)``, or one query's row ``(L, H, t + 1)``.
The history lives in CPU memory whatever the model's device.

Reading a layer at a time
-------------------------
The whole ``(L, H, T, T)`` float32 is ``2 L H T^2`` bytes more than the packed float16 rows
(604 MB at GPT-2 small's shape and 1,024 tokens): an analysis that needs every layer reads
them one after another through :class:`PackedAttention` (:meth:`PackedAttention.layer`,
:meth:`PackedAttention.layers`), so that what it holds at once is one layer's ``(H, T, T)``.
:meth:`AttentionHistory.copy` keeps the rows of a moment compactly (a pinned state).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

__all__ = ["FLOAT32_LIMIT", "AttentionHistory", "PackedAttention", "history_dtype",
           "packed_size"]

#: Float32 triangle size (bytes, at the model's full window) above which float16 is used.
FLOAT32_LIMIT = 64 * 2 ** 20


def packed_size(rows: int) -> int:
    """Numbers per head that ``rows`` packed rows take: ``rows (rows + 1) / 2``."""
    return rows * (rows + 1) // 2


def history_dtype(n_layer: int, n_head: int, block_size: int) -> np.dtype:
    """float32 while the whole window's triangle fits :data:`FLOAT32_LIMIT`, else float16."""
    full = n_layer * n_head * packed_size(block_size) * 4
    return np.dtype(np.float32 if full <= FLOAT32_LIMIT else np.float16)


class _Indices:
    """Flat indices of the lower-triangular cells of ``(c, S)`` blocks, the last few kept:
    the packed rows ``p0 .. p0 + c - 1`` of a ``(c, S)`` block of attention rows."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int, int], torch.Tensor] = {}

    def get(self, c: int, S: int, p0: int) -> torch.Tensor:
        key = (c, S, p0)
        idx = self._cache.get(key)
        if idx is None:
            rc = torch.tril_indices(c, S, offset=p0)  # (2, n): row i holds keys 0 .. p0 + i
            idx = rc[0] * S + rc[1]  # (n,)
            if len(self._cache) >= 4:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = idx
        return idx


class AttentionHistory:
    """Packed lower-triangular attention rows of every layer and head (see the module notes).

    Parameters
    ----------
    n_layer, n_head
        The model's layers and heads.
    dtype
        Storage dtype (float16 or float32); reads are float32 either way.
    """

    def __init__(self, n_layer: int, n_head: int, dtype: np.dtype | type = np.float32) -> None:
        self.L, self.H = n_layer, n_head
        self.dtype = np.dtype(dtype)
        self.rows = 0  # rows there is room for
        self.buf = np.zeros((n_layer, n_head, 0), dtype=self.dtype)  # (L, H, P)
        self._tbuf = torch.from_numpy(self.buf)  # the same memory, for torch writes
        self._idx = _Indices()

    @property
    def nbytes(self) -> int:
        """Bytes the history holds."""
        return int(self.buf.nbytes)

    def bytes_for(self, rows: int) -> int:
        """Bytes the history would hold with room for ``rows`` rows."""
        return self.L * self.H * packed_size(rows) * self.dtype.itemsize

    def reserve(self, rows: int) -> None:
        """Room for at least ``rows`` rows (one copy of the rows there are when it grows)."""
        if rows <= self.rows:
            return
        used = packed_size(self.rows)
        buf = np.zeros((self.L, self.H, packed_size(rows)), dtype=self.dtype)  # (L, H, P)
        buf[:, :, :used] = self.buf
        self.buf, self._tbuf, self.rows = buf, torch.from_numpy(buf), rows

    def copy(self, rows: int) -> AttentionHistory:
        """A new history holding a copy of the first ``rows`` rows (room for just those)."""
        rows = max(0, min(int(rows), self.rows))
        out = AttentionHistory(self.L, self.H, self.dtype)
        out.buf = self.buf[:, :, :packed_size(rows)].copy()  # (L, H, P), never a view
        out._tbuf, out.rows = torch.from_numpy(out.buf), rows
        return out

    # ------------------------------------------------------------------ writing
    def row_tensor(self, t: int) -> torch.Tensor:
        """``(L, H, t + 1)`` torch view of row ``t`` (to be written in place)."""
        return self._tbuf.narrow(2, packed_size(t), t + 1)

    def write_row(self, t: int, row: torch.Tensor) -> None:
        """Store row ``t``: ``row`` is ``(L, H, t + 1)`` (any device and float dtype)."""
        self.row_tensor(t).copy_(row)

    def write_block(self, layer: int, att: torch.Tensor, p0: int) -> None:
        """Store rows ``p0 .. p0 + c - 1`` of one layer: ``att`` ``(H, c, S)`` holds the
        attention of queries ``p0 ..`` over keys ``0 .. S - 1`` (``S = p0 + c``)."""
        H, c, S = att.shape
        idx = self._idx.get(c, S, p0).to(att.device)
        packed = att.reshape(H, c * S).index_select(1, idx)  # (H, n): the rows, packed
        lo, hi = packed_size(p0), packed_size(p0 + c)
        self._tbuf[layer, :, lo:hi].copy_(packed)  # to the storage dtype, on the CPU

    # ------------------------------------------------------------------ reading
    def row(self, t: int) -> np.ndarray:
        """Row ``t`` of every layer and head, ``(L, H, t + 1)`` float32 (a new array)."""
        o = packed_size(t)
        return self.buf[:, :, o:o + t + 1].astype(np.float32)

    def maps(self, T: int, layers: slice | int = slice(None), heads: slice | int = slice(None)
             ) -> np.ndarray:
        """The ``(T, T)`` maps of the first ``T`` rows for ``layers`` x ``heads`` (ints drop
        their axis, as numpy indexing does), float32, zero above the diagonal; a new array."""
        src = self._tbuf[layers, heads, :packed_size(T)]  # (..., P)
        lead = tuple(src.shape[:-1])
        flat = src.reshape(-1, src.shape[-1])  # (n, P)
        out = torch.zeros(flat.shape[0], T * T, dtype=torch.float32)  # (n, T*T)
        if T:
            idx = self._idx.get(T, T, 0)
            for i in range(flat.shape[0]):  # one head at a time: no float32 copy of them all
                out[i].index_copy_(0, idx, flat[i].float())
        return out.reshape(*lead, T, T).numpy()


class PackedAttention:
    """The ``(L, H, T, T)`` attention of the first ``T`` rows of a history, read a layer or a
    head at a time (float32, zero above the diagonal, a new array each read).

    It reads the history it was given when asked: a session's live history
    (:meth:`Session.packed_attention <gptviz.engine.session.Session.packed_attention>`) is
    valid until the session changes; pass a :meth:`AttentionHistory.copy` to keep a moment.

    Attributes
    ----------
    shape
        ``(L, H, T, T)``: what :meth:`full` would return.
    """

    def __init__(self, history: AttentionHistory, T: int) -> None:
        if not 0 <= T <= history.rows:
            raise ValueError(f"{T} rows asked of a history with room for {history.rows}")
        self.history = history
        self.T = int(T)
        self.shape = (history.L, history.H, self.T, self.T)

    @property
    def nbytes(self) -> int:
        """Bytes of the packed rows it reads (not of a float32 read)."""
        return self.history.L * self.history.H * packed_size(self.T) \
            * self.history.dtype.itemsize

    def _layer_index(self, layer: int) -> int:
        L = self.history.L
        i = int(layer)
        if not -L <= i < L:
            raise ValueError(f"no layer {layer}: there are {L}")
        return i % L

    def layer(self, layer: int) -> np.ndarray:
        """``(H, T, T)`` float32 of one layer."""
        return self.history.maps(self.T, self._layer_index(layer))

    def head(self, layer: int, head: int) -> np.ndarray:
        """``(T, T)`` float32 of one head."""
        H = self.history.H
        if not -H <= int(head) < H:
            raise ValueError(f"no head {head}: there are {H} a layer")
        return self.history.maps(self.T, self._layer_index(layer), int(head) % H)

    def layers(self) -> Iterator[np.ndarray]:
        """Every layer's ``(H, T, T)`` float32 in order, one at a time."""
        for layer in range(self.history.L):
            yield self.history.maps(self.T, layer)

    def full(self) -> np.ndarray:
        """The whole ``(L, H, T, T)`` float32 (``2 L H T^2`` bytes more than the rows: prefer
        :meth:`layer`)."""
        return self.history.maps(self.T)

    def copy(self) -> PackedAttention:
        """The same maps, kept: a copy of the packed rows, independent of the history."""
        return PackedAttention(self.history.copy(self.T), self.T)
