"""File ▸ Export… (Ctrl+E): plots to PNG/SVG, the attention matrix and the next-token table
to CSV, the whole trace to NPZ.

The functions that do the work take a path (tests and scripts call them directly); the
dialog only picks what, how and where:

* :func:`plot_panels` every pyqtgraph panel of the window (the attention map, the head
  grid, the next-token chart, and any panel added later with ``add_panel``);
* :func:`export_png` / :func:`export_svg` one panel through pyqtgraph's ``ImageExporter``
  (at a chosen width in pixels; fonts scale with it) and ``SVGExporter`` (token labels are
  ``<text>`` elements);
* :func:`export_attention_csv` / :func:`export_next_token_csv` from the snapshot on screen
  (:mod:`gptviz.io.export`);
* :meth:`Exporter.export_trace` the NPZ of ``python -m gptviz trace`` (same schema, same
  writer), written on the worker thread: it runs a forward pass.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout,
                               QLabel, QSpinBox, QVBoxLayout)

from gptviz.io.export import atomic_write, attention_csv, next_token_csv

#: What the dialog offers besides the plots: key -> (label, file filter, default name).
DATA_EXPORTS = {
    "attention_csv": ("Attention matrix shown (CSV)", "CSV files (*.csv)", "attention.csv"),
    "next_csv": ("Next-token table (CSV)", "CSV files (*.csv)", "next-token.csv"),
    "trace_npz": ("Whole trace: tokens, every head's attention, probabilities (NPZ)",
                  "NumPy archives (*.npz)", "trace.npz"),
}
PLOT_FORMATS = ("png", "svg")


# ---------------------------------------------------------------------- plots
def plot_panels(window) -> dict[str, tuple[str, pg.GraphicsView]]:
    """``key -> (title, view)`` for every pyqtgraph view in the window's panels."""
    out: dict[str, tuple[str, pg.GraphicsView]] = {}
    cands = [("attention", "Attention map", window.centralWidget())]
    cands += [(k, d.windowTitle(), d.widget()) for k, d in window.docks.items()]
    for key, title, w in cands:
        if w is None:
            continue
        views = [w] if isinstance(w, pg.GraphicsView) else w.findChildren(pg.GraphicsView)
        for i, v in enumerate(views):
            k = key if len(views) == 1 else f"{key}-{i + 1}"
            out[k] = (title if len(views) == 1 else f"{title} ({i + 1})", v)
    return out


def _export_item(view):
    """What to render of a view: its whole layout (plot, axes, colour bar)."""
    item = getattr(view, "ci", None) or getattr(view, "plotItem", None)
    return item if item is not None else view.scene()


def png_bytes(view, width: int | None = None) -> bytes:
    """A pyqtgraph view rendered to PNG, ``width`` pixels wide (default: as on screen)."""
    from pyqtgraph.exporters import ImageExporter

    exp = ImageExporter(_export_item(view))
    if width:
        exp.parameters()["width"] = int(width)
    img = exp.export(toBytes=True)
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):
        raise OSError("could not encode the PNG image")
    return bytes(QByteArray(buf.data()))


def export_png(path: str | os.PathLike[str], view, width: int | None = None) -> Path:
    """Write ``view`` as a PNG ``width`` pixels wide (height keeps the aspect ratio)."""
    data = png_bytes(view, width)
    return atomic_write(path, lambda f: f.write(data))


@contextmanager
def _closed_paths_tolerated():
    """Work around pyqtgraph <= 0.14.0's SVG exporter failing on the ``Z`` (close path)
    commands newer Qt versions write (pyqtgraph issue #3495, "SVGExporter cannot handle
    closed paths"): the ``Z`` tokens are taken out of each path before pyqtgraph rewrites its
    coordinates (one output token per input token) and put back at the same places after."""
    import sys

    from pyqtgraph.exporters import SVGExporter  # noqa: F401 - loads the module

    mod = sys.modules["pyqtgraph.exporters.SVGExporter"]
    orig = getattr(mod, "correctCoordinates", None)
    if orig is None:  # a pyqtgraph without that step
        yield
        return

    def correct(node, defs, item, options):
        closes = []
        for el in node.getElementsByTagName("path"):
            toks = el.getAttribute("d").strip().split(" ")
            at = [i for i, t in enumerate(toks) if t in ("Z", "z")]
            if at:
                kept = [t for t in toks if t not in ("Z", "z")]
                el.setAttribute("d", " ".join(kept))
                closes.append((el, at))
        orig(node, defs, item, options)
        for el, at in closes:
            toks = [t for t in el.getAttribute("d").strip().split(" ") if t]
            for i in at:
                toks.insert(min(i, len(toks)), "Z")
            el.setAttribute("d", " ".join(toks))

    mod.correctCoordinates = correct
    try:
        yield
    finally:
        mod.correctCoordinates = orig


