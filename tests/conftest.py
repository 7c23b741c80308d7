"""Shared test fixtures: tiny models built from a config, no downloads."""

from __future__ import annotations

import os

# GUI tests run headless; must be set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
import torch

# Tiny models gain nothing from threads, and the machine is shared with other jobs.
torch.set_num_threads(1)
