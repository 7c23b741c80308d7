"""Our checkpoint format: save_checkpoint -> load_model round trip and its errors."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

from gptviz import GPT, CheckpointError, GPTConfig, Tokenizer, load_model, save_checkpoint
from gptviz.io.checkpoint import load_gptviz_checkpoint

TEXT = ["the model reads left to right", "attention looks back, never forward 🙂",
        "every head, every layer, every step"] * 4


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(TEXT, trainers.BpeTrainer(
        vocab_size=300, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return Tokenizer(hf)


def _model(tokenizer: Tokenizer, **kw) -> GPT:
    args = dict(n_layer=2, n_head=2, n_embd=32, block_size=32,
                vocab_size=tokenizer.vocab_size + 4, name="tiny")
    args.update(kw)
    torch.manual_seed(0)
    model = GPT(GPTConfig(**args))
    with torch.no_grad():  # non-trivial LayerNorms and biases
        for name, p in model.named_parameters():
            if "ln" in name:
                p.add_(0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model.eval()


@pytest.fixture
def saved(tmp_path, tokenizer):
    model = _model(tokenizer)
    d = save_checkpoint(tmp_path / "ckpt", model, tokenizer,
                        {"trained_on": "unit test", "val_loss": 1.5, "steps": [1, 2]})
    return model, d


@pytest.mark.parametrize("kw", [
    {},
    {"ln_placement": "post", "final_ln": False, "activation": "gelu_tanh"},
    {"bias": False, "activation": "relu", "n_inner": 48, "layer_norm_eps": 1e-6},
    {"n_classes": 3, "class_names": ("neg", "neu", "pos")},
], ids=["gpt2-like", "gpt1-like", "nobias-relu", "classifier"])
def test_round_trip_identical(tmp_path, tokenizer, kw):
    model = _model(tokenizer, **kw)
    d = save_checkpoint(tmp_path / "m", model, tokenizer, {"note": "x"})
    assert sorted(p.name for p in d.iterdir()) == [
        "config.json", "metadata.json", "model.safetensors", "tokenizer.json"]
    bundle = load_model(d)
    assert bundle.kind == "gptviz"
    assert bundle.config == model.config
    assert not bundle.model.training
    ids = torch.tensor([tokenizer.encode("attention looks back 🙂 every step")])
    with torch.no_grad():
        a = model(ids, return_attn=True)
        b = bundle.model(ids, return_attn=True)
    assert torch.equal(a.logits, b.logits)
    assert all(torch.equal(x, y) for x, y in zip(a.attentions, b.attentions))
    if model.classifier is not None:
        assert torch.equal(model.classify(a.hidden), bundle.model.classify(b.hidden))
    # Same weights, same hash.
    h = bundle.weights_hash()
    assert h == load_model(d).weights_hash()


def test_metadata_and_tokenizer_preserved(saved, tokenizer):
    model, d = saved
    bundle = load_model(d)
    assert bundle.metadata == {"trained_on": "unit test", "val_loss": 1.5, "steps": [1, 2]}
    assert bundle.name == "tiny"
    assert bundle.source == str(d)
    text = "every head 🙂 日本語\n\tcontrol\x01"
    assert bundle.tokenizer.encode(text) == tokenizer.encode(text)
    assert bundle.tokenizer.decode(bundle.tokenizer.encode(text)) == text


def test_metadata_optional(saved):
    _, d = saved
    (d / "metadata.json").unlink()
    assert load_model(d).metadata == {}


def test_weights_hash_changes_with_weights(saved, tokenizer):
    model, d = saved
    h = load_model(d).weights_hash()
    with torch.no_grad():
        model.wte.weight[0, 0] += 1.0
    d2 = save_checkpoint(d.parent / "other", model, tokenizer)
    assert load_model(d2).weights_hash() != h


def test_truncated_safetensors(saved):
    _, d = saved
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) - 100])
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*truncated or corrupt"):
        load_model(d)


def test_missing_weights(saved):
    _, d = saved
    (d / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: file is missing"):
        load_model(d)


def test_shape_mismatch(saved):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_embd"] = 64
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"model\.safetensors.*shape mismatch.*wte\.weight"):
        load_model(d)


def test_missing_tensors(saved):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["n_layer"] = 3
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"missing \d+ tensors .*h\.2\."):
        load_model(d)


def test_missing_tokenizer(saved):
    _, d = saved
    (d / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: file is missing"):
        load_model(d)


def test_broken_tokenizer(saved):
    _, d = saved
    (d / "tokenizer.json").write_text('{"version": "1.0", "model": 3}')
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: not a valid tokenizers file"):
        load_model(d)


def test_tokenizer_larger_than_vocab(saved):
    _, d = saved
    cfg = json.loads((d / "config.json").read_text())
    cfg["vocab_size"] = 10
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="vocab_size is 10"):
        load_model(d)


@pytest.mark.parametrize("text,words", [
    ("\x00\x01garbage", "not valid JSON"),
    ('"just a string"', "expected a JSON object"),
    ('{"n_layer": 2, "n_head": 3, "n_embd": 32, "block_size": 32, "vocab_size": 300}',
     "divisible"),
    ('{"n_layer": "two", "n_head": 2, "n_embd": 32, "block_size": 32, "vocab_size": 300}',
     "config.json"),
    ('{"n_layer": 2, "activation": "swish"}', "unknown activation"),
])
def test_garbage_config(saved, text, words):
    _, d = saved
    (d / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=words) as e:
        load_model(d)
    assert "config.json" in str(e.value)


def test_garbage_metadata(saved):
    _, d = saved
    (d / "metadata.json").write_text("{oops")
    with pytest.raises(CheckpointError, match=r"metadata\.json: not valid JSON"):
        load_model(d)


def test_unknown_model_type(saved):
    _, d = saved
    (d / "config.json").write_text(json.dumps({"model_type": "bert", "n_layer": 2}))
    with pytest.raises(CheckpointError, match="unsupported model_type 'bert'"):
        load_model(d)


def test_nonexistent_and_wrong_paths(tmp_path):
    with pytest.raises(CheckpointError, match="no such file or directory"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json or ckpt.pt"):
        load_model(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(CheckpointError, match="not a model directory"):
        load_model(tmp_path / "notes.txt")
    with pytest.raises(CheckpointError, match="file is missing"):
        load_gptviz_checkpoint(tmp_path / "empty")
