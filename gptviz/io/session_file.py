"""Session files (``.gptviz.json``): save a generation session, open it again exactly.

A session file pins down everything needed to rebuild a :class:`~gptviz.engine.session.Session`
token for token and map for map: which model (path, kind and a SHA-256 of its weights), the
prompt, the sampling settings, every token after the prompt with whether it was sampled or
forced (the undone ones of the redo stack too), the undo position, the ablated heads, and a
free-form ``view`` dict that the GUI fills with what is on screen.

API
---
* :func:`save_session` ``(path, session, bundle, view=None)``: atomic write (temporary file
  in the same directory, ``fsync``, ``os.replace``), so a crash never leaves a half-written
  file (see :func:`gptviz.io.export.atomic_write`).
* :func:`read_session_file` ``(path) -> SessionData``: parse and check; anything wrong (not
  UTF-8 JSON, truncated, another format, a newer version, a missing or ill-typed field) raises
  :class:`SessionFileError` naming the file and the problem.
* :func:`load_session_model` ``(data) -> ModelBundle``: open the model the file was saved
  with (a missing model is a :class:`SessionFileError` that says so).
* :func:`restore_session` ``(data, bundle) -> (Session, view)``: check the weights' hash,
  rebuild a new session by replaying the tokens, move to the saved undo position and re-apply
  the ablation. Nothing existing is touched: on failure no session is returned.
* :func:`weights_sha256` ``(bundle)``: :meth:`ModelBundle.weights_hash`, cached per model
  (hashing GPT-2 costs about a second).

Schema, version 1
-----------------
A UTF-8 JSON object::

    {
      "format": "gptviz-session",          # exactly this
      "version": 1,                         # integer; newer versions are refused
      "saved_at": "2025-01-31T12:00:00Z",   # informational
      "gptviz_version": "0.1.0",            # informational
      "model": {
        "path": "/abs/path/to/model",       # ModelBundle.source (absolute when it is a path)
        "kind": "gptviz",                   # "gptviz" | "hf-gpt2" | "hf-openai-gpt" | "nanogpt"
        "bundled": false,                   # true: the default model in resources/ (path
                                            #   ignored, load_model(None) opens it)
        "name": "tiny",                     # informational
        "weights_sha256": "<64 hex>",       # ModelBundle.weights_hash()
        "config": {...}                     # informational: GPTConfig.to_dict()
      },
      "prompt": {"text": "Once upon", "ids": [46, 311]},   # ids: at least one
      "settings": {"greedy": false, "temperature": 1.0, "top_k": 0, "top_p": 1.0,
                   "seed": 0},              # SamplingSettings in force (the seed is here)
      "top_k_report": 20,                   # Session.top_k_report
      "tokens": [                           # every token after the prompt, in timeline order:
        {"id": 262, "forced": false,        #   the history (up to the cursor), then the redo
         "text": "·the",                    #   stack (next to redo first); "text" is the
         "settings": {...}},                #   display string, informational; "settings"
        ...                                 #   (optional) the SamplingSettings the step used,
      ],                                    #   written when the engine records them
      "cursor": 5,                          # generated tokens up to the cursor (undo
                                            #   position): tokens[cursor:] is the redo stack
      "ablation": null | {
        "mode": "zero" | "mean",
        "heads": [[layer, head], ...],      # 0-based, sorted, no duplicates
        "means": [[...head_dim floats], ...],   # "mean" only: the value each removed head
                                            #   outputs instead (one row per entry of heads)
        "applied_at": null | int            # optional: number of tokens when the ablation
                                            #   was switched on (null: at the cursor)
      },
      "view": {...},                        # free-form JSON object the GUI fills (selected
                                            #   layer/head/query, average of heads, colormap,
                                            #   font scale...); restored as saved
      "branches": [                         # optional: the other branches of the branch tree
        {"at": 3,                           #   (gptviz.engine.branches): the first `at` tokens
         "tokens": [262, 11],               #   of "tokens" above, then these ids; "forced":
         "forced": [false, true],           #   one flag per id; "settings" (optional): one
         "settings": [{...}, null]},        #   SamplingSettings or null per id
        ...
      ]
    }

Files without ``branches`` (older ones) open with a tree of one branch.

Restoring
---------
The tokens are replayed (:meth:`Session.replay`: the saved token, not a new draw), so the
same tokens come back whatever settings each step was sampled with; each
:class:`~gptviz.engine.session.StepResult` keeps the saved ``forced`` flag and, when the file has
them, the settings the step used (:attr:`StepResult.settings`). After the last token
the session undoes back to ``cursor`` (the undone tokens form the redo stack) and switches
the ablation on (at ``applied_at`` when the file has it). Tokens and every attention map are
then bit-identical to the saved session's when it followed the same path (prefill, steps,
undo/redo, ablation switched on at the cursor); after other paths (an ablation switched on
and then more steps without ``applied_at``, an undo across a window slide followed by new
steps) the maps agree to float rounding (~1e-7), like the engine's own recomputations.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from gptviz.engine.interrupt import check_interrupt
from gptviz.engine.sampling import SamplingSettings
from gptviz.families import load_model
from gptviz.io.checkpoint import DEFAULT_MODEL_DIR, CheckpointError, ModelBundle
from gptviz.io.export import atomic_write
from gptviz.io.files import MAX_JSON_DEPTH, file_problem, json_too_deep

if TYPE_CHECKING:
    from gptviz.analysis.ablation import AblationMode

__all__ = [
    "FORMAT", "VERSION", "SUFFIX", "SessionFileError", "TokenRecord", "AblationRecord",
    "SessionData", "BranchRecord", "save_session", "session_to_dict", "read_session_file",
    "session_data_from_dict", "restore_session", "load_session_model", "weights_sha256",
]

FORMAT = "gptviz-session"
VERSION = 1
SUFFIX = ".gptviz.json"

#: Most branches, and branch tokens in all, a file may hold (more is refused, not truncated).
MAX_BRANCHES = 4096
MAX_BRANCH_TOKENS = 1 << 20
_SETTINGS_FIELDS = ("greedy", "temperature", "top_k", "top_p", "seed")
_HEX64 = re.compile(r"[0-9a-f]{64}")


class SessionFileError(ValueError):
    """A session file cannot be read or restored; the message names the file and why."""


@dataclass(frozen=True)
class TokenRecord:
    """One token after the prompt: its id, whether it was forced, the settings it used, and
    its display string as saved (``None``: the file has none)."""

    id: int
    forced: bool = False
    settings: SamplingSettings | None = None
    text: str | None = None


@dataclass(frozen=True)
class AblationRecord:
    """The removed heads, how they were removed, and (mean mode) what they output instead.

    ``means[i]`` is the ``head_dim`` vector head ``heads[i]`` outputs in ``"mean"`` mode.
    """

    heads: tuple[tuple[int, int], ...]
    mode: AblationMode = "zero"
    means: tuple[tuple[float, ...], ...] | None = None
    applied_at: int | None = None


@dataclass(frozen=True)
class BranchRecord:
    """A branch of the branch tree: the first ``at`` tokens of the session's path, then
    ``tokens``."""

    at: int
    tokens: tuple[TokenRecord, ...]


@dataclass
class SessionData:
    """A parsed, checked session file (see the module docstring for the meaning of fields)."""

    path: str
    model_path: str
    model_kind: str
    model_bundled: bool
    weights_sha256: str
    prompt: str
    prompt_ids: list[int]
    settings: SamplingSettings
    tokens: list[TokenRecord]
    cursor: int
    ablation: AblationRecord | None = None
    view: dict[str, Any] = field(default_factory=dict)
    top_k_report: int = 20
    model_name: str = ""
    model_config: dict[str, Any] | None = None
    version: int = VERSION
    saved_at: str = ""
    branches: list[BranchRecord] = field(default_factory=list)

    @property
    def redo_ids(self) -> list[int]:
        """Token ids of the redo stack, next to redo first."""
        return [t.id for t in self.tokens[self.cursor:]]


# ---------------------------------------------------------------------- weights hash
_HASH_CACHE: weakref.WeakKeyDictionary[torch.nn.Module, tuple[tuple, str]] = \
    weakref.WeakKeyDictionary()


def _fingerprint(model: torch.nn.Module) -> tuple:
    """Cheap identity of the weights: which tensors, where, and their in-place versions."""
    return tuple((name, t.data_ptr(), t.dtype, tuple(t.shape), getattr(t, "_version", 0))
                 for name, t in model.state_dict(keep_vars=True).items())


def weights_sha256(bundle: ModelBundle) -> str:
    """:meth:`ModelBundle.weights_hash`, computed once per model.

    The cached value is reused while the model's tensors are the same objects at the same
    addresses, and their in-place version counters have not moved (``load_state_dict``,
    ``.to(...)`` or in-place updates under ``no_grad`` all invalidate it; writes through
    ``tensor.data`` are not seen).
    """
    model = bundle.model
    fp = _fingerprint(model)
    hit = _HASH_CACHE.get(model)
    if hit is not None and hit[0] == fp:
        return hit[1]
    h = bundle.weights_hash()
    _HASH_CACHE[model] = (fp, h)
    return h


# ---------------------------------------------------------------------- saving
def _settings_dict(s: SamplingSettings) -> dict[str, Any]:
    return {"greedy": bool(s.greedy), "temperature": float(s.temperature),
            "top_k": int(s.top_k), "top_p": float(s.top_p), "seed": int(s.seed)}


def _model_path(bundle: ModelBundle) -> tuple[str, bool]:
    src = str(bundle.source or "")
    if not src or src.startswith("<"):
        return src, False
    p = Path(src)
    try:
        p = p.resolve()
        bundled = p == DEFAULT_MODEL_DIR.resolve()
    except OSError:
        bundled = False
    return str(p), bundled


def _ablation_dict(session: Any) -> dict[str, Any] | None:
    from gptviz.analysis.ablation import read_ablation

    parts = read_ablation(session.ablation)
    if parts is None:
        return None
    keep = parts.keep  # [L, H] float64
    if np.any(keep[keep != 1] != 0):
        raise ValueError("the session's ablation scales heads partially (keep values other "
                         "than 0 and 1); session files store removed heads only")
    if not parts.heads:
        return None
    out: dict[str, Any] = {"mode": parts.mode, "heads": [list(h) for h in parts.heads]}
    if parts.mode == "mean" and parts.fill is not None:
        out["means"] = [[float(x) for x in parts.fill[a, b]] for a, b in parts.heads]
    applied = getattr(session, "ablation_applied_at", None)  # engine hook, when it exists
    out["applied_at"] = int(applied) if isinstance(applied, (int, np.integer)) else None
    return out


def session_to_dict(session: Any, bundle: ModelBundle,
                    view: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON object :func:`save_session` writes (see the module docstring).

    Raises
    ------
    ValueError
        ``view`` is not a JSON object of JSON values, or the session is not on ``bundle``.
    """
    if session.model is not bundle.model:
        raise ValueError("the session does not run on this model bundle")
    if view is None:
        view = {}
    if not isinstance(view, dict):
        raise ValueError(f"view must be a dict (got {type(view).__name__})")
    try:
        view = json.loads(json.dumps(view, allow_nan=False))  # a deep, JSON-clean copy
    except (TypeError, ValueError) as e:
        raise ValueError(f"view is not JSON-serialisable: {e}") from None
    from gptviz import __version__

    path, bundled = _model_path(bundle)
    steps = list(session.history) + list(session.redo_stack)
    tokens = []
    for r in steps:
        rec: dict[str, Any] = {"id": int(r.token_id), "forced": bool(r.forced),
                               "text": str(r.token)}
        used = getattr(r, "settings", None)  # engine hook: the settings the step used
        if isinstance(used, SamplingSettings):
            rec["settings"] = _settings_dict(used)
        tokens.append(rec)
    return {
        "format": FORMAT,
        "version": VERSION,
        "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "gptviz_version": __version__,
        "model": {
            "path": path,
            "kind": str(bundle.kind),
            "bundled": bundled,
            "name": str(bundle.name),
            "weights_sha256": weights_sha256(bundle),
            "config": bundle.config.to_dict(),
        },
        "prompt": {"text": session.prompt,
                   "ids": [int(t) for t in session.tokens[:session.prompt_len]]},
        "settings": _settings_dict(session.settings),
        "top_k_report": int(session.top_k_report),
        "tokens": tokens,
        "cursor": int(session.n_generated),
        "ablation": _ablation_dict(session),
        "view": view,
        "branches": _branches_list(session),
    }


