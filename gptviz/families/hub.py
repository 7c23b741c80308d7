"""Models by name from the local Hugging Face hub cache, never from the network.

``gpt2``, ``openai-community/gpt2``, ``EleutherAI/pythia-70m`` or ``org/name@revision`` name a
model that ``hf download`` (or ``transformers``) put in the cache on some connected machine:
``<cache>/models--org--name/snapshots/<commit>/`` with ``refs/main`` naming the commit.
:func:`resolve_name` finds that snapshot folder through ``huggingface_hub``'s own cache
functions with ``local_files_only=True`` (what ``HF_HUB_OFFLINE=1`` does): nothing here opens
a connection. :func:`cached_models` lists every model of the cache with the family that would
open it, for the File ▸ Open model dialog.

The cache folder follows ``huggingface_hub``: ``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else
``$XDG_CACHE_HOME/huggingface/hub``, else ``~/.cache/huggingface/hub``, read at every call
(so a test or a shell can point it elsewhere after import).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptviz.io.checkpoint import CheckpointError, read_json
from gptviz.io.files import file_problem

__all__ = ["LEGACY_NAMES", "HubName", "CachedModel", "hub_cache_dir", "parse_name",
           "resolve_name", "cached_models", "download_command", "display_name",
           "parameter_count", "read_ref", "shown_name", "quoted", "cached_name_of"]

#: Bare names of the Hub's first models and the repositories they now live in (the Hub
#: redirects them; a cache made with the old name keeps it, so both are looked for).
LEGACY_NAMES = {
    "gpt2": "openai-community/gpt2",
    "gpt2-medium": "openai-community/gpt2-medium",
    "gpt2-large": "openai-community/gpt2-large",
    "gpt2-xl": "openai-community/gpt2-xl",
    "distilgpt2": "distilbert/distilgpt2",
    "openai-gpt": "openai-community/openai-gpt",
}

# One Hub name part: what huggingface_hub's validate_repo_id accepts (letters, digits, - _ .;
# no leading/trailing - or ., no "--" or "..").
_PART = r"(?!.*(?:--|\.\.))[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,94}[A-Za-z0-9_])?"
_NAME = re.compile(rf"^(?P<repo>(?:{_PART}/)?{_PART})(?:@(?P<rev>[\w./-]{{1,200}}))?\Z")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# File names that say "this is a path", never a Hub name.
_PATH_SUFFIXES = (".pt", ".pth", ".ckpt", ".json", ".safetensors", ".bin")


@dataclass(frozen=True)
class HubName:
    """A parsed model name: the repository and an optional revision (branch, tag, commit)."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


@dataclass(frozen=True)
class CachedModel:
    """One model of the cache, as the Open model dialog lists it.

    Attributes
    ----------
    repo_id
        ``"openai-community/gpt2"`` (as cached: ``"gpt2"`` for an old download).
    path
        Its snapshot folder (the revision ``refs/main`` names, else the newest).
    revision
        The snapshot's commit hash.
    refs
        Branches and tags that point at it (``("main",)``).
    size_on_disk
        Bytes of the whole repository in the cache (every revision).
    family, family_title
        The registered family that recognises the snapshot (``None`` when none does).
    reason
        Why gptviz cannot open it (``None`` when a family recognises it).
    n_params
        Parameter count from the safetensors headers or ``config.json`` (no weights read;
        ``None`` when neither tells).
    """

    repo_id: str
    path: Path
    revision: str
    refs: tuple[str, ...]
    size_on_disk: int
    family: str | None
    family_title: str | None
    reason: str | None
    n_params: int | None

    @property
    def supported(self) -> bool:
        """A family recognises it."""
        return self.family is not None

    @property
    def spec(self) -> str:
        """The name that opens it: ``org/name``, or ``org/name@<commit>`` when no ``main``
        ref points at the snapshot listed."""
        if "main" in self.refs or not self.revision:
            return self.repo_id
        return f"{self.repo_id}@{self.revision}"


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, from the environment as it is now."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def parse_name(text: str) -> HubName | None:
    """``text`` as a Hub name (``gpt2``, ``org/name``, ``org/name@rev``), or ``None`` when it
    can only be a path (``./x``, ``/x``, ``a/b/c``, ``ckpt.pt``, a backslash...)."""
    if not text or text != text.strip() or "\\" in text or text.startswith(("~", ".")):
        return None
    if text.lower().endswith(_PATH_SUFFIXES):
        return None
    m = _NAME.match(text)
    if m is None:
        return None
    return HubName(m.group("repo"), m.group("rev"))


