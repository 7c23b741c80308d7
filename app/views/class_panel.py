"""Fine-tuned head panel: the class probabilities P(y | text) of the model's W_y head,
updated as the text grows. Hidden (with its View-menu entry disabled) for models without one."""

from __future__ import annotations

import math

from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QGridLayout, QLabel, QProgressBar, QVBoxLayout, QWidget

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.theme import DARK, Theme


class ClassPanel(QWidget):
    """One labelled bar per class; the most probable class in bold."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.caption = QLabel("P(class | text so far)")
        self.grid = QGridLayout()
        self.grid.setColumnStretch(1, 1)
        self.grid.setHorizontalSpacing(8)
        self.grid.setVerticalSpacing(2)  # compact: the next-token bars above need the height
        lay = QVBoxLayout(self)
        lay.setContentsMargins(6, 2, 6, 2)
        lay.addWidget(self.caption)
        lay.addLayout(self.grid)
        lay.addStretch(1)
        self.names: list[SteadyLabel] = []
        self.bars: list[QProgressBar] = []
        self.apply_theme(self.theme)

    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.caption.setStyleSheet(f"color: {theme.text_dim}")
        bold = theme.font(1.0, bold=True)
        # as wide as the widest name in bold: the most probable class changing (its name in
        # bold) lays nothing out again
        widest = max((math.ceil(QFontMetricsF(bold).horizontalAdvance(lab.text()))
                      for lab in self.names), default=0)
        for lab in self.names:
            lab.setFont(theme.font(1.0))
            lab.setMinimumWidth(widest)
        for b in self.bars:
            b.setStyleSheet(
                f"QProgressBar {{ border: 1px solid {theme.grid_line}; border-radius: 3px;"
                f" background: {theme.plot_bg}; color: {theme.text}; text-align: center; }}"
                f"QProgressBar::chunk {{ background: {theme.bar}; }}")
            b.setMaximumHeight(int(QFontMetricsF(theme.font(1.0)).height() * 1.25))

    def set_model(self, info: ModelInfo) -> None:
        for w in self.names + self.bars:
            self.grid.removeWidget(w)
            w.deleteLater()
        self.names, self.bars = [], []
        for i, name in enumerate(info.class_names):
            lab = SteadyLabel(name)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setFormat("%p%")
            self.grid.addWidget(lab, i, 0)
            self.grid.addWidget(bar, i, 1)
            self.names.append(lab)
            self.bars.append(bar)
        self.apply_theme(self.theme)

    def apply_snapshot(self, snap: Snapshot) -> None:
        p = snap.class_probs
        if p is None or len(p) != len(self.bars):
            return
        best = int(p.argmax())
        for i, (lab, bar) in enumerate(zip(self.names, self.bars)):
            value = int(round(float(p[i]) * 1000))
            if bar.value() != value:
                # QProgressBar repaints itself at once when its text changes (a synchronous
                # paint of the whole window's backing store, ~2 ms a bar): with updates off
                # it is only scheduled, and painted with the rest of the step
                bar.setUpdatesEnabled(False)
                bar.setValue(value)
                bar.setUpdatesEnabled(True)  # schedules the bar's repaint (update())
            lab.set_bold(i == best)
