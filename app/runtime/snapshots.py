"""Turn a :class:`gptviz.engine.session.Session` into
:class:`~gptviz_app.runtime.snapshot.Snapshot` messages.

Runs on the worker thread (numpy only, no Qt). The L x H thumbnail mosaic is kept here and
updated incrementally: a step adds one attention row per head, which lands in one row of
every thumbnail; only jumps (undo, goto, a new prompt, a slid window, a change of scale)
rebuild it from the session's attention buffer.
"""

from __future__ import annotations

import math
import time

import numpy as np

from gptviz.analysis.maps import head_map, masked_map, upper_mask
from gptviz.engine.candidates import include_token, next_token_candidates
from gptviz.io.provenance import session_context
from gptviz_app.runtime.snapshot import Candidates, ModelInfo, Snapshot, ViewSpec

__all__ = ["AUTO_ROW_THRESHOLD", "GridMosaic", "SnapshotBuilder", "head_map", "masked_map",
           "upper_mask", "last_step_candidates"]

#: Texts longer than this show the query row in the thumbnails when the mode is "auto".
AUTO_ROW_THRESHOLD = 256


def last_step_candidates(session, logits, k: int | None = None) -> Candidates:
    """The next-token panel's ``"last"`` candidates from the ``logits`` ``[V]`` the newest
    token's distribution has now (e.g. after the heads changed since it was drawn)."""
    s = session
    last = s.history[-1]
    c = next_token_candidates(logits, s.top_k_report if k is None else k)
    tok = int(last.token_id)
    p_tok = c.prob(tok)
    ids, probs, chosen = include_token(c.ids, c.probs, tok, p_tok)
    return Candidates(kind="last", ids=ids, tokens=[s.display(i) for i in ids], probs=probs,
                      entropy=c.entropy, chosen=chosen, chosen_id=tok, chosen_prob=p_tok,
                      chosen_forced=bool(last.forced), chosen_greedy=_greedy(last),
                      step=len(s.history))


def _greedy(step) -> bool:
    """Whether a step's token was taken greedily (not forced, settings in greedy mode)."""
    return not step.forced and step.settings is not None and bool(step.settings.greedy)


