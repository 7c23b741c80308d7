"""The error every model reader raises (re-exported by :mod:`gptviz.io.checkpoint`).

Kept in a module of its own so that the checks the readers share
(:mod:`gptviz.io.config_checks`, :mod:`gptviz.io.files`) can raise it without importing the
readers.
"""

from __future__ import annotations

__all__ = ["CheckpointError"]


class CheckpointError(ValueError):
    """A model file is missing, truncated or does not match what it should hold."""
