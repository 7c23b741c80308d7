"""Sampling controls: greedy, temperature, top-k, top-p, seed (they apply from the next step).

Temperature 0 means greedy: typing it turns Greedy on (the box keeps the last temperature for
when Greedy goes off again). A value out of a box's range is clamped, and the note says to what.
The tokens drawn change from the next step, but the next-token chart shows what the settings do
at once: the model's probabilities in grey beside the distribution a token is drawn from.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QLabel, QWidget

from gptviz.engine.sampling import SamplingSettings
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.number_boxes import ClampingDoubleSpinBox, ClampingSpinBox
from gptviz_app.views.theme import DARK, Theme

#: What the note says when nothing else needs saying.
NOTE = "applies from the next step"


class SamplingPanel(QWidget):
    """``settingsChanged(SamplingSettings)`` whenever a control changes to a valid setting."""

    settingsChanged = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.greedy = QCheckBox("Greedy")
        self.greedy.setToolTip("Always take the most probable token")
        self.temperature = ClampingDoubleSpinBox()
        self.temperature.setRange(0.0, 5.0)  # 0: greedy (turns the Greedy box on)
        self.temperature.setSingleStep(0.1)
        self.temperature.setDecimals(2)
        self.temperature.setValue(1.0)
        self.temperature.setToolTip("Divides the logits: < 1 sharper, > 1 flatter; 0 = greedy. "
                                    "The next-token chart shows the effect at once")
        self.top_k = ClampingSpinBox()
        self.top_k.setRange(0, 100000)
        self.top_k.setSpecialValueText("off")
        self.top_k.setToolTip("Keep only the k most probable tokens (0 = off); the chart marks "
                              "the others \"cut\"")
        self.top_p = ClampingDoubleSpinBox()
        self.top_p.setRange(0.01, 1.0)
        self.top_p.setSingleStep(0.05)
        self.top_p.setDecimals(2)
        self.top_p.setValue(1.0)
        self.top_p.setToolTip("Nucleus: keep the most probable tokens up to this mass (1 = off); "
                              "the chart marks the others \"cut\" and renormalises the rest")
        self.seed = ClampingSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        self.seed.setToolTip("Random seed: the same seed and settings give the same tokens")
        #: The controls in groups (a box with its label), left to right: a toolbar shows as
        #: many as fit and folds the others into its extension menu (a narrow window).
        self.fields: list[QWidget] = [self.greedy]
        for label, w in (("Temperature", self.temperature), ("Top-k", self.top_k),
                         ("Top-p", self.top_p), ("Seed", self.seed)):
            field = QWidget()
            fl = QHBoxLayout(field)
            fl.setContentsMargins(6, 0, 0, 0)
            fl.setSpacing(6)
            lab = QLabel(label)
            lab.setBuddy(w)
            fl.addWidget(lab)
            fl.addWidget(w)
            self.fields.append(field)
        self.note = QLabel(NOTE)
        self.note.setContentsMargins(8, 0, 0, 0)
        self.fields.append(self.note)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(6)
        for field in self.fields:
            lay.addWidget(field)
        lay.addStretch(1)
        self._last_temperature = 1.0  # what the box goes back to after a 0 (greedy)
        self._said: str | None = None  # a clamp message the next change keeps on the note
        for name, w in (("temperature", self.temperature), ("top-k", self.top_k),
                        ("top-p", self.top_p), ("seed", self.seed)):
            w.setKeyboardTracking(False)
            w.valueChanged.connect(self._changed)
            w.clamped.connect(lambda typed, value, n=name: self._clamped(n, typed, value))
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

    def _clamped(self, name: str, typed: str, value: str) -> None:
        self._said = f"{name} {typed} is out of range: set to {value}"
        self.note.setText(self._said)
        self.note.setToolTip(self._said)

    def _changed(self, *_):
        if not self._updating and self.temperature.value() == 0:
            self._updating = True  # temperature 0 = greedy: the Greedy box says so
            try:
                self.temperature.setValue(self._last_temperature)
                self.greedy.setChecked(True)
            finally:
                self._updating = False
            self._said = "temperature 0 = greedy: Greedy is on"
        elif self.temperature.value() > 0:
            self._last_temperature = float(self.temperature.value())
        self._sync_enabled()
        if self._updating:
            return
        try:
            s = self.settings()
        except ValueError as e:
            self.note.setText(str(e))
            return
        said, self._said = self._said, None
        self.note.setText(said or NOTE)
        self.note.setToolTip(said or "")
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
