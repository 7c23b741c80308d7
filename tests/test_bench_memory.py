"""The benchmark's session memory: a real session measured by its own process."""

from __future__ import annotations

import numpy as np
import pytest

from gptviz.bench.memory import (
    _shape,
    measure_real,
    peak_bytes,
    real_session_memory,
    reset_peak,
    resident_bytes,
)


def test_peak_resets_to_the_current_resident_memory():
    if not reset_peak():
        pytest.skip("no /proc/self/clear_refs here")
    base = resident_bytes()
    block = np.ones(64 * 2 ** 20 // 8)  # 64 MB touched
    assert peak_bytes() >= base + 60 * 2 ** 20
    del block
    assert reset_peak() and peak_bytes() < base + 32 * 2 ** 20


def test_a_real_session_in_a_process_of_its_own():
    got = measure_real("bundled-shape", tokens=96, steps=3, threads=1)
    # the buffers by hand, for room for R positions: the packed triangle of every head
    # (float16 or float32), keys and values, the residual stream entering every block and
    # after the last, the final activations (float32); one R must give all four
    sh = _shape("bundled-shape")
    L, H, C = sh.n_layer, sh.n_head, sh.n_embd
    b = got["buffers"]

    def by_hand(R: int, item: int) -> dict[str, float]:
        return {"attention_mb": L * H * R * (R + 1) // 2 * item / 1e6,
                "kv_cache_mb": 2 * L * C * R * 4 / 1e6,
                "residuals_mb": (L + 1) * R * C * 4 / 1e6, "hidden_mb": R * C * 4 / 1e6}

    fits = [(R, item) for R in range(96, sh.block_size + 1) for item in (2, 4)
            if all(abs(by_hand(R, item)[k] - b[k]) <= 0.051 for k in by_hand(R, item))]
    assert fits, b
    assert got["buffers_mb"] == pytest.approx(sum(b.values()), abs=0.25)
    assert got["rss_model_mb"] > got["rss_start_mb"]  # the weights are not the session's
    assert got["session_rss_mb"] == pytest.approx(
        got["rss_after_mb"] - got["rss_model_mb"], abs=0.15)
    assert got["session_peak_mb"] >= got["session_rss_mb"] - 1
    assert (got["tokens"], got["steps"]) == (96, 3)


def test_bad_shapes_and_sizes_are_refused():
    with pytest.raises(ValueError, match="no memory shape"):
        measure_real("gpt5")
    with pytest.raises(ValueError, match="tokens must be"):
        real_session_memory("bundled-shape", tokens=1)


def test_memory_flags_refuse_unknown_shapes_in_one_line(capsys):
    from gptviz.cli import main

    assert main(["bench", "--memory-only", "--memory-real", "gpt5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "gpt5" in err


def test_memory_table_names_what_was_measured():
    from gptviz.cli.bench import _memory_table

    row = {"how": "session", "total_mb": 713.4, "attention_mb": 403.0, "session_rss_mb": 733.5,
           "session_peak_mb": 1019.3, "rss_model_mb": 1661.2, "prefill_s": 26.0}
    text = _memory_table({"gpt2-medium": row,
                          "gpt2-xl": {"how": "buffers", "total_mb": 2216.4,
                                      "attention_mb": 1259.5}})
    assert "gpt2-medium: 713 (403); measured 734, peak 1019 (model 1661" in text
    assert "gpt2-xl: 2216 (1260)" in text and "measured" not in text.split("gpt2-xl")[1]
