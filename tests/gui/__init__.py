"""GUI tests of the desktop app (pytest-qt, offscreen). A package, so that the test modules can
import the shared helpers of ``conftest.py`` (``from .conftest import settle, TIMEOUT``)."""
