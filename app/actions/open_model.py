"""File ▸ Open model… (Ctrl+Shift+O): the models this machine has, and where to run them.

The dialog lists the bundled model, the recently opened ones (``recent/models`` in the
preferences) and every model of the local Hugging Face cache
(:func:`gptviz.families.hub.cached_models`): name, family, parameters (read from the
safetensors headers or ``config.json``, no weights loaded) and size on disk; a model that no
family opens is greyed with the reason. Browse… opens a folder or a nanoGPT ``ckpt.pt``;
the device and precision choosers apply to the model opened.

Loading is the worker's ``open_model`` command (:mod:`gptviz_app.runtime.file_commands`): it
reports each stage (a progress bar) and looks at a cancel flag between them. The open model
stays on screen and untouched until the new one is complete; a cancelled or failed load
leaves it as it was.
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
)

from gptviz.families import find_family, hub
from gptviz.io.checkpoint import DEFAULT_MODEL_DIR, CheckpointError
from gptviz.io.device import DEVICES, DTYPES, available_devices
from gptviz.io.files import file_problem
from gptviz_app.actions.preferences import Preferences

#: Columns of the list.
COLUMNS = ("Model", "Family", "Parameters", "Size on disk", "Where")

#: Preference keys.
RECENT_KIND = "models"
DEVICE_KEY, DTYPE_KEY = "model/device", "model/dtype"


@dataclass(frozen=True)
class ModelRow:
    """One line of the list: ``spec`` is what ``open_model`` takes (a path or a name;
    ``None``: the bundled model); ``reason`` is set when it cannot be opened."""

    group: str
    spec: str | None
    title: str
    family: str
    n_params: int | None
    size: int | None
    where: str
    reason: str | None = None


def human_count(n: int | None) -> str:
    """``124.4M``, ``37.1k``; an en dash when unknown."""
    if n is None:
        return "–"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)


def human_size(n: int | None) -> str:
    """``548 MB``, ``156 kB``; an en dash when unknown."""
    if n is None:
        return "–"
    for div, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "kB")):
        if n >= div:
            return f"{n / div:.0f} {unit}" if n / div >= 10 else f"{n / div:.1f} {unit}"
    return f"{n} B"


#: Files of a folder that are counted for its size (a model folder holds a few; a recent
#: entry that is ``/`` or a home folder must not make the dialog walk the disk).
MAX_COUNTED_FILES = 10_000
#: Longest recent entry looked at: a path or a name is shorter; longer is junk.
MAX_SPEC_CHARS = 4096


def _disk_size(path: Path) -> int | None:
    """Bytes of a file, or of the files directly in a folder (links followed: a cache
    snapshot holds links to its blobs)."""
    try:
        if path.is_file():
            return path.stat().st_size
        total = 0
        with os.scandir(path) as it:
            for i, e in enumerate(it):
                if i >= MAX_COUNTED_FILES:
                    return None
                if e.is_file():
                    total += e.stat().st_size
        return total
    except (OSError, ValueError):
        return None


def _local_row(group: str, spec: str | None, path: Path, title: str) -> ModelRow:
    """A row for a folder or checkpoint file on disk (or a resolved cache snapshot)."""
    try:
        there = os.path.lexists(path)
        problem = None if path.is_dir() else file_problem(path)
    except (OSError, ValueError) as e:  # a name too long for the file system
        return ModelRow(group, spec, title, "", None, None, hub.shown_name(str(path)),
                        f"cannot be read ({getattr(e, 'strerror', None) or e})")
    if not there or problem == "file is missing":
        return ModelRow(group, spec, title, "", None, None, hub.shown_name(str(path)),
                        "no longer there")
    if problem is not None:  # a pipe, a device, a dangling link: nothing opens those
        return ModelRow(group, spec, title, "", None, None, hub.shown_name(str(path)),
                        problem)
    family = find_family(path)
    folder = path.is_dir()
    reason = None
    if family is None:
        reason = (hub.unsupported_reason(path) if folder
                  else "not a model folder or a nanoGPT .pt checkpoint")
    return ModelRow(group, spec, title, family.title if family else "",
                    hub.parameter_count(path) if folder else None, _disk_size(path),
                    str(path), reason)


def recent_specs(prefs: Preferences) -> list[str]:
    """The recent models worth a row: each once, printable, of a sensible length (the
    preferences may hold anything: numbers, nested lists, megabytes of text)."""
    out: list[str] = []
    for spec in prefs.recent(RECENT_KIND):
        if len(spec) <= MAX_SPEC_CHARS and spec.isprintable() and spec not in out:
            out.append(spec)
    return out


def _recent_row(spec: str, cache_dir: Path | None) -> ModelRow:
    name = hub.parse_name(spec)
    title = spec if name is not None else (Path(spec).name or spec)
    try:
        local = os.path.lexists(spec)
    except (OSError, ValueError):
        local = False
    if not local and name is not None:
        try:
            path = hub.resolve_name(spec, cache_dir)
        except CheckpointError as e:
            msg = str(e)
            reason = ("in the cache but " + msg.split(" but ", 1)[1].split("; gptviz", 1)[0]
                      if " is in the Hugging Face cache " in msg else "not in the cache")
            return ModelRow("Recent", spec, spec, "", None, None, "", reason)
        return _local_row("Recent", spec, path, title)
    return _local_row("Recent", spec, Path(spec), title)


def model_rows(prefs: Preferences, cache_dir: Path | None = None) -> list[ModelRow]:
    """Every line of the dialog: the bundled model, the recent ones, the cache's."""
    rows = [_local_row("Bundled", None, DEFAULT_MODEL_DIR, "Bundled model (Shakespeare)")]
    rows += [_recent_row(spec, cache_dir) for spec in recent_specs(prefs)]
    for m in hub.cached_models(cache_dir):
        where = (f"{'/'.join(m.refs) or 'commit'} @ {m.revision[:8]}" if m.revision
                 else str(m.path))
        rows.append(ModelRow("Cache", m.spec, m.repo_id, m.family_title or "", m.n_params,
                             m.size_on_disk, where, m.reason))
    return rows


