"""File ▸ Export… (Ctrl+Shift+E): plots to PNG/SVG, the attention matrix and the next-token
table to CSV, the whole trace to NPZ; File ▸ Export trace (Ctrl+E) writes the trace NPZ to the
last export folder at once, under a new name (``trace-step12.npz``), and says where.

The dialog opens on the last thing exported, in the last format and width, from the last
folder (kept in the preferences).

The functions that do the work take a path (tests and scripts call them directly); the
dialog only picks what, how and where:

* :func:`plot_panels` every pyqtgraph panel of the window (the attention map, the head
  grid, the next-token chart, and any panel added later with ``add_panel``);
* :func:`export_png` / :func:`export_svg` one panel through pyqtgraph's ``ImageExporter``
  (at a chosen width in pixels; fonts scale with it) and ``SVGExporter`` (token labels are
  ``<text>`` elements);
* :func:`export_attention_csv` / :func:`export_next_token_csv` from the snapshot on screen
  (:mod:`gptviz.io.export`), with position numbers (attention) and the chosen token marked
  (next token);
* :func:`export_lines` what an export shows, as the CSV files' header comment and the
  pictures' optional title: the panel, the model, the step, the sampling settings, the
  forced tokens and the ablation (:mod:`gptviz.io.provenance`);
* :meth:`Exporter.export_trace` the NPZ of ``python -m gptviz trace`` (same schema, same
  writer), written on the worker thread: it runs a forward pass.

Every file is written atomically (temporary file, then rename).
"""

from __future__ import annotations

import os
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, Qt, Signal
from PySide6.QtGui import QAction, QColor, QFont, QFontMetrics, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
)

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


#: Colours of a picture's title band: (background, text), from the window's theme.
TitleColors = tuple[str, str]


def _title_px(width: int) -> int:
    """Pixel size of a title's font for a picture ``width`` pixels wide."""
    return max(11, round(width / 60))


def _wrap(lines: list[str], chars: int) -> list[str]:
    """``lines`` wrapped at word boundaries to about ``chars`` characters (a narrow panel
    gets a title of more, shorter lines rather than a cut one)."""
    import textwrap

    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, max(12, chars), subsequent_indent="  ") or [""]
    return out


def titled_image(img: QImage, lines: list[str], colors: TitleColors = ("#000000", "#ffffff")
                 ) -> QImage:
    """``img`` with a band of ``lines`` above it (wrapped to its width)."""
    w = img.width()
    font = QFont()
    font.setPixelSize(_title_px(w))
    fm = QFontMetrics(font)
    pad = fm.height() // 2
    lines = _wrap(lines, int((w - 2 * pad) / max(1.0, fm.averageCharWidth())))
    band = 2 * pad + fm.lineSpacing() * len(lines)
    out = QImage(w, img.height() + band, QImage.Format.Format_ARGB32)
    out.fill(QColor(colors[0]))
    p = QPainter(out)
    p.setFont(font)
    p.setPen(QColor(colors[1]))
    for i, line in enumerate(lines):
        text = fm.elidedText(line, Qt.TextElideMode.ElideRight, w - 2 * pad)  # a long word
        p.drawText(pad, pad + fm.ascent() + i * fm.lineSpacing(), text)
    p.drawImage(0, band, img)
    p.end()
    return out