def export_svg(path: str | os.PathLike[str], view) -> Path:
    """Write ``view`` as SVG (vector: axes, labels and bars; the maps as embedded images)."""
    from pyqtgraph.exporters import SVGExporter

    with _closed_paths_tolerated():
        data = SVGExporter(_export_item(view)).export(toBytes=True)
    return atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------------- data
def export_attention_csv(path: str | os.PathLike[str], snap) -> Path:
    """The map on screen (selected head or average of heads) over the model's window:
    query rows, key columns, zero above the diagonal (as in a trace file)."""
    ws, T = snap.window_start, snap.T
    tokens = snap.tokens[ws:ws + T]
    matrix = np.nan_to_num(np.asarray(snap.attn, dtype=np.float32), nan=0.0)
    return attention_csv(path, matrix, tokens)


def export_next_token_csv(path: str | os.PathLike[str], snap) -> Path:
    """The candidates of the next-token panel: rank, id, token, probability."""
    c = snap.candidates
    return next_token_csv(path, c.ids, c.probs, c.tokens)


# ---------------------------------------------------------------------- window side
class Exporter(QObject):
    """The window's File ▸ Export… (Ctrl+E). Signals: ``exported(kind, path)``,
    ``failed(message)``."""

    exported = Signal(str, str)
    failed = Signal(str)

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.directory = str(Path.home())
        self.png_width = 1920
        a = QAction("Export…", window)
        a.setShortcut(QKeySequence("Ctrl+E"))
        a.setStatusTip("Export a plot (PNG, SVG), the attention matrix or next-token table "
                       "(CSV), or the whole trace (NPZ)")
        a.triggered.connect(self.show_dialog)
        window.addAction(a)
        window.actions["export"] = a
        self.action = a
        self.dialog: ExportDialog | None = None
        c = window.controller
        c.client.result.connect(self._on_result)
        c.errorOccurred.connect(self._on_error)

    # ------------------------------------------------------------------ work
    def _snap(self):
        snap = self.win.controller.snapshot
        if snap is None:
            raise ValueError("nothing to export yet: no model is loaded")
        return snap

    def export(self, what: str, path: str, fmt: str = "png", width: int | None = None):
        """Export ``what`` (a :func:`plot_panels` key or a :data:`DATA_EXPORTS` key) to
        ``path``. Returns the path written, or for ``trace_npz`` the worker request's
        generation (the file is there when ``exported("trace_npz", path)`` is emitted)."""
        path = str(path)
        self.directory = str(Path(path).parent)
        if what == "attention_csv":
            out = export_attention_csv(path, self._snap())
        elif what == "next_csv":
            out = export_next_token_csv(path, self._snap())
        elif what == "trace_npz":
            return self.export_trace(path)
        else:
            panels = plot_panels(self.win)
            if what not in panels:
                raise ValueError(f"no panel {what!r} to export")
            view = panels[what][1]
            if fmt == "svg":
                out = export_svg(path, view)
            elif fmt == "png":
                out = export_png(path, view, width)
            else:
                raise ValueError(f"unknown plot format {fmt!r}")
        self.win.status.showMessage(f"Exported {out}", 6000)
        self.exported.emit(what, str(out))
        return out

    def export_trace(self, path: str) -> int:
        """Ask the worker to write the trace NPZ; returns the request's generation."""
        c = self.win.controller
        if c.model is None:
            raise ValueError("nothing to export yet: no model is loaded")
        gen = c.request("export_trace", path=str(path))
        self.win.status.showMessage(f"Writing {path}…")
        return gen

    def _on_result(self, gen: int, command: str, result) -> None:
        if command == "export_trace":
            path = result["path"]  # the worker echoes the request's path
            self.win.status.showMessage(f"Exported the trace ({result.get('T', '?')} tokens) "
                                        f"to {path}", 6000)
            self.exported.emit("trace_npz", path)

    def _on_error(self, command: str, message: str) -> None:
        if command == "export_trace":
            self._fail(message.split("\n\n")[0])

    def _fail(self, message: str) -> None:
        self.win.show_error("Export failed", message)
        self.failed.emit(message)

    # ------------------------------------------------------------------ dialog
    def show_dialog(self) -> "ExportDialog":
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = ExportDialog(self)
        self.dialog.open()
        return self.dialog


