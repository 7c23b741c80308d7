"""Loaders for other tools' checkpoints: Hugging Face GPT-2 / GPT-1 and nanoGPT.

Parity tests build random models with ``transformers`` (a test-only dependency), save them
to ``tmp_path`` and check that our model gives the same logits and every attention map to
max abs diff <= 1e-4. Nothing is downloaded.
"""

from __future__ import annotations

import json
import pickle

import pytest
import torch
from hub_cache import peak_over_uniform

from gptviz import GPT, CheckpointError, GPTConfig, load_model
from gptviz.families import load_hf_gpt2, load_hf_openai_gpt, load_nanogpt, to_nanogpt_state_dict
from gptviz.io.tokenizer_files import read_meta_pkl

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")
transformers.logging.set_verbosity_error()
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol")

TOL = 1e-4
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "A GPT reads left to right, one token at a time.",
    "Attention! Every head looks back, never forward.",
    "hello world, hello model, hello attention maps",
    "Emoji 🙂 and 日本語 and tabs\tand\nnewlines too.",
] * 3
PROBE = "The lazy model reads attention maps, one token at a time!"


# ---------------------------------------------------------------------------- helpers
class Evil:
    """A pickle payload that would create a marker file if it were ever executed."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _gpt2_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


def _gpt1_tokenizer():
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>", end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    trainer = trainers.BpeTrainer(vocab_size=200, show_progress=False, special_tokens=["<unk>"],
                                  end_of_word_suffix="</w>")
    tok.train_from_iterator(SENTENCES, trainer)
    return tok


@pytest.fixture(scope="module")
def gpt2_tok():
    return _gpt2_tokenizer()


@pytest.fixture(scope="module")
def gpt1_tok():
    return _gpt1_tokenizer()


def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial weights: random LayerNorm gains/biases, biases, sharp attention."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if "ln" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * r)
            elif name.endswith("bias"):
                p.copy_(0.2 * r)
            elif "wte" in name or "wpe" in name or "embed" in name:
                p.copy_(0.5 * r)
            else:
                p.copy_(0.15 * r)


def _save_bpe(tok, d, *, files: bool = True, json_file: bool = False) -> None:
    d.mkdir(parents=True, exist_ok=True)
    if files:
        tok.model.save(str(d))  # vocab.json + merges.txt
    if json_file:
        tok.save(str(d / "tokenizer.json"))


def _ids(bundle, text: str = PROBE) -> torch.Tensor:
    ids = bundle.tokenizer.encode(text)
    assert len(ids) > 8
    return torch.tensor([ids])


def _assert_parity(hf_model, bundle, ids: torch.Tensor) -> None:
    hf_model.eval()
    with torch.no_grad():
        ref = hf_model(ids, output_attentions=True)
        out = bundle.model(ids, return_attn=True)
    assert out.logits.shape == ref.logits.shape
    assert (out.logits - ref.logits).abs().max().item() <= TOL
    assert len(out.attentions) == len(ref.attentions) == bundle.config.n_layer
    for ours, theirs in zip(out.attentions, ref.attentions):
        assert ours.shape == theirs.shape
        assert (ours - theirs).abs().max().item() <= TOL
    # The maps are not trivially uniform: the test would catch a wrong scale or mask.
    assert peak_over_uniform(out.attentions) > 1.5  # uniform rows give 1.0


def _gpt2(vocab_size: int, seed: int = 0, **kw):
    from transformers import GPT2Config, GPT2LMHeadModel

    args = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=vocab_size,
                bos_token_id=None, eos_token_id=None, attn_implementation="eager")
    args.update(kw)
    torch.manual_seed(seed)
    model = GPT2LMHeadModel(GPT2Config(**args))
    _randomize(model, seed)
    return model.eval()


def _gpt1(vocab_size: int, seed: int = 0, **kw):
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    args = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=vocab_size,
                attn_implementation="eager")
    args.update(kw)
    torch.manual_seed(seed)
    model = OpenAIGPTLMHeadModel(OpenAIGPTConfig(**args))
    _randomize(model, seed)
    return model.eval()


def _hf_gpt2_dir(tmp_path, tok, **kw):
    d = tmp_path / "gpt2-tiny"
    model = _gpt2(tok.get_vocab_size(), **kw)
    model.save_pretrained(d)
    _save_bpe(tok, d)
    return model, d


# ---------------------------------------------------------------------------- GPT-2
@pytest.mark.parametrize("n_head,n_embd", [(2, 32), (4, 64)])
def test_gpt2_parity_safetensors(tmp_path, gpt2_tok, n_head, n_embd):
    hf, d = _hf_gpt2_dir(tmp_path, gpt2_tok, n_head=n_head, n_embd=n_embd, seed=n_head)
    assert (d / "model.safetensors").is_file() and not (d / "tokenizer.json").exists()
    bundle = load_model(d)
    assert bundle.kind == "hf-gpt2"
    assert bundle.name == "gpt2-tiny"
    c = bundle.config
    assert (c.n_layer, c.n_head, c.n_embd, c.block_size) == (2, n_head, n_embd, 64)
    assert c.ln_placement == "pre" and c.final_ln and c.activation == "gelu_tanh"
    _assert_parity(hf, bundle, _ids(bundle))


def test_gpt2_tokenizer_matches_transformers(tmp_path, gpt2_tok):
    from transformers import GPT2Tokenizer

    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    bundle = load_hf_gpt2(d)
    theirs = GPT2Tokenizer.from_pretrained(str(d))
    for text in (PROBE, "  two  spaces, 🙂 emoji, 日本語\n", "hello world"):
        ids = bundle.tokenizer.encode(text)
        assert ids == theirs.encode(text, add_special_tokens=False)
        assert bundle.tokenizer.decode(ids) == text  # byte-level: exact round trip


def test_gpt2_parity_pytorch_bin_with_legacy_names(tmp_path, gpt2_tok):
    """Old GPT-2 files: pytorch_model.bin, no ``transformer.`` prefix, mask buffers, lm_head."""
    hf = _gpt2(gpt2_tok.get_vocab_size(), seed=3)
    d = tmp_path / "legacy"
    d.mkdir()
    hf.config.save_pretrained(d)
    state = {k.removeprefix("transformer."): v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = hf.lm_head.weight.detach().clone()
    for i in range(2):
        state[f"h.{i}.attn.bias"] = torch.tril(torch.ones(64, 64)).view(1, 1, 64, 64)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, d / "pytorch_model.bin")
    _save_bpe(gpt2_tok, d, files=False, json_file=True)
    bundle = load_model(d)
    assert bundle.kind == "hf-gpt2"
    _assert_parity(hf, bundle, _ids(bundle))


def test_gpt2_prefers_safetensors_over_bin(tmp_path, gpt2_tok):
    hf, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "pytorch_model.bin").write_bytes(b"not a torch file")
    _assert_parity(hf, load_model(d), _ids(load_model(d)))


def test_gpt2_sharded_safetensors(tmp_path, gpt2_tok):
    d = tmp_path / "sharded"
    hf = _gpt2(gpt2_tok.get_vocab_size(), seed=5)
    hf.save_pretrained(d, max_shard_size="40KB")
    assert (d / "model.safetensors.index.json").is_file()
    _save_bpe(gpt2_tok, d)
    bundle = load_model(d)
    _assert_parity(hf, bundle, _ids(bundle))


@pytest.mark.parametrize("kw", [
    {"scale_attn_by_inverse_layer_idx": True},
    {"reorder_and_upcast_attn": True},
    {"scale_attn_weights": False},
    {"activation_function": "gelu", "n_inner": 48},
    {"activation_function": "relu", "layer_norm_epsilon": 1e-3},
], ids=lambda kw: ",".join(kw))
def test_gpt2_variants_parity(tmp_path, gpt2_tok, kw):
    hf, d = _hf_gpt2_dir(tmp_path, gpt2_tok, **kw)
    bundle = load_model(d)
    _assert_parity(hf, bundle, _ids(bundle))


def test_gpt2_refuses_unsupported_variants(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    cfg = json.loads((d / "config.json").read_text())
    for change, words in (({"add_cross_attention": True}, "add_cross_attention"),
                          ({"activation_function": "swish"}, "activation_function")):
        (d / "config.json").write_text(json.dumps({**cfg, **change}))
        with pytest.raises(CheckpointError, match=words) as e:
            load_model(d)
        assert "config.json" in str(e.value)


# ---------------------------------------------------------------------------- GPT-1
def test_gpt1_parity_and_config(tmp_path, gpt1_tok):
    d = tmp_path / "openai-gpt-tiny"
    hf = _gpt1(gpt1_tok.get_vocab_size(), seed=1)
    hf.save_pretrained(d)
    _save_bpe(gpt1_tok, d)
    bundle = load_model(d)
    assert bundle.kind == "hf-openai-gpt"
    c = bundle.config
    assert c.ln_placement == "post" and not c.final_ln
    # transformers' GPT-1 ACT_FNS["gelu"] is gelu_new, the tanh approximation.
    assert c.activation == "gelu_tanh"
    _assert_parity(hf, bundle, _ids(bundle))


@pytest.mark.parametrize("n_head,n_embd", [(4, 64)])
def test_gpt1_parity_bin_legacy_names(tmp_path, gpt1_tok, n_head, n_embd):
    hf = _gpt1(gpt1_tok.get_vocab_size(), seed=2, n_head=n_head, n_embd=n_embd)
    d = tmp_path / "gpt1-bin"
    d.mkdir()
    hf.config.save_pretrained(d)
    state = {k.removeprefix("transformer."): v.clone() for k, v in hf.state_dict().items()}
    state["lm_head.weight"] = hf.lm_head.weight.detach().clone()
    state["position_ids"] = torch.arange(64)
    torch.save(state, d / "pytorch_model.bin")
    _save_bpe(gpt1_tok, d)
    bundle = load_model(d)
    _assert_parity(hf, bundle, _ids(bundle))


def test_gpt1_tokenizer_matches_transformers_and_lowercases(tmp_path, gpt1_tok):
    from transformers import OpenAIGPTTokenizer

    d = tmp_path / "gpt1tok"
    _save_bpe(gpt1_tok, d)
    hf = _gpt1(gpt1_tok.get_vocab_size())
    hf.save_pretrained(d)
    bundle = load_hf_openai_gpt(d)
    theirs = OpenAIGPTTokenizer.from_pretrained(str(d))
    text = "Hello World, the LAZY dog reads!"
    ids = bundle.tokenizer.encode(text)
    assert ids == theirs.encode(text, add_special_tokens=False)
    # Lowercased, punctuation split off: no exact round trip (documented).
    assert bundle.tokenizer.decode(ids) == "hello world , the lazy dog reads !"
    # Word-final pieces display with a visible space instead of the raw </w> suffix.
    shown = [bundle.tokenizer.display(i) for i in ids]
    assert not any("</w>" in s for s in shown)
    assert shown[-1] == "!·"
    # Characters GPT-1 never saw become <unk>, not an error.
    assert bundle.tokenizer.encode("§")[0] == gpt1_tok.token_to_id("<unk>")


def test_gpt1_tokenizer_json_is_used(tmp_path, gpt1_tok):
    d = tmp_path / "gpt1json"
    _save_bpe(gpt1_tok, d, files=False, json_file=True)
    hf = _gpt1(gpt1_tok.get_vocab_size())
    hf.save_pretrained(d)
    bundle = load_model(d)
    assert bundle.tokenizer.encode("Hello World") == gpt1_tok.encode("Hello World").ids


def test_gpt1_refuses_unknown_activation(tmp_path, gpt1_tok):
    d = tmp_path / "g1"
    hf = _gpt1(gpt1_tok.get_vocab_size())
    hf.save_pretrained(d)
    _save_bpe(gpt1_tok, d)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "afn": "silu"}))
    with pytest.raises(CheckpointError, match="afn 'silu'"):
        load_model(d)


# ---------------------------------------------------------------------------- nanoGPT
STOI = {ch: i for i, ch in enumerate(sorted(set("".join(SENTENCES[:4]) + "\n")))}


def _nanogpt_ckpt(bias: bool = True, seed: int = 0, compiled: bool = False,
                  mask_buffers: bool = False):
    cfg = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=len(STOI) + 3,
                    bias=bias)
    torch.manual_seed(seed)
    ours = GPT(cfg)
    _randomize(ours, seed)
    ours.eval()
    state = to_nanogpt_state_dict(ours)
    if mask_buffers:  # nanoGPT without flash attention keeps its causal mask as "attn.bias"
        for i in range(cfg.n_layer):
            mask = torch.tril(torch.ones(32, 32)).view(1, 1, 32, 32)
            state[f"transformer.h.{i}.attn.bias"] = mask
    if compiled:
        state = {f"_orig_mod.{k}": v for k, v in state.items()}
    ckpt = {
        "model": state,
        "model_args": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=bias,
                           vocab_size=cfg.vocab_size, dropout=0.1),
        "optimizer": {"state": {0: {"step": torch.tensor(3.0),
                                    "exp_avg": torch.zeros(4)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.95), "params": [0]}]},
        "iter_num": 250,
        "best_val_loss": torch.tensor(1.25),
        "config": {"dataset": "shakespeare_char", "learning_rate": 1e-3, "compile": compiled},
    }
    return ours, ckpt


def _write_meta(path, stoi=STOI):
    with open(path, "wb") as f:
        pickle.dump({"vocab_size": len(stoi), "stoi": stoi,
                     "itos": {i: s for s, i in stoi.items()}}, f)


@pytest.mark.parametrize("bias,compiled,mask_buffers", [
    (True, False, False), (False, True, False), (True, True, True)])
def test_nanogpt_logits_equal(tmp_path, bias, compiled, mask_buffers):
    ours, ckpt = _nanogpt_ckpt(bias=bias, compiled=compiled, mask_buffers=mask_buffers)
    d = tmp_path / "out-shakespeare-char"
    d.mkdir()
    torch.save(ckpt, d / "ckpt.pt")
    _write_meta(d / "meta.pkl")
    bundle = load_model(d / "ckpt.pt")
    assert bundle.kind == "nanogpt"
    c = bundle.config
    assert c.bias == bias and c.activation == "gelu" and c.ln_placement == "pre" and c.final_ln
    assert bundle.metadata["iter_num"] == 250
    assert bundle.metadata["best_val_loss"] == pytest.approx(1.25)
    assert bundle.metadata["config"]["dataset"] == "shakespeare_char"
    json.dumps(bundle.metadata)  # plain JSON
    ids = torch.tensor([bundle.tokenizer.encode("hello world, the lazy dog")])
    with torch.no_grad():
        assert torch.equal(bundle.model(ids).logits, ours(ids).logits)
    # Also reachable through the directory holding ckpt.pt.
    assert load_model(d).kind == "nanogpt"


def test_nanogpt_char_tokenizer_round_trip(tmp_path):
    d = tmp_path / "n"
    d.mkdir()
    _, ckpt = _nanogpt_ckpt()
    torch.save(ckpt, d / "ckpt.pt")
    _write_meta(d / "meta.pkl")
    tok = load_nanogpt(d / "ckpt.pt").tokenizer
    text = "The lazy dog,\nhello world!"
    ids = tok.encode(text)
    assert ids == [STOI[ch] for ch in text]
    assert tok.decode(ids) == text
    assert tok.display(STOI[" "]) == "·" and tok.display(STOI["\n"]) == "↵"


def test_nanogpt_meta_in_data_dir_layout(tmp_path):
    """nanoGPT's repo layout: out-<x>/ckpt.pt and data/<dataset>/meta.pkl."""
    _, ckpt = _nanogpt_ckpt()
    (tmp_path / "out").mkdir()
    (tmp_path / "data" / "shakespeare_char").mkdir(parents=True)
    torch.save(ckpt, tmp_path / "out" / "ckpt.pt")
    _write_meta(tmp_path / "data" / "shakespeare_char" / "meta.pkl")
    bundle = load_model(tmp_path / "out" / "ckpt.pt")
    assert bundle.tokenizer.encode("dog") == [STOI[c] for c in "dog"]