def titled_svg(data: bytes, lines: list[str], colors: TitleColors = ("#000000", "#ffffff")
               ) -> bytes:
    """An SVG drawing with ``lines`` as ``<text>`` elements in a band above it (the drawing
    moved down, the view box made taller)."""
    from xml.dom import minidom

    doc = minidom.parseString(data)
    root = doc.documentElement
    x0, y0, w, h = (float(v) for v in root.getAttribute("viewBox").split())
    px = _title_px(int(w))
    lines = _wrap(lines, int((w - px) / (px * 0.6)))
    step = round(px * 1.3)
    band = step * len(lines) + px
    root.setAttribute("viewBox", f"{x0:g} {y0:g} {w:g} {h + band:g}")
    group = doc.createElement("g")
    group.setAttribute("transform", f"translate(0 {band})")
    for child in list(root.childNodes):
        if child.nodeType == child.ELEMENT_NODE and child.tagName in ("title", "desc", "style"):
            continue
        if child.nodeType == child.ELEMENT_NODE and child.tagName == "rect":
            continue  # the background: it fills the whole (taller) view box
        group.appendChild(root.removeChild(child))
    root.appendChild(group)
    back = doc.createElement("rect")  # the band's own background, in absolute units
    for k, v in (("x", x0), ("y", y0), ("width", w), ("height", band)):
        back.setAttribute(k, f"{v:g}")
    back.setAttribute("fill", colors[0])
    root.appendChild(back)
    for i, line in enumerate(lines):
        t = doc.createElement("text")
        t.setAttribute("x", str(px // 2))
        t.setAttribute("y", str(px // 2 + px + i * step))
        t.setAttribute("font-size", str(px))
        t.setAttribute("font-family", "sans-serif")
        t.setAttribute("fill", colors[1])
        t.appendChild(doc.createTextNode(line))
        root.appendChild(t)
    return doc.toxml(encoding="UTF-8")


def png_bytes(view, width: int | None = None, title: list[str] | None = None,
              colors: TitleColors = ("#000000", "#ffffff")) -> bytes:
    """A pyqtgraph view rendered to PNG, ``width`` pixels wide (default: as on screen), with
    the ``title`` lines above it when given."""
    from pyqtgraph.exporters import ImageExporter

    exp = ImageExporter(_export_item(view))
    if width:
        exp.parameters()["width"] = int(width)
    img = exp.export(toBytes=True)
    if title:
        img = titled_image(img, title, colors)
    buf = QBuffer()
    buf.open(QIODevice.OpenModeFlag.WriteOnly)
    if not img.save(buf, "PNG"):
        raise OSError("could not encode the PNG image")
    return bytes(QByteArray(buf.data()))


def export_png(path: str | os.PathLike[str], view, width: int | None = None,
               title: list[str] | None = None,
               colors: TitleColors = ("#000000", "#ffffff")) -> Path:
    """Write ``view`` as a PNG ``width`` pixels wide (height keeps the aspect ratio), with the
    ``title`` lines in a band above it when given."""
    data = png_bytes(view, width, title, colors)
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


def export_svg(path: str | os.PathLike[str], view, title: list[str] | None = None,
               colors: TitleColors = ("#000000", "#ffffff")) -> Path:
    """Write ``view`` as SVG (vector: axes, labels and bars; the maps as embedded images), with
    the ``title`` lines above it when given."""
    from pyqtgraph.exporters import SVGExporter

    with _closed_paths_tolerated():
        data = SVGExporter(_export_item(view)).export(toBytes=True)
    if title:
        data = titled_svg(bytes(data), title, colors)
    return atomic_write(path, lambda f: f.write(data))


# ---------------------------------------------------------------------- data
def shows(snap, what: str) -> str:
    """One line: what the export ``what`` (a panel or data key) of ``snap`` shows."""
    v = snap.view
    head = f"layer {v.layer}, " + ("average of heads" if v.average else f"head {v.head}")
    ws, T = snap.window_start, snap.T
    if what in ("attention", "attention_csv"):
        return (f"attention of {head}, queries and keys at positions {ws}-{ws + T - 1}"
                + (" (colours on a square-root scale)" if what == "attention" and v.sqrt_scale
                   else ""))
    c = snap.candidates
    if what in ("next", "next_csv"):
        if c.kind == "last":
            how = ("forced" if c.chosen_forced else "greedy" if c.chosen_greedy
                   else "sampled")
            return (f"next token: the distribution step {c.step}'s token was drawn from "
                    f"(the prediction after position {snap.prompt_len + c.step - 2}, "
                    f"unfiltered softmax; {how}: {c.tokens[c.chosen]!r})" if c.chosen >= 0
                    else f"next token: the distribution of step {c.step}")
        return (f"next token: the prediction after position {snap.n_tokens - 1}, the prompt's "
                "end (unfiltered softmax)")
    if what == "grid":
        rows = snap.grid_mode == "row"
        return ("all heads: " + (f"the attention row of query {snap.query}" if rows
                                 else "every head's whole map") + f"; selected: {head}")
    return what


def export_lines(snap, what: str) -> list[str]:
    """What an export of ``snap`` shows: the :func:`shows` line, then model, step, sampling,
    forced tokens and ablation (:meth:`gptviz.io.provenance.ExportContext.lines`)."""
    lines = [f"gptviz: {shows(snap, what)}"]
    if snap.context is not None:
        lines += snap.context.lines()
    return lines


def export_attention_csv(path: str | os.PathLike[str], snap) -> Path:
    """The map on screen (selected head or average of heads) over the model's window:
    query rows, key columns, zero above the diagonal (as in a trace file); a ``position``
    column, key columns named ``"<position> <token>"``, and :func:`export_lines` as the
    header comment."""
    ws, T = snap.window_start, snap.T
    tokens = snap.tokens[ws:ws + T]
    matrix = np.nan_to_num(np.asarray(snap.attn, dtype=np.float32), nan=0.0)
    return attention_csv(path, matrix, tokens, positions=range(ws, ws + T),
                         comment=export_lines(snap, "attention_csv"))


def export_next_token_csv(path: str | os.PathLike[str], snap) -> Path:
    """The candidates of the next-token panel: rank, id, token, probability, chosen (1 for the
    token taken at that step, or next on the timeline), :func:`export_lines` as the header
    comment."""
    c = snap.candidates
    return next_token_csv(path, c.ids, c.probs, c.tokens, chosen=int(c.chosen_id),
                          comment=export_lines(snap, "next_csv"))


# ---------------------------------------------------------------------- window side
def unused_path(directory: str | os.PathLike[str], stem: str, suffix: str) -> Path:
    """``directory/stem.suffix``, or ``stem-2``, ``stem-3`` … where that exists already."""
    d = Path(directory)
    path, n = d / f"{stem}{suffix}", 2
    while path.exists():
        path, n = d / f"{stem}-{n}{suffix}", n + 1
    return path


class Exporter(QObject):
    """The window's File ▸ Export… (Ctrl+Shift+E) and Export trace (Ctrl+E). Signals:
    ``exported(kind, path)``, ``failed(message)``. ``prefs``: where the last folder, thing,
    format and width are kept (:class:`~gptviz_app.actions.preferences.Preferences`)."""

    exported = Signal(str, str)
    failed = Signal(str)

    def __init__(self, window, prefs=None) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        get = prefs.value if prefs is not None else (lambda _k, d=None: d)
        self.directory = str(get("export/directory", "") or Path.home())
        try:
            self.png_width = min(10000, max(200, int(get("export/png_width", 1920))))
        except (TypeError, ValueError):
            self.png_width = 1920
        self.title = get("export/title", True) not in (False, "false", 0, "0")
        #: the last thing exported and its picture format ("" before the first export)
        self.last_what = str(get("export/what", "") or "")
        self.last_format = str(get("export/format", "png") or "png")
        a = QAction("Export…", window)
        a.setShortcut(QKeySequence("Ctrl+Shift+E"))
        a.setStatusTip("Export a plot (PNG, SVG), the attention matrix or next-token table "
                       "(CSV), or the whole trace (NPZ)")
        a.triggered.connect(self.show_dialog)
        window.addAction(a)
        window.actions["export"] = a
        self.action = a
        q = QAction("Export trace (NPZ) to the last folder", window)
        q.setShortcut(QKeySequence("Ctrl+E"))
        q.setStatusTip("Write the whole trace (NPZ) to the last export folder at once")
        q.triggered.connect(self.quick_trace)
        window.addAction(q)
        window.actions["export_trace"] = q
        self.trace_action = q
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

    def export(self, what: str, path: str, fmt: str = "png", width: int | None = None,
               title: bool = False):
        """Export ``what`` (a :func:`plot_panels` key or a :data:`DATA_EXPORTS` key) to
        ``path``; a picture with ``title`` gets :func:`export_lines` above it. Returns the
        path written, or for ``trace_npz`` the worker request's generation (the file is
        there when ``exported("trace_npz", path)`` is emitted)."""
        path = str(path)
        self.remember(what, fmt, str(Path(path).parent))
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
            view, key = panels[what][1], what.split("-")[0]
            analysis = getattr(self.win, "analysis", None)
            if analysis is not None and key in analysis.panels:
                # a panel behind a tab or closed skips the steps it does not show: brought
                # up to date first, the picture is what it would show now
                analysis.catch_up(key)
            lines = export_lines(self._snap(), key) if title else None
            colors = (self.win.theme.plot_bg, self.win.theme.text)
            if fmt not in ("svg", "png"):
                raise ValueError(f"unknown plot format {fmt!r}")
            # the main map's picture ends at its newest token (no blank margin)
            att = self.win.attention
            exact = att.exact_range() if view is att.glw else nullcontext()
            with exact:
                out = (export_svg(path, view, lines, colors) if fmt == "svg"
                       else export_png(path, view, width, lines, colors))
        self.win.status.showMessage(f"Exported {out}", 6000)
        self.exported.emit(what, str(out))
        return out

    def remember(self, what: str, fmt: str, directory: str | None = None) -> None:
        """Keep the last export's folder, thing, format, width and title choice."""
        if directory:
            self.directory = directory
        self.last_what, self.last_format = what, fmt
        if self.prefs is not None:
            for key, value in (("directory", self.directory), ("what", what),
                               ("format", fmt), ("png_width", self.png_width),
                               ("title", self.title)):
                self.prefs.set_value(f"export/{key}", value)

    def quick_trace(self) -> Path | None:
        """Ctrl+E: the trace NPZ into the last export folder, no dialog, under a name not
        taken yet; the status bar says where (a failure shows why). Returns the path."""
        snap = self.win.controller.snapshot
        if self.win.controller.model is None or snap is None:
            self.win.status.showMessage("Nothing to export yet: no model is loaded", 6000)
            return None
        stem = f"trace-step{snap.n_generated}" if snap.n_generated else "trace-prompt"
        path = unused_path(self.directory, stem, ".npz")
        try:
            self.export("trace_npz", str(path), self.last_format)
        except (OSError, ValueError) as e:
            self._fail(str(e))
            return None
        return path

    def export_trace(self, path: str) -> int:
        """Ask the worker to write the trace NPZ; returns the request's generation."""
        c = self.win.controller
        if c.model is None:
            raise ValueError("nothing to export yet: no model is loaded")
        gen = c.request("export_trace", path=str(path))
        self.win.status.showMessage(f"Writing the trace to {path}…")
        return gen

    def _on_result(self, gen: int, command: str, result) -> None:
        if command == "export_trace":
            path = result["path"]  # the worker echoes the request's path
            self.win.status.showMessage(f"Exported the trace ({result.get('T', '?')} tokens) "
                                        f"to {path}", 6000)
            self.exported.emit("trace_npz", path)
            # the request made the snapshot on screen stale: end on a fresh one
            self.win.controller.request("view")

    def _on_error(self, command: str, message: str) -> None:
        if command == "export_trace":
            self._fail(message.split("\n\n")[0])

    def _fail(self, message: str) -> None:
        self.win.show_error("Export failed", message)
        self.failed.emit(message)

    # ------------------------------------------------------------------ dialog
    def show_dialog(self) -> ExportDialog:
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
        self.title = QCheckBox("model, step, sampling, forced tokens, ablation")
        self.title.setChecked(exporter.title)
        self.title.setToolTip("Write what the picture shows above it (the CSV files always "
                              "start with these lines, the NPZ has them as keys)")
        form = QFormLayout()
        form.addRow("Export", self.what)
        form.addRow("Format", self.format)
        form.addRow("Width", self.width)
        form.addRow("Title", self.title)
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
        for box, value in ((self.what, exporter.last_what), (self.format, exporter.last_format)):
            i = box.findData(value)
            if i >= 0:  # the last export's choice (a panel since closed: the first item)
                box.setCurrentIndex(i)
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
        self.title.setEnabled(plot)
        if plot:
            self.note.setText("The panel as on screen, token labels included.")
        elif what == "trace_npz":
            self.note.setText("Same schema as `python -m gptviz trace`: token_ids, tokens, "
                              "attention [L, H, T, T], probs [T, V], prompt_len, window_start, "
                              "config, and what it shows: model, step, settings, forced, "
                              "ablation, description.")
        else:
            self.note.setText("UTF-8 CSV with a header row, after '#' lines that say what "
                              "it shows (model, step, sampling, forced tokens, ablation).")

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
        self.exporter.title = self.title.isChecked()
        try:
            return self.exporter.export(what, path, fmt, width, title=self.exporter.title)
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
