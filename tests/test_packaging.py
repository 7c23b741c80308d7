"""The installed package (``pip install .``): what it puts where, and that its scripts run
from any folder with the bundled files found as package data.

These read the distribution installed into the interpreter running the tests (the README's
test command installs the checkout first); without one they are skipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _installed() -> metadata.Distribution:
    try:
        dist = metadata.distribution("gptviz")
    except metadata.PackageNotFoundError:
        pytest.skip("gptviz is not installed in this interpreter (pip install .)")
    if Path(str(dist.locate_file(""))).resolve() == ROOT:
        pytest.skip("only build leftovers (an egg-info) of this checkout, not an install")
    if dist.read_text("direct_url.json") and '"editable": true' in (
            dist.read_text("direct_url.json") or ""):
        pytest.skip("an editable install has no files of its own to check")
    return dist


def test_installs_only_names_of_its_own():
    dist = _installed()
    top = {f.parts[0] for f in dist.files or [] if not f.parts[0].startswith("..")}
    top = {t for t in top if not t.endswith((".dist-info", ".data")) and t != "__pycache__"}
    assert top == {"gptviz", "gptviz_app", "gptviz_resources"}


def test_bundled_files_are_package_data():
    dist = _installed()
    names = {"/".join(f.parts) for f in dist.files or []}
    for need in ("gptviz_resources/model/model.safetensors", "gptviz_resources/model/config.json",
                 "gptviz_resources/model/tokenizer.json", "gptviz_resources/prompts.json",
                 "gptviz_resources/icon.png"):
        assert need in names
    assert not any(n.startswith(("gptviz_resources/screenshot", "tests/")) for n in names)


def test_scripts_match_the_project_file():
    dist = _installed()
    scripts = {ep.name: ep.value for ep in dist.entry_points if ep.group == "console_scripts"}
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == declared == {"gptviz": "gptviz.cli:main",
                                   "gptviz-app": "gptviz_app.launch:main"}


def _script(name: str) -> Path:
    path = Path(sys.executable).parent / name
    if not path.is_file():
        pytest.skip(f"no {name} script next to {sys.executable}")
    return path


def test_cli_runs_from_another_folder_with_the_installed_model(tmp_path):
    _installed()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(_script("gptviz")), "info"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    source = Path(info["source"])
    assert source.name == "model" and source.parent.name == "gptviz_resources"
    assert ROOT not in source.parents  # the installed copy, not the checkout's


def test_gui_script_takes_the_launcher_options(tmp_path):
    _installed()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([str(_script("gptviz-app")), "--help"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: gptviz-app")
    for option in ("--model", "--prompt", "--steps", "--screenshot", "--size", "--session",
                   "--presentation", "--theme"):
        assert option in r.stdout
