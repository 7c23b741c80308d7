"""``python -m gptviz heads`` and ``lens`` on a tiny checkpoint written in a temp folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gptviz import GPT, GPTConfig, Tokenizer, load_model, save_checkpoint
from gptviz.analysis import attention_array, head_scores, induction_scores, logit_lens
from gptviz.cli import main

TEXT = ("To be, or not to be, that is the question: whether 'tis nobler in the mind to "
        "suffer the slings and arrows of outrageous fortune, or to take arms against a sea "
        "of troubles and by opposing end them.\n") * 4


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    hf.train_from_iterator([TEXT], trainer)
    tok = Tokenizer(hf)
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=48,
                          vocab_size=tok.vocab_size + 4, name="tiny")).eval()
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny", model, tok)


def run_json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_heads_json(tiny_ckpt, capsys):
    prompt = "to be or not to be"
    d = run_json(capsys, ["heads", "--model", str(tiny_ckpt), "--prompt", prompt, "--json",
                          "--probe-len", "10", "--probe-batch", "2", "--seed", "3"])
    bundle = load_model(tiny_ckpt)
    ids = bundle.tokenizer.encode(prompt)
    assert d["ids"] == ids and len(d["tokens"]) == len(ids)
    assert d["n_layer"] == 2 and d["n_head"] == 2 and d["n_tokens"] == len(ids)
    assert set(d["scores"]) == {"prev_token", "first_token", "induction", "duplicate_token",
                                "entropy"}
    s = head_scores(attention_array(bundle.model, ids), ids)
    for name, grid in d["scores"].items():
        ref = s.get(name)
        got = np.array([[np.nan if v is None else v for v in row] for row in grid])
        np.testing.assert_allclose(got, ref, rtol=1e-6, equal_nan=True)
    probe = induction_scores(bundle.model, n=10, seed=3, batch=2,
                             vocab=bundle.tokenizer.vocab_size)
    np.testing.assert_allclose(np.array(d["probe_induction"]), probe, rtol=1e-6)
    assert d["probe"] == {"n": 10, "batch": 2, "seed": 3}


def test_heads_table_and_no_probe(tiny_ckpt, capsys):
    assert main(["heads", "--model", str(tiny_ckpt), "--prompt", "abc abc", "--probe-len",
                 "0"]) == 0
    out = capsys.readouterr().out
    assert "prev_token" in out and "entropy (bits)" in out and "probe_induction" not in out
    d = run_json(capsys, ["heads", "--model", str(tiny_ckpt), "--prompt", "x",
                          "--probe-len", "0", "--json"])
    assert d["probe_induction"] is None and d["scores"]["prev_token"] == [[None, None]] * 2


def test_heads_prompt_too_long(tiny_ckpt, capsys):
    assert main(["heads", "--model", str(tiny_ckpt), "--prompt", TEXT, "--json"]) == 2
    assert "at most 48" in capsys.readouterr().err


def test_lens_json(tiny_ckpt, capsys, tmp_path):
    prompt = "whether 'tis nobler in the mind"
    f = tmp_path / "p.txt"
    f.write_text(prompt, encoding="utf-8")
    d = run_json(capsys, ["lens", "--model", str(tiny_ckpt), "--prompt-file", str(f),
                          "--position", "2", "--k", "3", "--json"])
    bundle = load_model(tiny_ckpt)
    ids = bundle.tokenizer.encode(prompt)
    res = logit_lens(bundle.model, ids, position=2, k=3)
    assert d["position"] == 2 and d["token"]["id"] == ids[2]
    assert d["target"]["id"] == ids[3]
    assert [r["name"] for r in d["layers"]] == ["embed", "L0 out", "L1 out"]  # 0-based
    for row, ids_row, probs_row in zip(d["layers"], res.top_ids, res.top_probs):
        assert [t["id"] for t in row["top"]] == ids_row.tolist()
        np.testing.assert_allclose([t["prob"] for t in row["top"]], probs_row, rtol=1e-6)
        assert all(isinstance(t["token"], str) for t in row["top"])
        assert "target_prob" in row and "target_rank" in row
    # last position: no target; the table form prints one line per layer
    d = run_json(capsys, ["lens", "--model", str(tiny_ckpt), "--prompt", prompt, "--json"])
    assert d["target"] is None and "target_prob" not in d["layers"][0]
    assert main(["lens", "--model", str(tiny_ckpt), "--prompt", prompt]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 1 + 3


def test_cli_as_subprocess_is_notebook_readable(tiny_ckpt):
    r = subprocess.run([sys.executable, "-m", "gptviz", "heads", "--model", str(tiny_ckpt),
                        "--prompt", "to be", "--json", "--probe-len", "4"],
                       capture_output=True, text=True, timeout=120,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert len(d["probe_induction"]) == 2
