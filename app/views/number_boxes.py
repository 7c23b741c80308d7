"""Number boxes that say what they did with a value out of their range.

Qt's spin boxes refuse the keys of a number above their maximum (typing ``9`` into a box that
goes up to 5 does nothing) and silently go back to the previous value when one below the
minimum is entered. These take any number typed, put the nearest value of their range in its
place when the edit ends (Enter, leaving the box) and emit ``clamped(typed, value)`` so that
the panel can say so.
"""

from __future__ import annotations

import re

from PySide6.QtCore import Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import QDoubleSpinBox, QSpinBox

#: A plain decimal number as typed (sign, digits, a decimal point).
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


def _typed_number(box, text: str) -> float | None:
    """The number in a box's text (its prefix and suffix taken off), or ``None``."""
    t = text.strip()
    if box.prefix() and t.startswith(box.prefix()):
        t = t[len(box.prefix()):]
    if box.suffix() and t.endswith(box.suffix()):
        t = t[:-len(box.suffix())]
    t = t.strip()
    return float(t) if _NUMBER.fullmatch(t) else None


def _validate(box, base: tuple, text: str, pos: int) -> tuple:
    """Qt's verdict, except that a number out of range is "not finished yet" rather than
    refused (it is clamped when the edit ends)."""
    if base[0] == QValidator.State.Invalid and (
            _typed_number(box, text) is not None or text.strip() in ("-", "+", ".")):
        return (QValidator.State.Intermediate, text, pos)
    return base


def _fixup(box, text: str) -> str | None:
    """The clamped value's text for a number out of range (emitting ``clamped``), else
    ``None`` (Qt's own fix-up)."""
    v = _typed_number(box, text)
    if v is None:
        return None
    c = min(max(v, box.minimum()), box.maximum())
    if c != v:
        box.clamped.emit(f"{v:g}", box.textFromValue(c))
    return box.textFromValue(c)


class ClampingDoubleSpinBox(QDoubleSpinBox):
    """A ``QDoubleSpinBox`` that clamps what is typed; ``clamped(typed, value)``."""

    clamped = Signal(str, str)

    def validate(self, text: str, pos: int) -> object:
        return _validate(self, super().validate(text, pos), text, pos)

    def fixup(self, text: str) -> str:
        fixed = _fixup(self, text)
        return super().fixup(text) if fixed is None else fixed


class ClampingSpinBox(QSpinBox):
    """A ``QSpinBox`` that clamps what is typed; ``clamped(typed, value)``."""

    clamped = Signal(str, str)

    def validate(self, text: str, pos: int) -> object:
        base = super().validate(text, pos)
        if base[0] == QValidator.State.Invalid and text.strip().isdigit():
            return (QValidator.State.Intermediate, text, pos)  # more digits than the maximum
        return _validate(self, base, text, pos) if "." not in text else base

    def fixup(self, text: str) -> str:
        fixed = _fixup(self, text)
        return super().fixup(text) if fixed is None else fixed
