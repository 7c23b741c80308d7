"""The hook of ``tests/gui/conftest.py`` really turns a Qt warning into a failing test.

The hook (``pytest_collection_modifyitems``) marks every test of its folder; it only acts on
a pytest session, so it is checked on one: the two conftest files are copied, as they are,
into the same ``tests/gui/`` layout in a temporary directory, next to a test module that
emits Qt messages, and pytest runs there in a child process. Nothing else in that tree (no
ini option, no mark in the module) asks for Qt warnings to fail, so a broken hook lets the
warning pass and this test fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytest.importorskip("pytestqt")

TESTS = Path(__file__).resolve().parents[1]
ROOT = TESTS.parent

PROBES = '''
import pytest
from PySide6.QtCore import qDebug, qWarning


def test_warning(qtbot):
    qWarning("gptviz-test-warning")


def test_size_hints_note(qtbot):  # the offscreen platform's note: ignored by the hook's mark
    qWarning("This plugin does not support propagateSizeHints()")


@pytest.mark.qt_log_ignore(r"gptviz-expected-.*")
def test_own_ignore_mark(qtbot):  # a test's own qt_log_ignore wins over the hook's
    qWarning("gptviz-expected-warning")


def test_debug_message(qtbot):  # below the WARNING level
    qDebug("gptviz-test-debug")
'''


def _outcomes(junit: Path) -> dict[str, str]:
    """``{test name: "passed" | "failed" | "error" | "skipped"}`` from a JUnit XML report."""
    out = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in ("failure", "error", "skipped")]
        out[case.get("name")] = {"failure": "failed"}.get(kinds[0], kinds[0]) if kinds \
            else "passed"
    return out


def test_qt_warnings_fail_tests(tmp_path):
    """A Qt warning fails a test of the folder; the hook's ignore pattern, a test's own
    ``qt_log_ignore`` and messages below WARNING do not."""
    tree = tmp_path / "tests"
    (tree / "gui").mkdir(parents=True)
    shutil.copyfile(TESTS / "conftest.py", tree / "conftest.py")
    for name in ("__init__.py", "conftest.py"):
        shutil.copyfile(TESTS / "gui" / name, tree / "gui" / name)
    (tree / "gui" / "test_probe.py").write_text(textwrap.dedent(PROBES))
    (tmp_path / "pytest.ini").write_text("[pytest]\n")  # the root: no qt_log_level_fail option
    junit = tmp_path / "report.xml"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen",
           # the copied tests/conftest.py imports the checkout's main.py
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={junit}", "tests/gui/test_probe.py"],
                       capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert junit.is_file(), r.stdout + r.stderr
    assert _outcomes(junit) == {"test_warning": "failed", "test_size_hints_note": "passed",
                                "test_own_ignore_mark": "passed",
                                "test_debug_message": "passed"}, r.stdout + r.stderr
    assert r.returncode == 1 and "gptviz-test-warning" in r.stdout
