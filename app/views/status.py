"""Status bar: model name, context used / block size, last step and view-update times.

Transient messages (errors, hints, a sample prompt's explanation) come first: while one is
too long for the space left of the fields, the fields make way, and a message longer than
the whole bar wraps onto a second line (elided after that, whole in the tooltip), so that
presentation fonts never cut it off.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QFontMetrics, QPainter
from PySide6.QtWidgets import QHBoxLayout, QStatusBar, QWidget

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.steady_label import SteadyLabel

#: Lines a long message may take (the bar grows for it while it shows).
MESSAGE_LINES = 2
#: Pixels around the message text (QStatusBar's own margins).
MESSAGE_PAD = 6


class StatusBar(QStatusBar):
    """Permanent fields on the right (in :attr:`fields`), transient messages on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        # new texts every step: steady labels lay the bar out again only when they need more
        # or less room (digits seldom change a text's width)
        self.model = SteadyLabel("no model")
        self.context = SteadyLabel("")
        self.timing = SteadyLabel("", grow_only=True)  # milliseconds, every step
        self.settings = SteadyLabel("")
        self.fields = QWidget()
        # the bar's colour, painted by the fields themselves: their new texts every step
        # repaint them alone, not the bar and the window under it
        self.fields.setAutoFillBackground(True)
        row = QHBoxLayout(self.fields)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(0)
        for w in (self.settings, self.model, self.context, self.timing):
            w.label.setContentsMargins(8, 0, 8, 0)
            row.addWidget(w)
        self.addPermanentWidget(self.fields)
        self.info: ModelInfo | None = None
        self._step = self._view = ""  # the timing field's two figures
        self.message_lines = 1   # lines the current message takes (0: none shown)
        self.messageChanged.connect(self._fit_message)

    def apply_theme(self, theme) -> None:
        for w in (self.model, self.context, self.timing, self.settings):
            w.setFont(theme.font(0.95))
        self.timing.reset_sizes()
        self._fit_message(self.currentMessage())

    # ------------------------------------------------------------------ messages
    def _message_width(self, with_fields: bool) -> int:
        """Pixels the message may take: the bar's width, less the fields when they show."""
        w = self.width() - 2 * MESSAGE_PAD
        if with_fields:
            w -= self.fields.sizeHint().width() + self.layout().spacing()
        return max(1, w)

    def _fit_message(self, text: str) -> None:
        """Make room for ``text``: the fields give way when it does not fit beside them, a
        second line when it does not fit on one."""
        fm = QFontMetrics(self.font())
        need = fm.horizontalAdvance(text) if text else 0
        fits_beside = need <= self._message_width(True)
        self.fields.setVisible(not text or fits_beside)
        lines = 0 if not text else 1 if need <= self._message_width(False) else MESSAGE_LINES
        self.message_lines = lines
        self.setToolTip(text if lines > 1 else "")
        one = fm.height() + 2 * 3
        self.setMinimumHeight(one + (MESSAGE_LINES - 1) * fm.lineSpacing() if lines > 1 else 0)
        self.update()

    def message_text_rect(self) -> QRect:
        """Where a wrapped message is drawn."""
        return self.rect().adjusted(MESSAGE_PAD, 2, -MESSAGE_PAD, -2)

    def wrapped_message(self) -> str:
        """The current message as drawn on :data:`MESSAGE_LINES` lines (elided at the end
        when even they are too short)."""
        text = self.currentMessage()
        fm = QFontMetrics(self.font())
        r = self.message_text_rect()
        flags = int(Qt.TextFlag.TextWordWrap)
        if fm.boundingRect(r, flags, text).height() <= r.height():
            return text
        words = text.split(" ")
        while len(words) > 1:
            words.pop()
            cut = " ".join(words) + " …"
            if fm.boundingRect(r, flags, cut).height() <= r.height():
                return cut
        return fm.elidedText(text, Qt.TextElideMode.ElideRight, r.width())

    def resizeEvent(self, e) -> None:  # noqa: N802 - Qt name
        super().resizeEvent(e)
        if self.currentMessage():
            self._fit_message(self.currentMessage())

    def paintEvent(self, e) -> None:  # noqa: N802 - Qt name
        if self.message_lines <= 1:
            super().paintEvent(e)
            return
        p = QPainter(self)
        p.setPen(self.palette().windowText().color())
        p.drawText(self.message_text_rect(),
                   int(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter
                       | Qt.TextFlag.TextWordWrap), self.wrapped_message())
        p.end()

    # ------------------------------------------------------------------ views
    def set_model(self, info: ModelInfo) -> None:
        self.info = info
        n = info.n_params
        size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
        self.model.setText(f"{info.name} · {info.n_layer}×{info.n_head} heads · {size} params")
        self.model.setToolTip(f"{info.source} ({info.kind})")

    def apply_snapshot(self, snap: Snapshot) -> None:
        if snap.command == "reset" and snap.put_aside:
            self.showMessage(f"Reset: {snap.put_aside} tokens put aside; Back (Left) or "
                             "Ctrl+Z brings them back", 8000)
        used = snap.T
        slid = f" (window from token {snap.window_start})" if snap.window_start else ""
        self.context.setText(f"context {used} / {snap.block_size}{slid}")
        self._step = f"step {snap.step_ms:.1f} ms" if snap.step_ms is not None else "step –"
        # the window's set_view_ms follows every snapshot: the field is set once a step, then
        if not self._view:
            self.timing.setText(self._step)
        if snap.settings is not None:
            self.settings.setText("sampling: " + snap.settings.describe())

    def set_view_ms(self, ms: float) -> None:
        """Append the UI-thread update time of the last snapshot (after its step time)."""
        self._view = f"view {ms:.1f} ms"
        self.timing.setText(f"{self._step} · {self._view}" if self._step else self._view)
