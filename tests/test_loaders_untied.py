"""GPT-2 with an untied output head, sharded safetensors, and nanoGPT with an untied
``lm_head``: logits and every attention map against ``transformers`` random weights
(max |diff| <= 1e-4). Nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch

from gptviz import CheckpointError, load_model

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from hub_cache import PROBE, bpe_tokenizer, peak_over_uniform, randomize, tiny_gpt2  # noqa: E402

TOL = 1e-4


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


def _parity(hf, bundle) -> None:
    ids = torch.tensor([bundle.tokenizer.encode(PROBE)])
    assert ids.shape[1] > 8
    with torch.no_grad():
        ref = hf(ids, output_attentions=True)
        out = bundle.model(ids, return_attn=True)
    assert (out.logits - ref.logits).abs().max().item() <= TOL
    assert len(out.attentions) == len(ref.attentions) == bundle.config.n_layer
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert (ours - theirs).abs().max().item() <= TOL
    # The maps are not uniform: a wrong scale or mask would show.
    assert peak_over_uniform(out.attentions) > 1.5  # uniform rows give 1.0


def _untied(tok, seed: int = 3, **kw):
    hf = tiny_gpt2(tok.get_vocab_size(), seed=seed, tie_word_embeddings=False, **kw)
    with torch.no_grad():  # its own head, unlike W_e
        hf.lm_head.weight.copy_(0.5 * torch.randn(hf.lm_head.weight.shape,
                                                  generator=torch.Generator().manual_seed(9)))
    assert not torch.equal(hf.lm_head.weight, hf.transformer.wte.weight)
    return hf


def test_gpt2_untied_head_becomes_unembed(tmp_path, tok):
    hf = _untied(tok)
    d = tmp_path / "untied"
    hf.save_pretrained(d)
    tok.save(str(d / "tokenizer.json"))
    bundle = load_model(d)
    assert bundle.config.tie_word_embeddings is False
    assert torch.equal(bundle.model.unembed.weight, hf.lm_head.weight)
    assert torch.equal(bundle.model.wte.weight, hf.transformer.wte.weight)
    assert bundle.model.num_params() == hf.num_parameters()
    _parity(hf, bundle)


def test_gpt2_untied_flag_with_an_equal_head_stays_tied(tmp_path, tok):
    hf = tiny_gpt2(tok.get_vocab_size(), seed=4)
    d = tmp_path / "equal"
    d.mkdir()
    cfg = hf.config.to_dict()
    cfg["tie_word_embeddings"] = False
    (d / "config.json").write_text(json.dumps(cfg))
    state = {k: v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = state["transformer.wte.weight"].clone()
    torch.save(state, d / "pytorch_model.bin")
    tok.save(str(d / "tokenizer.json"))
    bundle = load_model(d)
    assert bundle.model.unembed is None  # the same function with one matrix
    _parity(hf, bundle)


@pytest.mark.parametrize("head", ["missing", "wrong shape"])
def test_gpt2_untied_without_a_usable_head_is_refused(tmp_path, tok, head):
    hf = tiny_gpt2(tok.get_vocab_size(), seed=5)
    d = tmp_path / "bad"
    d.mkdir()
    cfg = hf.config.to_dict()
    cfg["tie_word_embeddings"] = False
    (d / "config.json").write_text(json.dumps(cfg))
    state = {k: v.clone() for k, v in hf.state_dict().items() if k != "lm_head.weight"}
    if head == "wrong shape":
        state["lm_head.weight"] = torch.zeros(7, 32)
    torch.save(state, d / "pytorch_model.bin")
    tok.save(str(d / "tokenizer.json"))
    with pytest.raises(CheckpointError, match="lm_head.weight") as e:
        load_model(d)
    assert "pytorch_model.bin" in str(e.value)


@pytest.mark.parametrize("untied", [False, True])
def test_gpt2_sharded_safetensors(tmp_path, tok, untied):
    hf = _untied(tok) if untied else tiny_gpt2(tok.get_vocab_size(), seed=6)
    d = tmp_path / "sharded"
    hf.save_pretrained(d, max_shard_size="40KB")
    tok.save(str(d / "tokenizer.json"))
    index = json.loads((d / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1  # really several shards
    assert not (d / "model.safetensors").exists()
    bundle = load_model(d)
    assert bundle.config.tie_word_embeddings is (not untied)
    _parity(hf, bundle)


def test_gpt1_untied_head(tmp_path, tok):
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    torch.manual_seed(0)
    hf = OpenAIGPTLMHeadModel(OpenAIGPTConfig(
        n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=tok.get_vocab_size(),
        tie_word_embeddings=False, attn_implementation="eager"))
    randomize(hf, 7)
    hf.eval()
    assert not torch.equal(hf.lm_head.weight, hf.transformer.tokens_embed.weight)
    d = tmp_path / "gpt1"
    hf.save_pretrained(d)
    tok.save(str(d / "tokenizer.json"))
    bundle = load_model(d)
    assert bundle.config.tie_word_embeddings is False
    _parity(hf, bundle)


# ------------------------------------------------------------------ nanoGPT
def _as_nanogpt(hf) -> dict[str, torch.Tensor]:
    """A transformers GPT-2 (exact GELU: nanoGPT's) under nanoGPT's names and nn.Linear
    layout: Conv1D weights transposed, lm_head kept."""
    out = {}
    for k, v in hf.state_dict().items():
        if k.endswith(".attn.bias") or k.endswith(".attn.masked_bias"):
            continue
        if any(k.endswith(f"{m}.weight") for m in ("c_attn", "c_proj", "c_fc")):
            v = v.t()
        out[k] = v.detach().clone().contiguous()
    return out


@pytest.mark.parametrize("untied", [True, False])
def test_nanogpt_untied_lm_head(tmp_path, tok, untied):
    hf = (_untied(tok, activation_function="gelu") if untied
          else tiny_gpt2(tok.get_vocab_size(), seed=8, activation_function="gelu"))
    state = _as_nanogpt(hf)
    if not untied:
        state["lm_head.weight"] = state["transformer.wte.weight"]
    d = tmp_path / "out-tiny"
    d.mkdir()
    c = hf.config
    torch.save({"model_args": dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd,
                                   block_size=c.n_positions, vocab_size=c.vocab_size, bias=True),
                "model": {f"_orig_mod.{k}": v for k, v in state.items()}, "iter_num": 5},
               d / "ckpt.pt")
    tok.save(str(d / "tokenizer.json"))
    bundle = load_model(d / "ckpt.pt")
    assert bundle.kind == "nanogpt"
    assert bundle.config.tie_word_embeddings is (not untied)
    if untied:
        assert torch.equal(bundle.model.unembed.weight, hf.lm_head.weight)
    _parity(hf, bundle)