def test_nanogpt_gpt2_bpe_tokenizer_next_to_ckpt(tmp_path, gpt2_tok):
    cfg = GPTConfig(n_layer=1, n_head=2, n_embd=16, block_size=16,
                    vocab_size=gpt2_tok.get_vocab_size() + 5)
    ckpt = {"model": to_nanogpt_state_dict(GPT(cfg)),
            "model_args": dict(n_layer=1, n_head=2, n_embd=16, block_size=16, bias=True,
                               vocab_size=cfg.vocab_size, dropout=0.0)}
    torch.save(ckpt, tmp_path / "model.pt")
    _save_bpe(gpt2_tok, tmp_path)
    bundle = load_model(tmp_path / "model.pt")
    assert bundle.tokenizer.decode(bundle.tokenizer.encode("hello 🙂")) == "hello 🙂"


def test_nanogpt_missing_tokenizer_names_files(tmp_path):
    _, ckpt = _nanogpt_ckpt()
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with pytest.raises(CheckpointError) as e:
        load_model(tmp_path / "ckpt.pt")
    msg = str(e.value)
    for name in ("tokenizer.json", "vocab.json", "merges.txt", "meta.pkl", "ckpt.pt"):
        assert name in msg


def test_nanogpt_weights_do_not_match_model_args(tmp_path):
    _, ckpt = _nanogpt_ckpt()
    ckpt["model_args"]["n_embd"] = 64
    torch.save(ckpt, tmp_path / "ckpt.pt")
    _write_meta(tmp_path / "meta.pkl")
    with pytest.raises(CheckpointError, match=r"ckpt\.pt.*shape mismatch"):
        load_model(tmp_path / "ckpt.pt")


