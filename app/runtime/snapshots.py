"""Turn a :class:`gptviz.engine.session.Session` into
:class:`~gptviz_app.runtime.snapshot.Snapshot` messages.

Runs on the worker thread (numpy only, no Qt). The L x H thumbnail mosaic is kept here and
updated incrementally: a step adds one attention row per head, which lands in one row of
every thumbnail; only jumps (undo, goto, a new prompt, a slid window, a change of scale)
rebuild it from the session's attention buffer.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import replace

import numpy as np

from gptviz.analysis.maps import (
    head_map,
    layer_windows,
    map_cells,
    mask_pooled_row,
    mask_row,
    masked_map,
    upper_mask,
)
from gptviz.analysis.sources import AttentionSource
from gptviz.analysis.stages import StageMaps
from gptviz.engine.candidates import include_token, next_token_candidates
from gptviz.io.provenance import session_context
from gptviz_app.runtime.branch_commands import branch_summary
from gptviz_app.runtime.grid_pixels import MosaicPixels
from gptviz_app.runtime.knob_logits import candidate_knobs
from gptviz_app.runtime.snapshot import Candidates, ModelInfo, Snapshot, ViewSpec
from gptviz_app.runtime.token_columns import TokenColumns

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
                      step=len(s.history), knobs=candidate_knobs(s, "last", ids, logits))


def _greedy(step) -> bool:
    """Whether a step's token was taken greedily (not forced, settings in greedy mode)."""
    return not step.forced and step.settings is not None and bool(step.settings.greedy)


#: Smallest and largest thumbnail (pixels) the mosaic is drawn at.
GRID_CELL_RANGE = (8, 64)


def grid_gap(cell: int) -> int:
    """Pixels between thumbnails of ``cell`` pixels: 3 at the largest, fewer for small ones
    (they stay about a twentieth of a thumbnail, at least one pixel)."""
    return 3 if cell >= 40 else 2 if cell >= 16 else 1


