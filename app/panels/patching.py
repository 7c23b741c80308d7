"""Activation patching: which heads and which residual-stream positions carry the difference
between the session's text (clean) and a corrupted prompt of the same token length.

Type the corrupted prompt and the metric's two tokens (M = logit(target) - logit(other) at
the last position) and press Run: the worker runs the corrupted prompt once per head with
that head's clean output patched in, and once per block and token with the clean residual
stream there, batched, with a progress bar and Cancel (any newer request cancels too). The
maps show (M_patched - M_corrupt) / (M_clean - M_corrupt): 1 restores the clean behaviour,
0 does nothing. Click a head for its patching at each position. When the prompts differ in
length the panel says by how many tokens, and shows both tokenisations.
(:mod:`gptviz.analysis.patching`; the ``patch`` worker command,
:mod:`gptviz_app.runtime.patching_commands`.)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from gptviz_app.panels.registry import AnalysisPanel
from gptviz_app.panels.widgets import esc
from gptviz_app.runtime.snapshot import ModelInfo
from gptviz_app.views.axes import MAP_LABEL_CHARS, pt_px, shorten, thin_ticks, tick_step
from gptviz_app.views.panel_layout import controls_row, shrinkable_label, stack, wrap_lines
from gptviz_app.views.plots import MapPlot
from gptviz_app.views.theme import DARK, Theme, diverging_colormap


class PatchingPanel(AnalysisPanel):
    """Clean/corrupted activation patching maps (heads L x H, residual L x T)."""

    title = "Activation patching"
    button = "Patching"
    analyses = ()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.theme = DARK
        self.controller: Any = None
        self.gen = -1
        self.corrupt = QLineEdit()
        self.corrupt.setPlaceholderText("corrupted prompt (as many tokens as the text)")
        self.corrupt.setToolTip("The corrupted prompt; the clean one is the session's text")
        self.corrupt.setMinimumWidth(120)
        self.target = QLineEdit()
        self.target.setPlaceholderText("target token")
        self.vs = QLineEdit()
        self.vs.setPlaceholderText("other token")
        for box in (self.target, self.vs):
            box.setMaximumWidth(90)
        self.target.setToolTip("M = logit(target) − logit(other token) at the last position")
        self.vs.setToolTip(self.target.toolTip())
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setMaximumWidth(110)
        self.corrupt.returnPressed.connect(self.run)
        self.header = shrinkable_label("Type a corrupted prompt and the two tokens of the "
                                       "metric, then Run.")
        self.header.setWordWrap(True)  # a narrow dock: two lines, not a cut one
        self.header.setTextFormat(Qt.TextFormat.RichText)
        top = QVBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.setSpacing(2)
        top.addLayout(controls_row((self.corrupt, 1), QLabel("M ="), self.target, QLabel("−"),
                                   self.vs, self.run_button, self.cancel_button))
        top.addLayout(controls_row((self.header, 1), self.progress))
        self.glw = pg.GraphicsLayoutWidget()
        self.heads = MapPlot(self.glw.addPlot(row=0, col=0), aspect=False)
        self.resid = MapPlot(self.glw.addPlot(row=0, col=1), aspect=False)
        # one head at each position: added under the residual map when asked for
        self.one = MapPlot(pg.PlotItem(), aspect=False, top_axis=False)
        self.glw.ci.layout.setColumnStretchFactor(0, 2)
        self.glw.ci.layout.setColumnStretchFactor(1, 3)
        self.colorbar = self.resid.add_colorbar(12, label="restored", values=(-1.0, 1.0))
        self.readout = shrinkable_label()
        stack(self, top, self.glw, self.readout)
        self.result: dict | None = None
        self.head_row: dict | None = None
        self.note = " "
        self.glw.scene().sigMouseMoved.connect(self._on_move)
        self.glw.scene().sigMouseClicked.connect(self._on_click)
        self.resid.vb.sigResized.connect(self._relabel)
        self.apply_theme(self.theme)
        self._clear_axes()

    # ------------------------------------------------------------------ wiring
    def install(self, ui) -> None:
        """Talk to the worker through the window's controller (the ``patch`` command)."""
        self.controller = ui.controller
        ui.controller.client.result.connect(self._on_result)

    def run(self) -> None:
        if self.controller is None:
            return
        if not self.corrupt.text() or not self.target.text() or not self.vs.text():
            self.header.setText("Type the corrupted prompt, the target and the other token.")
            return
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        self.header.setText("Patching…")
        self.gen = self.controller.request("patch", op="run", corrupt=self.corrupt.text(),
                                           target=self.target.text(), vs=self.vs.text())

    def cancel(self) -> None:
        if self.controller is not None:
            self.controller.request("patch", op="cancel")  # newer: the run stops at its next layer

    def _on_result(self, gen: int, command: str, out: dict) -> None:
        if command != "patch" or (gen != self.gen and "cancelled" not in out):
            return
        self.apply_result(out)

    def apply_result(self, out: dict) -> None:
        """Show one message of the ``patch`` command (progress, result, lengths...)."""
        th = self.theme
        if "progress" in out:
            done, total = out["progress"]
            self.progress.setRange(0, int(total))
            self.progress.setValue(int(done))
            return
        self.cancel_button.setEnabled(False)
        if "cancelled" in out:
            self.header.setText("Patching cancelled.")
            self.progress.setValue(0)
        elif "error" in out:
            self.header.setText(f"<span style='color:{th.accent}'>{esc(out['error'])}</span>")
        elif "lengths" in out:
            short, where, full = lengths_message(out["lengths"]["clean"],
                                                 out["lengths"]["corrupt"])
            self.header.setText(short)
            self.header.setToolTip(full)
            self.note = f"{where} · hover the line above for both tokenisations"
            self.readout.setText(self.note)
        elif "head" in out:
            self.head_row = out["head"]
            row = np.asarray(out["head"]["positions"], np.float32).reshape(1, -1)
            if self.one.plot.scene() is None:
                self.glw.addItem(self.one.plot, row=1, col=1)
            self.one.plot.setMaximumHeight(pt_px(self.theme.pt(1.0)) * 2.6)  # one row
            self.one.set_image(row, (-1.0, 1.0))
            self.one.plot.getAxis("left").setTicks(
                [[(0.5, f"L{out['head']['layer']}.H{out['head']['head']}")]])
        elif "result" in out:
            self.result = r = out["result"]
            self.head_row = None
            self.one.set_image(None, (0, 1))
            self.heads.set_image(np.asarray(r["heads"], np.float32), (-1.0, 1.0))
            self.resid.set_image(np.asarray(r["resid"], np.float32), (-1.0, 1.0))
            note = f" · {esc(r['note'])}" if r.get("note") else ""
            text = (f"clean <b>{r['clean_metric']:+.3f}</b>, corrupted "
                    f"<b>{r['corrupt_metric']:+.3f}</b> · M = logit({esc(r['target'])}) − "
                    f"logit({esc(r['vs'])}) · {len(r['tokens'])} tokens{note}")
            self.header.setText(text)
            self.header.setToolTip(text)  # the whole line where the panel is narrow
            self.note = ("left: each head (layer × head) · right: the residual stream entering "
                         "each block (layer × token) · 1 = the clean run restored; click a head")
            self.readout.setText(self.note)
            self._relabel()

    # ------------------------------------------------------------------ drawing
    def apply_theme(self, theme: Theme) -> None:
        self.theme = theme
        self.glw.setBackground(theme.plot_bg)
        cmap = diverging_colormap(theme)
        for m in (self.heads, self.resid, self.one):
            m.apply_theme(theme, cmap)
        self.heads.plot.setLabel("left", "layer")
        self.colorbar.axis.setTicks([[(-1.0, "−1"), (0.0, "0"), (1.0, "1")]])
        self.header.setFont(theme.font(1.0))
        self.readout.setFont(theme.font(0.95, mono=True))
        wrap_lines(self.readout)  # two lines rather than a cut one
        self._relabel()

    def set_model(self, info: ModelInfo) -> None:
        self.result = None
        for m in (self.heads, self.resid, self.one):
            m.set_image(None, (0, 1))
        self._clear_axes()

    def _clear_axes(self) -> None:
        """No numbers on the axes of maps that show nothing yet."""
        for m in (self.heads, self.resid, self.one):
            for name in ("left", "top"):
                m.plot.getAxis(name).setTicks([[]])
                m.plot.getAxis(name).enableAutoSIPrefix(False)

    def _relabel(self, *_) -> None:
        r = self.result
        if r is None:
            return
        L, H = np.asarray(r["heads"]).shape
        layers = [(i + 0.5, str(i)) for i in range(L)]
        self.heads.plot.getAxis("left").setTicks([layers])
        self.heads.plot.getAxis("top").setTicks(
            [[(h + 0.5, str(h)) for h in range(0, H, max(1, H // 12))]])
        self.resid.plot.getAxis("left").setTicks([layers])
        labels = [shorten(t, MAP_LABEL_CHARS) for t in r["tokens"]]
        x0, x1 = self.resid.vb.viewRange()[0]
        col_px = max(1.0, self.resid.vb.width()) / max(1e-9, x1 - x0)
        fpx = pt_px(self.theme.pt(0.8))
        self.resid.plot.getAxis("top").setTicks([thin_ticks(labels, tick_step(fpx * 5, col_px))])

    def _on_move(self, pos) -> None:
        r = self.result
        if r is None:
            return
        c = self.heads.cell_at(pos)
        if c is not None:
            v = float(np.asarray(r["heads"])[c])
            self.readout.setText(f"head L{c[0]}.H{c[1]}: {v:+.3f} restored (click: by position)")
            return
        c = self.resid.cell_at(pos)
        if c is not None:
            v = float(np.asarray(r["resid"])[c])
            tok = r["tokens"][c[1]]
            self.readout.setText(f"residual entering block {c[0]} at token {c[1]} {tok!r}: "
                                 f"{v:+.3f} restored")
            return
        c = self.one.cell_at(pos)
        if c is not None and self.head_row is not None:
            v = float(np.asarray(self.head_row["positions"])[c[1]])
            self.readout.setText(f"head L{self.head_row['layer']}.H{self.head_row['head']} at "
                                 f"token {c[1]} {r['tokens'][c[1]]!r}: {v:+.3f} restored")
            return
        self.readout.setText(self.note)

    def _on_click(self, ev) -> None:
        if ev.button() != Qt.MouseButton.LeftButton or self.controller is None:
            return
        c = self.heads.cell_at(ev.scenePos())
        if c is not None and self.result is not None:
            self.gen = self.controller.request("patch", op="head", layer=int(c[0]),
                                               head=int(c[1]))


def lengths_message(clean: list[str], corrupt: list[str]) -> tuple[str, str, str]:
    """What the panel says when the prompts differ in token length: a short line (rich
    text), where they first differ (plain), and both tokenisations (rich, for a tooltip)."""
    n, m = len(clean), len(corrupt)
    diff = n - m
    how = (f"add {diff} token{'s' if diff != 1 else ''} to" if diff > 0
           else f"remove {-diff} token{'s' if diff != -1 else ''} from")
    first = next((i for i, (a, b) in enumerate(zip(clean, corrupt)) if a != b), min(n, m))
    where = (f"they first differ at token {first}: {clean[first]!r} / {corrupt[first]!r}"
             if first < min(n, m) else f"one is the other plus {abs(diff)} more token(s)")
    short = (f"<b>{n}</b> tokens in the text, <b>{m}</b> in the corrupted prompt: {how} "
             "the corrupted prompt")

    def show(toks: list[str]) -> str:
        return " ".join(f"<u>{esc(t)}</u>" if i == first else esc(t)
                        for i, t in enumerate(toks[:60]))
    return short, where, f"{short}; {esc(where)}<br>clean: {show(clean)}<br>corrupted: " \
        f"{show(corrupt)}"
