"""The family benchmark (GPT-NeoX and Llama shapes beside transformers) and the per-step costs
of the newer analyses, on tiny shapes: what they report and that both sides run the same
weights (no timing is asserted: speed targets live in the benchmark itself)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gptviz.cli import main

transformers = pytest.importorskip("transformers")


def _tiny(shape, **kw):
    cfg = {**shape.config, "num_hidden_layers": 2, "vocab_size": 300, "hidden_size": 48,
           "intermediate_size": 64, "max_position_embeddings": 64, **kw}
    return dataclasses.replace(shape, config=cfg)


def test_family_bench_reports_both_tools_on_the_same_weights():
    from gptviz.bench.families import (
        PYTHIA_160M,
        SMOLLM_135M,
        format_family_table,
        run_family_bench,
    )

    shapes = (_tiny(PYTHIA_160M, num_attention_heads=4, hidden_size=64),
              _tiny(SMOLLM_135M, num_attention_heads=6, num_key_value_heads=2))
    threads = torch.get_num_threads()
    try:
        res = run_family_bench(steps=2, reps=1, shapes=shapes, contexts=(8, 12), threads=1)
    finally:
        torch.set_num_threads(threads)
    assert [(r["model"], r["ctx"]) for r in res["results"]] == [
        ("pythia-160m", 8), ("pythia-160m", 12), ("smollm-135m", 8), ("smollm-135m", 12)]
    for r in res["results"]:
        assert r["ours_ms_per_token"] > 0 and r["hf_ms_per_token"] > 0
        assert r["ours_over_hf"] == pytest.approx(r["ours_ms_per_token"] / r["hf_ms_per_token"],
                                                  rel=1e-2)
    for diff in res["max_abs_diff_vs_hf"].values():
        assert diff["logits"] < 1e-4 and diff["attention"] < 1e-5
    assert res["shapes"]["smollm-135m"]["n_kv_head"] == 2
    assert res["shapes"]["pythia-160m"]["tied"] is False
    table = format_family_table(res)
    assert "| smollm-135m | llama | 12 |" in table


def test_full_family_shapes_are_the_published_ones():
    from gptviz.bench.families import PYTHIA_160M, SMOLLM_135M

    p, s = PYTHIA_160M.summary(), SMOLLM_135M.summary()
    assert (p["n_layer"], p["n_head"], p["n_embd"], p["vocab_size"], p["tied"]) == (
        12, 12, 768, 50304, False)
    assert PYTHIA_160M.config["rotary_pct"] == 0.25
    assert PYTHIA_160M.config["use_parallel_residual"] is True
    assert (s["n_layer"], s["n_head"], s["n_kv_head"], s["n_embd"], s["intermediate"],
            s["vocab_size"], s["tied"]) == (30, 9, 3, 576, 1536, 49152, True)
    assert SMOLLM_135M.config["rope_parameters"]["rope_theta"] == 10000.0


def test_live_costs_cover_every_newer_analysis():
    from gptviz.bench.live_costs import LIVE_CASES, bench_live_costs, format_live_costs
    from gptviz.bench.speed import Shape

    res = bench_live_costs(context=12, repeats=1, shapes=[Shape("tiny", 2, 4, 32, 300)])
    got = res["tiny"]
    assert set(got["analyses"]) == set(LIVE_CASES)
    for v in got["analyses"].values():
        assert v["ms"] > 0
        assert v["ratio_to_step"] == pytest.approx(v["ms"] / got["step_ms"], rel=0.05, abs=0.01)
    assert got["patch_heads_20_ms"] > 0
    assert "saliency_ig" in format_live_costs(res)


def test_families_only_without_transformers_comparison_is_one_line(capsys):
    assert main(["bench", "--families-only", "--no-hf"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "--no-hf" in err