def shown(text: str) -> str:
    """``text`` as messages show it: quoted with escapes when it holds a newline, a NUL or
    another unprintable character (an error stays one line)."""
    return text if text.isprintable() else ascii(text)


def download_command(name: HubName) -> str:
    """The command that puts ``name`` in the cache on a connected machine."""
    rev = f" --revision {name.revision}" if name.revision else ""
    return f"hf download {name.repo_id}{rev}"


def _candidates(repo_id: str) -> list[str]:
    """The repositories a name may be cached under: its current one first, then the old
    bare name (``gpt2`` and ``openai-community/gpt2`` find each other)."""
    current = LEGACY_NAMES.get(repo_id, repo_id)
    out = [current]
    out += [old for old, new in LEGACY_NAMES.items() if new == current and old not in out]
    return out


#: Bytes a refs file may have (a commit hash is 40; hand edits add a newline or two).
_MAX_REF_BYTES = 1024
#: Bytes a config.json or safetensors header is read up to when listing the cache.
_MAX_LISTED_JSON = 32 * 1024 * 1024
#: Characters of a name, revision or path a message shows (a 100,000-character name stays one
#: readable line).
_SHOWN_CHARS = 300


def shown_name(text: str) -> str:
    """``text`` as a message shows a name: :func:`shown`, cut to :data:`_SHOWN_CHARS`."""
    out = shown(text)
    return out if len(out) <= _SHOWN_CHARS else out[:_SHOWN_CHARS - 1] + "…"


def quoted(value: Any) -> str:
    """``repr(value)`` cut to :data:`_SHOWN_CHARS` (escapes keep it one line)."""
    out = repr(value)
    return out if len(out) <= _SHOWN_CHARS else out[:_SHOWN_CHARS - 2] + "…" + out[-1]


def _repo_dir(cache: Path, repo_id: str) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def read_ref(path: Path) -> tuple[str | None, str | None]:
    """The commit a refs file names: ``(commit, None)``, or ``(None, problem)`` in a few
    words. Never blocks: the entry is looked at (``stat``) before it is opened, and opened
    with ``O_NONBLOCK``; at most :data:`_MAX_REF_BYTES` are read."""
    problem = file_problem(path)
    if problem is not None:
        return None, problem
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # replaced since the stat above
                return None, "is not a regular file"
            raw = os.read(fd, _MAX_REF_BYTES + 1)
        finally:
            os.close(fd)
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    if len(raw) > _MAX_REF_BYTES:
        return None, f"is not a commit hash (more than {_MAX_REF_BYTES} bytes)"
    text = raw.decode("ascii", errors="backslashreplace").strip()
    if not text:
        return None, "is empty"
    if not _COMMIT.match(text):
        start = text if len(text) <= 48 else text[:47] + "…"
        return None, f"is not a commit hash ({shown(start)})"
    return text, None


def _dir_problem(path: Path) -> str | None:
    """Why ``path`` is not a folder that can be listed (``None``: it is one)."""
    problem = file_problem(path)
    if problem == "is a directory, not a file":
        return None
    if problem is None:
        return "is a file, not a folder"
    return problem.replace(", not a regular file", ", not a folder")


