"""A training run as a timeline: its snapshots, its loss curves, and one prompt run on each.

A *series* is a folder written by ``python -m gptviz train --snapshot-every N`` (see
:mod:`gptviz.train.snapshots`): one gptviz checkpoint directory per snapshot, named by its
zero-padded iteration (``000000/``, ``000250/``), whose ``metadata.json`` gives
``iteration`` and ``stage``, plus ``losses.json`` with the run's curves. The shipped series
is ``resources/timeline/`` (:func:`default_series_dir`).

:func:`read_series` lists and checks the snapshots (the iteration in the metadata matches the
folder name, stages in pipeline order); :func:`run_prompt` runs a prompt through one
snapshot's model and returns a :class:`TimelineFrame`: the attention of every head, the
next-token distribution after the prompt, the per-head scores of the prompt
(:func:`~gptviz.analysis.heads.head_scores`) and the induction probe
(:func:`~gptviz.analysis.heads.induction_scores`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.heads import HeadScores, head_scores, induction_scores
from gptviz.io.files import MAX_JSON_DEPTH, file_problem, json_too_deep

if TYPE_CHECKING:
    from gptviz.io.checkpoint import ModelBundle

__all__ = ["LOSSES_FILE", "SNAPSHOT_DIGITS", "STAGE_ORDER", "DEFAULT_PROMPT", "TimelineError",
           "SnapshotEntry", "Series", "TimelineFrame", "default_series_dir", "read_series",
           "run_prompt"]

#: The run's loss curves, next to the snapshot folders.
LOSSES_FILE = "losses.json"
#: Digits of a snapshot folder's name.
SNAPSHOT_DIGITS = 6
#: Stages in the order a run goes through them.
STAGE_ORDER: tuple[str, ...] = ("pretrain", "induct", "anneal", "finetune")
#: A prompt of the shipped series' tales that repeats a span: an induction head, once it has
#: formed, attends from the second copy to the token after the first.
DEFAULT_PROMPT = ("the salty ship sailed on the shore. a fox found the old lamp. "
                  "the salty ship sailed on the shore.")

# ASCII digits only (``\d`` takes other scripts' digits, ``$`` a trailing newline: either
# would give two folders the same iteration).
_NAME = re.compile(rf"^[0-9]{{{SNAPSHOT_DIGITS}}}\Z")


class TimelineError(ValueError):
    """A series folder that cannot be shown; the message names the file and the problem."""


@dataclass(frozen=True)
class SnapshotEntry:
    """One snapshot: its training ``iteration``, ``stage`` and folder."""

    iteration: int
    stage: str
    path: Path


@dataclass
class Series:
    """The snapshots of a run, in iteration order, and its loss curves.

    Attributes
    ----------
    directory
        The series folder.
    snapshots
        :class:`SnapshotEntry` per snapshot, iterations increasing.
    stages
        ``[{"stage", "start", "end"}, ...]`` from ``losses.json`` (empty without it).
    curves
        ``{name: float64 [n, 2]}`` of (iteration, loss): ``"l1"``, ``"l3"``, ...
    """

    directory: Path
    snapshots: list[SnapshotEntry]
    stages: list[dict[str, Any]] = field(default_factory=list)
    curves: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def iterations(self) -> list[int]:
        return [s.iteration for s in self.snapshots]


@dataclass
class TimelineFrame:
    """A prompt run on one snapshot (plain numpy: it crosses to the UI thread as it is).

    Attributes
    ----------
    index, iteration, stage
        Which snapshot (``index`` into :attr:`Series.snapshots`).
    tokens, ids
        The prompt as this snapshot's tokenizer splits it (display strings, ``[T]`` ids).
    attention
        float32 ``[L, H, T, T]`` of the prompt (zero above the diagonal).
    top_ids, top_tokens, top_probs
        The ``k`` most probable next tokens after the prompt.
    scores
        :class:`~gptviz.analysis.heads.HeadScores` of the prompt, with the probe's
        ``[L, H]`` induction scores in ``probe_induction``.
    class_names, class_probs
        The fine-tuning head's distribution at the last token, when the snapshot has W_y.
    """

    index: int
    iteration: int
    stage: str
    tokens: list[str]
    ids: np.ndarray
    attention: np.ndarray
    top_ids: np.ndarray
    top_tokens: list[str]
    top_probs: np.ndarray
    scores: HeadScores
    class_names: tuple[str, ...] = ()
    class_probs: np.ndarray | None = None


def default_series_dir() -> Path:
    """The series shipped in ``resources/timeline/``."""
    from gptviz.io.resources import resource_path

    return Path(resource_path("timeline"))


#: Largest ``metadata.json`` / ``losses.json`` read (real ones: a few hundred bytes / a few
#: hundred kilobytes).
MAX_METADATA_BYTES = 1 << 20
MAX_LOSSES_BYTES = 64 << 20
#: Characters of a value a message quotes.
_QUOTE_CHARS = 80


def _quoted(value: Any) -> str:
    """``repr(value)``, cut: a message stays one readable line."""
    out = repr(value)
    return out if len(out) <= _QUOTE_CHARS else out[:_QUOTE_CHARS - 2] + "…" + out[-1]


def _read_json(path: Path, limit: int = MAX_METADATA_BYTES) -> dict[str, Any]:
    """A JSON object from ``path``, or a :class:`TimelineError` naming it. The entry is looked
    at before it is opened (a named pipe would block the read forever) and its size bounded."""
    problem = file_problem(path)
    if problem is not None:
        raise TimelineError(f"{path}: {problem}")
    try:
        size = path.stat().st_size
    except OSError as e:
        raise TimelineError(f"{path}: cannot be read ({e.strerror or e})") from None
    if size > limit:
        raise TimelineError(f"{path}: {size:,} bytes, more than a series file holds "
                            f"({limit:,} at most)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise TimelineError(f"{path}: cannot be read ({e.strerror or e})") from None
    except UnicodeDecodeError as e:
        raise TimelineError(f"{path}: not UTF-8 text (byte {e.start} is invalid)") from None
    except json.JSONDecodeError as e:
        raise TimelineError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column "
                            f"{e.colno})") from None
    except RecursionError:
        raise TimelineError(f"{path}: not valid JSON (nested too deeply)") from None
    except ValueError:  # an integer of more digits than Python converts
        raise TimelineError(f"{path}: a number of more digits than can be read") from None
    if not isinstance(data, dict):
        raise TimelineError(f"{path}: expected a JSON object")
    if json_too_deep(data):
        raise TimelineError(f"{path}: nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    return data


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _curves(data: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    curves = data.get("curves") or {}
    if not isinstance(curves, dict):
        raise TimelineError(f"{path}: 'curves' is not an object of name: [[iteration, loss], "
                            "...]")
    out = {}
    for name, pts in curves.items():
        bad = TimelineError(f"{path}: curve {_quoted(name)} is not a list of [iteration, "
                            "loss]")
        if isinstance(pts, list) and not pts:
            out[str(name)] = np.zeros((0, 2))  # a stage that logged nothing
            continue
        try:
            a = np.asarray(pts, dtype=np.float64)
        except (ValueError, TypeError):
            raise bad from None
        if a.ndim != 2 or a.shape[1] != 2:
            raise bad
        if not np.isfinite(a[:, 0]).all():
            raise TimelineError(f"{path}: curve {_quoted(name)} has an iteration that is not "
                                "a finite number")
        out[str(name)] = a
    return out


def _stages(data: dict[str, Any], path: Path) -> list[dict[str, Any]]:
    stages = data.get("stages") or []
    if not isinstance(stages, list):
        raise TimelineError(f"{path}: 'stages' is not a list")
    out = []
    for i, st in enumerate(stages):
        if not isinstance(st, dict):
            continue
        if not isinstance(st.get("stage"), str) or not all(
                _number(st.get(k, 0)) for k in ("start", "end")):
            raise TimelineError(f"{path}: stages[{i}] is not {{\"stage\": name, \"start\": "
                                f"iteration, \"end\": iteration}} ({_quoted(st)})")
        out.append(dict(st))
    return out


def read_series(directory: str | Path) -> Series:
    """The snapshots in ``directory``, checked.

    Raises
    ------
    TimelineError
        No snapshot folder; a ``metadata.json`` that is missing, not a file, too large, not a
        JSON object, without an integer ``iteration`` or a known ``stage``, or whose iteration
        is not its folder's name; stages out of pipeline order; a ``losses.json`` whose
        curves or stages are not what :func:`gptviz.train.snapshots.write_losses` writes.
    """
    d = Path(directory)
    if not d.is_dir():
        raise TimelineError(f"{d}: not a folder of training snapshots")
    entries = []
    try:
        subs = sorted(p for p in d.iterdir() if _NAME.match(p.name) and p.is_dir())
    except OSError as e:
        raise TimelineError(f"{d}: cannot be read ({e.strerror or e})") from None
    for sub in subs:
        meta = _read_json(sub / "metadata.json")
        it, stage = meta.get("iteration"), meta.get("stage")
        if not isinstance(it, int) or isinstance(it, bool):
            raise TimelineError(f"{sub / 'metadata.json'}: no integer 'iteration'")
        if it != int(sub.name):
            raise TimelineError(f"{sub / 'metadata.json'}: iteration {_quoted(it)} in folder "
                                f"{sub.name}")
        if not isinstance(stage, str) or stage not in STAGE_ORDER:
            raise TimelineError(f"{sub / 'metadata.json'}: unknown stage {_quoted(stage)} "
                                f"(expected one of {', '.join(STAGE_ORDER)})")
        entries.append(SnapshotEntry(it, str(stage), sub))
    if not entries:
        raise TimelineError(f"{d}: no snapshot folders (named by iteration, e.g. 000000/)")
    ranks = [STAGE_ORDER.index(e.stage) for e in entries]
    if ranks != sorted(ranks):
        raise TimelineError(f"{d}: stages out of order ({', '.join(e.stage for e in entries)})")
    stages: list[dict[str, Any]] = []
    curves: dict[str, np.ndarray] = {}
    losses = d / LOSSES_FILE
    if losses.is_file():
        data = _read_json(losses, MAX_LOSSES_BYTES)
        stages = _stages(data, losses)
        curves = _curves(data, losses)
    return Series(d, entries, stages, curves)


def run_prompt(bundle: ModelBundle, prompt: str, index: int = 0, iteration: int = 0,
               stage: str = "", top_k: int = 10, probe: np.ndarray | None = None
               ) -> TimelineFrame:
    """Run ``prompt`` through one snapshot's model.

    Parameters
    ----------
    bundle
        The snapshot, loaded (:func:`~gptviz.families.load_model`).
    prompt
        Text; cut to the model's context (its last ``block_size`` tokens).
    index, iteration, stage
        Carried into the frame.
    top_k
        Next-token candidates kept.
    probe
        The snapshot's ``[L, H]`` induction-probe scores when already known (else measured).

    Raises
    ------
    ValueError
        The prompt has no token.
    """
    import torch

    model = bundle.model
    ids = bundle.tokenizer.encode(prompt)[-model.config.block_size:]
    if not ids:
        raise ValueError("the timeline prompt is empty")
    x = torch.tensor([ids], dtype=torch.long)  # (1, T)
    with torch.inference_mode():
        out = model(x, return_attn=True)
        att = torch.stack(out.attentions, dim=0)[:, 0].float()  # (L, H, T, T)
        logits = out.logits[0, -1].float()  # (V,)
        probs = torch.softmax(logits, dim=-1)
        k = min(int(top_k), probs.numel())
        top = torch.topk(probs, k)
        class_probs = None
        if model.classifier is not None:
            class_probs = torch.softmax(model.classify(out.hidden).float(), -1)[0].numpy()
    attention = att.numpy().astype(np.float32)
    ids_a = np.asarray(ids, dtype=np.int64)
    if probe is None:
        probe = induction_scores(model)
    top_ids = top.indices.numpy().astype(np.int64)
    return TimelineFrame(
        index=index, iteration=iteration, stage=stage,
        tokens=[bundle.tokenizer.display(int(i)) for i in ids], ids=ids_a,
        attention=attention, top_ids=top_ids,
        top_tokens=[bundle.tokenizer.display(int(i)) for i in top_ids],
        top_probs=top.values.numpy().astype(np.float32),
        scores=head_scores(attention, ids_a, probe_induction=np.asarray(probe)),
        class_names=tuple(model.config.class_names),
        class_probs=None if class_probs is None else np.asarray(class_probs, np.float32))
