"""``python -m gptviz heads --convention`` and ``lens --mid`` on random ``transformers`` models
saved with ``save_pretrained``: the scores against TransformerLens' ``detect_head`` formulas
written out here on ``transformers``' own attention maps, the mid points against forward hooks
on ``transformers``' blocks, and bad values as one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from gptviz.cli import main

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

# Repeats, so that every score is defined (and the two conventions differ).
PROMPT = "to be or not to be, to be or not to be"


def _randomise(model: torch.nn.Module, seed: int = 5, std: float = 0.25) -> None:
    """Weights larger than the init, so that attention is far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * std)
            elif "ln" in name or "norm" in name:
                p.copy_(torch.rand(p.shape, generator=gen) + 0.5 if name.endswith("weight")
                        else torch.randn(p.shape, generator=gen) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory, tiny_tokenizer):
    """A random 3-layer GPT-2 (eager attention) and its folder."""
    cfg = transformers.GPT2Config(n_layer=3, n_head=4, n_embd=32, n_positions=64,
                                  vocab_size=tiny_tokenizer.vocab_size, resid_pdrop=0.0,
                                  embd_pdrop=0.0, attn_pdrop=0.0, attn_implementation="eager")
    hf = transformers.GPT2LMHeadModel(cfg).eval()
    _randomise(hf)
    d = tmp_path_factory.mktemp("gpt2")
    hf.save_pretrained(d)
    tiny_tokenizer.save(d / "tokenizer.json")
    return hf, d


@pytest.fixture(scope="module")
def neox_dir(tmp_path_factory, tiny_tokenizer):
    """A random 2-layer GPT-NeoX with the parallel block (eager attention) and its folder."""
    cfg = transformers.GPTNeoXConfig(
        vocab_size=tiny_tokenizer.vocab_size, hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=64,
        rotary_pct=0.5, use_parallel_residual=True, tie_word_embeddings=False,
        attn_implementation="eager")
    hf = transformers.GPTNeoXForCausalLM(cfg).eval()
    _randomise(hf)
    d = tmp_path_factory.mktemp("neox")
    hf.save_pretrained(d)
    tiny_tokenizer.save(d / "tokenizer.json")
    return hf, d


