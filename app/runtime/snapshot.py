"""Plain data that travels between the window and the worker thread (no Qt, no torch).

* :class:`ViewSpec`  what the views currently look at (layer, head, query, thumbnail mode);
  it rides along with every request so the worker always builds what is on screen.
* :class:`Request`   one command for the worker, tagged with a generation number.
* :class:`ModelInfo` static facts about the loaded model.
* :class:`Snapshot`  everything the views need after a command: numpy copies only, sized for
  what is drawn (the selected head's T x T map and the thumbnail mosaic, never [L, H, T, T]).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Thumbnail modes of the head grid.
GRID_MODES = ("auto", "map", "row", "value")


@dataclass(frozen=True)
class ViewSpec:
    """What the views show.

    Attributes
    ----------
    layer, head
        Selected head of the attention map and the token strip.
    average
        Show the mean over the heads of ``layer`` instead of one head.
    query
        Global position of the query token; ``None`` follows the newest token.
    grid_mode
        ``"map"`` (whole maps, downsampled), ``"row"`` (the query's row, wrapped like text)
        or ``"auto"`` (maps for short texts, rows for long ones).
    sqrt_scale
        Draw maps and thumbnails on a square-root colour scale, so that the small weights
        of long texts stay visible (the colour bar is labelled in true weights).
    map_stage
        What the attention map shows of the head (:data:`gptviz.analysis.stages.STAGES`):
        ``"weights"``, ``"raw"`` scores, ``"masked"`` scores or ``"value"``-weighted.
    """

    layer: int = 0
    head: int = 0
    average: bool = False
    query: int | None = None
    grid_mode: str = "auto"
    sqrt_scale: bool = True
    map_stage: str = "weights"


@dataclass
class Request:
    """A command for the worker. ``gen`` grows with every request the window sends."""

    gen: int
    command: str
    args: dict[str, Any]
    view: ViewSpec


@dataclass(frozen=True)
class ModelInfo:
    """Static facts about the model the worker holds."""

    name: str
    source: str
    kind: str
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int
    vocab_size: int
    n_params: int
    class_names: tuple[str, ...] = ()
    prompt: str = ""
    kv_heads: int = 0  # key/value heads (< n_head with grouped-query attention; 0: n_head)


@dataclass
class Candidates:
    """The top-k candidates the next-token panel draws.

    ``kind == "last"``: the distribution the newest generated token was chosen from, ``chosen``
    its index in the lists (clicking another candidate replaces it: a branch).
    ``kind == "next"``: the distribution after the prompt (nothing generated yet); ``chosen``
    marks the token taken next on the timeline, if any (-1 otherwise).
    """

    kind: str
    ids: np.ndarray            # int64 [k]
    tokens: list[str]
    probs: np.ndarray          # float32 [k]
    entropy: float             # bits
    chosen: int = -1           # index into ids, -1 = none
    chosen_id: int = -1
    chosen_prob: float = float("nan")
    chosen_forced: bool = False
    chosen_greedy: bool = False  # the token was the most probable one by rule (greedy mode)
    step: int = 0              # 1-based number of the step these candidates belong to
    #: gptviz.engine.knobs.KnobEffect at ``ids`` under the current sampling settings (None:
    #: the settings change nothing, the bars are the distribution drawn from)
    knobs: Any = None


@dataclass
class Snapshot:
    """The state of the session after one request, as the views need it."""

    gen: int
    command: str
    jump: bool                 # False: exactly one token appended since the previous state
    # ---- text
    ids: np.ndarray            # int64 [N] every token (prompt + generated up to the cursor)
    tokens: list[str]          # display strings [N]
    chosen_probs: np.ndarray   # float32 [N]: probability when chosen (NaN for prompt tokens)
    forced: np.ndarray         # bool [N]
    prompt_len: int
    n_generated: int
    n_total: int               # timeline length: n_generated + steps that can be redone
    can_undo: bool
    can_redo: bool
    window_start: int          # first token of the model's window (T = N - window_start)
    block_size: int
    # ---- view
    view: ViewSpec
    query: int                 # resolved global query position
    attn: np.ndarray           # float32 [T, T] of the selected head (or average), NaN above diag
    grid: np.ndarray           # float32 mosaic [L*pitch, H*pitch], NaN where nothing is drawn;
    #                            on the square-root scale when view.sqrt_scale; read-only
    grid_mode: str             # "map" or "row" (auto resolved)
    grid_cell: int
    grid_gap: int
    # ---- predictions
    candidates: Candidates
    class_probs: np.ndarray | None
    class_names: tuple[str, ...]
    settings: Any              # gptviz.engine.sampling.SamplingSettings
    # ---- timings (ms)
    step_ms: float | None
    build_ms: float
    t_emit: float = 0.0        # time.perf_counter() when the worker sent it
    extra: dict[str, Any] = field(default_factory=dict)  # room for later panels
    prompt: str = ""           # the prompt text the session runs on
    put_aside: int = 0         # tokens an undo would bring back after a Reset (0: none)
    #: bool [N]: generated tokens taken greedily (not drawn); False for prompt tokens
    greedy: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    #: what an export of this state says it shows (gptviz.io.provenance.ExportContext)
    context: Any = None
    #: revision of ``ids``/``tokens`` (the same whenever they are), and the log of
    #: ``(revision number, tokens kept)`` of the latest changes: see :func:`tokens_kept`
    tokens_rev: Any = None
    tokens_log: tuple = ()
    #: the branch tree, compact (gptviz.engine.branches.BranchInfo: id, parent, branch point,
    #: length, first tokens' text, current), depth first
    branches: tuple = ()
    #: equal for two snapshots of one session whose :attr:`attn` (and ``extra["map_stage"]``)
    #: agree in their common leading rows and columns: only tokens were appended between
    #: them and the window did not slide (dropped snapshots in between do not matter: it is
    #: the session's state, not the count of builds); ``None``: compare nothing
    attn_rev: tuple | None = None
    #: uint32 [L*pitch, H*pitch]: the bytes of :attr:`grid`'s premultiplied RGBA8888 pixels
    #: under :attr:`grid_table` (the head grid's colours, NaN transparent), read-only;
    #: ``None`` when the worker had no table
    grid_pixels: np.ndarray | None = None
    grid_table: np.ndarray | None = None

    @property
    def n_tokens(self) -> int:
        return int(self.ids.shape[0])

    @property
    def T(self) -> int:
        """Tokens in the model's window (side of :attr:`attn`)."""
        return self.n_tokens - self.window_start


def tokens_kept(snap: Snapshot, rev: Any) -> int | None:
    """How many leading tokens of ``snap`` are those of the snapshot whose ``tokens_rev`` was
    ``rev``: ``snap.n_tokens`` when the same, ``None`` when it cannot tell (another session,
    too long ago, no revision): then compare the tokens themselves."""
    if rev is None or snap.tokens_rev is None or rev[0] != snap.tokens_rev[0]:
        return None
    if rev == snap.tokens_rev:
        return snap.n_tokens
    log = snap.tokens_log
    if not log or log[0][0] > rev[1] + 1 or rev[1] > snap.tokens_rev[1]:
        return None
    return min([snap.n_tokens] + [kept for r, kept in log if r > rev[1]])