def _branches_list(session: Any) -> list[dict[str, Any]]:
    """The session's other branches (:mod:`gptviz.engine.branches`), as the file stores
    them."""
    if not hasattr(session, "discard_listeners"):
        return []
    from gptviz.engine.branches import tree_for

    out = []
    for at, ids, forced, settings in tree_for(session).records():
        rec: dict[str, Any] = {"at": int(at), "tokens": [int(t) for t in ids],
                               "forced": [bool(f) for f in forced]}
        if any(isinstance(x, SamplingSettings) for x in settings):
            rec["settings"] = [_settings_dict(x) if isinstance(x, SamplingSettings) else None
                               for x in settings]
        out.append(rec)
    return out


def save_session(path: str | os.PathLike[str], session: Any, bundle: ModelBundle,
                 view: dict[str, Any] | None = None) -> None:
    """Write ``session`` (on ``bundle``) and the GUI's ``view`` to a ``.gptviz.json`` file.

    The write is atomic: the old file (if any) stays intact until the new one is complete on
    disk.

    Raises
    ------
    ValueError
        ``view`` is not JSON-serialisable (nothing is written).
    OSError
        The file cannot be written (the message names it; the old file is intact).
    """
    d = session_to_dict(session, bundle, view)
    try:
        text = json.dumps(d, ensure_ascii=False, indent=1, allow_nan=False)
        data = text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: fall back to \\u escapes
        data = json.dumps(d, ensure_ascii=True, indent=1, allow_nan=False).encode("ascii")
    atomic_write(path, lambda f: f.write(data + b"\n"))


