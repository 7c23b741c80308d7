"""What an exported file shows: the model, the step, the sampling, the forced tokens and the
ablation behind it.

A CSV, a picture or a trace of an ablated model looks just like one of the clean model; the
same goes for a greedy run and a sampled one. :func:`session_context` reads those facts off a
:class:`~gptviz.engine.session.Session` into an :class:`ExportContext`, which writes them

* as text lines (:meth:`ExportContext.lines`): the header comment of the CSV files and the
  optional title of the pictures;
* as arrays (:meth:`ExportContext.arrays`): the keys a trace NPZ has besides the data
  (``model``, ``model_source``, ``step``, ``settings``, ``forced``, ``ablation``,
  ``description``; schema in :mod:`gptviz.cli.trace`).

Examples
--------
>>> ctx = session_context(session)                     # doctest: +SKIP
>>> print("\\n".join(ctx.lines()))                      # doctest: +SKIP
model: tiny (/models/tiny)
step 5: 12 tokens (7 prompt + 5 generated)
sampling: T=0.9 seed=5
forced tokens: step 3 '·the' (position 9)
ablation: zero, L0 H1
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from gptviz.engine.sampling import SamplingSettings

if TYPE_CHECKING:
    from gptviz.engine.session import Session

__all__ = ["CONTEXT_KEYS", "ExportContext", "session_context", "trace_file_arrays"]

#: The trace NPZ keys :meth:`ExportContext.arrays` writes.
CONTEXT_KEYS = ("model", "model_source", "step", "settings", "forced", "ablation", "description")


@dataclass(frozen=True)
class ExportContext:
    """The facts behind an export (see the module docstring).

    Attributes
    ----------
    model, model_source
        The model's name and where it was loaded from.
    n_tokens, prompt_len, step
        Tokens up to the cursor, of which prompt tokens; ``step`` generated tokens.
    settings
        The sampling settings in force (for the next step).
    sampled_with
        ``(describe, first step, last step)`` runs of the settings the sampled (not forced)
        tokens up to the cursor were drawn with, in order; steps counted from 1.
    forced
        ``(global position, display string)`` of every forced token up to the cursor.
    ablation_mode, ablated
        ``"zero"`` or ``"mean"`` and the removed ``(layer, head)`` pairs; ``None`` and ``()``
        for the normal model.
    """

    model: str
    model_source: str
    n_tokens: int
    prompt_len: int
    step: int
    settings: SamplingSettings
    sampled_with: tuple[tuple[str, int, int], ...] = ()
    forced: tuple[tuple[int, str], ...] = ()
    ablation_mode: str | None = None
    ablated: tuple[tuple[int, int], ...] = ()

    # ------------------------------------------------------------------ text
    def sampling_text(self) -> str:
        """``T=0.9 seed=5``; runs of other settings with their steps; ``… (next step)`` when
        no token was sampled yet."""
        if not self.sampled_with:
            return f"{self.settings.describe()} (next step)"
        if len(self.sampled_with) == 1:
            text = self.sampled_with[0][0]
        else:
            text = ", ".join(f"{d} (step {a})" if a == b else f"{d} (steps {a}-{b})"
                             for d, a, b in self.sampled_with)
        now = self.settings.describe()
        if now != self.sampled_with[-1][0]:
            text += f"; next step: {now}"
        return text

    def forced_text(self) -> str:
        if not self.forced:
            return "none"
        return ", ".join(f"step {p - self.prompt_len + 1} {t!r} (position {p})"
                         for p, t in self.forced)

    def ablation_text(self) -> str:
        if not self.ablated:
            return "none"
        return f"{self.ablation_mode}, " + ", ".join(f"L{a} H{b}" for a, b in self.ablated)

    def lines(self) -> list[str]:
        """Five lines: model, step, sampling, forced tokens, ablation."""
        src = f" ({self.model_source})" if self.model_source else ""
        gen = self.n_tokens - self.prompt_len
        return [
            f"model: {self.model}{src}",
            f"step {self.step}: {self.n_tokens} tokens ({self.prompt_len} prompt + {gen} "
            "generated)",
            f"sampling: {self.sampling_text()}",
            f"forced tokens: {self.forced_text()}",
            f"ablation: {self.ablation_text()}",
        ]

    # ------------------------------------------------------------------ arrays
    def arrays(self, window_start: int, T: int) -> dict[str, np.ndarray]:
        """The trace NPZ keys of :data:`CONTEXT_KEYS` for the window of ``T`` tokens from
        ``window_start``: ``forced`` is bool ``[T]``, ``step`` int64, the others strings
        (``settings`` and ``ablation`` JSON; ``ablation`` is ``null`` for the normal model)."""
        forced = np.zeros(T, dtype=bool)
        for p, _t in self.forced:
            if window_start <= p < window_start + T:
                forced[p - window_start] = True
        s = self.settings
        settings = {"greedy": bool(s.greedy), "temperature": float(s.temperature),
                    "top_k": int(s.top_k), "top_p": float(s.top_p), "seed": int(s.seed)}
        ablation: Any = None
        if self.ablated:
            ablation = {"mode": self.ablation_mode, "heads": [list(h) for h in self.ablated]}
        return {
            "model": np.asarray(self.model),
            "model_source": np.asarray(self.model_source),
            "step": np.asarray(self.step, dtype=np.int64),
            "settings": np.asarray(json.dumps(settings)),
            "forced": forced,
            "ablation": np.asarray(json.dumps(ablation)),
            "description": np.asarray("\n".join(self.lines())),
        }


def session_context(session: Session) -> ExportContext:
    """The :class:`ExportContext` of ``session`` as it is now (cursor, settings, ablation)."""
    from gptviz.analysis.ablation import read_ablation

    pl = session.prompt_len
    runs: list[list[Any]] = []
    forced: list[tuple[int, str]] = []
    for j, r in enumerate(session.history, start=1):
        if r.forced:
            forced.append((int(r.index), str(r.token)))
            continue
        d = r.settings.describe() if r.settings is not None else "unknown settings"
        if runs and runs[-1][0] == d:
            runs[-1][2] = j
        else:
            runs.append([d, j, j])
    parts = read_ablation(session.ablation)
    heads = tuple(parts.heads) if parts is not None else ()
    bundle = session.bundle
    return ExportContext(
        model=str(bundle.name), model_source=str(bundle.source or ""),
        n_tokens=session.n_tokens, prompt_len=pl, step=session.n_generated,
        settings=session.settings, sampled_with=tuple((d, a, b) for d, a, b in runs),
        forced=tuple(forced), ablation_mode=parts.mode if heads and parts else None,
        ablated=heads,
    )


def trace_file_arrays(session: Session) -> dict[str, np.ndarray]:
    """Everything a trace NPZ file holds: the window's arrays
    (:meth:`~gptviz.engine.Session.trace_arrays`) and what they show (:class:`ExportContext`)."""
    arrays = session.trace_arrays()
    T = int(arrays["token_ids"].shape[0])
    arrays.update(session_context(session).arrays(session.window_start, T))
    return arrays
