"""Model families: every format gptviz opens, as plug-ins of one registry.

A :class:`Family` says whether it recognises a path and loads it into a
:class:`~gptviz.io.checkpoint.ModelBundle`. :func:`load_model` asks the registered families
in order and uses the first that recognises the path. Built in (one module each, mapping
that format's weights onto our names): our own checkpoints (:mod:`~gptviz.families.native`),
Hugging Face GPT-2 (:mod:`~gptviz.families.gpt2`) and GPT-1
(:mod:`~gptviz.families.openai_gpt`), nanoGPT (:mod:`~gptviz.families.nanogpt`).

Another installed package adds a family through the entry-point group ``gptviz.families``;
each entry point names a :class:`Family` object (or a function returning one)::

    [project.entry-points."gptviz.families"]
    myformat = "mypackage.gptviz_family:FAMILY"

Adding a built-in family is one module here plus one line in :data:`_BUILTIN`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from gptviz.families import gpt2, gpt_neo, hub, llama, nanogpt, native, neox, openai_gpt
from gptviz.families.gpt2 import load_hf_gpt2
from gptviz.families.nanogpt import load_nanogpt, to_nanogpt_state_dict
from gptviz.families.openai_gpt import load_hf_openai_gpt
from gptviz.io.checkpoint import DEFAULT_MODEL_DIR, CheckpointError, ModelBundle, read_json
from gptviz.io.device import place_model, resolve_device, resolve_dtype
from gptviz.io.files import file_problem

__all__ = ["Family", "register_family", "unregister_family", "families", "find_family",
           "load_model", "ENTRY_POINT_GROUP", "load_hf_gpt2", "load_hf_openai_gpt", "load_nanogpt",
           "to_nanogpt_state_dict"]

#: Entry-point group through which other packages add families.
ENTRY_POINT_GROUP = "gptviz.families"


@dataclass(frozen=True)
class Family:
    """One model format.

    Attributes
    ----------
    name
        Short identifier, also the :attr:`ModelBundle.kind` its loader sets
        (``"hf-gpt2"``).
    title
        What users read in messages (``"Hugging Face GPT-2"``).
    recognises
        ``recognises(path) -> bool``: cheap, never raises; looks at file names and
        ``config.json``, never at the weights.
    load
        ``load(path) -> ModelBundle``; raises :class:`CheckpointError` naming the file.
    """

    name: str
    title: str
    recognises: Callable[[Path], bool]
    load: Callable[[Path], ModelBundle]


_BUILTIN = (
    Family("gptviz", "gptviz checkpoint", native.recognises, native.load),
    Family("hf-gpt2", "Hugging Face GPT-2", gpt2.recognises, load_hf_gpt2),
    Family("hf-openai-gpt", "Hugging Face GPT-1", openai_gpt.recognises, load_hf_openai_gpt),
    Family("nanogpt", "nanoGPT ckpt.pt", nanogpt.recognises, load_nanogpt),
    Family("hf-gpt-neo", "Hugging Face GPT-Neo", gpt_neo.recognises, gpt_neo.load_hf_gpt_neo),
    Family("hf-gpt-neox", "Hugging Face GPT-NeoX", neox.recognises, neox.load_hf_neox),
    Family("hf-llama", "Hugging Face Llama / Qwen2", llama.recognises, llama.load_hf_llama),
)


class _Registry:
    """Families in the order they are asked: the built-ins, then the entry points and the
    ones given to :func:`register_family`, in the order they arrived."""

    def __init__(self) -> None:
        self.families: dict[str, Family] = {f.name: f for f in _BUILTIN}
        self.plugins_loaded = False
        self.from_plugins: dict[str, Family] = {}  # what the entry points added

    def load_plugins(self, again: bool = False) -> None:
        if self.plugins_loaded and not again:
            return
        self.plugins_loaded = True
        for name, family in self.from_plugins.items():
            if self.families.get(name) is family:  # not replaced by register_family since
                del self.families[name]
        self.from_plugins = {}
        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                obj = ep.load()
                family = obj() if callable(obj) and not isinstance(obj, Family) else obj
                if not isinstance(family, Family):
                    raise TypeError(f"it gave {type(family).__name__}, not a Family")
            except Exception as e:  # a broken plug-in must not stop the built-in formats
                warnings.warn(f"model family plug-in {ep.name!r} ({ep.value}) not loaded: {e}",
                              RuntimeWarning, stacklevel=3)
                continue
            if family.name in self.families:
                warnings.warn(f"model family plug-in {ep.name!r} ({ep.value}) not loaded: a "
                              f"family named {family.name!r} is already registered",
                              RuntimeWarning, stacklevel=3)
                continue
            self.families[family.name] = family
            self.from_plugins[family.name] = family


_REGISTRY = _Registry()


def register_family(family: Family, *, replace: bool = False) -> None:
    """Add a family (asked after the ones already registered).

    Raises
    ------
    ValueError
        A family of that name exists and ``replace`` is false.
    """
    if family.name in _REGISTRY.families and not replace:
        raise ValueError(f"a model family named {family.name!r} is already registered")
    _REGISTRY.families[family.name] = family


def unregister_family(name: str) -> None:
    """Remove a registered family (a no-op when there is none of that name)."""
    _REGISTRY.families.pop(name, None)


def families(rescan: bool = False) -> list[Family]:
    """Every registered family, in the order :func:`find_family` asks them.

    Entry points of the ``gptviz.families`` group are read on the first call; ``rescan``
    reads them again (after a package was installed into the running interpreter).
    """
    _REGISTRY.load_plugins(again=rescan)
    return list(_REGISTRY.families.values())


def find_family(path: str | Path) -> Family | None:
    """The first family that recognises ``path``, or ``None``."""
    p = Path(path)
    for f in families():
        try:
            if f.recognises(p):
                return f
        except Exception as e:  # a plug-in's bug must not hide the other formats
            warnings.warn(f"model family {f.name!r} failed to look at {p}: {e}",
                          RuntimeWarning, stacklevel=2)
    return None


def load_model(path: str | Path | None = None, *, device: str | None = None,
               dtype: str | None = None) -> ModelBundle:
    """Open a model in any registered format.

    Parameters
    ----------
    path
        A model folder or file (a nanoGPT ``.pt``), or the name of a model in the local
        Hugging Face cache (``gpt2``, ``org/name@revision``; see :mod:`gptviz.families.hub`;
        an existing path always wins); ``None`` opens the bundled model.
    device, dtype
        Where to run it (``auto``, ``cpu``, ``cuda``, ``mps``; default the CPU) and its
        precision (``float32``, ``bfloat16``, ``float16``); see :mod:`gptviz.io.device`.

    Returns
    -------
    ModelBundle

    Raises
    ------
    CheckpointError
        When the path is missing, of a kind no family recognises, or its files are broken;
        the message names the file and what is wrong.
    """
    resolve_device(device)  # a device this machine lacks: said before anything is read
    resolve_dtype(dtype)
    p = Path(path) if path is not None else DEFAULT_MODEL_DIR
    if path is not None and not os.path.lexists(p) and hub.parse_name(str(path)) is not None:
        p = hub.resolve_name(str(path))  # the local cache only; a local path always wins
    try:
        exists = p.exists()
    except (OSError, ValueError) as e:  # a name longer than the file system takes
        raise CheckpointError(f"{hub.shown_name(str(p))}: cannot be read "
                              f"({getattr(e, 'strerror', None) or e})") from None
    if not exists:
        problem = file_problem(p)  # a dangling link is not "missing"
        given = str(path) if isinstance(path, str) else str(p)  # as typed: not "a//b" -> "a/b"
        raise CheckpointError(f"{hub.shown_name(given)}: " + (
            problem if problem and "link" in problem else "no such file or directory"))
    if not p.is_dir():
        problem = file_problem(p)  # a pipe, a device: no family reads those
        if problem is not None:
            raise CheckpointError(f"{p}: {problem}; expected a model directory or a "
                                  "nanoGPT .pt checkpoint")
    family = find_family(p)
    if family is not None:
        bundle = hub.name_from_cache(family.load(p), p)
        return bundle if device is None and dtype is None else place_model(bundle, device, dtype)
    raise CheckpointError(_unrecognised(p))


def _unrecognised(p: Path) -> str:
    """Why no family took ``p``, in one line."""
    supported = ", ".join(f.title for f in families())
    if p.is_file():
        return f"{p}: not a model directory or a nanoGPT .pt checkpoint (supported: {supported})"
    cfg = p / "config.json"
    if os.path.lexists(cfg) and not cfg.is_file():
        return f"{cfg}: {file_problem(cfg)}"
    if (p / "config.json").is_file():
        model_type = read_json(p / "config.json").get("model_type")
        if model_type is None:
            return (f"{p / 'config.json'}: neither a gptviz config (no n_layer) nor a Hugging "
                    f"Face one (no model_type) (supported: {supported})")
        return (f"{p / 'config.json'}: unsupported model_type {hub.quoted(model_type)} "
                f"(supported: {supported})")
    return f"{p}: no config.json or ckpt.pt found; not a model directory"
