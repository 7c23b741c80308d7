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

import json
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gptviz.io.checkpoint import CheckpointError
from gptviz.io.files import file_problem

__all__ = ["LEGACY_NAMES", "HubName", "CachedModel", "hub_cache_dir", "parse_name",
           "resolve_name", "cached_models", "download_command", "display_name",
           "parameter_count"]

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
_NAME = re.compile(rf"^(?P<repo>(?:{_PART}/)?{_PART})(?:@(?P<rev>[\w./-]{{1,200}}))?$")
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


def _snapshot(repo_id: str, revision: str | None, cache: Path) -> Path | None:
    """The cached snapshot folder of ``repo_id`` at ``revision`` (``None``: not cached)."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError
    except ImportError:  # a declared dependency; without it no name can be looked up
        raise CheckpointError(f"{repo_id}: no such file or directory, and huggingface_hub "
                              "(which reads the model cache) is not installed") from None

    refs = cache / ("models--" + repo_id.replace("/", "--")) / "refs"
    ref = refs / (revision or "main")
    if os.path.lexists(ref) and file_problem(ref) is not None:
        return None  # a pipe, a folder, a link loop: huggingface_hub would block or fail
    try:
        # local_files_only: resolve refs/<revision> or snapshots/<commit> in the cache; the
        # Hub API object it builds is never called.
        found = snapshot_download(repo_id, revision=revision, cache_dir=cache,
                                  local_files_only=True)
    except (LocalEntryNotFoundError, HFValidationError, FileNotFoundError, OSError,
            RuntimeError):  # RuntimeError: pathlib's "Symlink loop" in the cache folder
        return None
    p = Path(str(found))  # an empty refs file gives the snapshots folder itself
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
        ``text`` is not a name, or the model (at that revision) is not in the cache; the
        message says so and gives the ``hf download`` command for a connected machine.
    """
    name = parse_name(text)
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if name is None:
        raise CheckpointError(f"{shown(text)}: no such file or directory (and not a Hugging Face "
                              "model name like gpt2 or org/name@revision)")
    for repo in _candidates(name.repo_id):
        found = _snapshot(repo, name.revision, cache)
        if found is not None:
            return found
    repos = _candidates(name.repo_id)
    cached = [repo for repo in repos if (cache / ("models--" + repo.replace("/", "--"))).is_dir()]
    where = f"the Hugging Face cache ({cache})"
    if cached and name.revision:
        problem = f"{cached[0]} is in {where} but not at revision {name.revision!r}"
    else:
        also = "".join(f" (or {r})" for r in repos[1:])
        problem = f"{repos[0]}{also} is not in {where}"
    current = HubName(repos[0], name.revision)
    raise CheckpointError(
        f"{text}: no such file or directory, and {problem}; gptviz never downloads: on a "
        f"connected machine run `{download_command(current)}`, then copy that cache here or "
        "point HF_HUB_CACHE at it")


def display_name(path: Path) -> str | None:
    """``org/name`` for a snapshot folder of the cache
    (``.../models--org--name/snapshots/<commit>``), else ``None``: a model's name, rather
    than its commit hash."""
    parts = path.parts
    if len(parts) >= 3 and parts[-2] == "snapshots" and parts[-3].startswith("models--"):
        return parts[-3][len("models--"):].replace("--", "/")
    return None


def cached_models(cache_dir: str | Path | None = None) -> list[CachedModel]:
    """Every model repository of the hub cache, sorted by name (an empty list when there is
    no cache); datasets and spaces are left out.

    Each is asked of the family registry (:func:`gptviz.families.find_family`); nothing is
    loaded and nothing is downloaded.
    """
    try:
        from huggingface_hub import scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []

    from gptviz.families import find_family

    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    if _blocking_refs(cache):
        return []  # huggingface_hub reads every refs file: a pipe there would block forever
    try:
        info = scan_cache_dir(cache)
    except (CacheNotFound, OSError, ValueError, RuntimeError):  # RuntimeError: a link loop
        return []
    out = []
    for repo in info.repos:
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revs = sorted(repo.revisions, key=lambda r: ("main" not in r.refs, -r.last_modified))
        rev = revs[0]
        path = Path(rev.snapshot_path)
        family = find_family(path)
        reason = None if family is not None else unsupported_reason(path)
        out.append(CachedModel(
            repo_id=repo.repo_id, path=path, revision=rev.commit_hash,
            refs=tuple(sorted(rev.refs)), size_on_disk=int(repo.size_on_disk),
            family=family.name if family else None, family_title=family.title if family else None,
            reason=reason, n_params=parameter_count(path)))
    return sorted(out, key=lambda m: m.repo_id.lower())


def _blocking_refs(cache: Path) -> list[Path]:
    """The refs entries of the cache that are neither files nor folders (pipes, devices,
    link loops): reading one would block or fail."""
    bad = []
    try:
        for refs in cache.glob("models--*/refs"):
            for dirpath, dirnames, filenames in os.walk(refs):
                for name in filenames + dirnames:
                    p = Path(dirpath) / name
                    if not p.is_dir() and file_problem(p) not in (None, "file is missing"):
                        bad.append(p)
    except (OSError, RuntimeError):
        return [cache]
    return bad


def _config(path: Path) -> dict[str, Any] | None:
    try:
        with open(path / "config.json", encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError):
        return None
    return cfg if isinstance(cfg, dict) else None


def unsupported_reason(path: Path) -> str:
    """Why no family opens the snapshot ``path``, in a few words."""
    cfg = _config(path)
    if cfg is None:
        return "no config.json" if not (path / "config.json").exists() else "config.json unreadable"
    mt = cfg.get("model_type")
    if mt is None:
        return "config.json has no model_type"
    return f"model_type {mt!r} is not supported"


def _safetensors_count(path: Path) -> int | None:
    """Parameters listed in the safetensors headers (8-byte length + JSON; no tensor read)."""
    files = sorted(path.glob("*.safetensors"))
    if not files:
        return None
    total = 0
    try:
        for f in files:
            with open(f, "rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                if n > 100_000_000:
                    return None
                header = json.loads(fh.read(n))
            for key, t in header.items():
                if key != "__metadata__" and isinstance(t, dict):
                    count = 1
                    for s in t.get("shape", []):
                        count *= int(s)
                    total += count
    except (OSError, ValueError, struct.error, TypeError):
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
