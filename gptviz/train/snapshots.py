"""Snapshots of a training run, for the timeline: the model at chosen iterations.

``python -m gptviz train --snapshot-every N`` (or ``--snapshots 0,50,100``) writes one
gptviz checkpoint directory per snapshot into ``--snapshot-dir``, named by the zero-padded
iteration (``000000/``, ``000250/``). Iterations count across the stages of the run (the
fine-tuning stage continues where pre-training stopped), and iteration 0 is the model before
its first step. The weights are stored as float16 (a snapshot of a small model is a few
hundred kilobytes); :func:`~gptviz.io.checkpoint.load_gptviz_checkpoint` reads them back into
the float32 model. ``metadata.json`` gives ``iteration``, ``stage`` (``"pretrain"``,
``"induct"``, ``"anneal"``, ``"finetune"``) and ``stage_iteration``; the run's loss curves go
to ``losses.json`` next to the snapshots (:func:`write_losses`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gptviz.analysis.timeline import LOSSES_FILE, SNAPSHOT_DIGITS
from gptviz.io.checkpoint import save_checkpoint
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.gpt import GPT

__all__ = ["SNAPSHOT_DIGITS", "LOSSES_FILE", "Snapshots", "parse_iterations", "snapshot_name",
           "save_snapshot", "write_losses", "stage_offset"]


def snapshot_name(iteration: int) -> str:
    """Folder name of the snapshot at ``iteration`` (``250`` -> ``"000250"``)."""
    if iteration < 0 or iteration >= 10 ** SNAPSHOT_DIGITS:
        raise ValueError(f"iteration {iteration} does not fit {SNAPSHOT_DIGITS} digits")
    return f"{iteration:0{SNAPSHOT_DIGITS}d}"


def parse_iterations(text: str) -> tuple[int, ...]:
    """``"0,50,100"`` -> ``(0, 50, 100)`` (sorted, no duplicates).

    Raises
    ------
    ValueError
        An entry is not a non-negative integer.
    """
    out = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        # ASCII digits only: str.isdigit() also takes "²" and other scripts' digits
        if not (part.isascii() and part.isdigit()):
            raise ValueError(f"snapshot iterations must be non-negative integers, got "
                             f"{_short(part)}")
        if len(part.lstrip("0")) > SNAPSHOT_DIGITS:
            raise ValueError(f"snapshot iteration {_short(part)} does not fit "
                             f"{SNAPSHOT_DIGITS} digits")
        out.add(int(part))
    return tuple(sorted(out))


def _short(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n - 1] + "…")


def save_snapshot(directory: str | Path, model: GPT, tokenizer: Tokenizer, iteration: int,
                  stage: str, extra: dict[str, Any] | None = None) -> Path:
    """Write the snapshot of ``model`` at ``iteration`` as ``directory/<iteration>/``.

    The weights go to disk as float16 (a copy is converted; ``model`` is left as it is).

    Returns
    -------
    Path
        The snapshot's folder.
    """
    half = copy.deepcopy(model).cpu().half().eval()
    meta = {"iteration": int(iteration), "stage": stage, **(extra or {})}
    return save_checkpoint(Path(directory) / snapshot_name(iteration), half, tokenizer, meta)


@dataclass
class Snapshots:
    """When and where a run saves snapshots.

    Attributes
    ----------
    directory
        Where the snapshot folders go; ``None``: no snapshots.
    every
        Save every ``every`` iterations (0: not by period).
    at
        Save at these iterations too.
    saved
        Iterations written so far in this process.
    """

    directory: Path | None = None
    every: int = 0
    at: tuple[int, ...] = ()
    saved: list[int] = field(default_factory=list)

    @classmethod
    def from_args(cls, args: Any) -> Snapshots:
        """From the ``--snapshot-dir/--snapshot-every/--snapshots`` options (absent: off).

        Without ``--snapshot-dir`` snapshots go to ``<run dir>/snapshots`` when either of the
        others is given."""
        every = int(getattr(args, "snapshot_every", 0) or 0)
        at = parse_iterations(getattr(args, "snapshots", None) or "")
        if every < 0:
            raise ValueError("--snapshot-every must be at least 0")
        directory = getattr(args, "snapshot_dir", None)
        if directory is None and (every or at):
            directory = Path(args.run_dir) / "snapshots"
        if directory is None or not (every or at):
            return cls()
        return cls(Path(directory), every, at)

    @property
    def enabled(self) -> bool:
        """Whether any snapshot is to be written."""
        return self.directory is not None

    def due(self, iteration: int, last: bool = False) -> bool:
        """Whether the model at ``iteration`` is to be saved (``last``: a stage's last one,
        always saved when snapshots are on)."""
        if self.directory is None:
            return False
        return last or iteration in self.at or (self.every > 0 and iteration % self.every == 0)

    def maybe_save(self, model: GPT, tokenizer: Tokenizer, iteration: int, stage: str,
                   stage_iteration: int, last: bool = False) -> Path | None:
        """Save the snapshot at ``iteration`` when it is due; return its folder."""
        if not self.due(iteration, last) or self.directory is None:
            return None
        was_training = model.training
        path = save_snapshot(self.directory, model, tokenizer, iteration, stage,
                             {"stage_iteration": int(stage_iteration),
                              "name": model.config.name})
        model.train(was_training)
        self.saved.append(iteration)
        return path


def stage_offset(metadata: dict[str, Any]) -> int:
    """Iterations run before the stage that continues a checkpoint with ``metadata``:
    pre-training's, plus the copying and anneal stages' when they ran.

    Raises
    ------
    ValueError
        An ``iters`` that is not a non-negative integer (a hand-edited ``metadata.json``);
        the message names the field.
    """
    def iters(d: dict[str, Any], where: str) -> int:
        v = d.get("iters", 0)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            r = repr(v)
            raise ValueError(f"checkpoint metadata: {where} must be a whole number of "
                             f"iterations (got {r if len(r) <= 40 else r[:39] + '…'})")
        return v

    total = iters(metadata, "'iters'")
    for stage in ("induct", "anneal"):
        part = metadata.get(stage)
        if isinstance(part, dict):
            total += iters(part, f"'{stage}.iters'")
    return total


def write_losses(directory: Path, stages: list[dict[str, Any]]) -> Path:
    """Write the run's loss curves to ``directory/losses.json``.

    Parameters
    ----------
    stages
        One entry per stage, in order: ``{"stage", "start", "end", "curves": {name:
        [[iteration, value], ...]}}`` with iterations counted over the whole run. Names:
        ``"l1"`` (language model), ``"l2"`` (genre), ``"l3"`` (L2 + λ·L1), ``"copy"``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    curves: dict[str, list[list[float]]] = {}
    for st in stages:
        for name, pts in st["curves"].items():
            curves.setdefault(name, []).extend([int(i), round(float(v), 5)] for i, v in pts)
    data = {"stages": [{k: st[k] for k in ("stage", "start", "end")} for st in stages],
            "curves": curves}
    path = directory / LOSSES_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path
