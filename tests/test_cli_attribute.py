"""``python -m gptviz attribute`` and ``patch`` on a checkpoint of transformers' GPT-2 with
random weights: the printed numbers match forward hooks on the transformers model; bad
arguments are one line on stderr."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gptviz.cli import main
from gptviz.io.checkpoint import save_checkpoint
from tests.test_attribution import hf_gpt2, hf_reference, ours_from_hf

PROMPT = "the cat sat on the mat"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, tiny_tokenizer):
    tok = tiny_tokenizer
    hf = hf_gpt2(vocab=tok.vocab_size, seed=6)
    path = save_checkpoint(tmp_path_factory.mktemp("ckpt") / "gpt2-tiny", ours_from_hf(hf), tok)
    return hf, tok, path


def run_json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_attribute_json_matches_hooks(ckpt, capsys):
    hf, tok, path = ckpt
    ids = tok.encode(PROMPT)
    d = run_json(capsys, ["attribute", "--model", str(path), "--prompt", PROMPT,
                          "--target-id", "9", "--json"])
    ref = hf_reference(hf, ids, len(ids) - 1, 9)
    assert d["position"] == len(ids) - 1 and d["target_id"] == 9 and d["vs_id"] is None
    assert abs(d["logit"] - ref["logit"]) < 1e-4
    np.testing.assert_allclose(d["heads"], ref["heads"], atol=1e-4)
    np.testing.assert_allclose(d["mlps"], ref["mlps"], atol=1e-4)
    assert abs(d["embed"] - ref["embed"]) < 1e-4 and abs(d["rest"] - ref["rest"]) < 1e-4
    total = d["embed"] + np.sum(d["heads"]) + np.sum(d["mlps"]) + d["rest"]
    assert abs(total - d["logit"]) < 1e-4
    # a position, and the target/vs given as text (one token each)
    target_text = tok.decode([ids[2]])
    vs_text = tok.decode([ids[1]])
    d = run_json(capsys, ["attribute", "--model", str(path), "--prompt", PROMPT, "--position",
                          "2", "--target", target_text, "--vs", vs_text, "--json"])
    ref = hf_reference(hf, ids, 2, ids[2], ids[1])
    assert d["position"] == 2 and d["target_id"] == ids[2] and d["vs_id"] == ids[1]
    assert abs(d["logit"] - ref["logit"]) < 1e-4
    np.testing.assert_allclose(d["heads"], ref["heads"], atol=1e-4)
    # the table form says the same logit
    assert main(["attribute", "--model", str(path), "--prompt", PROMPT, "--position", "2",
                 "--target", target_text, "--vs", vs_text]) == 0
    assert f"= {d['logit']:.4f}" in capsys.readouterr().out


def test_patch_json_matches_hooks(ckpt, capsys):
    from tests.test_patching import _capture, _replace

    hf, tok, path = ckpt
    clean, corrupt = "The quick brown fox jumps", "The quick brown dog jumps"
    ci, xi = tok.encode(clean), tok.encode(corrupt)
    assert len(ci) == len(xi)
    d = run_json(capsys, ["patch", "--model", str(path), "--clean", clean, "--corrupt",
                          corrupt, "--target-id", "9", "--vs-id", "20", "--json"])
    import torch

    def metric(ids, hooks=()):
        hs = [m.register_forward_pre_hook(fn, with_kwargs=True) for m, fn in hooks]
        try:
            with torch.no_grad():
                lg = hf(torch.tensor([ids])).logits[0, -1].double()
        finally:
            for h in hs:
                h.remove()
        return float(lg[9] - lg[20])

    mc, mx = metric(ci), metric(xi)
    assert abs(d["clean_metric"] - mc) < 1e-4 and abs(d["corrupt_metric"] - mx) < 1e-4
    _z, xin = _capture(hf, ci)
    T = len(ci)
    assert np.array(d["resid"]).shape == (3, T) and np.array(d["heads"]).shape == (3, 4)
    for layer in (0, 2):
        for t in (0, T - 1):
            m = metric(xi, [(hf.transformer.h[layer], _replace(xin[layer], (slice(None), t)))])
            assert abs(d["resid"][layer][t] - (m - mx) / (mc - mx)) < 1e-4


@pytest.mark.parametrize("argv,message", [
    (["attribute", "--prompt", "x"], "--target"),
    (["attribute", "--prompt", "the cat", "--target-id", "-3"], "--target-id"),
    (["attribute", "--prompt", "the cat", "--target-id", "99999"], "outside the vocabulary"),
    (["attribute", "--prompt", "the cat", "--target", "the cat sat"], "not one"),
    (["attribute", "--prompt", "the cat", "--target-id", "1", "--position", "40"],
     "outside the text"),
    (["attribute", "--prompt", "the cat", "--target-id", "1", "--vs", ""], "not one"),
    (["patch", "--clean", "the cat", "--corrupt", "the cat sat", "--target-id", "1",
      "--vs-id", "2"], "same token length"),
    (["patch", "--clean", "the cat", "--corrupt", "the dog", "--target-id", "1"], "--vs"),
])
def test_bad_arguments_are_one_line(ckpt, capsys, argv, message):
    _hf, _tok, path = ckpt
    assert main([*argv[:1], "--model", str(path), *argv[1:]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err
    assert "Traceback" not in err


def test_post_ln_model_says_cannot_add_up(tmp_path, capsys, tiny_tokenizer):
    import torch

    from gptviz.model.config import GPTConfig
    from gptviz.model.gpt import GPT

    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32,
                      vocab_size=tiny_tokenizer.vocab_size, ln_placement="post",
                      final_ln=False)).eval()
    path = save_checkpoint(tmp_path / "gpt1", m, tiny_tokenizer)
    assert main(["attribute", "--model", str(path), "--prompt", "the cat",
                 "--target-id", "3", "--json"]) == 2
    err = capsys.readouterr().err
    assert "cannot add up" in err and err.count("\n") == 1