def grid_cell_fitting(width_px: float, height_px: float, n_layer: int, n_head: int) -> int:
    """The largest thumbnail size (pixels, within :data:`GRID_CELL_RANGE`) whose mosaic of
    ``n_layer`` x ``n_head`` thumbnails and their gaps fits ``width_px`` x ``height_px``."""
    lo, hi = GRID_CELL_RANGE
    for cell in range(hi, lo - 1, -1):
        g = grid_gap(cell)
        if (n_head * (cell + g) - g <= width_px) and (n_layer * (cell + g) - g <= height_px):
            return cell
    return lo


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

    def __init__(self, n_layer: int, n_head: int, cell: int = 64, gap: int = 3,
                 windows: tuple[int | None, ...] | None = None) -> None:
        self.L, self.H, self.cell, self.gap = n_layer, n_head, cell, gap
        self.windows = windows  # per layer: a local window (drawn masked) or None
        self.pitch = cell + gap
        self.data = np.full((n_layer * self.pitch, n_head * self.pitch), np.nan, np.float32)
        # [L, H, cell, cell] writable view onto the cells
        self.cells = self.data.reshape(n_layer, self.pitch, n_head, self.pitch)[
            :, :cell, :, :cell].transpose(0, 2, 1, 3)
        self.mode: str | None = None
        self.T = 0
        self.scale: tuple[str, int] | None = None
        self._row_extent: tuple[int, int] | None = None  # filled (rows, columns), row mode
        # what picture() handed out last: (its key (sqrt, extent), its image), the pixels
        # coloured from it; and the rows of the cells changed since (None: any)
        self._last: tuple[tuple, np.ndarray] | None = None
        self._pixels = MosaicPixels()
        self._changed: set[int] | None = None

    # ------------------------------------------------------------------ map mode
    def _map_scale(self, T: int) -> tuple[str, int]:
        if self.cell >= T:
            return ("up", max(1, self.cell // T))
        return ("pool", math.ceil(T / self.cell))

    def rebuild_maps(self, att: np.ndarray | AttentionSource) -> None:
        """Redraw from the whole window ``att`` [L, H, T, T] (lower-triangular): an array, or
        the session's packed attention, read one layer at a time (no float32 copy of the
        whole window: 604 MB at GPT-2 small's shape and 1,024 tokens)."""
        T = att.shape[-1]
        self.cells[...] = np.nan
        self.mode, self.T = "map", T
        self._changed = None
        self.scale = map_cells(att, self.cell, self.cells, self.windows)

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
        if kind == "up":  # NaN outside local windows
            self.cells[:, :, q * f:T * f, :T * f] = mask_row(row, self.windows).repeat(
                f, axis=-1)[:, :, None, :]
            self._changed = None  # stretched over the cell: all of it changes
        else:
            n = math.ceil(T / f)
            r = q // f
            padded = np.zeros(row.shape[:2] + (n * f,), np.float32)
            padded[:, :, :T] = row
            pooled = padded.reshape(self.L, self.H, n, f).max(axis=-1)  # [L, H, n]
            target = self.cells[:, :, r, :n]
            self.cells[:, :, r, :n] = np.fmax(target, pooled)
            mask_pooled_row(self.cells, T, f, self.windows)
            if self._changed is not None:
                self._changed.add(r)  # one block row of every cell
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
        self._changed = None
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
        if self.mode in ("map", "value") and self.scale is not None and self.T > 0:
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

    def picture(self, sqrt: bool, table: np.ndarray | None) -> tuple[np.ndarray,
                                                                     np.ndarray | None]:
        """:meth:`image` and its pixels under the colour ``table`` (see
        :class:`~gptviz_app.runtime.grid_pixels.MosaicPixels`; ``None``: no pixels), both
        read-only; the same arrays as last time when nothing changed since, and only the
        rows of the cells that changed coloured again when only some did."""
        key = (bool(sqrt), self.extent())
        changed = self._changed
        if self._last is not None and self._last[0] == key and changed is not None:
            if not changed:
                values = self._last[1]
                return values, self._pixels.colour(values, table, np.empty(0, np.intp))
            rows = self._image_rows(changed, key[1][0])
        else:
            rows = None
        values = self.image(sqrt)
        values.flags.writeable = False  # handed out, perhaps more than once
        self._last, self._changed = (key, values), set()
        return values, self._pixels.colour(values, table, rows)

    def _image_rows(self, cell_rows: set[int], filled: int) -> np.ndarray:
        """The rows of :meth:`image` (every layer's) drawn from the cells' rows
        ``cell_rows`` when each cell's first ``filled`` rows are stretched over it."""
        c = self.cell
        src = np.arange(c) * max(1, filled) // c if filled != c else np.arange(c)
        within = np.flatnonzero(np.isin(src, np.fromiter(cell_rows, np.intp)))
        return (np.arange(self.L)[:, None] * self.pitch + within[None, :]).ravel()


#: Numbers the builders (an ``id()`` is reused once its object is gone): the first part of
#: :attr:`Snapshot.attn_rev`.
_BUILDERS = itertools.count()


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
        self.grid = GridMosaic(self.L, self.H, cell, gap, layer_windows(cfg))
        self._grid_dirty = True
        self._jump = True
        self._steps = 0
        # (builder, epoch): the epoch moves on with anything but a token appended to the
        # same window, which can change the rows the map already showed (Snapshot.attn_rev)
        self._number = next(_BUILDERS)
        self._epoch = 0
        self._last_step_ms: float | None = None
        self._row_key: tuple | None = None
        self.columns = TokenColumns()  # per-token arrays, updated where the tokens changed
        self.stages = StageMaps()  # the map's other stages and the value-weighted thumbnails

    # ------------------------------------------------------------------ bookkeeping
    def note_step(self, result) -> None:
        """One token was appended (``result``: its StepResult)."""
        self._last_step_ms = float(result.elapsed_ms)
        self._steps += 1
        if result.slid:  # every row of the window starts elsewhere
            self._epoch += 1
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
        self._epoch += 1
        self._row_key = None

    def model_info(self, bundle) -> ModelInfo:
        cfg = bundle.config
        return ModelInfo(
            name=bundle.name, source=str(bundle.source), kind=bundle.kind,
            n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd,
            block_size=cfg.block_size, vocab_size=cfg.vocab_size,
            n_params=int(bundle.model.num_params()), class_names=tuple(self.session.class_names),
            prompt=self.session.prompt, kv_heads=cfg.kv_heads,
        )

    # ------------------------------------------------------------------ build
    def _grid_mode(self, view: ViewSpec, T: int) -> str:
        if view.grid_mode in ("map", "row", "value"):
            return view.grid_mode
        return "map" if T <= AUTO_ROW_THRESHOLD else "row"

    def _update_grid(self, mode: str, T: int, q_rel: int) -> None:
        # The session's attention is read only as far as a redraw needs (a layer at a time for
        # a map rebuild, one query row in row mode): it is unpacked on every read.
        if mode == "value":  # every head's value-weighted map, rows as shares (0..1)
            key = ("value", T, self.session.window_start, id(self.session.device_ablation))
            if self._grid_dirty or self.grid.mode != "value" or self._row_key != key:
                self.grid.rebuild_maps(self.stages.grid_value(self.session))
                self.grid.mode, self._row_key = "value", key
        elif mode == "map":
            if self._grid_dirty or self.grid.mode != "map" or T != self.grid.T:
                self.grid.rebuild_maps(self.session.packed_attention())
        else:
            key = ("row", q_rel, T, self.session.window_start)
            if self._grid_dirty or self.grid.mode != "row" or self._row_key != key:
                self.grid.draw_rows(self.session.attention_row(q_rel))
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
                              step=len(hist), knobs=candidate_knobs(s, "last", ids))
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
                          chosen_id=chosen_id, step=0,
                          knobs=candidate_knobs(s, "next", np.asarray(ids, np.int64)))

    def _grid_size(self, cell: int | None) -> None:
        """Draw the mosaic at ``cell`` pixels a thumbnail from now on (redrawn whole);
        ``None`` keeps the size it has."""
        if cell is None:
            return
        lo, hi = GRID_CELL_RANGE
        cell = min(hi, max(lo, int(cell)))
        if cell != self.grid.cell:
            self.grid = GridMosaic(self.L, self.H, cell, grid_gap(cell), self.grid.windows)
            self._grid_dirty = True

    def build(self, gen: int, command: str, view: ViewSpec,
              grid_cell: int | None = None, grid_table: np.ndarray | None = None) -> Snapshot:
        """The snapshot of the session as it is now, for ``view``; the mosaic's thumbnails
        ``grid_cell`` pixels from now on (``None``: as they are), its pixels coloured with
        ``grid_table`` (the head grid's colours, see :mod:`~gptviz_app.runtime.grid_pixels`;
        ``None``: none)."""
        t0 = time.perf_counter()
        self._grid_size(grid_cell)
        s = self.session
        self.columns.update(s)
        N = s.n_tokens
        ws = int(s.window_start)
        T = N - ws
        layer = min(max(0, view.layer), self.L - 1)
        head = min(max(0, view.head), self.H - 1)
        q = N - 1 if view.query is None else min(max(view.query, ws), N - 1)
        q_rel = q - ws
        attn = masked_map(s.attention_layer(layer).mean(axis=0) if view.average
                          else s.attention_head(layer, head), self.grid.windows[layer])
        mode = self._grid_mode(view, T)
        self._update_grid(mode, T, q_rel)
        grid, grid_pixels = self.grid.picture(view.sqrt_scale, grid_table)
        pl = s.prompt_len
        n_redo = len(s.redo_stack)
        cp = s.class_probs()
        snap = Snapshot(
            gen=gen, command=command, jump=self._jump or self._steps != 1,
            **self.columns.arrays(),  # ids, tokens, chosen_probs, forced, greedy, tokens_rev/log
            prompt_len=pl, n_generated=s.n_generated, n_total=s.n_generated + n_redo,
            can_undo=s.can_undo or s.can_undo_reset, can_redo=s.can_redo, window_start=ws,
            block_size=s.block_size,
            view=replace(view, layer=layer, head=head),
            query=q,
            attn=attn, grid=grid, grid_mode=mode, grid_cell=self.grid.cell,
            grid_gap=self.grid.gap, grid_pixels=grid_pixels,
            grid_table=None if grid_pixels is None else grid_table,
            candidates=self._candidates(),
            class_probs=None if cp is None else np.asarray(cp, np.float32).copy(),
            class_names=tuple(s.class_names), settings=s.settings,
            step_ms=self._last_step_ms, build_ms=0.0, prompt=s.prompt,
            put_aside=s.n_put_aside if not s.can_undo else 0,
            context=session_context(s), branches=branch_summary(s),
            attn_rev=(self._number, self._epoch, ws, layer, head, bool(view.average),
                      view.map_stage),
        )
        if view.map_stage != "weights":  # the map's other stage: (stage, [T, T] float32)
            try:
                snap.extra["map_stage"] = (view.map_stage, self.stages.head(
                    s, layer, head, view.average, view.map_stage))
            except Exception as e:  # shown on the map instead of the stage, never raised
                snap.extra["map_stage_error"] = f"{type(e).__name__}: {e}"
        self._jump, self._steps = False, 0
        snap.build_ms = (time.perf_counter() - t0) * 1e3
        return snap
