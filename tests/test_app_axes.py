"""Axis labels of the app's plots: shortened token strings and thinned ticks (no Qt)."""

from __future__ import annotations

import math

import pytest

from gptviz_app.views.axes import pt_px, shorten, text_px, thin_ticks, tick_step


# ---------------------------------------------------------------------- shorten
@pytest.mark.parametrize(("text", "width", "want"), [
    ("·be", 8, "·be"),                    # short enough: unchanged
    ("·satisfi", 8, "·satisfi"),          # exactly the width: unchanged
    ("·satisfied", 8, "·satisf…"),        # cut: 7 characters and the mark
    ("·satisfied", 10, "·satisfied"),
    ("pinned: 19 tokens …'an.↵He' and more", 34, "pinned: 19 tokens …'an.↵He' and m…"),
    ("", 8, ""),
])
def test_shorten_keeps_the_width_and_marks_the_cut(text, width, want):
    got = shorten(text, width)
    assert got == want
    assert len(got) <= width
    assert got.endswith("…") == (len(text) > width)


# ---------------------------------------------------------------------- sizes
def test_font_sizes_in_pixels():
    assert pt_px(9.0) == pytest.approx(12.0)                  # 9 pt at 96 dpi
    assert text_px(9.0, 5) == pytest.approx(12.0 * 0.62 * 5)  # 5 characters of 0.62 em


# ---------------------------------------------------------------------- tick_step
@pytest.mark.parametrize(("label_px", "item_px", "want"), [
    (30.0, 10.0, 3),     # exactly three items per label
    (30.0, 7.0, 5),      # 30 / 7 = 4.3: five items, four would overlap
    (5.0, 10.0, 1),      # room to spare: every item
    (30.0, 0.0, math.ceil(30.0 / 1e-9)),  # a zero-width axis does not divide by zero
])
def test_tick_step(label_px, item_px, want):
    assert tick_step(label_px, item_px) == want


@pytest.mark.parametrize("item_px", [0.7, 3.0, 9.5, 14.0, 40.0])
def test_thinned_ticks_fit_their_pixel_budget(item_px):
    """Labels 14 px long on items ``item_px`` apart: the ticks start at the first label, are
    evenly spaced, never closer than a label's length and as dense as that allows."""
    labels = [f"t{i}" for i in range(50)]
    step = tick_step(14.0, item_px)
    ticks = thin_ticks(labels, step)
    pos = [p for p, _ in ticks]
    assert ticks[0] == (0.5, "t0")
    gaps = {round(b - a, 9) for a, b in zip(pos, pos[1:])}
    assert gaps <= {float(step)}
    assert step * item_px >= 14.0 and (step == 1 or (step - 1) * item_px < 14.0)
    assert [lab for _, lab in ticks] == [f"t{i}" for i in range(0, 50, step)]


# ---------------------------------------------------------------------- thin_ticks
def test_thin_ticks_always_labels_the_kept_item():
    labels = [f"t{i}" for i in range(10)]
    # every 3rd label: 0, 3, 6, 9; 3 and 6 lie closer than 3 to the query 5 and make room
    assert thin_ticks(labels, 3, keep=5) == [(0.5, "t0"), (9.5, "t9"), (5.5, "t5")]
    # a query on the grid is labelled once, its neighbours 3 away stay
    assert thin_ticks(labels, 3, keep=6) == [(0.5, "t0"), (3.5, "t3"), (6.5, "t6"), (9.5, "t9")]
    assert thin_ticks(labels, 1, keep=4) == [(i + 0.5, f"t{i}") for i in range(10)]
    assert thin_ticks([], 2, keep=0) == []


def test_thin_ticks_on_a_mosaic():
    """Head labels over cells 64 px wide with 3 px gaps, at the cells' centres."""
    labels = [f"H{j}" for j in range(6)]
    assert thin_ticks(labels, 2, offset=32.0, pitch=67) == [
        (32.0, "H0"), (166.0, "H2"), (300.0, "H4")]
