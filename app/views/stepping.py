"""Stepping controls: Reset, Back, Step, Forward, Play/Pause, rate, and the timeline slider.

The buttons are driven by QActions (``self.actions``) that the window also puts in its
Generate menu with their keyboard shortcuts (Space, Left, Right, Home, Shift+Space).
"""

from __future__ import annotations

from PySide6.QtCore import QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence, QRegion
from PySide6.QtWidgets import (
    QAbstractSlider,
    QDoubleSpinBox,
    QHBoxLayout,
    QSlider,
    QStyle,
    QStyleOptionSlider,
    QToolButton,
    QWidget,
)

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.steady_label import SteadyLabel
from gptviz_app.views.theme import DARK, Theme

#: The slider changes that move its handle (the ones a repaint may be skipped for).
_MOVED = (QAbstractSlider.SliderChange.SliderRangeChange,
          QAbstractSlider.SliderChange.SliderValueChange)


class TimelineSlider(QSlider):
    """A slider that repaints for a new range or value only when what it draws changed.

    ``QSlider`` repaints itself (and, not being opaque, the toolbar and window under it) at
    every ``setRange``/``setValue``, even when its handle stays on the same pixel: a step at
    the end of the timeline sets ``n / n`` after ``n-1 / n-1``, whose handle is at the right
    end both times. Without tick marks the style draws the groove, the handle and the
    groove's fill up to the handle: what the handle's rectangle, the widget's rectangle and
    state (enabled, hovered, pressed, palette...) say, which :meth:`drawn` collects. Every
    other change (a resize, a hover, a new palette) repaints the slider as before.
    """

    def __init__(self, orientation: Qt.Orientation, parent: QWidget | None = None) -> None:
        super().__init__(orientation, parent)
        self._painted: tuple | None = None  # drawn() at the last paint of the whole slider
        self._moving = False  # inside set_position: one look at the end
        self._moved = False  # a range or value change inside it
        self.repaints_asked = 0  # range/value changes that asked for a repaint (tests read it)

    def set_position(self, maximum: int, value: int | None = None) -> None:
        """``setRange(0, maximum)``, then ``setValue(value)`` (unless None), repainted once if
        at all: the range alone moves the handle that the value then puts back."""
        self._moving, self._moved = True, False
        try:
            self.setRange(0, maximum)
            if value is not None:
                self.setValue(value)
        finally:
            self._moving = False
        if self._moved:
            self.sliderChange(QAbstractSlider.SliderChange.SliderValueChange)

    def drawn(self) -> tuple:
        """What a paint of the slider now depends on (equal tuples: equal pixels)."""
        opt = QStyleOptionSlider()
        self.initStyleOption(opt)
        cc = QStyle.ComplexControl.CC_Slider
        handle = self.style().subControlRect(cc, opt, QStyle.SubControl.SC_SliderHandle, self)
        ticks = (opt.tickPosition, opt.tickInterval, opt.minimum, opt.maximum, opt.pageStep,
                 opt.singleStep) if opt.tickPosition != QSlider.TickPosition.NoTicks else ()
        return (handle.getRect(), opt.rect.getRect(), int(opt.state.value),
                int(opt.activeSubControls.value), opt.palette.cacheKey(), opt.direction,
                opt.orientation, opt.upsideDown, opt.minimum == opt.maximum, ticks)

    def sliderChange(self, change: QAbstractSlider.SliderChange) -> None:  # noqa: N802
        moved = _MOVED
        if change in moved and self._moving:
            self._moved = True
            return
        if change in moved and self._painted is not None and self.drawn() == self._painted:
            return  # the same pixels: QAbstractSlider's sliderChange only repaints
        self.repaints_asked += change in moved
        super().sliderChange(change)

    def paintEvent(self, e) -> None:  # noqa: N802 - Qt name
        # a part repainted (an expose): what the rest shows is not known, the next change
        # repaints
        whole = QRegion(self.rect()).subtracted(e.region()).isEmpty()
        super().paintEvent(e)
        self._painted = self.drawn() if whole else None


