"""Exports that need no Qt: attention and next-token tables to CSV, the trace to NPZ.

Every file is written atomically (:func:`atomic_write`): the data goes to a temporary file in
the target's directory, which is flushed, ``fsync``-ed and then renamed over the target with
``os.replace``. A crash, a full disk or an exception half-way leaves either the old file or
the new one, never a mix, and no temporary file behind.

CSV files are UTF-8 (no byte-order mark), comma-separated, quoted where needed by the
:mod:`csv` module (tokens may hold commas, quotes, line breaks, emoji), with ``\\r\\n`` line
ends as RFC 4180 has it. Numbers are written as the shortest decimal that reads back to the
same value in the array's own float type (``float32`` attention reads back bit for bit).

* :func:`attention_csv` ``(path, matrix [T, T], tokens)``: a header row ``query \\ key``,
  then the key tokens; one row per query: its token, then its attention over the keys.
* :func:`next_token_csv` ``(path, ids, probs, tokens)``: columns ``rank, id, token,
  probability``, most probable first (rank 1).
* :func:`trace_npz` ``(path, session)``: the NPZ of ``python -m gptviz trace`` (schema in
  :mod:`gptviz.cli.trace`), from :meth:`gptviz.engine.session.Session.trace_arrays`, written by
  :func:`write_trace_npz` (which the ``trace`` command uses too).

Errors: ``ValueError`` for bad arguments (shapes, lengths), ``OSError`` for the file system
(its message names the target file).
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from gptviz.engine.session import Session

__all__ = [
    "atomic_write", "attention_csv", "next_token_csv", "trace_npz", "write_trace_npz",
    "TRACE_KEYS",
]

#: Keys of a trace NPZ file (see :mod:`gptviz.cli.trace`).
TRACE_KEYS = ("token_ids", "tokens", "attention", "probs", "prompt_len", "window_start", "config")


# ---------------------------------------------------------------------- atomic writes
def _umask() -> int:
    """The process umask, read without changing it (``os.umask`` is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def _named_error(e: OSError, target: Path) -> OSError:
    """The same error (errno, reason) about the target file rather than the temporary one."""
    if e.errno is None or not e.strerror:
        return OSError(f"cannot write {target}: {e}")
    return OSError(e.errno, e.strerror, str(target))  # the subclass follows errno


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file so that it is either entirely old or entirely new, never partial.

    Parameters
    ----------
    path
        The target file; its directory must exist. A symbolic link is written through (the
        file it points to is replaced, the link stays).
    write
        Called with a binary file object open on a temporary file in the target's directory;
        it writes the whole content.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    OSError
        The directory is missing or not writable, the disk is full, ... (the message names
        ``path``); the target is then untouched and the temporary file removed.
    Exception
        Whatever ``write`` raises, after the same clean-up.

    Notes
    -----
    The new file gets the old file's permission bits, or ``0o666 & ~umask`` when it is new.
    """
    target = Path(path)
    if target.is_symlink():
        target = Path(os.path.realpath(target))
    directory = target.parent
    try:
        mode = target.stat().st_mode & 0o777
    except OSError:
        mode = 0o666 & ~_umask()
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise _named_error(e, target) from None
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
            if hasattr(os, "fchmod"):
                os.fchmod(f.fileno(), mode)
        os.replace(tmp, target)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError) and e.filename != str(target):
            raise _named_error(e, target) from e
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    return target


def _write_text(path: str | os.PathLike[str], text: str) -> Path:
    data = text.encode("utf-8", errors="surrogatepass")
    return atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------------- CSV
def _number_strings(values: np.ndarray) -> list[str]:
    """Shortest decimal strings that read back to the same value in ``values``' dtype."""
    if values.dtype.kind == "f":
        return [str(v) for v in values]  # numpy scalars print their shortest round-trip form
    return [str(float(v)) for v in values]


def _as_real_array(x: object, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers (got dtype {a.dtype})")
    if a.dtype.kind != "f":
        a = a.astype(np.float64)
    return a


def _token_list(tokens: Sequence[str], n: int, name: str) -> list[str]:
    out = [str(t) for t in tokens]
    if len(out) != n:
        raise ValueError(f"{name}: expected {n} tokens, got {len(out)}")
    return out


def attention_csv(path: str | os.PathLike[str], matrix: object, tokens: Sequence[str]) -> Path:
    """Write one attention matrix ``[T, T]`` (query rows, key columns) as CSV.

    Parameters
    ----------
    path
        Target ``.csv`` file.
    matrix
        ``[T, T]`` attention (a numpy array or tensor), e.g. ``session.attention_head(l, h)``
        or the mean over heads.
    tokens
        The ``T`` display strings of the window's tokens (keys and queries are the same).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        ``matrix`` is not square 2-D real, or ``tokens`` does not have ``T`` entries.
    OSError
        The file cannot be written.
    """
    m = _as_real_array(matrix, "attention matrix")
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"attention matrix must be square [T, T] (got shape {list(m.shape)})")
    toks = _token_list(tokens, m.shape[0], "attention_csv")
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["query \\ key", *toks])
    for tok, row in zip(toks, m):
        w.writerow([tok, *_number_strings(row)])
    return _write_text(path, buf.getvalue())


