"""``python -m gptviz trace``: generate, then save tokens, attention and probabilities to NPZ.

The file (``numpy.load(path)``, no pickle needed) holds

==============  ==========================  ==============================================
key             dtype, shape                meaning
==============  ==========================  ==============================================
token_ids       int64 ``[T]``               the tokens of the model's window
tokens          unicode ``[T]``             their display strings (``·`` space, ``↵`` ...)
attention       float32 ``[L, H, T, T]``    every layer's and head's attention, [query, key]
probs           float32 ``[T, V]``          row t: softmax distribution of the token after
                                            position t, before any sampling filter
prompt_len      int64 scalar                prompt tokens inside the window
window_start    int64 scalar                global position of the window's first token
config          unicode scalar              the model config as JSON
model           unicode scalar              the model's name
model_source    unicode scalar              where the model was loaded from
step            int64 scalar                generated tokens in the trace's text
settings        unicode scalar              the sampling settings in force, as JSON
                                            (greedy, temperature, top_k, top_p, seed)
forced          bool ``[T]``                the tokens chosen by hand instead of sampled
ablation        unicode scalar              ``null``, or JSON ``{"mode": "zero" | "mean",
                                            "heads": [[layer, head], ...]}``: the heads
                                            removed when the trace was computed
description     unicode scalar              the above in words, one line each (model, step,
                                            sampling, forced tokens, ablation)
scores          float32 ``[L, H, T, T]``    with ``--scores`` only: the raw scores q·k times
                                            the family's scale (1/√d), -inf where masked
                                            (above the diagonal): softmax over the last axis
                                            is ``attention``
value_weighted  float32 ``[L, H, T, T]``    with ``--value-weighted`` only: ‖α_ij · v_j W_O^h‖
                                            (Kobayashi et al., 2020), 0 where masked
==============  ==========================  ==============================================

The keys from ``model`` on were added later: older files lack them, and a reader of the
older files finds the first seven as they were.

``T`` is the window length: the whole text unless it grew past ``block_size``, in which case
the window slid (see :mod:`gptviz.engine.session`) and ``window_start > 0``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from gptviz.analysis.scores import trace_extras
from gptviz.cli.generate import add_generation_args, run_session
from gptviz.engine.memory import format_bytes
from gptviz.io.export import check_target, write_trace_npz
from gptviz.io.provenance import trace_file_arrays


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``trace`` options."""
    add_generation_args(p, default_steps=20)
    p.add_argument("--out", required=True, metavar="FILE.npz",
                   help="NPZ file to write (a pipe or /dev/stdout is written into)")
    p.add_argument("--scores", action="store_true",
                   help="also save the raw scores q·k/√d, -inf where masked (key 'scores')")
    p.add_argument("--value-weighted", action="store_true",
                   help="also save the value-weighted attention ‖α·v W_O‖ "
                        "(key 'value_weighted')")


def run(args: argparse.Namespace) -> int:
    """Generate and write the NPZ; prints a one-line summary."""
    if not args.out:
        raise ValueError("--out is empty: give the name of the NPZ file to write")
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: output directory does not exist")
    try:
        check_target(out)  # a directory, a socket...: refused before the generation runs
    except OSError as e:
        raise ValueError(f"--out {out}: {e.strerror or e}") from None
    session = run_session(args)
    arrays = trace_file_arrays(session)
    arrays.update(trace_extras(session, scores=bool(getattr(args, "scores", False)),
                               value_weighted=bool(getattr(args, "value_weighted", False))))
    try:
        write_trace_npz(out, arrays)  # the one writer of the format (atomic)
    except OSError as e:
        raise ValueError(f"{out}: cannot write ({e.strerror or e})") from None
    L, H, T, _ = arrays["attention"].shape
    # The summary goes where the data did not: stderr when the NPZ went to stdout.
    log = sys.stderr if _is_stdout(out) else sys.stdout
    size = format_bytes(sum(int(np.asarray(a).nbytes) for a in arrays.values()))
    print(f"wrote {out}: {T} tokens ({session.prompt_len} prompt, {session.n_generated} "
          f"generated), attention [{L}, {H}, {T}, {T}] float32 "
          f"({format_bytes(arrays['attention'].nbytes)}), probs "
          f"{list(arrays['probs'].shape)}; {size} of arrays", file=log)
    return 0


def _is_stdout(path: Path) -> bool:
    """Whether ``path`` is the file (or pipe) this process's standard output writes to."""
    try:
        a, b = os.stat(path), os.fstat(1)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
