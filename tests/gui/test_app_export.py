"""Export from the app (issue 6): plots to PNG/SVG, attention and next-token tables to CSV,
the whole trace to NPZ (same schema as ``python -m gptviz trace``), and the Export dialog.

Qt warnings fail the tests, and no worker thread may be left running (conftest.py).
"""

from __future__ import annotations

import csv
import struct
import xml.etree.ElementTree as ET

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from tests.gui.conftest import TIMEOUT  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def window(window, qtbot):
    """The app after 4 steps, with head L1 H2 selected and the plots laid out."""
    c = window.controller
    c.step(4)
    qtbot.waitUntil(lambda: not c.client.busy and c.snapshot.n_generated == 4, timeout=TIMEOUT)
    c.select_head(1, 2)
    qtbot.waitUntil(lambda: not c.client.busy and c.snapshot.view.head == 2, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: window.attention.vb.width() > 100
                    and window.next_token.vb.height() > 50, timeout=TIMEOUT)
    return window


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def svg_texts(path) -> list[str]:
    root = ET.parse(path).getroot()
    assert root.tag.endswith("svg")
    return ["".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("text")]


def csv_parts(path) -> tuple[list[str], list[str]]:
    """The ``# `` comment lines at the top of an exported CSV (without the ``# ``), and the
    table's lines after them."""
    with open(path, newline="", encoding="utf-8") as f:
        lines = f.read().split("\r\n")
    n = 0
    while n < len(lines) and lines[n].startswith("# "):
        n += 1
    return [line[2:] for line in lines[:n]], lines[n:]


def axis_labels(plot, name: str) -> list[str]:
    ticks = plot.getAxis(name)._tickLevels
    return [label for level in ticks for _pos, label in level]


# ---------------------------------------------------------------------- plots
def test_every_plot_panel_exports_to_png_at_the_chosen_width(window, tmp_path):
    from gptviz_app.actions.export import export_png, plot_panels

    panels = plot_panels(window)
    assert {"attention", "grid", "next"} <= set(panels)
    for key, (_title, view) in panels.items():
        p = export_png(tmp_path / f"{key}.png", view, width=1600)
        data = p.read_bytes()
        w, h = png_size(data)
        assert w == 1600 and h > 100, key
        assert len(data) > 5000, key
        # the aspect ratio is the panel's
        item = view.ci
        r = item.boundingRect()
        assert h / w == pytest.approx(r.height() / r.width(), abs=0.01), key
    # default: the size on screen
    w, _h = png_size(export_png(tmp_path / "a.png", panels["attention"][1]).read_bytes())
    assert abs(w - panels["attention"][1].ci.boundingRect().width()) <= 1
    assert not list(tmp_path.glob(".*.tmp"))          # atomic writes leave nothing behind


def test_svg_exports_keep_the_token_labels(window, tmp_path):
    from gptviz_app.actions.export import export_svg, plot_panels

    panels = plot_panels(window)
    snap = window.controller.snapshot
    # attention map: both axes' token labels, the axis titles, the colour bar
    texts = svg_texts(export_svg(tmp_path / "attention.svg", panels["attention"][1]))
    joined = "\n".join(texts)
    labels = axis_labels(window.attention.plot, "left") + axis_labels(window.attention.plot, "top")
    assert len(labels) >= 5
    for label in labels:
        assert label in texts, label
    assert {"query", "key"} <= set(texts) and "weight" in joined
    # next-token chart: candidate tokens and their percentages
    texts = svg_texts(export_svg(tmp_path / "next.svg", panels["next"][1]))
    cand = snap.candidates
    for tok in cand.tokens[:5]:
        assert repr(tok) in "\n".join(texts), tok
    assert any(t.endswith("%") for t in texts)
    # head grid: layer and head labels
    texts = svg_texts(export_svg(tmp_path / "grid.svg", panels["grid"][1]))
    assert {"L0", "L1", "H0", "H3"} <= set(texts)