def _cached_snapshot(repo_id: str, revision: str | None, cache: Path
                     ) -> tuple[Path | None, str | None]:
    """The cached snapshot of ``repo_id`` at ``revision``: ``(folder, None)``, or ``(None,
    problem)`` (``problem`` ``None``: not cached at all or not at that revision; else what is
    broken in the cached repository, in a few words)."""
    repo = _repo_dir(cache, repo_id)
    if not os.path.lexists(repo):
        return None, None
    problem = _dir_problem(repo)
    if problem is not None:
        return None, f"its folder {repo.name} {problem}"
    rev = revision or "main"
    snaps = repo / "snapshots"
    if os.path.lexists(snaps) and _dir_problem(snaps) is not None:
        return None, f"snapshots/ {_dir_problem(snaps)}"
    if _COMMIT.match(rev):
        commit = rev
    else:
        if rev.startswith("/") or ".." in rev.split("/"):
            return None, None  # no ref is called that (and it must not leave refs/)
        refs = repo / "refs"
        if os.path.lexists(refs) and _dir_problem(refs) is not None:
            return None, f"refs/ {_dir_problem(refs)}"
        ref = refs / rev
        if not os.path.lexists(ref):
            if revision is None and (known := sorted(_snapshot_times(snaps))):
                return None, (f"no refs/main names a snapshot; open one by its commit, e.g. "
                              f"{repo_id}@{known[0]}")
            return None, None
        found, problem = read_ref(ref)
        if found is None:
            return None, f"refs/{rev} {problem}"
        commit = found
    snap = snaps / commit
    if not os.path.lexists(snap):
        if revision is None or not _COMMIT.match(revision):
            return None, f"refs/{rev} names commit {commit[:8]}, which has no snapshot folder"
        return None, None
    problem = _dir_problem(snap)
    if problem is not None:
        return None, f"snapshots/{commit[:8]}… {problem}"
    return _hub_snapshot(repo_id, commit, cache), None


def _hub_snapshot(repo_id: str, commit: str, cache: Path) -> Path | None:
    """The snapshot folder of a commit, as huggingface_hub's own cache lookup gives it."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:  # a declared dependency; without it no name can be looked up
        raise CheckpointError(f"{repo_id}: no such file or directory, and huggingface_hub "
                              "(which reads the model cache) is not installed") from None
    try:
        # local_files_only: resolve snapshots/<commit> in the cache; the Hub API object it
        # builds is never called.
        found = snapshot_download(repo_id, revision=commit, cache_dir=cache,
                                  local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, OSError, ValueError, RuntimeError):
        return None  # RuntimeError: pathlib's "Symlink loop"; ValueError: text it rejects
    p = Path(str(found))
    return p if p.is_dir() and p.parent.name == "snapshots" else None


def resolve_name(text: str, cache_dir: str | Path | None = None) -> Path:
    """The cached snapshot folder of the model named ``text``.

    Parameters
    ----------
    text
        ``gpt2``, ``org/name`` or ``org/name@revision``; legacy bare names find their
        current repository and the other way round (see :data:`LEGACY_NAMES`).
    cache_dir
        The hub cache (default: :func:`hub_cache_dir`).

    Returns
    -------
    Path
        ``<cache>/models--org--name/snapshots/<commit>``.

    Raises
    ------
    CheckpointError
        ``text`` is not a name, the model (at that revision) is not in the cache, or its
        cached repository is damaged (a ref that is a pipe, a folder or no commit hash, a
        snapshot folder that is missing or not a folder); one line that says which, with the
        ``hf download`` command for a connected machine.
    """
    name = parse_name(text)
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if name is None:
        raise CheckpointError(f"{shown_name(text)}: no such file or directory (and not a "
                              "Hugging Face model name like gpt2 or org/name@revision)")
    repos = _candidates(name.repo_id)
    damaged: list[tuple[str, str]] = []
    for repo in repos:
        found, problem = _cached_snapshot(repo, name.revision, cache)
        if found is not None:
            return found
        if problem is not None:
            damaged.append((repo, problem))
    where = f"the Hugging Face cache ({shown_name(str(cache))})"
    current = HubName(repos[0], name.revision)
    fix = (f"on a connected machine run `{download_command(current)}`, then copy that cache "
           "here or point HF_HUB_CACHE at it")
    if damaged:
        repo, problem = damaged[0]
        raise CheckpointError(f"{shown_name(text)}: {repo} is in {where} but damaged: {problem}; "
                              f"gptviz never downloads: to repair it {fix}")
    cached = [repo for repo in repos if _repo_dir(cache, repo).is_dir()]
    if cached and name.revision:
        problem = f"{cached[0]} is in {where} but not at revision {quoted(name.revision)}"
    else:
        also = "".join(f" (or {r})" for r in repos[1:])
        problem = f"{repos[0]}{also} is not in {where}"
    raise CheckpointError(f"{shown_name(text)}: no such file or directory, and {problem}; "
                          f"gptviz never downloads: {fix}")


def display_name(path: Path) -> str | None:
    """``org/name`` for a snapshot folder of the cache
    (``.../models--org--name/snapshots/<commit>``), else ``None``: a model's name, rather
    than its commit hash."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/")
    return None