class ExportDialog(QDialog):
    """What to export, in which format and size; Export… then asks where."""

    def __init__(self, exporter: Exporter) -> None:
        super().__init__(exporter.win)
        self.exporter = exporter
        self.setWindowTitle("Export")
        self.what = QComboBox()
        self.panels = plot_panels(exporter.win)
        for key, (title, _v) in self.panels.items():
            self.what.addItem(f"{title} (picture)", key)
        for key, (label, _f, _n) in DATA_EXPORTS.items():
            self.what.addItem(label, key)
        self.format = QComboBox()
        self.format.addItem("PNG (bitmap)", "png")
        self.format.addItem("SVG (vector)", "svg")
        self.width = QSpinBox()
        self.width.setRange(200, 10000)
        self.width.setSingleStep(100)
        self.width.setSuffix(" px")
        self.width.setValue(exporter.png_width)
        self.width.setToolTip("Width of the PNG in pixels; fonts and lines scale with it")
        form = QFormLayout()
        form.addRow("Export", self.what)
        form.addRow("Format", self.format)
        form.addRow("Width", self.width)
        self.note = QLabel("")
        self.note.setWordWrap(True)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.go = buttons.addButton("Export…", QDialogButtonBox.ButtonRole.AcceptRole)
        buttons.accepted.connect(self.choose_and_export)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.note)
        lay.addWidget(buttons)
        self.what.currentIndexChanged.connect(self._sync)
        self.format.currentIndexChanged.connect(self._sync)
        self._sync()

    def selection(self) -> tuple[str, str, int]:
        return self.what.currentData(), self.format.currentData(), self.width.value()

    def _sync(self, *_) -> None:
        what, fmt, _w = self.selection()
        plot = what in self.panels
        self.format.setEnabled(plot)
        self.width.setEnabled(plot and fmt == "png")
        if plot:
            self.note.setText("The panel as on screen, token labels included.")
        elif what == "trace_npz":
            self.note.setText("Same schema as `python -m gptviz trace`: token_ids, tokens, "
                              "attention [L, H, T, T], probs [T, V], prompt_len, window_start, "
                              "config.")
        else:
            self.note.setText("UTF-8 CSV with a header row.")

    def suggested_name(self) -> str:
        what, fmt, _w = self.selection()
        if what in DATA_EXPORTS:
            return DATA_EXPORTS[what][2]
        snap = self.exporter.win.controller.snapshot
        extra = ""
        if what == "attention" and snap is not None:
            v = snap.view
            extra = f"-L{v.layer}-" + ("avg" if v.average else f"H{v.head}")
        return f"{what}{extra}.{fmt}"

    def export_to(self, path: str):
        """Export the current selection to ``path`` (what Export… does after the file
        dialog); errors are shown, not raised."""
        what, fmt, width = self.selection()
        self.exporter.png_width = width
        try:
            return self.exporter.export(what, path, fmt, width)
        except (OSError, ValueError) as e:
            self.exporter._fail(str(e))
            return None

    def choose_and_export(self) -> None:
        what, fmt, _w = self.selection()
        filt = DATA_EXPORTS[what][1] if what in DATA_EXPORTS else \
            ("PNG images (*.png)" if fmt == "png" else "SVG drawings (*.svg)")
        start = str(Path(self.exporter.directory) / self.suggested_name())
        path, _ = QFileDialog.getSaveFileName(self, "Export to", start, filt)
        if not path:
            return
        if self.export_to(path) is not None:
            self.accept()
