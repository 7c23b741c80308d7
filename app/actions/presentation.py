"""Presentation mode (View ▸ Presentation mode, F11): for a lecture hall.

Entering it

* scales every font by the presentation factor (View ▸ Presentation ▸ Font size, or
  Ctrl+= / Ctrl+- while presenting): token chips, axis and tick labels, bar labels, the
  colour bar, buttons, tooltips and menus (see :class:`gptviz_app.actions.appearance.Appearance`);
* switches to the presentation colormap, colour-blind safe by default (cividis; viridis on
  request);
* hides the advanced panels: the sampling toolbar, the timings in the status bar, and
  every dock that is not one of :data:`KEEP_DOCKS` (diagnostics and the like). They can
  still be shown from View ▸ Panels while presenting;
* goes full screen (View ▸ Presentation ▸ Full screen decides);
* lays the panels out for the bigger fonts (:class:`gptviz_app.views.window_layout.WindowLayout`:
  whole lines of prompt and chips, a near-square map, the next-token chart in a wider column of
  its own, full height), unless the user has arranged them.

Leaving it restores the previous fonts, colormap, panels, toolbars and window state.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, QSignalBlocker, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu, QToolBar

from gptviz_app.actions.appearance import Appearance

#: Docks that stay visible in presentation mode (the rest is "advanced").
KEEP_DOCKS = ("text", "grid", "next", "classes")
#: Font scales offered in View ▸ Presentation ▸ Font size.
SCALES = (1.3, 1.6, 2.0, 2.5)
#: What the status bar says on entering presentation mode.
PRESENTING_MESSAGE = "Presentation mode: F11 to leave · Ctrl+= / Ctrl+- font size"
#: Colormaps offered for presentations (both perceptually uniform and colour-blind safe).
SAFE_COLORMAPS = ("cividis", "viridis")


class PresentationMode(QObject):
    """Signals: ``toggled(bool)``."""

    toggled = Signal(bool)

    def __init__(self, window, appearance: Appearance) -> None:
        super().__init__(window)
        self.win = window
        self.appearance = appearance
        self.active = False
        self.fullscreen = True
        self._saved: dict | None = None
        self.actions: dict[str, QAction] = {}
        self._build_menu()
        appearance.changed.connect(self._sync_checks)

    # ------------------------------------------------------------------ menu
    def _build_menu(self) -> None:
        w = self.win
        view = w.menus["view"]
        a = QAction("Presentation mode", w)
        a.setCheckable(True)
        a.setShortcut(QKeySequence("F11"))
        a.setStatusTip("Big fonts, colour-blind-safe colours, advanced panels hidden, "
                       "full screen")
        a.toggled.connect(self.set_active)
        w.addAction(a)
        self.actions["presentation"] = a
        w.actions["presentation"] = a
        acts = view.actions()
        first = acts[0] if acts else None
        view.insertAction(first, a)
        pm = QMenu("Presentation", view)
        view.insertMenu(first, pm)
        view.insertSeparator(first)
        w.menus["presentation"] = pm
        fs = pm.addMenu("Font size")
        group = QActionGroup(self)
        for s in SCALES:
            b = fs.addAction(f"×{s:g}")
            b.setCheckable(True)
            b.triggered.connect(lambda _=False, v=s: self.set_scale(v))
            group.addAction(b)
            self.actions[f"scale_{s:g}"] = b
        cm = pm.addMenu("Colormap")
        group = QActionGroup(self)
        for name in SAFE_COLORMAPS:
            b = cm.addAction(f"{name} (colour-blind safe)")
            b.setCheckable(True)
            b.triggered.connect(lambda _=False, n=name: self.set_colormap(n))
            group.addAction(b)
            self.actions[f"colormap_{name}"] = b
        full = pm.addAction("Full screen")
        full.setCheckable(True)
        full.setChecked(self.fullscreen)
        full.toggled.connect(self._set_fullscreen_pref)
        self.actions["fullscreen"] = full
        self._sync_checks()

    def _sync_checks(self, *_) -> None:
        ap = self.appearance
        for s in SCALES:
            b = self.actions[f"scale_{s:g}"]
            b.setChecked(abs(ap.presentation_scale - s) < 1e-6)
        for name in SAFE_COLORMAPS:
            self.actions[f"colormap_{name}"].setChecked(ap.presentation_colormap == name)

    def _set_fullscreen_pref(self, on: bool) -> None:
        self.fullscreen = bool(on)
        if self.active:
            if on and not self.win.isFullScreen():
                self.win.showFullScreen()
            elif not on and self.win.isFullScreen():
                self._restore_window_state()

    # ------------------------------------------------------------------ settings
    def set_scale(self, scale: float) -> None:
        """Presentation font scale (applies at once while presenting)."""
        ap = self.appearance
        if self.active:
            ap.set_font_scale(scale)
        else:
            ap.presentation_scale = float(scale)
            ap.prefs.presentation_scale = float(scale)
            self._sync_checks()

    def set_colormap(self, name: str) -> None:
        ap = self.appearance
        if self.active:
            ap.set_colormap(name)
        else:
            ap.presentation_colormap = name
            ap.prefs.presentation_colormap = name
            self._sync_checks()

    # ------------------------------------------------------------------ on / off
    def toggle(self) -> None:
        self.actions["presentation"].toggle()

    def set_active(self, on: bool, fullscreen: bool | None = None,
                   keep: tuple[str, ...] | list[str] = ()) -> None:
        """Enter (``on``) or leave presentation mode; ``fullscreen`` overrides the menu's
        choice for this time (``main.py --screenshot`` keeps the window size); the docks
        ``keep`` names stay shown, besides :data:`KEEP_DOCKS` (the panels the user asked
        for, e.g. ``--panels`` with ``--presentation``)."""
        on = bool(on)
        a = self.actions["presentation"]
        if a.isChecked() != on:
            with QSignalBlocker(a):
                a.setChecked(on)
        if on == self.active:
            return
        w = self.win
        if on:
            layout = getattr(w, "window_layout", None)
            self._saved = {
                "layout": w.saveState(),      # dock sizes and places, toolbars
                "auto": layout.auto if layout is not None else None,
                "docks": {k: d.isVisible() for k, d in w.docks.items()},
                "toolbars": {tb: tb.isVisible() for tb in self._advanced_toolbars()},
                # hidden or not of its own (a long message may hide the row they sit in)
                "status": {lab: not lab.isHidden() for lab in self._advanced_status()},
                "state": w.windowState(),
                "geometry": w.saveGeometry(),
            }
            self.active = True
            self.appearance.set_presenting(True)
            for key, dock in w.docks.items():
                if key not in KEEP_DOCKS and key not in keep and dock.isVisible():
                    dock.hide()
            for tb in self._advanced_toolbars():
                tb.hide()
            for lab in self._advanced_status():
                lab.hide()
            if self.fullscreen if fullscreen is None else fullscreen:
                w.showFullScreen()
            w.status.showMessage(PRESENTING_MESSAGE, 6000)
        else:
            saved = self._saved or {}
            self.active = False
            self.appearance.set_presenting(False)
            if saved.get("layout") is not None:
                w.restoreState(saved["layout"])
                if saved.get("auto") is not None:  # restoring is not the user's arranging
                    w.window_layout.set_auto(saved["auto"])
            for key, visible in saved.get("docks", {}).items():
                d = w.docks.get(key)
                if d is not None:
                    d.setVisible(visible)
            for tb, visible in saved.get("toolbars", {}).items():
                tb.setVisible(visible)
            for lab, visible in saved.get("status", {}).items():
                lab.setVisible(visible)
            self._restore_window_state()
            self._saved = None
            if w.status.currentMessage() == PRESENTING_MESSAGE:  # no longer true
                w.status.clearMessage()
        self.toggled.emit(on)

    def _restore_window_state(self) -> None:
        w = self.win
        saved = self._saved or {}
        state = saved.get("state", Qt.WindowState.WindowNoState)
        if w.isFullScreen() and not state & Qt.WindowState.WindowFullScreen:
            if state & Qt.WindowState.WindowMaximized:
                w.showMaximized()
            else:
                w.showNormal()
                geo = saved.get("geometry")
                if geo is not None:
                    w.restoreGeometry(geo)

    def _advanced_toolbars(self) -> list:
        """Every toolbar but the stepping controls (sampling, analysis...)."""
        keep = getattr(self.win, "gen_toolbar", None)
        return [tb for tb in self.win.findChildren(QToolBar) if tb is not keep]

    def _advanced_status(self) -> list:
        st = self.win.status
        return [lab for lab in (getattr(st, "timing", None), getattr(st, "settings", None))
                if lab is not None]
