"""An elided rich header is measured without a document: the widths of its templates (fixed
words, a figure that changes every step, kerning pairs, other scripts, spaces) and its plain
text equal the document's, and the header shows what the document's measures chose."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("pytestqt")

from PySide6.QtGui import QFont, QTextDocument  # noqa: E402

from gptviz_app.views import elided_label  # noqa: E402
from gptviz_app.views.elided_label import ElidedLabel, _html_width, _plain  # noqa: E402
from gptviz_app.views.rich_runs import line_width, parse  # noqa: E402

TEMPLATES = [
    "<b>Step {}</b>: <span style='color:#ffb000'><b></b></span> · after position {}",
    "entropy <b>{}.25</b> bits · token at {}: <span style='color:#ffb000'><b>'AVo'</b></span>",
    "<i>Vo{}</i> AV{} To Wa 漢字 <b>bold</b> 🙂 ",
    "<span style='background:#343a44'>&nbsp;prompt{}&nbsp;</span>  <span style='background:"
    "#224; color:#88f'>&nbsp;gen {}&nbsp;</span> &amp; &lt;x&gt; &#x27;q&#x27;",
]


def _doc(text: str, font: QFont) -> QTextDocument:
    doc = QTextDocument()
    doc.setDocumentMargin(0)
    doc.setDefaultFont(font)
    doc.setHtml(text)
    return doc


def test_widths_and_plain_texts_are_the_documents():
    for size, bold in itertools.product((8.0, 11.0, 17.5), (False, True)):
        font = QFont()
        font.setPointSizeF(size)
        font.setBold(bold)
        for t, i in itertools.product(TEMPLATES, range(0, 1200, 113)):
            text = t.format(i, i + 3)
            doc = _doc(text, font)
            assert line_width(*parse(text), font, font.key()) == doc.idealWidth(), text
            assert _html_width(text, font) == doc.idealWidth(), text
            assert _plain(text, font) == doc.toPlainText(), text


def test_tags_alike_side_by_side_are_one_run_as_in_the_document():
    """Two tags of the same look side by side (or nested in one of that look) are one
    format in the document, shaped together (kerning across the tags): measured so here."""
    for size, bold in itertools.product((9.0, 11.0, 17.5), (False, True)):
        font = QFont()
        font.setPointSizeF(size)
        font.setBold(bold)
        for text in ("<i>AV</i><i>aStep 12</i>é", "<i>To<i>o</i></i>1",
                     "x<em>V</em><i>a 12.5%</i>e", "<b>W</b><strong>a</strong>1",
                     "<span style='color:#f80'>T</span><span style='color:#f80'>o</span>1"):
            doc = _doc(text, font)
            assert line_width(*parse(text), font, font.key()) == doc.idealWidth(), text
            assert _plain(text, font) == doc.toPlainText(), text


@pytest.mark.parametrize("text", [
    "<table><tr><td>cell</td></tr></table>",            # a tag not read here
    "<span style='font-size:30pt'>tall</span> words",  # a style not read here
    "<a href='x'>link</a>", "a < b", "<b>unclosed",
])
def test_other_texts_are_left_to_the_document(text):
    font = QFont()
    assert parse(text) is None
    doc = _doc(text, font)
    assert _html_width(text, font) == doc.idealWidth()


def test_the_header_shows_what_the_documents_measures_chose(qtbot, monkeypatch):
    """Narrower and narrower: the same template, the same elided token as when every
    template was measured by a document."""
    template = ("<b>Step 12</b>: <span style='color:#ffb000'><b>{}</b></span> · after position "
                "99")
    shorter = (template.replace("position ", ""), template.replace(" · after position 99", ""))

    def shown(width: int) -> tuple[str, bool]:
        label = ElidedLabel()
        qtbot.addWidget(label)
        label.set_rich(template, "' a rather long token'", bold=True, shorter=shorter)
        label.resize(width, 24)
        label.show()
        return label.text(), label.elided

    widths = range(60, 460, 7)
    ours = [shown(w) for w in widths]
    monkeypatch.setattr(elided_label, "_html_width",
                        lambda text, font: _doc(text, font).idealWidth())
    monkeypatch.setattr(elided_label, "_plain", lambda text, font: _doc(text, font).toPlainText())
    assert ours == [shown(w) for w in widths]
    assert len(set(ours)) > 4  # the whole line, the shorter ones, an elided token
