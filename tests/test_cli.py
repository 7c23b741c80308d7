"""Command line: info, trace (NPZ schema), generate, and clean errors on bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from gptviz.cli import main
from gptviz.io.checkpoint import save_checkpoint


@pytest.fixture
def ckpt(tmp_path, tiny_bundle):
    return str(save_checkpoint(tmp_path / "tiny", tiny_bundle.model, tiny_bundle.tokenizer,
                               metadata={"note": "test model"}))


def test_info(ckpt, tiny_bundle, capsys):
    assert main(["info", "--model", ckpt]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"] == tiny_bundle.config.to_dict()
    assert info["n_params"] == sum(p.numel() for p in tiny_bundle.model.parameters())
    assert info["metadata"] == {"note": "test model"}
    assert info["kind"] == "gptviz" and info["source"] == ckpt


def test_trace_npz_schema(ckpt, tiny_bundle, tmp_path, capsys):
    out = tmp_path / "t.npz"
    prompt = "Hello wörld 😀"
    assert main(["trace", "--model", ckpt, "--prompt", prompt, "--steps", "7",
                 "--temperature", "0.9", "--top-k", "50", "--top-p", "0.95", "--seed", "3",
                 "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    z = np.load(out, allow_pickle=False)
    cfg = tiny_bundle.config
    n_prompt = len(tiny_bundle.tokenizer.encode(prompt))
    T = n_prompt + 7
    assert set(z.files) >= {"token_ids", "tokens", "attention", "probs", "prompt_len", "config"}
    assert z["token_ids"].dtype == np.int64 and z["token_ids"].shape == (T,)
    assert z["tokens"].dtype.kind == "U" and z["tokens"].shape == (T,)
    assert z["tokens"].tolist() == [tiny_bundle.tokenizer.display(i) for i in z["token_ids"]]
    att = z["attention"]
    assert att.dtype == np.float32 and att.shape == (cfg.n_layer, cfg.n_head, T, T)
    np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
    assert (att[..., np.triu(np.ones((T, T), dtype=bool), 1)] == 0).all()
    probs = z["probs"]
    assert probs.dtype == np.float32 and probs.shape == (T, cfg.vocab_size)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    assert int(z["prompt_len"]) == n_prompt
    assert json.loads(str(z["config"])) == cfg.to_dict()
    assert tiny_bundle.tokenizer.decode(z["token_ids"][:n_prompt].tolist()) == prompt
    # Same seed, same trace.
    out2 = tmp_path / "t2.npz"
    main(["trace", "--model", ckpt, "--prompt", prompt, "--steps", "7", "--temperature", "0.9",
          "--top-k", "50", "--top-p", "0.95", "--seed", "3", "--out", str(out2)])
    np.testing.assert_array_equal(np.load(out2)["token_ids"], z["token_ids"])


def test_generate_prints_text(ckpt, capsys):
    assert main(["generate", "--model", ckpt, "--prompt", "Once upon", "--steps", "5",
                 "--greedy"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Once upon") and text.endswith("\n")
    assert main(["generate", "--model", ckpt, "--prompt", "Once upon", "--steps", "5",
                 "--greedy", "--only-new"]) == 0
    new = capsys.readouterr().out
    assert text == "Once upon" + new


@pytest.mark.parametrize("argv, needle", [
    (["generate", "--prompt", "", "--steps", "3"], "prompt is empty"),
    (["generate", "--prompt", "hi", "--temperature", "0"], "temperature"),
    (["generate", "--prompt", "hi", "--temperature", "-2"], "temperature"),
    (["generate", "--prompt", "hi", "--top-p", "1.5"], "top_p"),
    (["generate", "--prompt", "hi", "--top-k", "-1"], "top_k"),
    (["generate", "--prompt", "hi", "--seed", "-1"], "seed"),
    (["generate", "--prompt", "hi", "--greedy", "--top-k", "5"], "--greedy"),
    (["generate", "--prompt", "hi", "--steps", "-4"], "--steps"),
    (["trace", "--prompt", "hi", "--out", "/no/such/dir/x.npz"], "does not exist"),
])
def test_bad_input_exits_2_with_one_line(ckpt, capsys, argv, needle):
    assert main(argv[:1] + ["--model", ckpt] + argv[1:]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and needle in err and "\n" not in err


def test_missing_model_exits_2(tmp_path, capsys):
    assert main(["info", "--model", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip()
    assert "nothing" in err and "\n" not in err


def test_bad_input_in_a_real_process_has_no_traceback(ckpt):
    res = subprocess.run([sys.executable, "-m", "gptviz", "generate", "--model", ckpt,
                          "--prompt", "hi", "--top-p", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert res.stderr.strip().count("\n") == 0 and "top_p" in res.stderr


def test_bench_runs_side_by_side_on_the_same_weights(capsys):
    """A smoke run of the benchmark machinery on a tiny shape (no timing is asserted)."""
    pytest.importorskip("transformers")
    from gptviz.bench.speed import Shape, format_table, run_bench

    torch_threads = __import__("torch").get_num_threads()
    try:
        res = run_bench(steps=3, reps=1, shapes=[Shape("tiny", 2, 2, 32, 300, 96, "gelu")],
                        contexts=(8, 64), threads=1)
    finally:
        __import__("torch").set_num_threads(torch_threads)
    assert [(r["model"], r["ctx"]) for r in res["results"]] == [("tiny", 8), ("tiny", 64)]
    for r in res["results"]:
        assert r["ours_ms_per_token"] > 0 and r["hf_ms_per_token"] is not None
    assert res["max_abs_logit_diff_vs_hf"]["tiny"] < 1e-4
    assert set(res["ratios"]["tiny"]) == {"ours_ctx64_over_ctx8", "hf_ctx64_over_ctx8"}
    assert "| tiny | 64 |" in format_table(res)