# ---------------------------------------------------------------------- reading
class _Checker:
    """Typed field access that raises :class:`SessionFileError` naming file and field."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, msg: str) -> SessionFileError:
        return SessionFileError(f"{self.source}: {msg}")

    def get(self, d: dict[str, Any], key: str, where: str, types: tuple[type, ...],
            what: str, optional: bool = False, default: Any = None) -> Any:
        name = f"{where}.{key}" if where else key
        if key not in d:
            if optional:
                return default
            raise self.fail(f"field '{name}' is missing")
        v = d[key]
        if optional and v is None:
            return default
        ok = isinstance(v, types) and not (isinstance(v, bool) and bool not in types)
        if not ok:
            raise self.fail(f"field '{name}' must be {what} (got {_json_type(v)})")
        return v

    def integer(self, d, key, where, optional=False, default=None, minimum=None) -> int:
        v = self.get(d, key, where, (int,), "an integer", optional, default)
        if v is not None and minimum is not None and v < minimum:
            name = f"{where}.{key}" if where else key
            raise self.fail(f"field '{name}' must be >= {minimum} (got {v})")
        return v

    def number(self, d: dict[str, Any], key: str, where: str) -> float:
        """A finite number (an integer too large for a float is refused like infinity)."""
        v = self.get(d, key, where, (int, float), "a number")
        if not _finite(v):
            raise self.fail(f"field '{where}.{key}' must be a finite number (got "
                            f"{_short_repr(v)})")
        return float(v)

    def settings(self, d: Any, where: str) -> SamplingSettings:
        if not isinstance(d, dict):
            raise self.fail(f"field '{where}' must be an object (got {_json_type(d)})")
        greedy = self.get(d, "greedy", where, (bool,), "true or false")
        temperature = self.number(d, "temperature", where)
        top_k = self.integer(d, "top_k", where)
        top_p = self.number(d, "top_p", where)
        seed = self.integer(d, "seed", where)
        try:
            return SamplingSettings(greedy=greedy, temperature=temperature, top_k=top_k,
                                    top_p=top_p, seed=seed)
        except ValueError as e:
            raise self.fail(f"field '{where}': {e}") from None


def _finite(v: Any) -> bool:
    """A real number that converts to a finite float."""
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer of hundreds of digits
        return False


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true/false"
    if isinstance(v, (int, float)):
        return "a number"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, list):
        return "a list"
    if isinstance(v, dict):
        return "an object"
    return type(v).__name__


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _check_header(c: _Checker, d: Any) -> int:
    """The format and version fields of a decoded session object; returns the version."""
    if not isinstance(d, dict):
        raise c.fail(f"not a gptviz session file (the JSON holds {_json_type(d)}, "
                     "not an object)")
    if json_too_deep(d):
        raise c.fail(f"JSON nested too deeply (more than {MAX_JSON_DEPTH} levels of "
                     "lists/objects)")
    fmt = d.get("format")
    if fmt != FORMAT:
        raise c.fail(f"not a gptviz session file (format is {fmt!r}, expected {FORMAT!r})")
    version = d.get("version")
    if isinstance(version, bool) or not isinstance(version, int):
        raise c.fail(f"field 'version' must be an integer (got {_json_type(version)})")
    if version > VERSION:
        raise c.fail(f"session file version {version} was written by a newer gptviz; this "
                     f"one reads version {VERSION} (please update gptviz)")
    if version < 1:
        raise c.fail(f"unsupported session file version {version}")
    return version


def session_data_from_dict(d: Any, source: str = "<session>") -> SessionData:
    """Check a decoded session object and turn it into :class:`SessionData`.

    Raises
    ------
    SessionFileError
        Wrong format, unsupported version, or a missing / ill-typed / out-of-range field;
        the message starts with ``source``.
    """
    c = _Checker(source)
    version = _check_header(c, d)

    model = c.get(d, "model", "", (dict,), "an object")
    model_path = c.get(model, "path", "model", (str,), "a string")
    model_kind = c.get(model, "kind", "model", (str,), "a string")
    bundled = c.get(model, "bundled", "model", (bool,), "true or false", True, False)
    sha = c.get(model, "weights_sha256", "model", (str,), "a string")
    if not _HEX64.fullmatch(sha):
        raise c.fail("field 'model.weights_sha256' must be 64 lowercase hex digits")
    model_name = c.get(model, "name", "model", (str,), "a string", True, "")
    model_config = c.get(model, "config", "model", (dict,), "an object", True, None)

    prompt = c.get(d, "prompt", "", (dict,), "an object")
    prompt_text = c.get(prompt, "text", "prompt", (str,), "a string")
    prompt_ids = c.get(prompt, "ids", "prompt", (list,), "a list of token ids")
    if not prompt_ids:
        raise c.fail("field 'prompt.ids' is empty (a prompt has at least one token)")
    for i, t in enumerate(prompt_ids):
        if isinstance(t, bool) or not isinstance(t, int) or t < 0:
            raise c.fail(f"field 'prompt.ids[{i}]' must be a token id >= 0 (got {t!r})")

    settings = c.settings(c.get(d, "settings", "", (dict,), "an object"), "settings")
    top_k_report = c.integer(d, "top_k_report", "", True, 20, minimum=1)

    raw_tokens = c.get(d, "tokens", "", (list,), "a list")
    tokens: list[TokenRecord] = []
    for i, rec in enumerate(raw_tokens):
        where = f"tokens[{i}]"
        if not isinstance(rec, dict):
            raise c.fail(f"field '{where}' must be an object (got {_json_type(rec)})")
        tid = c.integer(rec, "id", where, minimum=0)
        forced = c.get(rec, "forced", where, (bool,), "true or false")
        used = rec.get("settings")
        shown = c.get(rec, "text", where, (str,), "a string", True, None)
        tokens.append(TokenRecord(id=tid, forced=forced,
                                  settings=None if used is None
                                  else c.settings(used, f"{where}.settings"), text=shown))
    cursor = c.integer(d, "cursor", "", minimum=0)
    if cursor > len(tokens):
        raise c.fail(f"field 'cursor' is {cursor} but the file holds only {len(tokens)} "
                     "tokens after the prompt")

    ablation = None
    raw_abl = c.get(d, "ablation", "", (dict,), "an object or null", True, None)
    if raw_abl is not None:
        mode = c.get(raw_abl, "mode", "ablation", (str,), "a string")
        if mode not in ("zero", "mean"):
            raise c.fail(f"field 'ablation.mode' must be 'zero' or 'mean' (got {mode!r})")
        raw_heads = c.get(raw_abl, "heads", "ablation", (list,), "a list of [layer, head]")
        heads: list[tuple[int, int]] = []
        for i, h in enumerate(raw_heads):
            if (not isinstance(h, list) or len(h) != 2
                    or any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in h)):
                raise c.fail(f"field 'ablation.heads[{i}]' must be [layer, head], two "
                             f"integers >= 0 (got {h!r})")
            heads.append((h[0], h[1]))
        if len(set(heads)) != len(heads):
            raise c.fail("field 'ablation.heads' lists a head twice")
        means = None
        if mode == "mean":
            raw_means = c.get(raw_abl, "means", "ablation", (list,), "a list of vectors")
            if len(raw_means) != len(heads):
                raise c.fail(f"field 'ablation.means' has {len(raw_means)} rows for "
                             f"{len(heads)} heads")
            rows = []
            for i, row in enumerate(raw_means):
                if (not isinstance(row, list) or not row
                        or any(isinstance(x, bool) or not isinstance(x, (int, float))
                               or not _finite(x) for x in row)):
                    raise c.fail(f"field 'ablation.means[{i}]' must be a non-empty list of "
                                 "finite numbers")
                rows.append(tuple(float(x) for x in row))
            if len({len(r) for r in rows}) > 1:
                raise c.fail("field 'ablation.means': rows of different lengths")
            means = tuple(rows)
        applied_at = c.integer(raw_abl, "applied_at", "ablation", True, None, minimum=1)
        if applied_at is not None and not (
                len(prompt_ids) <= applied_at <= len(prompt_ids) + len(tokens)):
            raise c.fail(f"field 'ablation.applied_at' is {applied_at}, outside the "
                         f"{len(prompt_ids)}..{len(prompt_ids) + len(tokens)} tokens of the "
                         "session")
        if heads:
            ablation = AblationRecord(heads=tuple(heads), mode=mode, means=means,
                                      applied_at=applied_at)

    view = c.get(d, "view", "", (dict,), "an object", True, {})
    branches = _read_branches(c, d, len(tokens))
    raw_saved_at = d.get("saved_at")
    saved_at = raw_saved_at if isinstance(raw_saved_at, str) else ""
    return SessionData(
        path=source, model_path=model_path, model_kind=model_kind, model_bundled=bundled,
        weights_sha256=sha, prompt=prompt_text, prompt_ids=list(prompt_ids), settings=settings,
        tokens=tokens, cursor=cursor, ablation=ablation, view=view,
        top_k_report=top_k_report, model_name=model_name, model_config=model_config,
        version=version, saved_at=saved_at, branches=branches,
    )


def _read_branches(c: _Checker, d: dict[str, Any], n_tokens: int) -> list[BranchRecord]:
    """The optional ``branches`` field, checked (types, sizes, branch points)."""
    raw = c.get(d, "branches", "", (list,), "a list", True, [])
    if len(raw) > MAX_BRANCHES:
        raise c.fail(f"field 'branches' holds {len(raw)} branches (at most {MAX_BRANCHES})")
    out: list[BranchRecord] = []
    total = 0
    for j, rec in enumerate(raw):
        where = f"branches[{j}]"
        if not isinstance(rec, dict):
            raise c.fail(f"field '{where}' must be an object (got {_json_type(rec)})")
        at = c.integer(rec, "at", where, minimum=0)
        if at > n_tokens:
            raise c.fail(f"field '{where}.at' is {at} but the file holds only {n_tokens} "
                         "tokens after the prompt")
        ids = c.get(rec, "tokens", where, (list,), "a list of token ids")
        total += len(ids)
        if not ids or total > MAX_BRANCH_TOKENS:
            raise c.fail(f"field '{where}.tokens' must hold 1..{MAX_BRANCH_TOKENS} tokens in "
                         f"all branches (got {len(ids) if ids else 0} here, {total} in all)")
        forced = c.get(rec, "forced", where, (list,), "a list of true/false")
        used = c.get(rec, "settings", where, (list,), "a list", True, None)
        if len(forced) != len(ids) or (used is not None and len(used) != len(ids)):
            raise c.fail(f"field '{where}': 'forced' and 'settings' need one entry per token "
                         f"({len(ids)})")
        toks = []
        for i, t in enumerate(ids):
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise c.fail(f"field '{where}.tokens[{i}]' must be a token id >= 0 (got "
                             f"{_short_repr(t)})")
            if not isinstance(forced[i], bool):
                raise c.fail(f"field '{where}.forced[{i}]' must be true or false (got "
                             f"{_json_type(forced[i])})")
            st = None if used is None or used[i] is None else \
                c.settings(used[i], f"{where}.settings[{i}]")
            toks.append(TokenRecord(id=t, forced=forced[i], settings=st))
        out.append(BranchRecord(at=at, tokens=tuple(toks)))
    return out


def read_session_file(path: str | os.PathLike[str]) -> SessionData:
    """Read and check a ``.gptviz.json`` session file.

    Raises
    ------
    SessionFileError
        The file is missing or unreadable, empty, not UTF-8, not JSON (corrupt or truncated),
        not a gptviz session, from a newer version, or has a missing / ill-typed field. The
        message names the file and what is wrong.
    """
    source = str(path)
    problem = file_problem(path)  # a directory, a pipe (a read would block), a dead link
    if problem is not None and os.path.lexists(path):
        raise SessionFileError(f"{source}: {problem}")
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise SessionFileError(f"{source}: no such file") from None
    except OSError as e:
        raise SessionFileError(f"{source}: cannot read the file ({e.strerror or e})") from None
    if not raw.strip():
        raise SessionFileError(f"{source}: the file is empty")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SessionFileError(f"{source}: not a gptviz session file (not UTF-8 text: byte "
                               f"{e.start} is invalid; the file is corrupt or of another "
                               "kind)") from None
    try:
        d = json.loads(text, parse_constant=_reject_constant)
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        hint = ("truncated" if isinstance(e, json.JSONDecodeError) and e.pos >= len(text.rstrip())
                else "corrupt")
        raise SessionFileError(f"{source}: not valid JSON, the file is {hint} ({e})") from None
    except RecursionError:
        raise SessionFileError(f"{source}: not valid JSON (nested too deeply)") from None
    return session_data_from_dict(d, source)


# ---------------------------------------------------------------------- restoring
def load_session_model(data: SessionData) -> ModelBundle:
    """Open the model a session was saved with (the bundled model, or ``data.model_path``).

    Raises
    ------
    SessionFileError
        The model is missing or cannot be opened (the message names the session file, the
        model path and the loader's reason).
    """
    if data.model_bundled:
        where, arg = "the bundled default model", None
    else:
        where, arg = data.model_path, data.model_path
        if not arg or arg.startswith("<"):
            raise SessionFileError(f"{data.path}: the session's model ({arg or 'unnamed'}) was "
                                   "not loaded from a file; open its model first")
        from gptviz.families import hub

        # A snapshot of a Hugging Face cache (another machine's, or one moved since): the same
        # repository and commit in this machine's cache, or a message that says how to get it.
        name = None if os.path.lexists(arg) else hub.cached_name_of(arg)
        if name is not None:
            repo, _, commit = name.partition("@")
            where = f"{repo}" + (f" (commit {commit[:8]})" if commit else "")
            arg = name
        where = hub.shown_name(where)
    try:
        return load_model(arg)
    except CheckpointError as e:
        raise SessionFileError(f"{data.path}: the session's model {where} cannot be opened: "
                               f"{e}") from None


def _restore_ablation(rec: AblationRecord, bundle: ModelBundle, source: str):
    from gptviz.analysis.ablation import make_ablation

    cfg = bundle.config
    means = None
    if rec.mode == "mean":
        assert rec.means is not None
        hd = cfg.head_dim
        if len(rec.means[0]) != hd:
            raise SessionFileError(f"{source}: ablation means have {len(rec.means[0])} values "
                                   f"per head, the model's heads have {hd}")
        means = torch.zeros(cfg.n_layer, cfg.n_head, hd, dtype=torch.float64)
        for (layer, head), row in zip(rec.heads, rec.means):
            if layer < cfg.n_layer and head < cfg.n_head:
                means[layer, head] = torch.tensor(row, dtype=torch.float64)
    try:
        return make_ablation(cfg, rec.heads, rec.mode, model=bundle.model, means=means)
    except ValueError as e:
        raise SessionFileError(f"{source}: ablation: {e}") from None


def _check_texts(data: SessionData, session: Any) -> None:
    """The saved text of the prompt and of every token must be what the saved ids are in the
    model's tokenizer: an id changed by hand (its text left as it was) would otherwise come
    back as a token the session never had, shown as sampled.

    Raises
    ------
    SessionFileError
        The first mismatch, in one line. (The token texts are display strings: should their
        format ever change, this check has to accept the older form too.)
    """
    src = data.path
    if session.prompt != data.prompt:
        raise SessionFileError(
            f"{src}: the prompt's token ids read {_short(session.prompt)} but the file's text "
            f"is {_short(data.prompt)}; the file was edited or damaged")
    for i, rec in enumerate(data.tokens):
        if rec.text is None:
            continue
        shown = session.display(rec.id)  # "<id>" outside the tokenizer: replay refuses it
        if shown != rec.text and 0 <= rec.id < session.n_choosable:
            raise SessionFileError(
                f"{src}: tokens[{i}] is id {rec.id}, which is {shown!r} in this model's "
                f"vocabulary, but the file says {rec.text!r}; the file was edited or damaged")


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n - 1] + "…")


def restore_session(data: SessionData, bundle: ModelBundle, *,
                    progress: Callable[[int, int], None] | None = None
                    ) -> tuple[Any, dict[str, Any]]:
    """Rebuild the saved session on ``bundle``; returns ``(session, view)``.

    Parameters
    ----------
    data
        From :func:`read_session_file`.
    bundle
        The model (typically :func:`load_session_model`); its weights must hash to the
        file's.
    progress
        Called as ``progress(done, total)`` while tokens are replayed (from the calling
        thread); an exception it raises aborts the restore (to cancel). The replay also
        stops with :class:`~gptviz.engine.interrupt.Interrupted` between two tokens when a
        check of the caller's :func:`~gptviz.engine.interrupt.interruptible` says so.

    Returns
    -------
    (Session, dict)
        A new session at the saved undo position, with the saved settings, redo stack and
        ablation; and a copy of the saved ``view`` dict.

    Raises
    ------
    SessionFileError
        The model has different weights, or the file's tokens / heads do not fit the model.
        Nothing is modified: no other session is touched, and none is returned.
    """
    from gptviz.engine.session import Session

    src = data.path
    have = weights_sha256(bundle)
    if have != data.weights_sha256:
        raise SessionFileError(
            f"{src}: the model {bundle.source or bundle.name!s} has different weights from the "
            f"one this session was saved with (sha256 {have[:12]}… instead of "
            f"{data.weights_sha256[:12]}…); open the session's model "
            f"({'the bundled model' if data.model_bundled else data.model_path})")
    tok = bundle.tokenizer
    # The saved text when it still encodes to the saved ids (then Session.prompt is exactly
    # the saved text), else the ids themselves: the tokens are what the maps depend on.
    try:
        same = tok.encode(data.prompt) == data.prompt_ids
    except Exception:  # noqa: BLE001 - any tokenizer failure: fall back to the ids
        same = False
    prompt: str | list[int] = data.prompt if same else list(data.prompt_ids)
    try:
        session = Session(bundle, prompt, settings=data.settings,
                          top_k_report=data.top_k_report)
    except ValueError as e:
        raise SessionFileError(f"{src}: cannot rebuild the prompt: {e}") from None

    ablation = _restore_ablation(data.ablation, bundle, src) if data.ablation else None
    _check_texts(data, session)
    applied_at = data.ablation.applied_at if data.ablation else None
    total = len(data.tokens)

    def apply_ablation() -> None:
        try:
            session.set_ablation(ablation)
        except ValueError as e:
            raise SessionFileError(f"{src}: ablation: {e}") from None

    if ablation is not None and applied_at == session.n_tokens:
        apply_ablation()
    for i, rec in enumerate(data.tokens):
        check_interrupt()
        try:
            session.replay(rec.id, forced=rec.forced, settings=rec.settings)
        except ValueError as e:
            raise SessionFileError(f"{src}: tokens[{i}]: {e}") from None
        if ablation is not None and applied_at == session.n_tokens:
            apply_ablation()
        if progress is not None:
            progress(i + 1, total)
    session.undo(total - data.cursor)
    if ablation is not None and applied_at is None:
        apply_ablation()
    _restore_branches(data, session)
    return session, json.loads(json.dumps(data.view))


def _restore_branches(data: SessionData, session: Any) -> None:
    """The file's other branches into the session's branch tree (replayed only when the
    user switches to one)."""
    from gptviz.engine.branches import tree_for

    tree = tree_for(session)
    try:
        tree.add_records((b.at, [t.id for t in b.tokens], [t.forced for t in b.tokens],
                          [t.settings for t in b.tokens]) for b in data.branches)
    except ValueError as e:
        tree.detach()
        raise SessionFileError(f"{data.path}: branches: {e}") from None
