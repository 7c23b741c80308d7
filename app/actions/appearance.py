"""Light/dark themes that follow the system, font scale and colormap: one place that builds
the :class:`~gptviz_app.views.theme.Theme` handed to :meth:`MainWindow.set_theme`.

* View ▸ Theme ▸ System / Light / Dark. "System" follows ``QStyleHints.colorScheme()``
  (Qt 6.5+) and its ``colorSchemeChanged`` signal; when the platform does not say (headless,
  old desktops) the window's initial theme is kept.
* View ▸ Font size ▸ Bigger (Ctrl+=) / Smaller (Ctrl+-) / Normal: the font scale of the
  current mode (normal or presentation, see :mod:`gptviz_app.actions.presentation`).
* The colormap (View ▸ Colormap) is remembered per mode as well.

Tooltips and menus get the scaled font too (``QToolTip.setFont`` and the ``QMenu`` /
``QMenuBar`` application fonts), so presentation mode enlarges them.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QAction, QActionGroup, QFont, QGuiApplication, QKeySequence
from PySide6.QtWidgets import QApplication, QMenu, QToolTip

from gptviz_app.actions.preferences import THEME_MODES, Preferences
from gptviz_app.views.theme import COLORMAPS, DARK, LIGHT, Theme

FONT_STEP = 0.1
FONT_MIN, FONT_MAX = 0.7, 3.5


def system_scheme() -> str | None:
    """``"light"``/``"dark"`` as the platform reports it, ``None`` when it does not."""
    app = QGuiApplication.instance()
    if app is None:
        return None
    try:
        cs = QGuiApplication.styleHints().colorScheme()
    except AttributeError:  # Qt < 6.5
        return None
    if cs == Qt.ColorScheme.Light:
        return "light"
    if cs == Qt.ColorScheme.Dark:
        return "dark"
    return None


class Appearance(QObject):
    """Theme mode, font scale and colormap of one window, applied through ``set_theme``.

    Signals: ``changed(Theme)`` after every application.
    """

    changed = Signal(object)

    def __init__(self, window, prefs: Preferences) -> None:
        super().__init__(window)
        self.win = window
        self.prefs = prefs
        self.mode = prefs.theme
        self.fallback = window.theme.name       # used while the system scheme is unknown
        self.font_scale = prefs.font_scale
        self.colormap = prefs.colormap if prefs.colormap in COLORMAPS else window.theme.colormap
        self.presenting = False
        self.presentation_scale = prefs.presentation_scale
        pc = prefs.presentation_colormap
        self.presentation_colormap = pc if pc in COLORMAPS else "cividis"
        self._system_override: str | None = None  # tests: pretend the platform said this
        self.actions: dict[str, QAction] = {}
        self._build_menus()
        # Qt 6.5+ (pinned: 6.11) tells when the system switches between light and dark.
        QGuiApplication.styleHints().colorSchemeChanged.connect(self._on_scheme_changed)

    # ------------------------------------------------------------------ menus
    def _build_menus(self) -> None:
        w = self.win
        view = w.menus["view"]
        cm = w.menus.get("colormap")
        acts = view.actions()
        anchor = cm.menuAction() if cm is not None else None
        i = acts.index(anchor) if anchor in acts else -1
        before = acts[i + 1] if 0 <= i < len(acts) - 1 else None   # right after Colormap
        tm = QMenu("Theme", view)
        view.insertMenu(before, tm)
        group = QActionGroup(self)
        for mode, text in (("system", "Follow the system"), ("light", "Light"),
                           ("dark", "Dark")):
            a = QAction(text, self)
            a.setCheckable(True)
            a.setChecked(mode == self.mode)
            a.setStatusTip(f"{text} theme" if mode != "system" else
                           "Light or dark as the desktop is set")
            a.triggered.connect(lambda _=False, m=mode: self.set_mode(m))
            group.addAction(a)
            tm.addAction(a)
            self.actions[f"theme_{mode}"] = a
            w.actions[f"theme_{mode}"] = a
        w.menus["theme"] = tm
        fm = QMenu("Font size", view)
        view.insertMenu(before, fm)
        for key, text, keys, slot in (
                ("font_bigger", "Bigger fonts", ["Ctrl+=", "Ctrl++"], self.bigger),
                ("font_smaller", "Smaller fonts", ["Ctrl+-"], self.smaller),
                ("font_normal", "Normal font size", [], self.reset_font)):
            a = QAction(text, w)
            a.setShortcuts([QKeySequence(k) for k in keys])
            a.triggered.connect(slot)
            fm.addAction(a)
            w.addAction(a)
            self.actions[key] = a
            w.actions[key] = a
        w.menus["font_size"] = fm
        # the window's own colormap menu: remember the choice for the current mode
        if cm is not None:
            for a in cm.actions():
                name = a.text().split(" ")[0]
                if name in COLORMAPS:
                    a.triggered.connect(lambda _=False, n=name: self.set_colormap(n))

    # ------------------------------------------------------------------ resolution
    def resolved_name(self) -> str:
        """``"light"`` or ``"dark"``: what the current mode means now."""
        if self.mode == "system":
            return self._system_override or system_scheme() or self.fallback
        return self.mode

    @property
    def scale(self) -> float:
        return self.presentation_scale if self.presenting else self.font_scale

    @property
    def current_colormap(self) -> str:
        return self.presentation_colormap if self.presenting else self.colormap

    def theme(self) -> Theme:
        base = LIGHT if self.resolved_name() == "light" else DARK
        return replace(base, font_scale=self.scale, colormap=self.current_colormap)

    def apply(self) -> Theme:
        """Hand the theme to the window (every view restyles) and to tooltips and menus."""
        t = self.theme()
        self.win.set_theme(t)
        app = QApplication.instance()
        if app is not None:
            f = t.font()
            QToolTip.setFont(f)
            QApplication.setFont(f, "QMenu")
            QApplication.setFont(f, "QMenuBar")
        # Dock titles: QDockWidget paints its title in the font it captured when it was
        # created, unless its own font differs from the QDockWidget class font. An explicit
        # font of the theme's size with a different style strategy (renders the same) makes
        # the titles follow the font scale; the panels inside get the same size as before.
        for dock in getattr(self.win, "docks", {}).values():
            df = t.font()
            df.setStyleStrategy(QFont.StyleStrategy.PreferAntialias)
            dock.setFont(df)
        self._sync_checks(t)
        self.changed.emit(t)
        return t

    def _sync_checks(self, t: Theme) -> None:
        for mode in THEME_MODES:
            a = self.actions.get(f"theme_{mode}")
            if a is not None and a.isChecked() != (mode == self.mode):
                a.setChecked(mode == self.mode)
        cm = self.win.menus.get("colormap")
        if cm is not None:
            for a in cm.actions():
                on = a.text().split(" ")[0] == t.colormap
                if a.isCheckable() and a.isChecked() != on:
                    a.setChecked(on)

    # ------------------------------------------------------------------ changes
    def set_mode(self, mode: str) -> None:
        """``"system"``, ``"light"`` or ``"dark"`` (remembered in the preferences)."""
        if mode not in THEME_MODES:
            raise ValueError(f"theme must be one of {THEME_MODES} (got {mode!r})")
        self.mode = mode
        self.prefs.theme = mode
        self.apply()

    def _on_scheme_changed(self, scheme) -> None:
        if self.mode == "system":
            self.apply()

    def pretend_system_scheme(self, name: str | None) -> None:
        """Act as if the platform reported ``name`` (``"light"``/``"dark"``/None) and
        announced a change; for tests and platforms without ``colorScheme``."""
        self._system_override = name
        self._on_scheme_changed(None)

    def set_font_scale(self, scale: float) -> None:
        """Font scale of the current mode (normal or presentation), clamped."""
        scale = round(min(FONT_MAX, max(FONT_MIN, float(scale))), 2)
        if self.presenting:
            self.presentation_scale = scale
            self.prefs.presentation_scale = scale
        else:
            self.font_scale = scale
            self.prefs.font_scale = scale
        self.apply()

    def bigger(self) -> None:
        self.set_font_scale(self.scale + FONT_STEP)

    def smaller(self) -> None:
        self.set_font_scale(self.scale - FONT_STEP)

    def reset_font(self) -> None:
        self.set_font_scale(1.6 if self.presenting else 1.0)

    def set_colormap(self, name: str) -> None:
        """Colormap of the current mode."""
        if name not in COLORMAPS:
            raise ValueError(f"unknown colormap {name!r} (one of {', '.join(COLORMAPS)})")
        if self.presenting:
            self.presentation_colormap = name
            self.prefs.presentation_colormap = name
        else:
            self.colormap = name
            self.prefs.colormap = name
        self.apply()

    def set_presenting(self, on: bool) -> None:
        self.presenting = bool(on)
        self.apply()