class SteppingControls(QWidget):
    """Signals: ``stepRequested``, ``backRequested``, ``forwardRequested``, ``resetRequested``,
    ``playToggled(bool)``, ``rateChanged(float)`` (tokens/s, 0 = max), ``scrubbed(int)``."""

    stepRequested = Signal()
    backRequested = Signal()
    forwardRequested = Signal()
    resetRequested = Signal()
    playToggled = Signal(bool)
    rateChanged = Signal(float)
    scrubbed = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.actions: dict[str, QAction] = {}

        def act(key: str, text: str, shortcut: str, tip: str, slot, checkable=False) -> QAction:
            a = QAction(text, self)
            a.setShortcut(QKeySequence(shortcut))
            a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            a.setToolTip(f"{tip} ({shortcut})")
            a.setCheckable(checkable)
            (a.toggled if checkable else a.triggered).connect(slot)
            self.actions[key] = a
            return a

        act("reset", "Reset", "Home", "Back to the prompt", lambda: self.resetRequested.emit())
        act("back", "Back", "Left", "Undo the last token, or a Reset",
            lambda: self.backRequested.emit())
        # Ctrl+Z too: what a user presses after an accidental Home
        self.actions["back"].setShortcuts([QKeySequence("Left"),
                                           QKeySequence(QKeySequence.StandardKey.Undo)])
        self.actions["back"].setToolTip("Undo the last token, or a Reset (Left or Ctrl+Z)")
        act("step", "Step", "Space", "Generate one token", lambda: self.stepRequested.emit())
        act("forward", "Forward", "Right", "Redo an undone token",
            lambda: self.forwardRequested.emit())
        act("play", "Play", "Shift+Space", "Generate continuously", self._on_play, True)
        sp = QStyle.StandardPixmap
        self._icons = {"reset": sp.SP_MediaSkipBackward, "back": sp.SP_MediaSeekBackward,
                       "step": sp.SP_MediaPlay, "forward": sp.SP_MediaSeekForward,
                       "play": sp.SP_MediaPlay, "pause": sp.SP_MediaPause}
        for key, a in self.actions.items():
            a.setIcon(self.style().standardIcon(self._icons[key]))
        lay = QHBoxLayout(self)
        lay.setContentsMargins(4, 2, 4, 2)
        lay.setSpacing(6)
        self.buttons: dict[str, QToolButton] = {}
        for key in ("reset", "back", "step", "forward", "play"):
            b = QToolButton()
            b.setDefaultAction(self.actions[key])
            b.setFocusPolicy(Qt.FocusPolicy.NoFocus)
            b.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            self.buttons[key] = b
            lay.addWidget(b)
        self.rate = QDoubleSpinBox()
        self.rate.setRange(0.0, 60.0)
        self.rate.setDecimals(1)
        self.rate.setSingleStep(1.0)
        self.rate.setValue(4.0)
        self.rate.setSuffix(" tok/s")
        self.rate.setSpecialValueText("max speed")
        self.rate.setToolTip("Play speed in tokens per second (0 = as fast as possible)")
        self.rate.valueChanged.connect(self.rateChanged)
        lay.addWidget(self.rate)
        lay.addSpacing(10)
        self.slider = TimelineSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 0)
        self.slider.setToolTip("Timeline: drag to any earlier step (redo keeps the later ones)")
        self.slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.slider.valueChanged.connect(self._on_slider)
        lay.addWidget(self.slider, 1)
        # a new text every step: a steady label does not lay the toolbar out again for it
        self.position = SteadyLabel("step 0 / 0")
        self.position.setMinimumWidth(110)
        self.position.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        lay.addWidget(self.position)
        self.set_enabled(False)
        self.apply_theme(DARK)

    def apply_theme(self, theme: Theme) -> None:
        f = theme.font(1.05, bold=True)
        for b in self.buttons.values():
            b.setFont(f)
            b.setMinimumHeight(int(theme.pt(2.6)))
        self.position.setFont(theme.font(1.0))

    def set_enabled(self, on: bool) -> None:
        for a in self.actions.values():
            a.setEnabled(on)
        self.slider.setEnabled(on)

    def _show_play(self, on: bool) -> None:
        a = self.actions["play"]
        a.setText("Pause" if on else "Play")
        a.setIcon(self.style().standardIcon(self._icons["pause" if on else "play"]))

    def _on_play(self, on: bool) -> None:
        self._show_play(on)
        self.playToggled.emit(on)

    def set_playing(self, on: bool) -> None:
        """Reflect the controller's play state without re-emitting."""
        a = self.actions["play"]
        if a.isChecked() != on:
            with QSignalBlocker(a):
                a.setChecked(on)
        self._show_play(on)

    def _on_slider(self, value: int) -> None:
        self.scrubbed.emit(int(value))

    def set_model(self, info: ModelInfo) -> None:
        self.set_enabled(True)

    def apply_snapshot(self, snap: Snapshot) -> None:
        back = self.actions["back"]
        back.setEnabled(snap.can_undo)
        back.setToolTip(f"Undo the Reset: bring back the {snap.put_aside} tokens it put aside "
                        "(Left or Ctrl+Z)" if snap.put_aside else
                        "Undo the last token, or a Reset (Left or Ctrl+Z)")
        self.actions["forward"].setEnabled(snap.can_redo)
        self.actions["reset"].setEnabled(snap.n_generated > 0 or snap.can_redo)
        with QSignalBlocker(self.slider):
            down = self.slider.isSliderDown()
            self.slider.set_position(snap.n_total, None if down else snap.n_generated)
        self.position.setText(f"step {snap.n_generated} / {snap.n_total}")
