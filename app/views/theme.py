"""Colours, fonts and colormaps shared by every view.

One :class:`Theme` object describes the look; views read it in ``apply_theme(theme)`` so a
later presentation mode (bigger fonts) or a light theme only builds another ``Theme`` and
hands it to every view (:meth:`gptviz_app.views.main_window.MainWindow.set_theme`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

#: Colormaps offered for the attention maps (all perceptually uniform; cividis is
#: colour-blind safe). pyqtgraph ships them, no matplotlib needed.
COLORMAPS = ("viridis", "inferno", "magma", "plasma", "cividis")

#: Colour of the marks on ablated heads (the same in both themes).
ABLATED_COLOR = "#ff4d6d"


@dataclass(frozen=True)
class Theme:
    """The look of the app.

    Attributes
    ----------
    name
        ``"dark"`` or ``"light"``.
    font_scale
        Multiplies every font size (presentation mode raises it).
    colormap
        Name of the colormap of the attention maps (one of :data:`COLORMAPS`).
    """

    name: str = "dark"
    font_scale: float = 1.0
    colormap: str = "viridis"
    base_pt: float = 11.0
    # surfaces
    window: str = "#1e2127"
    panel: str = "#262a31"
    plot_bg: str = "#1b1e23"
    text: str = "#e6e6e6"
    text_dim: str = "#8a8f98"
    grid_line: str = "#3a3f47"
    masked: str = "#3b3f46"        # the upper (future) triangle of attention maps
    masked_hatch: str = "#555b64"
    # accents
    accent: str = "#ffb000"        # selection, query, highlighted candidate
    prompt_chip: str = "#343a44"
    generated_chip: str = "#21414a"
    generated_edge: str = "#3fb6c8"
    forced_edge: str = "#e0629a"
    attention_tint: str = "#ff9d00"  # chips' background intensity
    bar: str = "#5b8def"
    bar_chosen: str = "#ffb000"

    def pt(self, factor: float = 1.0) -> float:
        """A font size in points: ``base_pt * factor * font_scale``."""
        return self.base_pt * factor * self.font_scale

    def font(self, factor: float = 1.0, bold: bool = False, mono: bool = False) -> QFont:
        """A QFont of :meth:`pt` size."""
        f = QFont(QApplication.font()) if QApplication.instance() else QFont()
        if mono:
            f.setFamilies(["DejaVu Sans Mono", "Menlo", "Consolas", "monospace"])
            f.setStyleHint(QFont.StyleHint.Monospace)
        f.setPointSizeF(self.pt(factor))
        f.setBold(bold)
        return f

    def scaled(self, font_scale: float) -> Theme:
        """The same theme with another font scale."""
        return replace(self, font_scale=float(font_scale))


DARK = Theme()
LIGHT = Theme(
    name="light", window="#f4f5f7", panel="#ffffff", plot_bg="#ffffff", text="#1d2025",
    text_dim="#6b717b", grid_line="#c9cdd3", masked="#dcdfe4", masked_hatch="#b9bec6",
    accent="#d55e00", prompt_chip="#e3e6eb", generated_chip="#d7eef2", generated_edge="#1a8a9c",
    forced_edge="#c2337a", attention_tint="#ff8c00", bar="#3a6fd8", bar_chosen="#d55e00",
)


def colormap(name: str):
    """A pyqtgraph ColorMap by name (falls back to viridis)."""
    import pyqtgraph as pg

    try:
        return pg.colormap.get(name if name in COLORMAPS else "viridis")
    except Exception:  # pragma: no cover - a broken pyqtgraph install
        return pg.colormap.get("viridis")


def diverging_colormap(theme: Theme):
    """Blue - neutral - red colormap for differences (dark centre on the dark theme)."""
    import pyqtgraph as pg

    name = "CET-D4" if theme.name == "dark" else "CET-D1A"
    try:
        return pg.colormap.get(name)
    except Exception:  # pragma: no cover - a pyqtgraph without the CET maps
        return pg.ColorMap([0.0, 0.5, 1.0], [(59, 76, 192), (40, 40, 40), (180, 4, 38)])


def apply_to_app(app: QApplication, theme: Theme) -> None:
    """Fusion style, a palette from ``theme`` and the base font, for the whole application."""
    app.setStyle("Fusion")
    pal = QPalette()
    win, panel, text = QColor(theme.window), QColor(theme.panel), QColor(theme.text)
    dim = QColor(theme.text_dim)
    pal.setColor(QPalette.ColorRole.Window, win)
    pal.setColor(QPalette.ColorRole.WindowText, text)
    pal.setColor(QPalette.ColorRole.Base, panel)
    pal.setColor(QPalette.ColorRole.AlternateBase, win)
    pal.setColor(QPalette.ColorRole.Text, text)
    pal.setColor(QPalette.ColorRole.Button, panel)
    pal.setColor(QPalette.ColorRole.ButtonText, text)
    pal.setColor(QPalette.ColorRole.ToolTipBase, panel)
    pal.setColor(QPalette.ColorRole.ToolTipText, text)
    pal.setColor(QPalette.ColorRole.PlaceholderText, dim)
    pal.setColor(QPalette.ColorRole.Highlight, QColor(theme.accent))
    pal.setColor(QPalette.ColorRole.HighlightedText, QColor("#000000"))
    pal.setColor(QPalette.ColorRole.BrightText, QColor(theme.accent))
    pal.setColor(QPalette.ColorRole.Link, QColor(theme.generated_edge))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text,
                 QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, dim)
    app.setPalette(pal)
    f = QFont(app.font())
    f.setPointSizeF(theme.pt())
    app.setFont(f)
    app.setStyleSheet(
        f"QToolTip {{ color: {theme.text}; background: {theme.panel}; "
        f"border: 1px solid {theme.grid_line}; padding: 4px; }}"
        f"QDockWidget::title {{ padding: 4px 6px; background: {theme.window}; }}"
    )


def luma(c: QColor) -> float:
    """Perceived brightness of ``c`` (0..255): picks black or white text on a coloured cell."""
    return 0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()
