"""Status bar: model name, context used / block size, last step and view-update times."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from gptviz_app.runtime.snapshot import ModelInfo, Snapshot


class StatusBar(QStatusBar):
    """Permanent fields on the right, transient messages (errors, hints) on the left."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = QLabel("no model")
        self.context = QLabel("")
        self.timing = QLabel("")
        self.settings = QLabel("")
        for w in (self.settings, self.model, self.context, self.timing):
            w.setContentsMargins(8, 0, 8, 0)
            self.addPermanentWidget(w)
        self.info: ModelInfo | None = None

    def apply_theme(self, theme) -> None:
        for w in (self.model, self.context, self.timing, self.settings):
            w.setFont(theme.font(0.95))

    def set_model(self, info: ModelInfo) -> None:
        self.info = info
        n = info.n_params
        size = f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"
        self.model.setText(f"{info.name} · {info.n_layer}×{info.n_head} heads · {size} params")
        self.model.setToolTip(f"{info.source} ({info.kind})")

    def apply_snapshot(self, snap: Snapshot) -> None:
        used = snap.T
        slid = f" (window from token {snap.window_start})" if snap.window_start else ""
        self.context.setText(f"context {used} / {snap.block_size}{slid}")
        step = f"step {snap.step_ms:.1f} ms" if snap.step_ms is not None else "step –"
        self.timing.setText(step)
        if snap.settings is not None:
            self.settings.setText("sampling: " + snap.settings.describe())

    def set_view_ms(self, ms: float) -> None:
        """Append the UI-thread update time of the last snapshot."""
        base = self.timing.text().split(" · ")[0]
        self.timing.setText(f"{base} · view {ms:.1f} ms")