def cached_name_of(path: str | Path) -> str | None:
    """``org/name@<commit>`` for the path of a snapshot folder of a hub cache (this machine's
    or another's: ``.../models--org--name/snapshots/<commit>``), else ``None``: the name that
    finds the same weights in the cache here."""
    p = Path(path)
    repo = display_name(p)
    if repo is None:
        return None
    name = parse_name(repo)
    if name is None or name.revision is not None:
        return None
    return f"{repo}@{p.name}" if _COMMIT.match(p.name) else repo


def cached_models(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Every model repository of the hub cache, sorted by name (an empty list when there is
    no cache); datasets and spaces are left out.

    Each is asked of the family registry (:func:`gptviz.families.find_family`); nothing is
    loaded and nothing is downloaded. The cache is read here rather than with
    ``huggingface_hub.scan_cache_dir``, which opens every refs entry blindly (a named pipe
    blocks it forever) and drops the whole listing, or a whole repository without a word, on
    one broken file: a broken repository is listed here, unsupported, with what is broken.
    """
    from gptviz.families import find_family

    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    try:
        with os.scandir(cache) as it:
            names = sorted(e.name for e in it if e.name.startswith("models--"))
    except (OSError, ValueError):  # no cache, not a folder, a link loop, a NUL in the name
        return []
    out = [_cached_model(cache / name, find_family) for name in names]
    return sorted(out, key=lambda m: m.repo_id.lower())


def _cached_model(repo: Path, find_family: Any) -> CachedModel:
    """One repository folder of the cache as a :class:`CachedModel` (broken: ``reason``)."""
    repo_id = repo.name[len("models--"):].replace("--", "/")

    def broken(reason: str, size: int = 0) -> CachedModel:
        return CachedModel(repo_id=shown_name(repo_id) or repo.name, path=repo, revision="",
                           refs=(), size_on_disk=size, family=None, family_title=None,
                           reason=reason, n_params=None)

    name = parse_name(repo_id)
    if name is None or name.revision is not None:
        return broken(f"{shown_name(repo.name)} is not the folder name of a repository")
    problem = _dir_problem(repo)
    if problem is not None:
        return broken(f"{repo.name} {problem}")
    size = _tree_size(repo)
    refs, main_problem = _read_refs(repo / "refs")
    if main_problem is not None:
        return broken(main_problem, size)
    snaps = repo / "snapshots"
    problem = _dir_problem(snaps)
    if problem is not None:
        return broken(f"snapshots/ {problem}" if os.path.lexists(snaps)
                      else "no snapshots folder", size)
    revisions = _snapshot_times(snaps)
    main = next((c for c, names in refs.items() if "main" in names), None)
    if main is not None and main not in revisions:
        if os.path.lexists(snaps / main):
            return broken(f"snapshots/{main[:8]}… {_dir_problem(snaps / main)}", size)
        return broken(f"refs/main names commit {main[:8]}, which has no snapshot folder", size)
    if not revisions:
        return broken("no snapshot in the cache", size)
    commit = main if main is not None else max(revisions, key=lambda c: revisions[c])
    path = snaps / commit
    reason = _listing_problem(path)
    family = find_family(path) if reason is None else None
    if family is None and reason is None:
        reason = unsupported_reason(path)
    return CachedModel(
        repo_id=repo_id, path=path, revision=commit, refs=tuple(sorted(refs.get(commit, ()))),
        size_on_disk=size, family=family.name if family else None,
        family_title=family.title if family else None, reason=reason,
        n_params=parameter_count(path))


#: Entries looked at in one repository folder (a cache repository holds tens).
_MAX_ENTRIES = 100_000


#: Folder depth looked into under a repository (a cache nests three or four levels).
_MAX_DEPTH = 32


def _walk(root: Path) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(root)`` without recursion (a deep tree raised ``RecursionError`` there),
    at most :data:`_MAX_DEPTH` levels down, links never followed, unreadable folders
    skipped: ``(dirpath, dirs, non-folder names)``; ``dirs`` includes links to folders."""
    stack = [(str(root), 0)]
    while stack:
        path, depth = stack.pop()
        dirs: list[str] = []
        files: list[str] = []
        try:
            with os.scandir(path) as it:
                for e in it:
                    try:
                        real_dir = e.is_dir(follow_symlinks=False)
                        (dirs if real_dir or (e.is_symlink() and e.is_dir()) else files
                         ).append(e.name)
                    except OSError:
                        files.append(e.name)
        except OSError:
            continue
        yield path, dirs, files
        if depth < _MAX_DEPTH:
            stack.extend((os.path.join(path, d), depth + 1) for d in dirs
                         if not os.path.islink(os.path.join(path, d)))


def _tree_size(repo: Path) -> int:
    """Bytes of the regular files under ``repo/blobs`` and ``repo/snapshots`` (the blobs,
    and files a cache without links keeps in its snapshots; links are not followed)."""
    total, seen = 0, 0
    walks = [_walk(repo / "blobs"), _walk(repo / "snapshots")]
    for dirpath, _dirs, files in (entry for walk in walks for entry in walk):
        for f in files:
            seen += 1
            if seen > _MAX_ENTRIES:
                return total
            try:
                st = os.lstat(os.path.join(dirpath, f))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total


def _read_refs(refs: Path) -> tuple[dict[str, set[str]], str | None]:
    """``({commit: {ref names}}, problem)``: the refs of a repository; ``problem`` says what
    is wrong when ``refs/main`` (or the refs folder) is broken. Other broken refs are left
    out: the listing opens ``main``."""
    out: dict[str, set[str]] = {}
    if not os.path.lexists(refs):
        return out, None
    problem = _dir_problem(refs)
    if problem is not None:
        return out, f"refs/ {problem}"
    if os.path.lexists(refs / "main"):
        commit, problem = read_ref(refs / "main")
        if commit is None:
            return out, f"refs/main {problem}"
    seen = 0
    for dirpath, dirs, files in _walk(refs):
        for f in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            seen += 1
            if seen > 1000:
                return out, None
            path = Path(dirpath) / f
            name = path.relative_to(refs).as_posix()
            commit, _problem = read_ref(path)
            if commit is not None:
                out.setdefault(commit, set()).add(name)
    return out, None


def _snapshot_times(snaps: Path) -> dict[str, float]:
    """``{commit: modification time}`` of the snapshot folders (files, pipes, dangling links
    and loops among them are left out)."""
    out: dict[str, float] = {}
    try:
        with os.scandir(snaps) as it:
            for e in it:
                try:
                    if e.is_dir():
                        out[e.name] = e.stat().st_mtime
                except OSError:
                    continue
    except OSError:
        pass
    return out


#: Files of a snapshot that a family reads: one that is a pipe, a folder or a dangling link
#: makes the snapshot unopenable, and is named in the listing.
_MODEL_FILES = ("config.json", "tokenizer.json", "vocab.json", "merges.txt", "*.safetensors",
                "*.safetensors.index.json", "pytorch_model*.bin", "ckpt.pt")


def _listing_problem(path: Path) -> str | None:
    """What in a snapshot folder no family may open while listing (``None``: nothing)."""
    try:
        with os.scandir(path) as it:
            names = sorted(e.name for e in it)[:_MAX_ENTRIES]
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    for name in names:
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in _MODEL_FILES):
            problem = file_problem(path / name)
            if problem is not None:
                return f"{shown_name(name)} {problem}"
    cfg = path / "config.json"
    if os.path.lexists(cfg):
        problem = file_problem(cfg)
        if problem is not None:
            return f"config.json {problem}"
        try:
            if cfg.stat().st_size > _MAX_LISTED_JSON:
                return f"config.json is larger than {_MAX_LISTED_JSON // 2 ** 20} MB"
        except OSError as e:
            return f"config.json cannot be read ({e.strerror or e})"
    return None