# ---------------------------------------------------------------------- CSV
def test_attention_csv_is_the_map_on_screen(window, tmp_path):
    from gptviz_app.actions.export import export_attention_csv

    snap = window.controller.snapshot
    p = export_attention_csv(tmp_path / "att.csv", snap)
    comment, table = csv_parts(p)
    rows = list(csv.reader(table[:-1]))            # the file ends with a line break
    assert table[-1] == ""
    T = snap.T
    ws = snap.window_start
    tokens = snap.tokens[ws:]
    positions = list(range(ws, ws + T))
    assert rows[0] == ["position", "query \\ key", *[f"{i} {t}" for i, t in zip(positions, tokens)]]
    assert [int(r[0]) for r in rows[1:]] == positions
    assert [r[1] for r in rows[1:]] == tokens and len(rows) == T + 1
    # the header says what it is: the head, the model, the step
    assert comment[0].startswith("gptviz: attention of layer 1, head 2")
    assert comment[1].startswith("model: tiny") and comment[2].startswith("step 4:")
    m = np.array([[np.float32(x) for x in r[2:]] for r in rows[1:]], dtype=np.float32)
    ref = np.nan_to_num(snap.attn, nan=0.0)
    np.testing.assert_array_equal(m, ref)                  # bit for bit
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(np.triu(m, 1) == 0)
    # it is the selected head of the worker's session
    att = window.controller.client.worker.session.attention()
    np.testing.assert_array_equal(m, att[1, 2])


def test_next_token_csv_is_the_table_on_screen(window, tmp_path):
    from gptviz_app.actions.export import export_next_token_csv

    snap = window.controller.snapshot
    p = export_next_token_csv(tmp_path / "next.csv", snap)
    comment, table = csv_parts(p)
    rows = list(csv.DictReader(table))
    assert comment[0].startswith("gptviz: next token: the distribution step 4's token")
    c = snap.candidates
    order = np.argsort(-c.probs, kind="stable")
    assert [int(r["rank"]) for r in rows] == list(range(1, len(c.ids) + 1))
    assert [int(r["id"]) for r in rows] == [int(c.ids[i]) for i in order]
    assert [r["token"] for r in rows] == [c.tokens[i] for i in order]
    assert [np.float32(r["probability"]) for r in rows] == [c.probs[i] for i in order]
    # the token the session took at step 4 is marked, and only it
    taken = window.controller.client.worker.session.tokens[-1]
    assert [int(r["id"]) for r in rows if r["chosen"] == "1"] == [taken]
    assert sum(r["chosen"] == "1" for r in rows) == 1


# ---------------------------------------------------------------------- NPZ
def test_trace_npz_has_the_trace_command_schema(qtbot, window, tmp_path, tiny_bundle):
    from gptviz import save_checkpoint
    from gptviz.cli import main as cli
    from gptviz.io.export import TRACE_KEYS

    ex = window.features.exporter
    path = tmp_path / "trace.npz"
    with qtbot.waitSignal(ex.exported, timeout=TIMEOUT) as sig:
        ex.export("trace_npz", str(path))
    assert sig.args == ["trace_npz", str(path)]
    snap = window.controller.snapshot
    with np.load(path, allow_pickle=False) as z:
        got = {k: z[k] for k in z.files}
    assert set(got) == set(TRACE_KEYS)
    T = snap.T
    L, H = 2, 4
    assert got["token_ids"].tolist() == snap.ids[snap.window_start:].tolist()
    assert got["tokens"].tolist() == snap.tokens[snap.window_start:]
    assert got["attention"].shape == (L, H, T, T) and got["attention"].dtype == np.float32
    # the trace runs the window's tokens through the model again, the session stepped them
    # through its cache: float32 sums in another order (a few ulps of a weight; 1.2e-6 seen)
    np.testing.assert_allclose(got["attention"],
                               window.controller.client.worker.session.attention(), atol=1e-5)
    assert got["probs"].shape == (T, tiny_bundle.config.vocab_size)
    np.testing.assert_allclose(got["probs"].sum(axis=1), 1.0, atol=1e-5)
    assert int(got["prompt_len"]) == snap.prompt_len
    # the same keys, dtypes and ranks as the command line's file
    d = save_checkpoint(tmp_path / "m", tiny_bundle.model, tiny_bundle.tokenizer)
    ref_path = tmp_path / "cli.npz"
    assert cli(["trace", "--model", str(d), "--prompt", "Once upon a time there was",
                "--steps", "2", "--out", str(ref_path)]) == 0
    with np.load(ref_path, allow_pickle=False) as z:
        ref = {k: z[k] for k in z.files}
    assert set(ref) == set(got)
    for k in TRACE_KEYS:
        assert (got[k].dtype.kind, got[k].ndim) == (ref[k].dtype.kind, ref[k].ndim), k
    assert got["config"].item() == ref["config"].item()