def next_token_csv(path: str | os.PathLike[str], ids: object, probs: object,
                   tokens: Sequence[str]) -> Path:
    """Write a next-token table as CSV: ``rank, id, token, probability``.

    Parameters
    ----------
    path
        Target ``.csv`` file.
    ids
        ``[k]`` token ids (e.g. from :meth:`Session.next_distribution`).
    probs
        ``[k]`` their probabilities.
    tokens
        ``[k]`` their display strings.

    Rows are sorted by probability, most probable first (ties keep the given order), and
    ranked from 1.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        The three are not 1-D of the same length, or ``ids`` are not integers.
    OSError
        The file cannot be written.
    """
    if hasattr(ids, "detach"):  # a torch tensor
        ids = ids.detach().cpu().numpy()  # type: ignore[union-attr]
    i = np.asarray(ids)
    p = _as_real_array(probs, "probs")
    if i.ndim != 1 or p.ndim != 1 or i.shape != p.shape:
        raise ValueError(f"ids and probs must be 1-D of the same length "
                         f"(got shapes {list(i.shape)} and {list(p.shape)})")
    if i.size and i.dtype.kind not in "iu":
        raise ValueError(f"ids must be integers (got dtype {i.dtype})")
    toks = _token_list(tokens, len(i), "next_token_csv")
    order = np.argsort(-p.astype(np.float64), kind="stable")
    probs_s = _number_strings(p[order])
    buf = io.StringIO(newline="")
    w = csv.writer(buf)
    w.writerow(["rank", "id", "token", "probability"])
    for rank, (j, ps) in enumerate(zip(order, probs_s), start=1):
        w.writerow([rank, int(i[j]), toks[j], ps])
    return _write_text(path, buf.getvalue())


# ---------------------------------------------------------------------- NPZ
def write_trace_npz(path: str | os.PathLike[str], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write trace arrays (:meth:`Session.trace_arrays`) to an NPZ file, atomically.

    The one writer of the trace format: ``python -m gptviz trace`` and :func:`trace_npz` both
    use it. The file loads with ``numpy.load(path)`` without pickle.

    Raises
    ------
    ValueError
        A key of the schema is missing or an array would need pickle (object dtype).
    OSError
        The file cannot be written.
    """
    missing = [k for k in TRACE_KEYS if k not in arrays]
    if missing:
        raise ValueError(f"trace arrays lack {', '.join(missing)}")
    arrs = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrs.items() if v.dtype.hasobject]
    if bad:
        raise ValueError(f"trace arrays {', '.join(bad)} have object dtype (would need pickle)")
    # A file object: numpy then keeps the name as given (no ".npz" appended).
    return atomic_write(path, lambda f: np.savez(f, **arrs))


def trace_npz(path: str | os.PathLike[str], session: "Session") -> dict[str, np.ndarray]:
    """Write the session's window as a trace NPZ (same schema as ``python -m gptviz trace``).

    Runs one full forward over the window (:meth:`Session.trace_arrays`, with the session's
    ablation), so call it from a worker thread on big models.

    Returns
    -------
    dict
        The arrays written.
    """
    arrays = session.trace_arrays()
    write_trace_npz(path, arrays)
    return arrays