def _json(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0, capsys.readouterr().err
    return json.loads(capsys.readouterr().out)


def _grid(rows: list[list[float | None]]) -> torch.Tensor:
    return torch.tensor([[float("nan") if v is None else v for v in r] for r in rows],
                        dtype=torch.float64)


def _hf_attention(hf, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        out = hf(input_ids=torch.tensor([ids]), output_attentions=True)
    return torch.stack(out.attentions)[:, 0].double()  # (L, H, T, T)


# TransformerLens' detection patterns (transformer_lens/head_detector.py), written out.
def _tl_previous(t: int) -> torch.Tensor:
    p = torch.zeros(t, t, dtype=torch.float64)
    p[1:, :-1] = torch.eye(t - 1, dtype=torch.float64)
    return p


def _tl_duplicate(ids: list[int]) -> torch.Tensor:
    tok = torch.tensor(ids)
    eq = (tok[None, :] == tok[:, None]).double()  # (T, T)
    eq.fill_diagonal_(0)
    return torch.tril(eq)


def _tl_induction(ids: list[int]) -> torch.Tensor:
    dup = _tl_duplicate(ids)
    shifted = torch.roll(dup, shifts=1, dims=1)
    shifted = torch.cat([torch.zeros(len(ids), 1, dtype=torch.float64), shifted[:, 1:]], dim=1)
    return torch.tril(shifted)


def _tl_score(att: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    """``detect_head(error_measure="mul")``: (att * pattern).sum() / att.sum() per head."""
    return (att * pattern).sum(dim=(-2, -1)) / att.sum(dim=(-2, -1))  # (L, H)


def test_heads_transformer_lens_convention_matches_detect_head(gpt2_dir, capsys,
                                                                tiny_tokenizer):
    hf, d = gpt2_dir
    out = _json(capsys, ["heads", "--model", str(d), "--prompt", PROMPT, "--json",
                         "--probe-len", "0", "--convention", "transformer_lens"])
    ids = tiny_tokenizer.encode(PROMPT)
    assert out["ids"] == ids and out["convention"] == "transformer_lens"
    att = _hf_attention(hf, ids)  # (L, H, T, T) from transformers itself
    t = len(ids)
    want = {"prev_token": _tl_score(att, _tl_previous(t)),
            "duplicate_token": _tl_score(att, _tl_duplicate(ids)),
            "induction": _tl_score(att, _tl_induction(ids))}
    for name, ref in want.items():
        torch.testing.assert_close(_grid(out["scores"][name]), ref, rtol=1e-4, atol=1e-5)
    # No TransformerLens detector: the same as gptviz's definitions.
    first = att[:, :, 1:, 0].mean(-1)  # mean over queries i >= 1 of att[i, 0]
    torch.testing.assert_close(_grid(out["scores"]["first_token"]), first, rtol=1e-4,
                               atol=1e-5)


def test_heads_gptviz_convention_is_the_default_and_differs(gpt2_dir, capsys, tiny_tokenizer):
    hf, d = gpt2_dir
    base = ["heads", "--model", str(d), "--prompt", PROMPT, "--json", "--probe-len", "0"]
    default = _json(capsys, base)
    explicit = _json(capsys, [*base, "--convention", "gptviz"])
    tl = _json(capsys, [*base, "--convention", "transformer_lens"])
    assert default["convention"] == explicit["convention"] == "gptviz"
    assert default["scores"] == explicit["scores"]
    ids = tiny_tokenizer.encode(PROMPT)
    att = _hf_attention(hf, ids)
    # gptviz: previous-token mass averaged over queries i >= 1 only (TL: over all T).
    prev = torch.stack([att[:, :, i, i - 1] for i in range(1, len(ids))], -1).mean(-1)
    torch.testing.assert_close(_grid(default["scores"]["prev_token"]), prev, rtol=1e-4,
                               atol=1e-5)
    # duplicate mass over the queries that have an earlier copy (TL: over all queries)
    dup = _tl_duplicate(ids)
    has = dup.sum(-1) > 0
    dup_ref = (att * dup).sum(-1)[..., has].mean(-1)
    torch.testing.assert_close(_grid(default["scores"]["duplicate_token"]), dup_ref,
                               rtol=1e-4, atol=1e-5)
    assert not torch.allclose(_grid(default["scores"]["prev_token"]),
                              _grid(tl["scores"]["prev_token"]))


def test_heads_text_output_names_the_convention(gpt2_dir, capsys):
    _, d = gpt2_dir
    assert main(["heads", "--model", str(d), "--prompt", PROMPT, "--probe-len", "0",
                 "--convention", "transformer_lens"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "transformer_lens convention" in first


def _hooked_points(hf, blocks, ids: list[int], position: int, mid_of) -> list[torch.Tensor]:
    """embed, then per block its mid point and output, at ``position``: forward hooks on
    ``transformers``' blocks (``mid_of(block, inputs, attn_out)``)."""
    got: dict[str, list[torch.Tensor]] = {"in": [], "out": [], "attn": []}
    before = [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks]
    handles = []
    for block in blocks:
        handles.append(block.register_forward_pre_hook(
            lambda _m, args, kwargs: got["in"].append(
                (args[0] if args else kwargs["hidden_states"]).detach()), with_kwargs=True))
        handles.append(block.register_forward_hook(
            lambda _m, _a, out: got["out"].append(
                (out[0] if isinstance(out, tuple) else out).detach())))
        attn = block.attn if hasattr(block, "attn") else block.attention
        handles.append(attn.register_forward_hook(
            lambda _m, _a, out: got["attn"].append(out[0].detach())))
    try:
        with torch.inference_mode():
            hf(input_ids=torch.tensor([ids[: position + 1]]))
    finally:
        for h in handles:
            h.remove()
    assert before == [(len(b._forward_hooks), len(b._forward_pre_hooks)) for b in blocks]
    points = [got["in"][0][0, -1]]
    for i in range(len(blocks)):
        points += [mid_of(got["in"][i][0, -1], got["attn"][i][0, -1]), got["out"][i][0, -1]]
    return points


def _check_lens(out: dict, hf, points: list[torch.Tensor], ln_f, head, n_layer: int) -> None:
    names = ["embed"] + [f"L{i} {w}" for i in range(n_layer) for w in ("mid", "out")]
    assert [r["name"] for r in out["layers"]] == names
    target = out["target"]["id"]
    for row, x in zip(out["layers"], points):
        probs = torch.softmax(head(ln_f(x)).double(), -1)  # (V,)
        k = len(row["top"])
        top_p, top_i = probs.topk(k)
        assert [t["id"] for t in row["top"]] == top_i.tolist(), row["name"]
        torch.testing.assert_close(torch.tensor([t["prob"] for t in row["top"]],
                                                dtype=torch.float64), top_p, rtol=1e-4,
                                   atol=1e-6)
        assert row["target_prob"] == pytest.approx(float(probs[target]), rel=1e-4, abs=1e-7)
        assert row["target_rank"] == int((probs > probs[target]).sum())  # 0 = top


def test_lens_mid_matches_gpt2_hooks(gpt2_dir, capsys, tiny_tokenizer):
    hf, d = gpt2_dir
    pos = 5
    out = _json(capsys, ["lens", "--model", str(d), "--prompt", PROMPT, "--json", "--mid",
                         "--position", str(pos), "--k", "4"])
    ids = tiny_tokenizer.encode(PROMPT)
    assert out["position"] == pos and out["target"]["id"] == ids[pos + 1]
    # GPT-2 (pre-LN): resid_mid = block input + attention output
    points = _hooked_points(hf, hf.transformer.h, ids, pos, lambda x, a: x + a)
    with torch.inference_mode():
        _check_lens(out, hf, points, hf.transformer.ln_f, hf.lm_head, 3)
    # without --mid: the same out points, no mid ones
    plain = _json(capsys, ["lens", "--model", str(d), "--prompt", PROMPT, "--json",
                           "--position", str(pos), "--k", "4"])
    assert [r["name"] for r in plain["layers"]] == ["embed", "L0 out", "L1 out", "L2 out"]
    def strip(r: dict) -> dict:  # "layer" is the row's index, which the mid rows shift
        return {k: v for k, v in r.items() if k != "layer"}

    assert [strip(r) for r in plain["layers"]] == [strip(r) for r in out["layers"]
                                                   if "mid" not in r["name"]]


def test_lens_mid_matches_neox_parallel_block_hooks(neox_dir, capsys, tiny_tokenizer):
    hf, d = neox_dir
    out = _json(capsys, ["lens", "--model", str(d), "--prompt", PROMPT, "--json", "--mid",
                         "--position", "-2", "--k", "3"])
    ids = tiny_tokenizer.encode(PROMPT)
    pos = len(ids) - 2
    assert out["position"] == pos
    # parallel block: the stream after the attention's output is added, before the MLP's
    points = _hooked_points(hf, hf.gpt_neox.layers, ids, pos, lambda x, a: x + a)
    with torch.inference_mode():
        _check_lens(out, hf, points, hf.gpt_neox.final_layer_norm, hf.get_output_embeddings(), 2)


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    cap = capsys.readouterr()
    err = cap.err.strip()
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    assert cap.out == ""
    return err


@pytest.mark.parametrize("extra,words", [
    (["--convention", "tl"], ("argument --convention", "'tl'", "transformer_lens")),
    (["--convention", ""], ("argument --convention",)),
    (["--convention"], ("argument --convention", "expected one argument")),
])
def test_heads_bad_convention_is_one_line(gpt2_dir, capsys, extra, words):
    _, d = gpt2_dir
    err = _one_line_error(capsys, ["heads", "--model", str(d), "--prompt", PROMPT, *extra])
    for w in words:
        assert w in err, err


@pytest.mark.parametrize("extra,words", [
    (["--mid", "yes"], ("unrecognized arguments: yes",)),
    (["--mid", "--position", "999"], ("position 999", "outside")),
    (["--mid=1"], ("--mid",)),
])
def test_lens_bad_mid_is_one_line(gpt2_dir, capsys, extra, words):
    _, d = gpt2_dir
    err = _one_line_error(capsys, ["lens", "--model", str(d), "--prompt", PROMPT, *extra])
    for w in words:
        assert w in err, err
