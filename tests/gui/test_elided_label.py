"""One-line labels: a rich line with a token slot drops its less useful words before the
token (the next-token header in a narrow presentation column said "Step 5: · after position
16", its token elided away)."""

from __future__ import annotations

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFont, QFontMetricsF, QTextDocument  # noqa: E402

from gptviz_app.views.elided_label import ElidedLabel  # noqa: E402

FULL = "<b>Step 5</b>: <b>{}</b> · after position 16"
SHORT = ("<b>Step 5</b>: <b>{}</b> · after 16", "<b>Step 5</b>: <b>{}</b>")
TOKEN = "'·him'"


def _px(html: str, font: QFont) -> float:
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    doc.setHtml(html)
    return doc.idealWidth()


def _shown_at(qtbot, width: int, shorter=SHORT) -> ElidedLabel:
    label = ElidedLabel()
    qtbot.addWidget(label)
    label.set_rich(FULL, TOKEN, bold=True, shorter=shorter)
    label.resize(width, 30)
    label.show()
    qtbot.waitExposed(label)
    return label


@pytest.mark.parametrize("template", [FULL, *SHORT])
def test_the_longest_template_the_whole_token_fits_in_is_shown(qtbot, template):
    font = QFont()
    font.setBold(True)
    need = _px(template.replace("{}", TOKEN), font)
    label = _shown_at(qtbot, int(need) + 12)
    assert label.text() == template.replace("{}", TOKEN.replace("'", "&#x27;"))
    assert label.elided == (template != FULL)
    if label.elided:  # the whole line in the tooltip
        assert label.toolTip().startswith("Step 5: '·him' · after position 16")


def test_without_fallbacks_the_token_is_elided_first(qtbot):
    font = QFont()
    font.setBold(True)
    width = int(_px(SHORT[0].replace("{}", TOKEN), font)) + 12
    label = _shown_at(qtbot, width, shorter=())
    assert "after position 16" in label.text() and TOKEN not in label.text()
    assert QFontMetricsF(label.font()).horizontalAdvance("x") > 0 and label.elided