def _config(path: Path) -> dict[str, Any] | None:
    if _listing_problem(path) is not None:
        return None
    try:
        return read_json(path / "config.json")
    except CheckpointError:
        return None


def unsupported_reason(path: Path) -> str:
    """Why no family opens the snapshot ``path``, in a few words."""
    problem = _listing_problem(path)
    if problem is not None:
        return problem
    cfg = _config(path)
    if cfg is None:
        return ("no config.json" if not os.path.lexists(path / "config.json")
                else "config.json unreadable")
    mt = cfg.get("model_type")
    if mt is None:
        return "config.json has no model_type"
    return f"model_type {quoted(mt) if isinstance(mt, str) else type(mt).__name__} is not " \
        "supported"


def _safetensors_count(path: Path) -> int | None:
    """Parameters listed in the safetensors headers (8-byte length + JSON; no tensor read)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for f in files:
            if file_problem(f) is not None:  # a pipe would block the open; a folder fails
                return None
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > _MAX_LISTED_JSON:
                    return None
                header = json.loads(fh.read(n))
            if not isinstance(header, dict):
                return None
            for key, t in header.items():
                if key != "__metadata__" and isinstance(t, dict):
                    count = 1
                    for s in t.get("shape", []):
                        count *= int(s)
                    total += count
    except (OSError, ValueError, struct.error, TypeError, AttributeError, RecursionError):
        return None
    return total


def _config_count(cfg: dict[str, Any]) -> int | None:
    """Parameters of a GPT-2 or GPT-1 from its ``config.json`` (learned positions, biases,
    LayerNorms): ``V·C + P·C + L·(12C² + 13C) + 2C`` with the default 4C feed-forward width
    (GPT-1: no final LayerNorm; an untied head adds V·C); ``None`` for other model types."""
    def get(*keys: str) -> int | None:
        for k in keys:
            v = cfg.get(k)
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
        return None

    if cfg.get("model_type") not in ("gpt2", "openai-gpt"):
        return None  # the formula is GPT-2's; other layouts are counted from safetensors
    L, C = get("n_layer", "num_hidden_layers"), get("n_embd", "hidden_size")
    V = get("vocab_size")
    if L is None or C is None or V is None:
        return None
    P = get("n_positions", "max_position_embeddings") or 0
    F = get("n_inner", "intermediate_size") or 4 * C
    per_layer = 4 * C * C + 4 * C + 2 * C * F + F + C + 4 * C  # attn, ffn, two norms
    final_ln = 0 if cfg.get("model_type") == "openai-gpt" else 2 * C
    head = 0 if cfg.get("tie_word_embeddings", True) else V * C
    return V * C + P * C + L * per_layer + final_ln + head


def parameter_count(path: Path) -> int | None:
    """A snapshot's parameter count without loading weights: the safetensors headers when
    there are safetensors files, else an estimate from ``config.json`` (``None``: neither)."""
    n = _safetensors_count(path)
    if n is not None:
        return n
    cfg = _config(path)
    return _config_count(cfg) if cfg is not None else None


def name_from_cache(bundle: Any, path: Path) -> Any:
    """Give a model loaded from a cache snapshot its repository's name (``org/name``, not the
    commit hash its folder is called) and record the repository and commit in its metadata;
    other bundles are returned as they are."""
    from dataclasses import replace

    repo = display_name(Path(path))
    if repo is None:
        return bundle
    bundle.metadata.setdefault("hub_repo", repo)
    bundle.metadata.setdefault("hub_revision", Path(path).name)
    if bundle.model.config.name in ("", Path(path).name, Path(path).resolve().name):
        bundle.model.config = replace(bundle.model.config, name=repo)
    return bundle