def test_nanogpt_not_a_checkpoint_dict(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointError, match="model_args"):
        load_model(tmp_path / "x.pt")


def test_nanogpt_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    _, ckpt = _nanogpt_ckpt()
    ckpt["config"] = {"payload": Evil(str(marker))}
    torch.save(ckpt, tmp_path / "ckpt.pt")
    _write_meta(tmp_path / "meta.pkl")
    with pytest.raises(CheckpointError, match="will not execute pickled code") as e:
        load_model(tmp_path / "ckpt.pt")
    assert "ckpt.pt" in str(e.value)
    assert not marker.exists()


def test_meta_pkl_malicious_pickle_is_not_executed(tmp_path):
    marker = tmp_path / "PWNED"
    _, ckpt = _nanogpt_ckpt()
    torch.save(ckpt, tmp_path / "ckpt.pt")
    with open(tmp_path / "meta.pkl", "wb") as f:
        pickle.dump({"stoi": STOI, "x": Evil(str(marker))}, f)
    with pytest.raises(CheckpointError, match="meta.pkl.*will not execute"):
        load_model(tmp_path / "ckpt.pt")
    assert not marker.exists()
    with pytest.raises(CheckpointError, match="meta.pkl"):
        read_meta_pkl(tmp_path / "meta.pkl")
    assert not marker.exists()