def stored_device(prefs: Preferences) -> str:
    """The device last chosen (``"auto"`` when the preference is missing or junk)."""
    v = prefs.value(DEVICE_KEY, "auto")
    return v if isinstance(v, str) and v in DEVICES else "auto"


def stored_dtype(prefs: Preferences) -> str:
    """The precision last chosen (``"float32"`` when the preference is missing or junk)."""
    v = prefs.value(DTYPE_KEY, "float32")
    return v if isinstance(v, str) and v in DTYPES else "float32"


class OpenModelDialog(QDialog):
    """The list, Browse…, the device and dtype choosers, a progress bar.

    Signals: ``openRequested(spec, device, dtype)`` (spec ``""``: the bundled model),
    ``cancelRequested()``.
    """

    openRequested = Signal(str, str, str)
    cancelRequested = Signal()

    def __init__(self, parent, rows: list[ModelRow], device: str = "auto",
                 dtype: str = "float32") -> None:
        super().__init__(parent)
        self.setWindowTitle("Open model")
        self.loading = False
        self.tree = QTreeWidget()
        self.tree.setColumnCount(len(COLUMNS))
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setUniformRowHeights(True)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setStretchLastSection(True)  # "Where" takes what is left, elided
        for col in range(len(COLUMNS) - 1):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.tree.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.tree.itemDoubleClicked.connect(lambda *_: self._open())
        self.tree.currentItemChanged.connect(lambda *_: self._update_buttons())

        self.device = QComboBox()
        self.device.setAccessibleName("Device")
        have = set(available_devices())
        for name in DEVICES:
            self.device.addItem(name)
            if name != "auto" and name not in have:
                item = self.device.model().item(self.device.count() - 1)  # type: ignore[attr-defined]
                item.setEnabled(False)
                item.setToolTip(f"no {name} device on this machine")
        self.device.setItemText(0, f"auto ({available_devices()[0]})")
        self.device.setCurrentIndex(max(0, list(DEVICES).index(device) if device in DEVICES
                                        else 0))
        self.dtype = QComboBox()
        self.dtype.setAccessibleName("Precision")
        self.dtype.addItems(list(DTYPES))
        self.dtype.setCurrentText(dtype if dtype in DTYPES else "float32")
        self.dtype.setToolTip("bfloat16 and float16 halve the memory; the numbers shown move "
                              "by about 1e-2 (bfloat16) or 1e-3 (float16), see the README")

        self.browse_dir = QPushButton("Browse folder…")
        self.browse_dir.clicked.connect(self._browse_dir)
        self.browse_file = QPushButton("Browse ckpt.pt…")
        self.browse_file.clicked.connect(self._browse_file)
        self.progress = QProgressBar()
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.buttons = QDialogButtonBox()
        self.open_button = self.buttons.addButton("Open", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.open_button.clicked.connect(self._open)
        self.close_button.clicked.connect(self._close_or_cancel)

        choosers = QHBoxLayout()
        choosers.addWidget(self.browse_dir)
        choosers.addWidget(self.browse_file)
        choosers.addStretch(1)
        for text, box in (("Device", self.device), ("Precision", self.dtype)):
            label = QLabel(text)
            label.setBuddy(box)
            choosers.addWidget(label)
            choosers.addWidget(box)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tree, 1)
        layout.addLayout(choosers)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.buttons)
        self.set_rows(rows)
        self._update_buttons()
        # A third of the window's width or more: wide enough for long repository names.
        pw = parent.width() if parent is not None else 1280
        ph = parent.height() if parent is not None else 800
        self.resize(max(640, min(1200, int(0.8 * pw))), max(360, min(760, int(0.7 * ph))))

    # ------------------------------------------------------------------ the list
    def set_rows(self, rows: list[ModelRow]) -> None:
        self.rows = rows
        self.tree.clear()
        groups = {"Bundled": "Bundled", "Recent": "Recent",
                  "Cache": f"Hugging Face cache ({hub.hub_cache_dir()})"}
        first = None
        for key, heading in groups.items():
            members = [r for r in rows if r.group == key]
            if key == "Cache" and not members:
                members = []
                empty = QTreeWidgetItem([f"{heading}: no models. On a connected machine: "
                                         "hf download openai-community/gpt2"])
                empty.setFlags(Qt.ItemFlag.NoItemFlags)
                self.tree.addTopLevelItem(empty)
                self._heading(empty)
                continue
            if not members:
                continue
            head = QTreeWidgetItem([heading])
            head.setFlags(Qt.ItemFlag.NoItemFlags)
            self.tree.addTopLevelItem(head)
            self._heading(head)
            for r in members:
                item = self._row_item(r)
                self.tree.addTopLevelItem(item)
                if first is None and r.reason is None:
                    first = item
        if first is not None:
            self.tree.setCurrentItem(first)

    def _heading(self, item: QTreeWidgetItem) -> None:
        font = item.font(0)
        font.setBold(True)
        item.setFont(0, font)
        item.setFirstColumnSpanned(True)

    def _row_item(self, r: ModelRow) -> QTreeWidgetItem:
        family, where = r.family, r.where
        if r.reason is not None:
            m = re.search(r"model_type '([^']+)'", r.reason)
            if m is not None or r.reason.startswith(("no config.json", "config.json has no")):
                family = "unsupported" + (f" ({m.group(1)})" if m else "")
            else:  # broken, missing, not a model: what is wrong (the path is in the tooltip)
                family, where = "cannot open", r.reason
        item = QTreeWidgetItem(["   " + r.title, family, human_count(r.n_params),
                                human_size(r.size), where])
        item.setData(0, Qt.ItemDataRole.UserRole, r)
        for col in (2, 3):
            item.setTextAlignment(col, Qt.AlignmentFlag.AlignRight
                                  | Qt.AlignmentFlag.AlignVCenter)
        tip = f"{r.title}\n{r.where}" + (f"\ngptviz cannot open it: {r.reason}" if r.reason
                                         else "")
        for col in range(len(COLUMNS)):
            item.setToolTip(col, tip)
        if r.reason is not None:
            item.setFlags(Qt.ItemFlag.NoItemFlags)  # greyed, not selectable
        return item

    def selected_row(self) -> ModelRow | None:
        item = self.tree.currentItem()
        row = item.data(0, Qt.ItemDataRole.UserRole) if item is not None else None
        return row if isinstance(row, ModelRow) and row.reason is None else None

    def row_item(self, title: str) -> QTreeWidgetItem | None:
        """The list item titled ``title`` (tests, scripts)."""
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            row = item.data(0, Qt.ItemDataRole.UserRole)
            if isinstance(row, ModelRow) and row.title == title:
                return item
        return None

    # ------------------------------------------------------------------ choices
    def device_name(self) -> str:
        return DEVICES[self.device.currentIndex()]

    def _browse_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open model folder (gptviz, Hugging Face, "
                                                   "nanoGPT)")
        if d:
            self.request(d)

    def _browse_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open nanoGPT checkpoint", "",
                                           "PyTorch checkpoints (*.pt *.pth *.ckpt)")
        if f:
            self.request(f)

    def _open(self) -> None:
        row = self.selected_row()
        if row is not None and not self.loading:
            self.request(row.spec or "")

    def request(self, spec: str) -> None:
        """Ask for ``spec`` with the chosen device and precision."""
        self.openRequested.emit(spec, self.device_name(), self.dtype.currentText())

    def _close_or_cancel(self) -> None:
        if self.loading:
            self.cancelRequested.emit()
            self.status.setText("Cancelling after the current stage…")
        else:
            self.reject()

    def _update_buttons(self) -> None:
        self.open_button.setEnabled(not self.loading and self.selected_row() is not None)
        for w in (self.tree, self.browse_dir, self.browse_file, self.device, self.dtype):
            w.setEnabled(not self.loading)
        self.close_button.setText("Cancel loading" if self.loading else "Close")

    # ------------------------------------------------------------------ progress
    def set_loading(self, on: bool, text: str = "") -> None:
        self.loading = on
        self.progress.setVisible(on)
        if on:
            self.progress.setRange(0, 0)
        self.status.setText(text)
        self._update_buttons()

    def set_stage(self, step: int, steps: int, text: str) -> None:
        self.progress.setRange(0, steps)
        self.progress.setValue(step)
        self.status.setText(f"{text}… ({step + 1} of {steps})")

    def reject(self) -> None:
        if self.loading:  # Escape while loading cancels the load, not the dialog
            self._close_or_cancel()
            return
        super().reject()


