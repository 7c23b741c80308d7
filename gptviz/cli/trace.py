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
==============  ==========================  ==============================================

``T`` is the window length: the whole text unless it grew past ``block_size``, in which case
the window slid (see :mod:`gptviz.engine.session`) and ``window_start > 0``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from gptviz.io.export import write_trace_npz
from gptviz.cli.generate import add_generation_args, run_session


def configure(p: argparse.ArgumentParser) -> None:
    """Add the ``trace`` options."""
    add_generation_args(p, default_steps=20)
    p.add_argument("--out", required=True, metavar="FILE.npz", help="NPZ file to write")


def run(args: argparse.Namespace) -> int:
    """Generate and write the NPZ; prints a one-line summary."""
    out = Path(args.out)
    if not out.parent.is_dir():
        raise ValueError(f"{out.parent}: output directory does not exist")
    session = run_session(args)
    arrays = session.trace_arrays()
    try:
        write_trace_npz(out, arrays)  # the one writer of the format (atomic)
    except OSError as e:
        raise ValueError(f"{out}: cannot write ({e.strerror or e})") from None
    L, H, T, _ = arrays["attention"].shape
    print(f"wrote {out}: {T} tokens ({session.prompt_len} prompt, {session.n_generated} "
          f"generated), attention [{L}, {H}, {T}, {T}], probs {list(arrays['probs'].shape)}")
    return 0