def test_trace_export_failure_is_reported(qtbot, window, tmp_path):
    ex = window.features.exporter
    with qtbot.waitSignal(ex.failed, timeout=TIMEOUT) as sig:
        ex.export("trace_npz", str(tmp_path / "missing" / "t.npz"))
    assert f"folder {tmp_path / 'missing'} does not exist" in sig.args[0]
    box = window.last_error_box
    assert box.isVisible() and box.windowTitle() == "Export failed"
    box.close()


# ---------------------------------------------------------------------- dialog
def test_export_dialog(qtbot, window, tmp_path, monkeypatch):
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog

    window.activateWindow()
    window.attention.glw.setFocus()
    qtbot.keyClick(window.attention.glw, Qt.Key.Key_E,
                   Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
    dlg = window.features.exporter.dialog
    qtbot.waitUntil(lambda: dlg is not None and dlg.isVisible(), timeout=TIMEOUT)
    keys = [dlg.what.itemData(i) for i in range(dlg.what.count())]
    assert keys[:3] == ["attention", "grid", "next"]
    assert keys[-3:] == ["attention_csv", "next_csv", "trace_npz"]
    # a plot: format and width apply
    dlg.what.setCurrentIndex(keys.index("next"))
    dlg.format.setCurrentIndex(1)
    assert dlg.suggested_name() == "next.svg" and not dlg.width.isEnabled()
    out = dlg.export_to(str(tmp_path / "n.svg"))
    assert out is not None and ET.parse(out).getroot().tag.endswith("svg")
    dlg.what.setCurrentIndex(keys.index("attention"))
    dlg.format.setCurrentIndex(0)
    dlg.width.setValue(800)
    assert dlg.width.isEnabled() and dlg.suggested_name() == "attention-L1-H2.png"
    assert png_size(dlg.export_to(str(tmp_path / "a.png")).read_bytes())[0] == 800
    # data: the format box does not apply; Export… asks for the file and closes the dialog
    dlg.what.setCurrentIndex(keys.index("next_csv"))
    assert not dlg.format.isEnabled()
    target = tmp_path / "chosen.csv"
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        staticmethod(lambda *a, **k: (str(target), "")))
    dlg.go.click()
    assert csv_parts(target)[1][0] == "rank,id,token,probability,chosen"
    assert not dlg.isVisible()
    # an error is shown, not raised
    dlg2 = window.features.exporter.show_dialog()
    dlg2.what.setCurrentIndex(keys.index("attention_csv"))
    with qtbot.waitSignal(window.features.exporter.failed, timeout=TIMEOUT):
        assert dlg2.export_to(str(tmp_path / "nope" / "x.csv")) is None
    window.last_error_box.close()
    dlg2.close()


def test_the_maps_picture_ends_at_its_newest_token(window, tmp_path):
    """A map fitted to a range rounded past its newest token (as at 1,024 tokens: a few blank
    pixels beyond it) is exported without that margin: the picture's last row of the plot
    is the newest query's cells, not the background; the range on screen stays rounded."""
    from PySide6.QtGui import QColor, QImage

    from gptviz_app.actions.export import export_png, plot_panels

    view = plot_panels(window)["attention"][1]
    att = window.attention
    T = window.controller.snapshot.T
    att._fit((T + 2, T + 2))  # a rounded range, as snapped_range gives at other sizes
    assert att.vb.viewRange()[0][1] == T + 2
    ex = window.features.exporter
    bg = QColor(window.theme.plot_bg).rgb()

    def blank_share(path) -> float:
        """The share of the background's colour in the plot's last pixel row."""
        img = QImage(str(path))
        r = att.vb.mapRectToItem(view.ci, att.vb.boundingRect())
        y = int(r.bottom()) - 1
        xs = range(int(r.left()) + 1, int(r.right()) - 1)
        return sum(img.pixel(x, y) == bg for x in xs) / len(xs)

    margin = blank_share(export_png(tmp_path / "margin.png", view))  # the view as it is
    exact = blank_share(ex.export("attention", str(tmp_path / "exact.png"), "png"))
    assert margin > 0.9 and exact < 0.1, (margin, exact)
    assert att.vb.viewRange()[0][1] == T + 2 and att._fitted == (T + 2, T + 2)  # as before
    # a range the user zoomed to is exported as it is, and stays
    att.vb.setRange(xRange=(1, 4), yRange=(1, 4), padding=0)
    att._on_manual_range()  # (what a drag or a wheel turn emits)
    before = att.vb.viewRange()
    ex.export("attention", str(tmp_path / "zoomed.png"), "png")
    assert att.vb.viewRange() == before