class GridMosaic:
    """One float32 image holding every layer's and head's thumbnail (rows = layers).

    Each cell is ``cell`` x ``cell`` pixels with ``gap`` NaN pixels after it. In map mode a
    text of T tokens is drawn at ``u = cell // T`` pixels per token while it fits, else
    max-pooled over blocks of ``b = ceil(T / cell)`` tokens (max keeps sharp heads visible).
    In row mode each cell shows the query's attention row wrapped like text, ``cell`` keys
    per line.

    Those integer scales leave part of a cell empty (33 tokens at 1 pixel each fill 33 of 64
    pixels; 65 tokens pooled by 2 fill 33): :meth:`image` stretches what was drawn over the
    whole cell, so every thumbnail fills its tile whatever the length.
    """

    def __init__(self, n_layer: int, n_head: int, cell: int = 64, gap: int = 3) -> None:
        self.L, self.H, self.cell, self.gap = n_layer, n_head, cell, gap
        self.pitch = cell + gap
        self.data = np.full((n_layer * self.pitch, n_head * self.pitch), np.nan, np.float32)
        # [L, H, cell, cell] writable view onto the cells
        self.cells = self.data.reshape(n_layer, self.pitch, n_head, self.pitch)[
            :, :cell, :, :cell].transpose(0, 2, 1, 3)
        self.mode: str | None = None
        self.T = 0
        self.scale: tuple[str, int] | None = None
        self._row_extent: tuple[int, int] | None = None  # filled (rows, columns), row mode

    # ------------------------------------------------------------------ map mode
    def _map_scale(self, T: int) -> tuple[str, int]:
        if self.cell >= T:
            return ("up", max(1, self.cell // T))
        return ("pool", math.ceil(T / self.cell))

    def rebuild_maps(self, att: np.ndarray) -> None:
        """Redraw from the whole window ``att`` [L, H, T, T] (lower-triangular)."""
        T = att.shape[-1]
        self.cells[...] = np.nan
        self.mode, self.T = "map", T
        self.scale = kind, f = self._map_scale(T)
        if T == 0:
            return
        if kind == "up":
            img = att.repeat(f, axis=2).repeat(f, axis=3).astype(np.float32)  # [L, H, T*f, T*f]
            img[:, :, upper_mask(T).repeat(f, 0).repeat(f, 1)] = np.nan
            self.cells[:, :, :T * f, :T * f] = img
        else:
            n = math.ceil(T / f)
            if n * f != T:
                pad = np.zeros(att.shape[:2] + (n * f, n * f), np.float32)
                pad[:, :, :T, :T] = att
            else:
                pad = att
            pooled = pad.reshape(self.L, self.H, n, f, n, f).max(axis=(3, 5))  # [L, H, n, n]
            pooled[:, :, upper_mask(n)] = np.nan
            self.cells[:, :, :n, :n] = pooled

    def add_row(self, row: np.ndarray) -> bool:
        """Append the newest query row ``row`` [L, H, T] (T = new length) in map mode.

        Returns False when the mosaic cannot be updated incrementally (scale changed, not
        in map mode, out of step): the caller then rebuilds.
        """
        T = row.shape[-1]
        if self.mode != "map" or T != self.T + 1 or self._map_scale(T) != self.scale:
            return False
        kind, f = self.scale
        q = T - 1
        if kind == "up":
            self.cells[:, :, q * f:T * f, :T * f] = row.repeat(f, axis=-1)[:, :, None, :]
        else:
            n = math.ceil(T / f)
            r = q // f
            padded = np.zeros(row.shape[:2] + (n * f,), np.float32)
            padded[:, :, :T] = row
            pooled = padded.reshape(self.L, self.H, n, f).max(axis=-1)  # [L, H, n]
            target = self.cells[:, :, r, :n]
            self.cells[:, :, r, :n] = np.fmax(target, pooled)
        self.T = T
        return True

    # ------------------------------------------------------------------ row mode
    def draw_rows(self, rows: np.ndarray) -> None:
        """Show the query rows ``rows`` [L, H, S] (S keys), wrapped ``cell`` keys per line."""
        S = rows.shape[-1]
        self.cells[...] = np.nan
        self.mode, self.T, self.scale = "row", -1, None
        c = self.cell
        self._row_extent = None
        if S == 0:
            return
        if c >= S:
            u = max(1, c // S)
            self.cells[:, :, :, :S * u] = rows.repeat(u, axis=-1)[:, :, None, :]
            self._row_extent = (c, S * u)
            return
        lines = math.ceil(S / c)
        if lines > c:  # more than cell*cell keys: pool to fit
            f = math.ceil(S / (c * c))
            n = math.ceil(S / f)
            padded = np.zeros(rows.shape[:2] + (n * f,), np.float32)
            padded[:, :, :S] = rows
            rows, S = padded.reshape(self.L, self.H, n, f).max(axis=-1), n
            lines = math.ceil(S / c)
        h = max(1, c // lines)
        wrapped = np.full(rows.shape[:2] + (lines * c,), np.nan, np.float32)
        wrapped[:, :, :S] = rows
        wrapped = wrapped.reshape(self.L, self.H, lines, c).repeat(h, axis=2)
        if h > 1:  # a one-pixel gap between lines so the wrap reads as lines of text
            wrapped = wrapped.reshape(self.L, self.H, lines, h, c)
            wrapped[:, :, :, -1, :] = np.nan
            wrapped = wrapped.reshape(self.L, self.H, lines * h, c)
        self.cells[:, :, :lines * h, :] = wrapped
        self._row_extent = (lines * h, c)

    def copy(self) -> np.ndarray:
        return self.data.copy()

    def extent(self) -> tuple[int, int]:
        """Pixels (rows, columns) of each cell that the last drawing filled."""
        c = self.cell
        if self.mode == "map" and self.scale is not None and self.T > 0:
            kind, f = self.scale
            n = self.T * f if kind == "up" else math.ceil(self.T / f)
            return n, n
        if self.mode == "row" and self._row_extent is not None:
            return self._row_extent
        return c, c

    def image(self, sqrt: bool = False) -> np.ndarray:
        """The mosaic as drawn on screen: each cell's filled part stretched (nearest pixel)
        over the whole cell, on the square-root scale with ``sqrt``; a new array."""
        c = self.cell
        rows, cols = self.extent()
        if (rows, cols) == (c, c):
            out = self.data.copy()
        else:
            out = np.full_like(self.data, np.nan)
            iy = np.arange(c) * max(1, rows) // c  # source pixel of every target pixel
            ix = np.arange(c) * max(1, cols) // c
            target = out.reshape(self.L, self.pitch, self.H, self.pitch)[
                :, :c, :, :c].transpose(0, 2, 1, 3)  # [L, H, cell, cell] view
            target[...] = self.cells[:, :, iy][:, :, :, ix]
        return np.sqrt(out, out=out) if sqrt else out


class SnapshotBuilder:
    """Builds snapshots of one session; keeps the mosaic and per-token arrays in step.

    Call :meth:`note_step` after every :meth:`Session.step` (or :meth:`Session.redo` of one
    token) and :meth:`note_jump` after anything else that changes the session; :meth:`build`
    then produces the message.
    """

    def __init__(self, session, cell: int = 64, gap: int = 3) -> None:
        self.session = session
        cfg = session.config
        self.L, self.H = cfg.n_layer, cfg.n_head
        self.grid = GridMosaic(self.L, self.H, cell, gap)
        self._grid_dirty = True
        self._jump = True
        self._steps = 0
        self._last_step_ms: float | None = None
        self._row_key: tuple | None = None

    # ------------------------------------------------------------------ bookkeeping
    def note_step(self, result) -> None:
        """One token was appended (``result``: its StepResult)."""
        self._last_step_ms = float(result.elapsed_ms)
        self._steps += 1
        if self.grid.mode == "map" and not result.slid and not self._grid_dirty:
            if not self.grid.add_row(result.attention_row):
                self._grid_dirty = True
        else:
            self._grid_dirty = True
        self._row_key = None

    def note_jump(self) -> None:
        """Anything other than one appended token happened."""
        self._grid_dirty = True
        self._jump = True
        self._row_key = None

    def model_info(self, bundle) -> ModelInfo:
        cfg = bundle.config
        return ModelInfo(
            name=bundle.name, source=str(bundle.source), kind=bundle.kind,
            n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
            block_size=cfg.block_size, vocab_size=cfg.vocab_size,
            n_params=int(bundle.model.num_params()), class_names=tuple(self.session.class_names),
            prompt=self.session.prompt,
        )

    # ------------------------------------------------------------------ build
    def _grid_mode(self, view: ViewSpec, T: int) -> str:
        if view.grid_mode in ("map", "row"):
            return view.grid_mode
        return "map" if T <= AUTO_ROW_THRESHOLD else "row"

    def _update_grid(self, mode: str, att: np.ndarray, q_rel: int) -> None:
        if mode == "map":
            if self._grid_dirty or self.grid.mode != "map" or att.shape[-1] != self.grid.T:
                self.grid.rebuild_maps(att)
        else:
            key = ("row", q_rel, att.shape[-1], self.session.window_start)
            if self._grid_dirty or self.grid.mode != "row" or self._row_key != key:
                self.grid.draw_rows(att[:, :, q_rel, :q_rel + 1])
                self._row_key = key
        self._grid_dirty = False

    def _candidates(self) -> Candidates:
        s = self.session
        hist = s.history
        if hist:
            r = hist[-1]
            # drawn from the tail: the chosen token is shown as one more bar
            ids, probs, chosen = include_token(r.topk_ids, r.topk_probs, r.token_id, r.prob)
            return Candidates(kind="last", ids=ids, tokens=[s.display(i) for i in ids],
                              probs=probs, entropy=float(r.entropy), chosen=chosen,
                              chosen_id=int(r.token_id), chosen_prob=float(r.prob),
                              chosen_forced=bool(r.forced), chosen_greedy=_greedy(r),
                              step=len(hist))
        ids, probs, ent = s.next_distribution()
        chosen, chosen_id = -1, -1
        redo = s.redo_stack
        if redo:
            nxt = redo[0]
            chosen_id = int(nxt.token_id)
            hit = np.flatnonzero(ids == chosen_id)
            chosen = int(hit[0]) if hit.size else -1
        return Candidates(kind="next", ids=np.asarray(ids, np.int64),
                          tokens=[s.display(i) for i in ids],
                          probs=np.asarray(probs, np.float32), entropy=float(ent), chosen=chosen,
                          chosen_id=chosen_id, step=0)

    def build(self, gen: int, command: str, view: ViewSpec) -> Snapshot:
        """The snapshot of the session as it is now, for ``view``."""
        t0 = time.perf_counter()
        s = self.session
        ids = np.asarray(s.tokens, dtype=np.int64)
        N = int(ids.shape[0])
        ws = int(s.window_start)
        T = N - ws
        att = s.attention()  # read-only view [L, H, T, T]
        layer = min(max(0, view.layer), self.L - 1)
        head = min(max(0, view.head), self.H - 1)
        q = N - 1 if view.query is None else min(max(view.query, ws), N - 1)
        q_rel = q - ws
        attn = masked_map(head_map(att, layer, head, view.average))
        mode = self._grid_mode(view, T)
        self._update_grid(mode, att, q_rel)
        hist = s.history
        chosen_probs = np.full(N, np.nan, np.float32)
        forced = np.zeros(N, bool)
        greedy = np.zeros(N, bool)
        pl = s.prompt_len
        for i, r in enumerate(hist):
            chosen_probs[pl + i] = r.prob
            forced[pl + i] = r.forced
            greedy[pl + i] = _greedy(r)
        n_redo = len(s.redo_stack)
        cp = s.class_probs()
        snap = Snapshot(
            gen=gen, command=command, jump=self._jump or self._steps != 1,
            ids=ids, tokens=s.display_tokens(), chosen_probs=chosen_probs, forced=forced,
            prompt_len=pl, n_generated=s.n_generated, n_total=s.n_generated + n_redo,
            can_undo=s.can_undo or s.can_undo_reset, can_redo=s.can_redo, window_start=ws,
            block_size=s.block_size,
            view=ViewSpec(layer, head, view.average, view.query, view.grid_mode, view.sqrt_scale),
            query=q,
            attn=attn, grid=self.grid.image(sqrt=view.sqrt_scale),
            grid_mode=mode, grid_cell=self.grid.cell,
            grid_gap=self.grid.gap,
            candidates=self._candidates(),
            class_probs=None if cp is None else np.asarray(cp, np.float32).copy(),
            class_names=tuple(s.class_names), settings=s.settings,
            step_ms=self._last_step_ms, build_ms=0.0, prompt=s.prompt,
            put_aside=s.n_put_aside if not s.can_undo else 0, greedy=greedy,
            context=session_context(s),
        )
        self._jump, self._steps = False, 0
        snap.build_ms = (time.perf_counter() - t0) * 1e3
        return snap
