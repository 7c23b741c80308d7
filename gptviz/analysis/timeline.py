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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.analysis.heads import HeadScores, head_scores, induction_scores

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

_NAME = re.compile(rf"^\d{{{SNAPSHOT_DIGITS}}}$")


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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise TimelineError(f"{path}: cannot be read ({e})") from None
    if not isinstance(data, dict):
        raise TimelineError(f"{path}: expected a JSON object")
    return data


def _curves(data: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    out = {}
    for name, pts in (data.get("curves") or {}).items():
        a = np.asarray(pts, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 2:
            raise TimelineError(f"{path}: curve {name!r} is not a list of [iteration, loss]")
        out[str(name)] = a
    return out


def read_series(directory: str | Path) -> Series:
    """The snapshots in ``directory``, checked.

    Raises
    ------
    TimelineError
        No snapshot folder; a ``metadata.json`` without an integer ``iteration`` or a known
        ``stage``, or whose iteration is not its folder's name; stages out of pipeline order.
    """
    d = Path(directory)
    if not d.is_dir():
        raise TimelineError(f"{d}: not a folder of training snapshots")
    entries = []
    for sub in sorted(p for p in d.iterdir() if p.is_dir() and _NAME.match(p.name)):
        meta = _read_json(sub / "metadata.json")
        it, stage = meta.get("iteration"), meta.get("stage")
        if not isinstance(it, int) or isinstance(it, bool):
            raise TimelineError(f"{sub / 'metadata.json'}: no integer 'iteration'")
        if it != int(sub.name):
            raise TimelineError(f"{sub / 'metadata.json'}: iteration {it} in folder {sub.name}")
        if stage not in STAGE_ORDER:
            raise TimelineError(f"{sub / 'metadata.json'}: unknown stage {stage!r} (expected "
                                f"one of {', '.join(STAGE_ORDER)})")
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
        data = _read_json(losses)
        stages = [dict(s) for s in data.get("stages") or [] if isinstance(s, dict)]
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
