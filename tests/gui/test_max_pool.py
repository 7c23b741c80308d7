""":func:`gptviz_app.views.plots.max_pool` against a block maximum written out cell by cell in
plain Python (no numpy reductions): random maps with NaN holes, NaN rows, columns and whole
blocks, infinities, ties of opposite signs and block sizes that do not divide the map (or
exceed it).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("PySide6")
hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


def loop_pool(a: np.ndarray, fy: int, fx: int, signed: bool) -> np.ndarray:
    """Each ``fy`` x ``fx`` block (the last ones: the cells left) as its largest number
    (``signed``: the one farthest from 0, the positive one of a tie), NaN when it has none."""
    rows, cols = a.shape
    out = np.empty((math.ceil(rows / fy), math.ceil(cols / fx)), np.float32)
    for bi in range(out.shape[0]):
        for bj in range(out.shape[1]):
            cells = [float(a[i, j])
                     for i in range(bi * fy, min(rows, (bi + 1) * fy))
                     for j in range(bj * fx, min(cols, (bj + 1) * fx))
                     if not math.isnan(a[i, j])]
            if not cells:
                out[bi, bj] = np.nan
            elif signed:
                out[bi, bj] = max(cells, key=lambda v: (abs(v), v))
            else:
                out[bi, bj] = max(cells)
    return out


def holey(rng: np.random.Generator, rows: int, cols: int, holes: float) -> np.ndarray:
    a = rng.normal(size=(rows, cols)).astype(np.float32)
    a[rng.random((rows, cols)) < holes] = np.nan
    if rows > 2:
        a[rng.integers(rows)] = np.nan          # a NaN row
    if cols > 2:
        a[:, rng.integers(cols)] = np.nan       # a NaN column
    if rng.random() < 0.5:                      # a causal mask's triangle
        a[np.triu_indices(min(rows, cols), 1)] = np.nan
    if a.size > 3:
        flat = a.reshape(-1)
        flat[rng.integers(a.size)] = np.inf
        flat[rng.integers(a.size)] = -np.inf
    return a


@settings(max_examples=300, deadline=None)
@given(rows=st.integers(1, 23), cols=st.integers(1, 23), fy=st.integers(1, 9),
       fx=st.integers(1, 9), holes=st.sampled_from([0.0, 0.3, 0.8, 1.0]),
       signed=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_max_pool_matches_a_loop_over_each_block(rows, cols, fy, fx, holes, signed, seed):
    from gptviz_app.views.plots import max_pool

    a = holey(np.random.default_rng(seed), rows, cols, holes)
    before = a.copy()
    got = max_pool(a, fy, fx, signed=signed)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, loop_pool(a, fy, fx, signed))
    np.testing.assert_array_equal(a, before)  # the map itself is left alone


@pytest.mark.parametrize("signed", [False, True])
def test_max_pool_of_a_long_text_view(signed):
    """The main map's case: a causal map of a long text in blocks of 3 x 4 and 5 x 7 (1,024
    tokens in a view of ~300 x 250 device pixels), sides that the blocks do not divide,
    and a part of it (a view's slice: rows not contiguous with each other)."""
    from gptviz_app.views.plots import max_pool

    a = holey(np.random.default_rng(11), 103, 131, 0.05)
    for part in (a, a[7:90, 3:120]):
        for fy, fx in ((3, 4), (5, 7), (1, 4), (3, 1), (1, 1)):
            np.testing.assert_array_equal(max_pool(part, fy, fx, signed=signed),
                                          loop_pool(part, fy, fx, signed))


def test_max_pool_signed_ties_and_empty_blocks():
    """Opposite values as far from 0: the positive one; a block of NaN only: NaN."""
    from gptviz_app.views.plots import max_pool

    nan = np.nan
    a = np.array([[0.5, -0.5, nan, nan, -2.0],
                  [nan, -0.5, nan, nan, 2.0],
                  [-3.0, 1.0, nan, -np.inf, 7.0]], np.float32)
    np.testing.assert_array_equal(max_pool(a, 2, 2, signed=True),
                                  np.array([[0.5, nan, 2.0], [-3.0, -np.inf, 7.0]], np.float32))
    np.testing.assert_array_equal(max_pool(a, 2, 2),
                                  np.array([[0.5, nan, 2.0], [1.0, -np.inf, 7.0]], np.float32))


@pytest.mark.parametrize("signed", [False, True])
def test_max_pool_of_a_wide_map_in_bands(signed):
    """A wide map is pooled a band of block rows at a time: bands of 10 block rows here
    (3,000 columns), the last band and the last block row shorter."""
    from gptviz_app.views.plots import max_pool

    a = holey(np.random.default_rng(12), 95, 3000, 0.2)
    for fy, fx in ((4, 7), (3, 2)):
        np.testing.assert_array_equal(max_pool(a, fy, fx, signed=signed),
                                      loop_pool(a, fy, fx, signed))
