"""The main window: puts the views in docks and toolbars, builds the menus, wires signals.

It holds no logic of its own beyond layout: user intent goes to the
:class:`~gptviz_app.runtime.controller.Controller`, snapshots come back to the views through it.

Extension points for later panels (diagnostics, logit lens, export, presentation mode):

* :meth:`MainWindow.add_panel` adds a dock (with its toggle in View ▸ Panels) and registers
  the widget with the controller when it has ``apply_snapshot``/``set_model``;
* ``self.menus`` (``file``, ``generate``, ``view``, ``help``) and ``self.actions`` hold the
  menus and named actions; :meth:`MainWindow.set_theme` restyles every view.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QFontMetricsF, QKeySequence, QPalette
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMenu,
    QMessageBox,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from gptviz_app import configure_pyqtgraph, configure_runtime
from gptviz_app.runtime.controller import Controller
from gptviz_app.runtime.snapshot import ModelInfo, Snapshot
from gptviz_app.views.attention_map import AttentionMapView
from gptviz_app.views.class_panel import ClassPanel
from gptviz_app.views.head_grid import HeadGrid
from gptviz_app.views.next_token import NextTokenView
from gptviz_app.views.prompt_editor import PromptEditor
from gptviz_app.views.sampling_panel import SamplingPanel
from gptviz_app.views.status import StatusBar
from gptviz_app.views.stepping import SteppingControls
from gptviz_app.views.theme import COLORMAPS, DARK, Theme, apply_to_app
from gptviz_app.views.token_strip import TokenStrip
from gptviz_app.views.window_layout import WindowLayout

DEFAULT_PROMPT = "Once upon a time, there was a little robot who"


def paint_own_background(widget: QWidget, window: QWidget) -> None:
    """Let ``widget`` (a dock's content, the central view) fill its background itself, with
    the window's colour that its parents paint there anyway: a child's repaint (a caption's
    new text every step) then stops at it, instead of painting its dock and the window below
    it again. Not for a widget whose background the window's colour is not."""
    brush = widget.palette().brush(widget.backgroundRole())
    if not widget.autoFillBackground() and brush.isOpaque() \
            and brush == window.palette().brush(QPalette.ColorRole.Window):
        widget.setAutoFillBackground(True)


class MainWindow(QMainWindow):
    """The gptviz window.

    Parameters
    ----------
    model
        Model path to open at start (``None``: the bundled model), ignored when ``bundle``
        is given.
    bundle
        An already loaded :class:`gptviz.ModelBundle` (tests, benchmarks).
    prompt
        Initial prompt.
    load
        Start loading the model right away.
    """

    #: emitted after a model failed to load (the message), for tests and scripts
    loadFailed = Signal(str)

    def __init__(self, model: str | None = None, bundle=None, prompt: str | None = None,
                 theme: Theme = DARK, load: bool = True, preferences=None) -> None:
        configure_pyqtgraph()
        configure_runtime()
        super().__init__()
        self.theme = theme
        self.setWindowTitle("gptviz")
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks
                            | QMainWindow.DockOption.AllowNestedDocks)
        self.controller = Controller(self)
        self.menus: dict[str, QMenu] = {}
        self.actions: dict[str, QAction] = {}
        self.docks: dict[str, QDockWidget] = {}
        self.last_error_box: QMessageBox | None = None
        self._model_loaded = False

        # ---- views
        self.prompt_editor = PromptEditor()
        self.token_strip = TokenStrip()
        self.stepping = SteppingControls()
        self.sampling = SamplingPanel()
        self.attention = AttentionMapView()
        self.grid = HeadGrid()
        self.next_token = NextTokenView()
        self.classes = ClassPanel()
        self.status = StatusBar()
        self.setStatusBar(self.status)

        # ---- layout
        self.setCentralWidget(self.attention)
        paint_own_background(self.attention, self)
        text = QWidget()
        tl = QVBoxLayout(text)
        tl.setContentsMargins(0, 0, 0, 0)
        tl.setSpacing(2)
        tl.addWidget(self.prompt_editor)
        tl.addWidget(self.token_strip, 1)
        self._build_menus()
        self.gen_toolbar = self._toolbar("generate", "Generate", self.stepping)
        self.addToolBarBreak()
        # One toolbar item per sampling control: a narrow window folds the last ones into
        # the toolbar's extension menu instead of growing wider than the screen.
        self.sampling_toolbar = self._toolbar("sampling", "Sampling", *self.sampling.fields)
        self.sampling.setParent(self.sampling_toolbar)  # its controls moved to the toolbar
        self.sampling.hide()
        # The right of the map: the head grid (with the fine-tuned head and the analysis
        # panels tabbed under it) and the next-token chart, full height, beside it.
        self.add_panel("text", "Text", text, Qt.DockWidgetArea.TopDockWidgetArea, register=False)
        self.add_panel("grid", "All heads", self.grid, Qt.DockWidgetArea.RightDockWidgetArea,
                       register=False)
        self.add_panel("next", "Next token", self.next_token,
                       Qt.DockWidgetArea.RightDockWidgetArea, register=False,
                       split=("grid", Qt.Orientation.Horizontal))
        self.add_panel("classes", "Fine-tuned head", self.classes,
                       Qt.DockWidgetArea.RightDockWidgetArea, register=False,
                       split=("grid", Qt.Orientation.Vertical))
        self.docks["classes"].hide()

        # ---- wiring
        c = self.controller
        for v in (self.prompt_editor, self.token_strip, self.stepping, self.sampling,
                  self.attention, self.grid, self.next_token, self.classes, self.status):
            c.add_view(v)
        self.prompt_editor.promptSubmitted.connect(c.set_prompt)
        c.errorOccurred.connect(self.prompt_editor.on_error)  # a refused empty prompt
        self.token_strip.queryChosen.connect(c.set_query)
        self.token_strip.followLatest.connect(lambda: c.set_query(None))
        self.stepping.stepRequested.connect(lambda: c.step(1))
        self.stepping.backRequested.connect(c.back)
        self.stepping.forwardRequested.connect(c.forward)
        self.stepping.resetRequested.connect(c.reset)
        self.stepping.playToggled.connect(c.set_playing)
        self.stepping.rateChanged.connect(c.set_rate)
        self.stepping.scrubbed.connect(c.goto)
        c.set_rate(self.stepping.rate.value())
        c.playingChanged.connect(self.stepping.set_playing)
        self.sampling.settingsChanged.connect(c.set_settings)
        self.attention.layerChanged.connect(lambda i: c.set_view(layer=i))
        self.attention.headChanged.connect(
            lambda h: c.set_view(average=True) if h < 0 else c.set_view(head=h, average=False))
        self.attention.queryClicked.connect(c.set_query)
        self.attention.scaleChanged.connect(lambda on: c.set_view(sqrt_scale=on))
        self.grid.headSelected.connect(c.select_head)
        self.grid.modeChanged.connect(lambda m: c.set_view(grid_mode=m))
        # the mosaic drawn at the size the panel shows it (a pixel drawn is a pixel seen)
        self.grid.cellWanted.connect(c.set_grid_cell)
        self.grid.coloursWanted.connect(c.set_grid_colours)  # ... and coloured by the worker
        self.next_token.candidateClicked.connect(c.force)
        c.modelChanged.connect(self._on_model)
        c.modelChanged.connect(lambda _info: self.window_layout.schedule())
        c.errorOccurred.connect(self._on_error)
        c.applied.connect(self._on_applied)
        # Analysis panels: diagnostics, logit lens, rollout, ablation, comparisons.
        from gptviz_app.panels.docks import install as install_analysis

        self.analysis = install_analysis(self)

        # The panels' sizes follow the window until the user arranges them.
        self.window_layout = WindowLayout(self)
        self.set_theme(theme)
        self.resize(1280, 800)
        self.window_layout.watch()  # the default places, before any saved ones are restored
        # Presentation mode, themes, keys, sessions, export, sample prompts, preferences;
        # ``preferences=None``: in memory only (tests never touch the user's).
        from gptviz_app.actions import install as install_features

        self.features = install_features(self, preferences)
        self._follow_saved_layout(self.features.prefs)
        if load:
            self.open_model(model, bundle=bundle, prompt=prompt or DEFAULT_PROMPT)

    # ------------------------------------------------------------------ construction
    def _toolbar(self, key: str, title: str, *widgets: QWidget) -> QToolBar:
        tb = QToolBar(title)
        tb.setObjectName(f"toolbar-{key}")
        tb.setMovable(False)
        for widget in widgets:
            tb.addWidget(widget)
        self.addToolBar(Qt.ToolBarArea.TopToolBarArea, tb)
        self.menus["panels"].addAction(tb.toggleViewAction())
        return tb

    def add_panel(self, key: str, title: str, widget: QWidget,
                  area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea,
                  register: bool = True, split: tuple[str, Qt.Orientation] | None = None,
                  tabify: str | None = None) -> QDockWidget:
        """Add ``widget`` as a dock panel with a toggle in View ▸ Panels.

        ``split=(other_key, orientation)`` places it beside an existing panel,
        ``tabify=other_key`` stacks it as a tab. With ``register`` the widget also receives
        ``set_model``/``apply_snapshot`` calls from the controller.
        """
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock-{key}")
        dock.setWidget(widget)
        paint_own_background(widget, self)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable
                         | QDockWidget.DockWidgetFeature.DockWidgetMovable
                         | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        if split is not None and split[0] in self.docks:
            self.splitDockWidget(self.docks[split[0]], dock, split[1])
        elif tabify is not None and tabify in self.docks:
            self.tabifyDockWidget(self.docks[tabify], dock)
        self.docks[key] = dock
        self.menus["panels"].addAction(dock.toggleViewAction())
        layout = getattr(self, "window_layout", None)
        if layout is not None:  # a panel added after the window was built
            layout.watch_dock(dock)
        if register and hasattr(widget, "apply_snapshot"):
            self.controller.add_view(widget)
        if hasattr(widget, "apply_theme"):
            widget.apply_theme(self.theme)
        return dock

    def _action(self, key: str, text: str, slot, shortcut: str | QKeySequence | None = None,
                menu: str | None = None) -> QAction:
        a = QAction(text, self)
        if shortcut is not None:
            a.setShortcut(QKeySequence(shortcut))
        a.triggered.connect(slot)
        self.actions[key] = a
        if menu:
            self.menus[menu].addAction(a)
        return a

    def _build_menus(self) -> None:
        mb = self.menuBar()
        self.menus["file"] = mb.addMenu("&File")
        self.menus["generate"] = mb.addMenu("&Generate")
        self.menus["view"] = mb.addMenu("&View")
        self.menus["help"] = mb.addMenu("&Help")
        self._action("open_model", "Open model…", lambda: self.features.models.show_dialog(),
                     "Ctrl+Shift+O", "file")  # Ctrl+O opens a session
        self._action("open_ckpt", "Open nanoGPT checkpoint (.pt)…", self.choose_model_file,
                     None, "file")
        self.menus["file"].addSeparator()
        self._action("quit", "Quit", self.close, QKeySequence.StandardKey.Quit, "file")
        for key in ("step", "play", "back", "forward", "reset"):
            a = self.stepping.actions[key]
            self.actions[key] = a
            self.menus["generate"].addAction(a)
            self.addAction(a)  # window-wide shortcuts, also when the toolbar is hidden
        self.menus["panels"] = self.menus["view"].addMenu("Panels")
        cm = self.menus["view"].addMenu("Colormap")
        group = QActionGroup(self)
        for name in COLORMAPS:
            a = cm.addAction(name + (" (colour-blind safe)" if name == "cividis" else ""))
            a.setCheckable(True)
            a.setChecked(name == self.theme.colormap)  # gptviz_app.actions connects it
            group.addAction(a)
        self.menus["colormap"] = cm
        self.menus["view"].addSeparator()
        self._action("reset_zoom", "Fit attention map", lambda: self.attention.reset_zoom(),
                     "Ctrl+0", "view")
        self._action("follow", "Query follows newest token",
                     lambda: self.controller.set_query(None), "Escape", "view")
        self._action("reset_layout", "Reset panel layout", lambda: self.window_layout.reset(),
                     None, "view")
        self._action("about", "About gptviz", self.show_about, None, "help")

    def _follow_saved_layout(self, prefs) -> None:
        """A restored arrangement keeps following the window only if it did when it was saved
        (the user had not arranged the panels)."""
        layout = self.window_layout
        if prefs.persistent:
            if prefs.window_state is not None:
                layout.auto = prefs.value("window/auto_layout", True) in (True, "true", 1, "1")
            layout.prefs = prefs

    # ------------------------------------------------------------------ theme
    def set_theme(self, theme: Theme) -> None:
        """Restyle the app and every view (presentation mode builds a scaled theme)."""
        self.theme = theme
        app = QApplication.instance()
        if app is not None:
            apply_to_app(app, theme)
        # grid, next token and classes are dock widgets: listed once, via the docks
        for w in [self.prompt_editor, self.token_strip, self.stepping, self.sampling,
                  self.attention, self.status] + [d.widget() for d in self.docks.values()]:
            if hasattr(w, "apply_theme"):
                w.apply_theme(theme)
        # The map never gets squashed to a sliver: the other panels give way first.
        self.attention.glw.setMinimumHeight(int(8 * QFontMetricsF(theme.font()).height()))
        layout = getattr(self, "window_layout", None)
        if layout is not None:
            layout.schedule()

    def set_colormap(self, name: str) -> None:
        from dataclasses import replace

        self.set_theme(replace(self.theme, colormap=name))

    # ------------------------------------------------------------------ model
    def open_model(self, path: str | None = None, bundle=None, prompt: str | None = None) -> int:
        """Load a model on the worker (the current one stays until it has loaded)."""
        self.status.showMessage("Loading model…")
        return self.controller.load_model(path, bundle=bundle, prompt=prompt)

    def choose_model_dir(self) -> None:
        d = QFileDialog.getExistingDirectory(self, "Open model folder (gptviz, Hugging Face "
                                                   "GPT-2/GPT-1, or nanoGPT)")
        if d:
            self.open_model(d)

    def choose_model_file(self) -> None:
        f, _ = QFileDialog.getOpenFileName(self, "Open nanoGPT checkpoint", "",
                                           "PyTorch checkpoints (*.pt *.pth *.ckpt)")
        if f:
            self.open_model(f)

    def _on_model(self, info: ModelInfo) -> None:
        self._model_loaded = True
        self.setWindowTitle(f"gptviz — {info.name}")
        self.status.showMessage(f"Loaded {info.name} from {info.source}", 5000)
        has_head = bool(info.class_names)
        dock = self.docks["classes"]
        dock.setVisible(has_head)
        dock.toggleViewAction().setEnabled(has_head)

    # ------------------------------------------------------------------ snapshots
    def _on_applied(self, snap: Snapshot) -> None:
        self.status.set_view_ms(self.controller.last_apply_ms)

    # ------------------------------------------------------------------ errors
    def _on_error(self, command: str, message: str) -> None:
        if command in ("load_model", "open_model"):
            title = "Could not open the model"
            text = (f"The model could not be loaded:\n\n{message}\n\n"
                    + ("The current model stays open." if self._model_loaded
                       else "No model is open; use File ▸ Open model."))
            self.loadFailed.emit(message)
        elif command == "set_prompt":
            title, text = "Prompt not accepted", message
        else:
            self.status.showMessage(f"{command}: {message}", 8000)
            return
        self.status.showMessage(title, 8000)
        self.show_error(title, text)

    def show_error(self, title: str, text: str) -> QMessageBox:
        """A non-blocking warning box (kept in ``last_error_box``)."""
        box = QMessageBox(QMessageBox.Icon.Warning, title, text, QMessageBox.StandardButton.Ok,
                          self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.last_error_box = box
        box.open()
        return box

    def show_about(self) -> None:
        import gptviz

        QMessageBox.about(
            self, "About gptviz",
            f"<b>gptviz {gptviz.__version__}</b><p>See inside a GPT while it writes: step "
            "through generation one token at a time and watch every layer's and head's "
            "causal attention and the next-token probabilities.</p>"
            "<p>Space: step · Shift+Space: play/pause · ←/→: back/forward · Home: reset</p>")

    # ------------------------------------------------------------------ closing
    def closeEvent(self, e) -> None:  # noqa: N802 - Qt name
        self.controller.shutdown()
        super().closeEvent(e)