def test_meta_pkl_truncated(tmp_path):
    _write_meta(tmp_path / "meta.pkl")
    data = (tmp_path / "meta.pkl").read_bytes()
    (tmp_path / "meta.pkl").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="meta.pkl"):
        read_meta_pkl(tmp_path / "meta.pkl")


def test_to_nanogpt_state_dict_refuses_gpt1_shape():
    with pytest.raises(ValueError, match="pre-LN"):
        to_nanogpt_state_dict(GPT(GPTConfig(n_layer=1, n_head=1, n_embd=8, block_size=8,
                                            vocab_size=10, ln_placement="post",
                                            final_ln=False)))


# ---------------------------------------------------------------------------- broken files
def test_truncated_safetensors(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated"):
        load_model(d)


def test_truncated_bin(tmp_path, gpt2_tok):
    hf, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "model.safetensors").unlink()
    torch.save(hf.state_dict(), d / "pytorch_model.bin")
    data = (d / "pytorch_model.bin").read_bytes()
    (d / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*truncated"):
        load_model(d)


def test_malicious_bin_is_not_executed(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "model.safetensors").unlink()
    marker = tmp_path / "PWNED"
    torch.save({"transformer.wte.weight": torch.zeros(2), "x": Evil(str(marker))},
               d / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin.*will not execute"):
        load_model(d)
    # A raw pickle (not torch's zip format) with os.system is refused as well.
    with open(d / "pytorch_model.bin", "wb") as f:
        pickle.dump({"x": Evil(str(marker))}, f)
    with pytest.raises(CheckpointError, match=r"pytorch_model\.bin"):
        load_model(d)
    assert not marker.exists()


def test_config_weights_shape_mismatch(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = 64
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch"):
        load_model(d)


def test_config_more_layers_than_weights(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing .* tensors .*h\.2\."):
        load_model(d)


def test_missing_tokenizer(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "vocab.json").unlink()
    (d / "merges.txt").unlink()
    with pytest.raises(CheckpointError) as e:
        load_model(d)
    assert all(n in str(e.value) for n in ("tokenizer.json", "vocab.json", "merges.txt"))


def test_half_a_tokenizer(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "merges.txt").unlink()
    with pytest.raises(CheckpointError, match=r"merges\.txt: file is missing"):
        load_model(d)


def test_tokenizer_larger_than_vocab(tmp_path, gpt2_tok):
    d = tmp_path / "small"
    _gpt2(50).save_pretrained(d)
    _save_bpe(gpt2_tok, d)
    with pytest.raises(CheckpointError, match="vocab_size is 50"):
        load_model(d)


def test_missing_weights(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors or pytorch_model.bin"):
        load_model(d)


@pytest.mark.parametrize("text,words", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"model_type": "gpt2", "n_layer": "two", "n_head": 2, "n_embd": 32, '
     '"n_positions": 64, "vocab_size": 300}', "n_layer must be a positive integer"),
    ('{"model_type": "gpt2", "n_layer": 2, "n_head": 3, "n_embd": 32, '
     '"n_positions": 64, "vocab_size": 300}', "divisible"),
    ('{"model_type": "gpt2", "n_head": 2}', "missing 'n_layer'"),
    ('{"model_type": "openai-gpt", "n_layer": 2}', "missing 'n_head'"),
])
def test_garbage_config(tmp_path, gpt2_tok, text, words):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    (d / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=words) as e:
        load_model(d)
    assert "config.json" in str(e.value)


def test_unknown_model_type(tmp_path, gpt2_tok):
    _, d = _hf_gpt2_dir(tmp_path, gpt2_tok)
    cfg = json.loads((d / "config.json").read_text())
    (d / "config.json").write_text(json.dumps({**cfg, "model_type": "mamba"}))
    with pytest.raises(CheckpointError, match="unsupported model_type 'mamba'"):
        load_model(d)


def test_nonexistent_paths():
    with pytest.raises(CheckpointError, match="no such file"):
        load_model("/nonexistent/gptviz/model")
    with pytest.raises(CheckpointError, match="no such file"):
        load_nanogpt("/nonexistent/ckpt.pt")
    with pytest.raises(CheckpointError, match="no such file"):
        load_hf_gpt2("/nonexistent/gpt2")
    with pytest.raises(CheckpointError, match="no such file"):
        load_hf_openai_gpt("/nonexistent/gpt1")
