"""The layout every plot panel shares: a row of controls, the plot, a one-line readout.

Labels made by :func:`shrinkable_label` never force their dock wider than the user made it:
their text is clipped instead (their horizontal size policy is ``Ignored``).
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QLayout, QSizePolicy, QVBoxLayout, QWidget


def shrinkable_label(text: str = " ") -> QLabel:
    """A label whose text may be clipped rather than widen its panel."""
    label = QLabel(text)
    label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
    return label


def panel_layout(panel: QWidget, top: QLayout, body: QWidget) -> QLabel:
    """Stack ``top`` (controls), ``body`` (the plot, which takes the spare height) and a new
    readout line in ``panel``; returns the readout label (hover values go there)."""
    readout = shrinkable_label()
    lay = QVBoxLayout(panel)
    lay.setContentsMargins(0, 0, 0, 0)
    lay.setSpacing(2)
    lay.addLayout(top)
    lay.addWidget(body, 1)
    lay.addWidget(readout)
    return readout