class ModelOpener(QObject):
    """File ▸ Open model…: the dialog, the worker's ``open_model`` command, the recent list.

    Signals: ``opened(spec)``, ``failed(message)``, ``cancelled(spec)``.
    """

    opened = Signal(str)
    failed = Signal(str)
    cancelled = Signal(str)

    def __init__(self, window, prefs: Preferences) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        self.dialog: OpenModelDialog | None = None
        self.gen = -1
        self._cancel: threading.Event | None = None
        self.action: QAction | None = window.actions.get("open_model")  # File ▸ Open model…
        if self.action is not None:
            self.action.setStatusTip("The bundled, recent and cached models; device and "
                                     "precision")
        c = window.controller
        c.client.result.connect(self._on_result)
        c.client.errored.connect(self._on_error)

    @property
    def device(self) -> str:
        return stored_device(self.prefs)

    @property
    def dtype(self) -> str:
        return stored_dtype(self.prefs)

    def show_dialog(self) -> OpenModelDialog:
        """Open the dialog (non-modal; the window stays usable behind it)."""
        if self.dialog is not None:
            self.dialog.close()
            self.dialog.deleteLater()
        d = OpenModelDialog(self.win, model_rows(self.prefs), self.device, self.dtype)
        d.openRequested.connect(self.open)
        d.cancelRequested.connect(self.cancel)
        self.dialog = d
        d.setModal(False)  # QDialog.open() would be window-modal: the window must stay usable
        d.show()
        d.activateWindow()
        return d

    @property
    def loading(self) -> bool:
        return self._cancel is not None

    def open(self, spec: str | None, device: str = "auto", dtype: str = "float32",
             prompt: str | None = None) -> int:
        """Ask the worker to open ``spec`` (``None``/``""``: the bundled model)."""
        spec = spec or None
        self.prefs.set_value(DEVICE_KEY, device)
        self.prefs.set_value(DTYPE_KEY, dtype)
        if self._cancel is not None:
            self._cancel.set()  # a newer choice replaces a load in progress
        self._cancel = threading.Event()
        self.win.status.showMessage(f"Loading {spec or 'the bundled model'}…")
        if self.dialog is not None:
            self.dialog.set_loading(True, f"Opening {spec or 'the bundled model'}…")
        self.gen = self.win.controller.request("open_model", spec=spec, device=device,
                                               dtype=dtype, prompt=prompt, cancel=self._cancel)
        return self.gen

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _on_result(self, gen: int, command: str, result: dict) -> None:
        if command != "open_model" or gen != self.gen:
            return
        d = self.dialog
        spec = result.get("spec") or ""
        if "stage" in result:
            if d is not None:
                d.set_stage(result["step"], result["steps"], result["stage"])
            return
        self._cancel = None
        if result.get("cancelled"):
            self.win.status.showMessage("Loading cancelled; the current model stays open", 5000)
            if d is not None:
                d.set_loading(False, "Cancelled; the current model stays open.")
            self.cancelled.emit(spec)
        elif result.get("done"):
            if spec:
                self.prefs.add_recent(RECENT_KIND, spec)
            if d is not None:
                d.set_loading(False)
                d.accept()
            self.opened.emit(spec)

    def _on_error(self, gen: int, command: str, message: str) -> None:
        if command != "open_model" or gen != self.gen:
            return
        self._cancel = None
        if self.dialog is not None:
            self.dialog.set_loading(False, message.splitlines()[0] if message else "failed")
        self.failed.emit(message)
