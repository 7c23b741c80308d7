"""Help ▸ Analysis definitions: ``docs/analysis.md`` (what every panel computes, with its
references) read in a window of its own, offline: the checkout's file rendered from its
Markdown, searchable with the browser's own keys, links to its own sections followed.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QUrl
from PySide6.QtGui import QAction, QDesktopServices
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout

#: Where the definitions are: the checkout's docs folder (an installed copy without it says so).
ANALYSIS_DOC = Path(__file__).resolve().parents[2] / "docs" / "analysis.md"


class DefinitionsDialog(QDialog):
    """The analysis definitions, rendered (``browser``), with a button that opens the file
    in the system's own viewer."""

    def __init__(self, window, path: Path = ANALYSIS_DOC) -> None:
        super().__init__(window)
        self.setWindowTitle("Analysis definitions")
        self.path = path
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        self.browser.setOpenLinks(True)
        self.browser.setSearchPaths([str(path.parent)])
        self.browser.setMarkdown(path.read_text(encoding="utf-8"))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.external = buttons.addButton("Open file", QDialogButtonBox.ButtonRole.ActionRole)
        self.external.setToolTip(str(path))
        self.external.clicked.connect(
            lambda: QDesktopServices.openUrl(QUrl.fromLocalFile(str(path))))
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.browser)
        lay.addWidget(buttons)
        g = window.geometry()
        self.resize(min(900, max(500, g.width() * 2 // 3)), max(400, g.height() * 4 // 5))


class HelpDocs:
    """Adds Help ▸ Analysis definitions to ``window`` (``action``, the last ``dialog``)."""

    def __init__(self, window, path: Path = ANALYSIS_DOC) -> None:
        self.win = window
        self.path = path
        self.dialog: DefinitionsDialog | None = None
        a = QAction("Analysis definitions (docs/analysis.md)", window)
        a.setStatusTip("What every analysis panel computes, precisely, with references")
        a.triggered.connect(self.show)
        window.actions["analysis_docs"] = a
        self.action = a

    def show(self) -> DefinitionsDialog | None:
        if not self.path.is_file():
            self.win.status.showMessage(f"The analysis definitions are not installed here "
                                        f"({self.path} is missing)", 8000)
            return None
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = DefinitionsDialog(self.win, self.path)
        self.dialog.show()
        return self.dialog
