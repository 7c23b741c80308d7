"""The default arrangement of the main window's panels, kept while the window changes size.

Until the user moves a separator or a panel (or a saved arrangement is restored), every
resize, font change, new model and panel shown or hidden lays the panels out again:

* the text panel gets the height of whole lines: two of prompt (three in a tall window) and
  two of token chips (they scroll to the newest): no line cut in half, no blank band;
* the attention map (the central widget) gets a square plot, never less than
  :data:`MAP_SHARE` of the width (so it keeps the largest share of the plot area) and
  narrower than square by at most :data:`NEAR_SQUARE` when the head grid could use the width;
* the next-token chart gets a column of its own, the full height, :data:`NEXT_EM` text lines
  wide (font-relative, so presentation fonts get a wider column);
* the head grid gets the rest of the width and, when panels share its column (the fine-tuned
  head, the analysis tabs), the height its thumbnails fill at that width; the fine-tuned head
  gets what it needs; with an analysis panel shown the grid keeps at least
  :data:`GRID_SHARE` of the column (as far as its thumbnails fill it) and the panel gets the
  rest. A column too short for both (1024 x 640, presentation fonts: the panel would get fewer
  than :data:`ANALYSIS_LEAST_EM` lines) puts the head grid in the panels' tabs instead
  ("All heads" one click away), so that neither is squeezed unreadable.

View ▸ Reset panel layout puts the panels back in their places and sizes them this way again.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QFontMetricsF
from PySide6.QtWidgets import QDockWidget, QStyle, QToolBar

#: Least share of the panels' width the attention map keeps.
MAP_SHARE = 0.42
#: The map's plot may be this much narrower than tall when the head grid needs the width.
NEAR_SQUARE = 0.9
#: Width of the next-token column, in text lines (least, most); between the two it is
#: :data:`NEXT_FRACTION` of the window.
NEXT_EM = (15.0, 20.0)
NEXT_FRACTION = 0.2
#: ... and at least this many lines (or :data:`NEXT_LEAST_FRACTION` of the window) when the
#: head grid would be narrower than :data:`GRID_FRACTION` of the window (presentation fonts).
NEXT_LEAST_EM = 12.0
NEXT_LEAST_FRACTION = 0.15
GRID_FRACTION = 0.28
#: Least share of its column the head grid keeps when an analysis panel shares it (less when
#: its thumbnails fill less).
GRID_SHARE = 0.4
#: Least height of an analysis panel under the head grid, in text lines (the panel's own least
#: height and its tab bar); a shorter column tabs the grid with the panels.
ANALYSIS_LEAST_EM = 16.5
#: Pixels of a dock's frame around its panel (left and right together).
PANEL_FRAME = 12
#: Lines more the column needs before tabbed panels split again (no flip-flop at the edge).
UNTAB_MARGIN_EM = 1.0
#: Windows at least this many text lines tall show three lines of prompt.
TALL_EM = 60
#: Lines of token chips the text panel shows.
CHIP_LINES = 2
#: Pixels around the head grid's mosaic (its selection outline).
MOSAIC_MARGIN = 6.0
#: Dock keys sharing the head grid's column, below it (tabbed), besides the analysis panels.
LOWER_DOCKS = ("classes",)


class WindowLayout(QObject):
    """Sizes the panels of ``window`` (a :class:`~gptviz_app.views.main_window.MainWindow`).

    ``auto``: whether the panels follow the window (off once the user arranges them).
    ``prefs``: where ``auto`` is remembered (``window/auto_layout``), or ``None``.
    """

    def __init__(self, window) -> None:
        super().__init__(window)
        self.win = window
        self.auto = True
        self.prefs = None
        self.passes = 0          # layouts applied (tests wait on :attr:`pending`)
        self._followups = 0
        self._default_state = None
        self._arranging = False  # the docks move for the layout, not for the user
        self._split_state = None  # the arrangement before the head grid went into the tabs
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self.apply)
        window.installEventFilter(self)

    # ------------------------------------------------------------------ control
    @property
    def pending(self) -> bool:
        """A layout is scheduled and not yet applied."""
        return self._timer.isActive()

    def watch(self) -> None:
        """Follow the docks (call once they are all placed): moving or floating one is the
        user's arrangement; showing or hiding one lays the others out again."""
        self._default_state = self.win.saveState()
        for dock in self.win.docks.values():
            self.watch_dock(dock)
        # the chips' legend wraps onto another line (or back) as its text changes
        self.win.token_strip.legend.installEventFilter(self)

    def watch_dock(self, dock: QDockWidget) -> None:
        dock.dockLocationChanged.connect(lambda *_: self._user_moved())
        dock.topLevelChanged.connect(lambda *_: self._user_moved())
        dock.visibilityChanged.connect(lambda *_: self.schedule())

    def _user_moved(self) -> None:
        if not self._arranging:
            self.set_auto(False)

    def set_auto(self, on: bool) -> None:
        """Let the panels follow the window (``on``), or keep them as the user arranged them."""
        on = bool(on)
        if on != self.auto:
            self.auto = on
            if self.prefs is not None:
                self.prefs.set_value("window/auto_layout", on)
        if on:
            self.schedule()

    def reset(self) -> None:
        """Panels back in their default places (the ones shown stay shown) and sizes."""
        w = self.win
        if self._default_state is not None:
            shown = {k: not d.isHidden() for k, d in w.docks.items()}
            floating = [d for d in w.docks.values() if d.isFloating()]
            for d in floating:
                d.setFloating(False)
            w.restoreState(self._default_state)
            for k, d in w.docks.items():
                d.setVisible(shown[k])
        self.set_auto(True)

    def schedule(self) -> None:
        """Lay the panels out once the events queued now are handled."""
        self._followups = 0
        if self.auto:
            self._timer.start()

    def eventFilter(self, obj, e) -> bool:  # noqa: N802 - Qt name
        t = e.type()
        if obj is self.win:
            if t in (QEvent.Type.Resize, QEvent.Type.Show, QEvent.Type.WindowStateChange):
                self.schedule()
            elif (t == QEvent.Type.MouseButtonPress and e.button() == Qt.MouseButton.LeftButton
                  and self._on_separator(e.position().toPoint())):
                self.set_auto(False)  # the user drags a separator between panels
        elif t == QEvent.Type.Resize and e.size().height() != e.oldSize().height():
            self.schedule()           # the text panel needs another height
        return False

    def _on_separator(self, pos) -> bool:
        """``pos`` (window coordinates) is on a gap between panels: no widget there, below
        the toolbars and above the status bar."""
        w = self.win
        if w.childAt(pos) is not None:
            return False
        top = w.menuWidget().geometry().bottom() if w.menuWidget() else 0
        bottom = w.statusBar().geometry().top() if w.statusBar() else w.height()
        return top < pos.y() < bottom

    # ------------------------------------------------------------------ layout
    def _docked(self, key: str) -> QDockWidget | None:
        d = self.win.docks.get(key)
        if d is None or d.isHidden() or d.isFloating():
            return None
        return d

    def em(self) -> float:
        """Line height of the window's text font, in pixels."""
        return QFontMetricsF(self.win.theme.font()).height()

    def prompt_lines(self) -> int:
        """Lines of prompt the text panel shows."""
        return 3 if self.win.height() >= TALL_EM * self.em() else 2

    def text_height(self) -> int:
        """Height of the text dock that shows the prompt editor and :data:`CHIP_LINES` whole
        lines of chips."""
        w = self.win
        dock, body = w.docks["text"], w.docks["text"].widget()
        title = max(0, dock.height() - body.height())
        lay = body.layout()
        return (title + w.prompt_editor.sizeHint().height() + lay.spacing()
                + w.token_strip.height_for_lines(CHIP_LINES))

    def lower_group(self) -> tuple[QDockWidget | None, bool]:
        """A shown dock of the tab group under the head grid (None: none) and whether an
        analysis panel is among the shown ones."""
        w = self.win
        keys = list(LOWER_DOCKS) + list(getattr(getattr(w, "analysis", None), "panels", {}))
        shown = [k for k in keys if self._docked(k) is not None]
        if not shown:
            return None, False
        return self._docked(shown[0]), any(k not in LOWER_DOCKS for k in shown)

    def grid_fill_width(self, height: float) -> float | None:
        """Width of the head grid's dock at which its mosaic fills ``height`` (None: no
        model yet)."""
        g, dock = self.win.grid, self.win.docks["grid"]
        if not g.L or g.vb.height() <= 1:
            return None
        ox, oy = dock.width() - g.vb.width(), dock.height() - g.vb.height()
        mw, mh = g.H * g.pitch - g.gap, g.L * g.pitch - g.gap
        return (height - oy - MOSAIC_MARGIN) * mw / mh + MOSAIC_MARGIN + ox

    def grid_fill_height(self, width: float) -> float | None:
        """Height of the head grid's dock at which its mosaic fills ``width``."""
        g, dock = self.win.grid, self.win.docks["grid"]
        if not g.L or g.vb.width() <= 1:
            return None
        ox, oy = dock.width() - g.vb.width(), dock.height() - g.vb.height()
        mw, mh = g.H * g.pitch - g.gap, g.L * g.pitch - g.gap
        return (width - ox - MOSAIC_MARGIN) * mh / mw + MOSAIC_MARGIN + oy

    # ------------------------------------------------------------------ tabs
    def tabbed(self) -> bool:
        """The head grid is a tab of the panels' group (a column too short for both)."""
        grid = self.win.docks["grid"]
        return any(not d.isFloating() for d in self.win.tabifiedDockWidgets(grid))

    def _lower_docks(self) -> list[QDockWidget]:
        """Every dock of the group under the head grid (hidden ones too), in window order."""
        w = self.win
        keys = set(LOWER_DOCKS) | set(getattr(getattr(w, "analysis", None), "panels", {}))
        return [d for k, d in w.docks.items() if k in keys and not d.isFloating()
                and w.dockWidgetArea(d) == Qt.DockWidgetArea.RightDockWidgetArea]

    def panel_least_width(self) -> float:
        """Width of the grid's column at which an analysis panel needs no sideways scrolling:
        the panel's least width and its dock's frame."""
        from gptviz_app.panels.docks import PANEL_LEAST_EM

        return PANEL_LEAST_EM[0] * self.em() + PANEL_FRAME

    def want_tabs(self, column: float, analysis: bool) -> bool:
        """Whether a column ``column`` pixels tall is too short for the head grid's share and
        an analysis panel's least height, one above the other."""
        if not analysis:
            return False
        em = self.em()
        room = column * (1.0 - GRID_SHARE)
        need = ANALYSIS_LEAST_EM * em + (UNTAB_MARGIN_EM * em if self.tabbed() else 0.0)
        return room < need

    def _set_tabs(self, on: bool) -> None:
        """Put the head grid in the panels' tabs (``on``) or back above them; the panel in
        front stays in front, the panels and toolbars shown stay shown."""
        w = self.win
        grid = w.docks["grid"]
        lower = self._lower_docks()
        if not lower:
            return
        front = [d for d in lower if not d.isHidden() and not d.visibleRegion().isEmpty()]
        self._arranging = True
        try:
            if on:
                self._split_state = w.saveState()
                for d in lower:
                    w.tabifyDockWidget(grid, d)
            else:
                # Qt splits no dock off its own tab group (a hidden one even comes back to its
                # tab): the arrangement from before the tabs comes back instead
                shown = {k: not d.isHidden() for k, d in w.docks.items()}
                bars = {tb: not tb.isHidden() for tb in w.findChildren(QToolBar)}
                w.restoreState(self._split_state or self._default_state)
                for k, d in w.docks.items():
                    d.setVisible(shown[k])
                for tb, visible in bars.items():
                    tb.setVisible(visible)
            for d in front[:1]:
                d.raise_()
        finally:
            self._arranging = False

    def apply(self) -> bool:
        """Lay the panels out now (when ``auto`` and shown); whether any size changed."""
        w = self.win
        if not self.auto or not w.isVisible():
            return False
        sep = w.style().pixelMetric(QStyle.PixelMetric.PM_DockWidgetSeparatorExtent, None, w)
        central = w.centralWidget()
        em = self.em()
        changes: list[tuple[list, list, Qt.Orientation]] = []

        # Text panel: whole lines of prompt and chips.
        lines = self.prompt_lines()
        if w.prompt_editor.lines != lines:
            w.prompt_editor.set_lines(lines)
        text = self._docked("text")
        plot_h = central.height()
        text_change = []
        if text is not None and w.dockWidgetArea(text) == Qt.DockWidgetArea.TopDockWidgetArea:
            th = self.text_height()
            plot_h += text.height() - th
            text_change.append(([text], [th], Qt.Orientation.Vertical))

        grid, nxt = self._docked("grid"), self._docked("next")
        right = [d for d in (grid, nxt) if d is not None
                 and w.dockWidgetArea(d) == Qt.DockWidgetArea.RightDockWidgetArea]
        lower, analysis = self.lower_group()
        if grid not in right:
            lower = None
        if grid in right and self.want_tabs(plot_h, analysis) != self.tabbed() and (
                lower is not None or self.tabbed()) and self._followups < 3:
            self._set_tabs(not self.tabbed())
            self.passes += 1
            self._followups += 1
            self._timer.start()  # sized in the next pass, from the new arrangement
            return True
        if self.tabbed():
            lower = None         # one tab of the column at a time: each gets its full height
        lower_h = 0
        if lower is not None:
            need = lower.minimumSizeHint().height()
            if analysis:  # the grid keeps its share, the panel (it scrolls) the rest
                need = max(need, plot_h - sep - GRID_SHARE * plot_h)
            else:
                need = max(need, lower.sizeHint().height())
            lower_h = min(need, plot_h - sep - w.docks["grid"].minimumSizeHint().height())

        # Widths: the map square (at least its share), the next-token column font-relative,
        # the grid the rest; the next column and then the map give way to a grid that could
        # fill more of its height.
        width = central.width() + sum(d.width() + sep for d in right)
        avail = width - sep * len(right)
        vb = w.attention.vb
        ox, oy = central.width() - vb.width(), central.height() - vb.height()
        side = max(1.0, plot_h - oy)
        map_lo = min(max(MAP_SHARE * width, NEAR_SQUARE * side + ox), avail)
        map_w = max(side + ox, map_lo)
        next_w = next_lo = 0.0
        if nxt in right:
            next_lo = max(NEXT_EM[0] * em, nxt.minimumSizeHint().width())
            next_w = max(next_lo, min(NEXT_FRACTION * width, NEXT_EM[1] * em))
        grid_w = 0.0
        if grid in right:
            grid_min = grid.minimumSizeHint().width()
            grid_w = avail - map_w - next_w
            # tabbed, the grid is not always in front: no width for it then (the map would
            # change size with the tab shown)
            want = None if self.tabbed() else self.grid_fill_width(
                plot_h - (lower_h + sep if lower is not None else 0))
            if want is not None and grid_w < want:
                give = min(want - grid_w, max(0.0, next_w - next_lo))
                next_w, grid_w = next_w - give, grid_w + give
                give = min(want - grid_w, max(0.0, map_w - map_lo))
                map_w, grid_w = map_w - give, grid_w + give
            comfortable = max(grid_min, GRID_FRACTION * width)
            if analysis:  # the panel's least width, else it scrolls sideways
                comfortable = max(comfortable, self.panel_least_width())
            if grid_w < comfortable:  # big fonts in a small window: the next column gives way
                least = max(NEXT_LEAST_EM * em, NEXT_LEAST_FRACTION * width,
                            nxt.minimumSizeHint().width() if nxt in right else 0.0)
                give = min(comfortable - grid_w, max(0.0, next_w - least)) if next_w else 0.0
                next_w, grid_w = next_w - give, grid_w + give
            grid_w = max(grid_w, grid_min)
        sizes = {grid: grid_w, nxt: next_w}
        if right:
            changes.append((right, [int(sizes[d]) for d in right], Qt.Orientation.Horizontal))

        # The grid's column: the grid as tall as its mosaic fills, the tabs below the rest.
        if lower is not None and grid is not None:
            if analysis:
                fill = self.grid_fill_height(grid_w)
                grid_h = plot_h - sep - lower_h
                if fill is not None:
                    grid_h = min(grid_h, max(fill, grid.minimumSizeHint().height()))
                lower_h = plot_h - sep - grid_h
            changes.append(([grid, lower], [int(plot_h - sep - lower_h), int(lower_h)],
                            Qt.Orientation.Vertical))

        def differs(docks, targets, orient) -> bool:
            now = [d.height() if orient == Qt.Orientation.Vertical else d.width()
                   for d in docks]
            return any(abs(a - b) > 2 for a, b in zip(now, targets))

        # A new height of the text panel alone first: sized in the same pass, the grid's
        # column takes it back (Qt lays the areas out from the old heights); the columns
        # follow in the next pass, from the new heights.
        todo = [c for c in text_change if differs(*c)] or [c for c in changes if differs(*c)]
        for docks, targets, orient in todo:
            w.resizeDocks(docks, targets, orient)
        changed = bool(todo)
        self.passes += 1
        if changed and self._followups < 3:
            # The axes' widths follow the new sizes: one more look once they are laid out.
            self._followups += 1
            self._timer.start()
        return changed
