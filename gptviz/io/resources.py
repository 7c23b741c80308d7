"""Where the bundled files live: ``resources/`` beside a checkout's ``gptviz/``, or the
installed package ``gptviz_resources`` (``pip install .`` maps the folder to that name)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: ``resources/`` of the checkout this package was imported from (may not exist).
_CHECKOUT = Path(__file__).resolve().parents[2] / "resources"


def resources_dir() -> Path:
    """The folder holding the bundled model, sample prompts and icon.

    A checkout's own ``resources/`` wins (so ``python main.py`` and the tests use the files
    next to the code); otherwise the installed ``gptviz_resources`` package.
    """
    if (_CHECKOUT / "__init__.py").is_file() and (_CHECKOUT.parent / "pyproject.toml").is_file():
        return _CHECKOUT  # a checkout: never another distribution's "resources" package
    spec = importlib.util.find_spec("gptviz_resources")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return _CHECKOUT  # missing either way: callers report the path they looked for


def resource_path(*parts: str) -> Path:
    """A path inside :func:`resources_dir`, e.g. ``resource_path("model")``."""
    return resources_dir().joinpath(*parts)
