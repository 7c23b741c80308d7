"""Sampling controls: greedy, temperature, top-k, top-p, seed (they apply from the next step)."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox,
                               QWidget)

from gptviz.engine.sampling import SamplingSettings

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.theme import DARK, Theme


class SamplingPanel(QWidget):
    """``settingsChanged(SamplingSettings)`` whenever a control changes to a valid setting."""

    settingsChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.greedy = QCheckBox("Greedy")
        self.greedy.setToolTip("Always take the most probable token")
        self.temperature = QDoubleSpinBox()
        self.temperature.setRange(0.05, 5.0)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Divides the logits: < 1 sharper, > 1 flatter")
        self.top_k = QSpinBox()
        self.top_k.setRange(0, 100000)
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Keep only the k most probable tokens (0 = off)")
        self.top_p = QDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setDecimals(2)
        self.top_p.setValue(1.0)
        self.top_p.setToolTip("Nucleus: keep the most probable tokens up to this mass (1 = off)")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Random seed: the same seed and settings give the same tokens")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(6)
        lay.addWidget(self.greedy)
        for label, w in (("Temperature", self.temperature), ("Top-k", self.top_k),
                         ("Top-p", self.top_p), ("Seed", self.seed)):
            lab = QLabel(label)
            lab.setBuddy(w)
            lay.addSpacing(6)
            lay.addWidget(lab)
            lay.addWidget(w)
        self.note = QLabel("applies from the next step")
        lay.addSpacing(8)
        lay.addWidget(self.note)
        lay.addStretch(1)
        for w in (self.temperature, self.top_k, self.top_p, self.seed):
            w.setKeyboardTracking(False)
            w.valueChanged.connect(self._changed)
        self.greedy.toggled.connect(self._changed)
        self._updating = False
        self.apply_theme(DARK)
        self._sync_enabled()

    def apply_theme(self, theme: Theme) -> None:
        self.note.setStyleSheet(f"color: {theme.text_dim}")

    def settings(self) -> SamplingSettings:
        """The settings the controls show (ValueError if invalid)."""
        return SamplingSettings(greedy=self.greedy.isChecked(),
                                temperature=float(self.temperature.value()),
                                top_k=int(self.top_k.value()), top_p=float(self.top_p.value()),
                                seed=int(self.seed.value()))

    def set_settings(self, s: SamplingSettings) -> None:
        """Show ``s`` without emitting."""
        self._updating = True
        try:
            self.greedy.setChecked(bool(s.greedy))
            self.temperature.setValue(float(s.temperature))
            self.top_k.setValue(int(s.top_k))
            self.top_p.setValue(float(s.top_p))
            self.seed.setValue(int(min(s.seed, 2**31 - 1)))
        finally:
            self._updating = False
        self._sync_enabled()

    def _sync_enabled(self) -> None:
        g = self.greedy.isChecked()
        for w in (self.temperature, self.top_k, self.top_p, self.seed):
            w.setEnabled(not g)

    def _changed(self, *_):
        self._sync_enabled()
        if self._updating:
            return
        try:
            s = self.settings()
        except ValueError as e:
            self.note.setText(str(e))
            return
        self.note.setText("applies from the next step")
        self.settingsChanged.emit(s)

    def set_model(self, info: ModelInfo) -> None:
        pass

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.settings is not None and not self._updating:
            try:
                current = self.settings()
            except ValueError:
                current = None
            if current != snap.settings:
                self.set_settings(snap.settings)
