"""The layout every plot panel shares: a row of controls, the plot, a one-line readout.

Labels made by :func:`shrinkable_label` never force their dock wider than the user made it:
their text is clipped instead (their horizontal size policy is ``Ignored``). The controls sit in
a :func:`controls_row`; choices among named options are combo boxes of ``(key, text)`` items
(:func:`choice_box`, :func:`set_choice`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QRect, QSignalBlocker, Qt
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLayout,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)


def shrinkable_label(text: str = " ") -> QLabel:
    """A label whose text may be clipped rather than widen its panel."""
    label = QLabel(text)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def wrap_lines(label: QLabel, lines: int = 2) -> None:
    """Let ``label`` wrap onto ``lines`` lines of its font instead of cutting its text at the
    panel's edge; always that tall, so that a hover text does not move the plot above. Call it
    again after a font change."""
    label.setWordWrap(True)
    label.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    label.setFixedHeight(lines * QFontMetrics(label.font()).lineSpacing() + 2)


def fit_wrapped(label: QLabel, texts: Sequence[str], least: int = 2) -> None:
    """Make a :func:`wrap_lines` label tall enough for the longest of ``texts`` at its width
    (at least ``least`` lines): a narrow panel gets more lines, none cut. Call it on a resize
    and when the texts change."""
    fm = QFontMetrics(label.font())
    width = max(1, label.width())
    need = [fm.boundingRect(QRect(0, 0, width, 100000), int(Qt.TextFlag.TextWordWrap), t).height()
            for t in texts if t]
    h = max([least * fm.lineSpacing(), *need]) + 2
    if label.height() != h:
        label.setFixedHeight(h)


def controls_row(*items: QWidget | int | tuple[QWidget, int]) -> QHBoxLayout:
    """A row of controls with the panels' side margins: widgets, gaps (an ``int``: pixels)
    and ``(widget, stretch)`` pairs (a stretching label takes the spare width), left to right."""
    row = QHBoxLayout()
    row.setContentsMargins(4, 0, 4, 0)
    for it in items:
        if isinstance(it, int):
            row.addSpacing(it)
        elif isinstance(it, tuple):
            row.addWidget(*it)
        else:
            row.addWidget(it)
    return row


def choice_box(items: Sequence[tuple[str, str]], on_choice: Callable[[str], object] | None = None,
               tooltip: str = "") -> QComboBox:
    """A combo box of ``(key, text)`` items (the texts shown, the keys as item data);
    ``on_choice(key)`` runs when the user (or :func:`set_choice` with ``quiet=False``) picks
    another item."""
    box = QComboBox()
    for key, text in items:
        box.addItem(text, key)
    if tooltip:
        box.setToolTip(tooltip)
    if on_choice is not None:  # connected after the items: adding the first one emits too
        box.currentIndexChanged.connect(lambda i: on_choice(box.itemData(i)))
    return box


def set_choice(box: QComboBox, key: str, quiet: bool = True) -> None:
    """Show the item of ``key`` in a :func:`choice_box` (the first item for an unknown key);
    ``quiet``: without running its ``on_choice`` (the model already knows)."""
    i = max(0, box.findData(key))
    if box.currentIndex() != i:
        if quiet:
            with QSignalBlocker(box):
                box.setCurrentIndex(i)
        else:
            box.setCurrentIndex(i)


def stack(panel: QWidget, top: QLayout, body: QWidget,
          bottom: QLayout | QWidget | None = None) -> QVBoxLayout:
    """Stack ``top`` (controls), ``body`` (the plot or table, which takes the spare height)
    and ``bottom`` in ``panel``, edge to edge; returns the panel's layout."""
    lay = QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(2)
    lay.addLayout(top)
    lay.addWidget(body, 1)
    if isinstance(bottom, QLayout):
        lay.addLayout(bottom)
    elif bottom is not None:
        lay.addWidget(bottom)
    return lay


def panel_layout(panel: QWidget, top: QLayout, body: QWidget) -> QLabel:
    """Stack ``top`` (controls), ``body`` (the plot, which takes the spare height) and a new
    readout line in ``panel``; returns the readout label (hover values go there)."""
    readout = shrinkable_label()
    stack(panel, top, body, readout)
    return readout
