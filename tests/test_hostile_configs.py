"""Hostile model configs and weights, in all four families: refused with one clear line that
names the file, before the model is built (no allocation follows an absurd size).

Each case writes a valid tiny checkpoint to ``tmp_path``, edits one value of its
``config.json`` / ``model_args`` / weights, and checks the :class:`CheckpointError`. "Before
the model is built" is checked by making :class:`GPT` itself fail in the loaders: a case that
reached ``GPT(config)`` would fail with that ``AssertionError`` instead.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from gptviz.cli import main
from gptviz.families import load_model, to_nanogpt_state_dict
from gptviz.io.checkpoint import CheckpointError, save_checkpoint

BIG = 10 ** 9


@pytest.fixture
def no_model_built(monkeypatch):
    """Make building a GPT fail in every loader: a refusal must come first."""
    def refuse(*args, **kwargs):
        raise AssertionError("a GPT was built from a config that should have been refused")

    for module in ("gptviz.io.checkpoint", "gptviz.families.hf_common",
                   "gptviz.families.nanogpt"):
        monkeypatch.setattr(f"{module}.GPT", refuse)


def _edit_json(path, **changes):
    d = json.loads(path.read_text())
    d.update(changes)
    path.write_text(json.dumps(d))  # NaN/Infinity written as JSON's extensions


def _refused(path, *words, name="config.json"):
    with pytest.raises(CheckpointError) as e:
        load_model(path)
    msg = str(e.value)
    assert name in msg and "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


# ---------------------------------------------------------------------- models on disk
@pytest.fixture
def native(tmp_path, tiny_bundle):
    return save_checkpoint(tmp_path / "ckpt", tiny_bundle.model, tiny_bundle.tokenizer)


def _hf_dir(tmp_path, tokenizer, kind: str):
    transformers = pytest.importorskip("transformers")
    args = dict(n_layer=2, n_head=2, n_embd=32, n_positions=64,
                vocab_size=tokenizer.vocab_size)
    if kind == "gpt2":
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**args))
    else:
        model = transformers.OpenAIGPTLMHeadModel(transformers.OpenAIGPTConfig(**args))
    d = tmp_path / kind
    model.save_pretrained(d)
    tokenizer.save(d / "tokenizer.json")
    return d


@pytest.fixture
def gpt2(tmp_path, tiny_tokenizer):
    return _hf_dir(tmp_path, tiny_tokenizer, "gpt2")


@pytest.fixture
def gpt1(tmp_path, tiny_tokenizer):
    return _hf_dir(tmp_path, tiny_tokenizer, "openai-gpt")


def _nano_args(bundle):
    c = bundle.config
    return dict(n_layer=c.n_layer, n_head=c.n_head, n_embd=c.n_embd, block_size=c.block_size,
                vocab_size=c.vocab_size, bias=True, dropout=0.0)


def _write_nano(tmp_path, bundle, args=None, state=None):
    d = tmp_path / "out-nano"
    d.mkdir(exist_ok=True)
    torch.save({"model_args": args or _nano_args(bundle),
                "model": state or to_nanogpt_state_dict(bundle.model)}, d / "ckpt.pt")
    bundle.tokenizer.save(d / "tokenizer.json")
    return d / "ckpt.pt"


def test_the_unedited_checkpoints_load(native, gpt2, gpt1, tmp_path, tiny_bundle):
    """The fixtures themselves are valid: every refusal below is the edit's doing."""
    assert load_model(native).kind == "gptviz"
    assert load_model(gpt2).kind == "hf-gpt2"
    assert load_model(gpt1).kind == "hf-openai-gpt"
    assert load_model(_write_nano(tmp_path, tiny_bundle)).kind == "nanogpt"


# ---------------------------------------------------------------------- our format
NATIVE_CASES = [
    (dict(n_layer=1_000_000), ("n_layer", "beyond any real GPT")),
    (dict(n_layer=1e6), ("n_layer must be a whole number",)),
    (dict(vocab_size=BIG), ("vocab_size", "beyond any real GPT")),
    (dict(block_size=BIG), ("block_size", "beyond any real GPT")),
    (dict(n_embd=BIG), ("n_embd", "beyond any real GPT")),
    (dict(n_layer="2"), ("n_layer must be a whole number", "'2'")),
    (dict(n_layer=2.5), ("n_layer must be a whole number", "2.5")),
    (dict(n_head=-4), ("n_head must be positive",)),
    (dict(bias="no"), ("bias must be true or false", "'no'")),
    (dict(final_ln="false"), ("final_ln must be true or false",)),
    (dict(tie_word_embeddings=0), ("tie_word_embeddings must be true or false",)),
    (dict(layer_norm_eps=float("nan")), ("layer_norm_eps must be a finite number",)),
    (dict(layer_norm_eps=-1e-5), ("layer_norm_eps must be a positive number",)),
    (dict(layer_norm_eps=0), ("layer_norm_eps must be a positive number",)),
    (dict(layer_norm_eps=10 ** 400), ("layer_norm_eps must be a finite number",)),
    (dict(dropout=float("inf")), ("dropout must be a finite number",)),
    (dict(n_inner=0), ("n_inner must be positive",)),
    (dict(activation=["gelu"]), ("activation must be one of",)),
    (dict(class_names="abc"), ("class_names must be a list of strings",)),
    # within the limits, but no file of this size can back them
    (dict(vocab_size=1 << 22), ("at least", "parameters", "model.safetensors holds only")),
    (dict(n_embd=4096, n_head=4), ("at least", "parameters")),
    (dict(n_layer=1000), ("1000 layers", "weight tensors")),
    (dict(block_size=1 << 20, positional_embedding_type="rotary"), ("memory",)),
]


@pytest.mark.parametrize("changes,words", NATIVE_CASES,
                         ids=[next(iter(c)) + "=" + repr(v)[:12] for c, _ in NATIVE_CASES
                              for v in [next(iter(c.values()))]])
def test_native_config_refused_before_the_model_is_built(native, no_model_built, changes,
                                                         words):
    _edit_json(native / "config.json", **changes)
    _refused(native, *words)


def test_native_number_of_too_many_digits(native, no_model_built):
    text = (native / "config.json").read_text().replace('"n_layer": 2', '"n_layer": ' + "9" * 5000)
    (native / "config.json").write_text(text)
    _refused(native, "not valid JSON", "digits")


@pytest.mark.parametrize("depth", [150, 100_000])  # past our limit; past Python's parser's
def test_deeply_nested_config(native, no_model_built, depth):
    d = json.loads((native / "config.json").read_text())
    text = json.dumps(d)[:-1] + ', "deep": ' + "[" * depth + "]" * depth + "}"
    (native / "config.json").write_text(text)
    _refused(native, "nested too deeply")


def test_deeply_nested_metadata_is_refused(native):
    (native / "metadata.json").write_text("[" * 100_000 + "]" * 100_000)
    _refused(native, "nested too deeply", name="metadata.json")
    (native / "metadata.json").write_text('{"a": ' + "[" * 101 + "]" * 101 + "}")
    _refused(native, "nested too deeply", name="metadata.json")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_native_non_finite_weights(native, value):
    path = native / "model.safetensors"
    state = load_file(str(path))
    state["h.1.mlp.c_fc.weight"][3, 5] = value
    save_file(state, str(path))
    msg = _refused(native, "h.1.mlp.c_fc.weight", "NaN or infinite", "1 ", name="model.safetensors")
    assert "corrupt" in msg


# ---------------------------------------------------------------------- Hugging Face
HF_CASES = [
    (dict(n_layer=1_000_000), ("n_layer", "beyond any real GPT")),
    (dict(vocab_size=BIG), ("vocab_size", "beyond any real GPT")),
    (dict(n_positions=BIG), ("n_positions", "beyond any real GPT")),
    (dict(n_embd=BIG), ("n_embd", "beyond any real GPT")),
    (dict(n_embd=1 << 20, n_head=2), ("n_embd", "beyond any real GPT")),
    (dict(vocab_size=1 << 21), ("at least", "parameters")),
    (dict(n_layer=500), ("500 layers",)),
    (dict(n_layer="2"), ("n_layer must be a positive integer",)),
    (dict(n_head=2.5), ("n_head must be a positive integer",)),
    (dict(layer_norm_epsilon=float("nan")), ("layer_norm_epsilon must be a positive number",)),
    (dict(layer_norm_epsilon=-1e-5), ("layer_norm_epsilon must be a positive number",)),
    (dict(layer_norm_epsilon=10 ** 400), ("layer_norm_epsilon must be a positive number",)),
    (dict(tie_word_embeddings="false"), ("tie_word_embeddings must be true or false",)),
]
GPT2_ONLY = [
    (dict(scale_attn_weights="false"), ("scale_attn_weights must be true or false",)),
    (dict(scale_attn_by_inverse_layer_idx="no"), ("scale_attn_by_inverse_layer_idx",)),
    (dict(add_cross_attention="no"), ("add_cross_attention must be true or false",)),
    (dict(activation_function=["gelu"]), ("activation_function", "is not supported")),
    (dict(n_inner=BIG), ("n_inner", "beyond any real GPT")),
]
GPT1_ONLY = [
    (dict(afn=5), ("afn 5 is not supported",)),
    (dict(afn={"gelu": 1}), ("afn", "is not supported")),
]


@pytest.mark.parametrize("changes,words", HF_CASES + GPT2_ONLY)
def test_gpt2_config_refused_before_the_model_is_built(gpt2, no_model_built, changes, words):
    _edit_json(gpt2 / "config.json", **changes)
    _refused(gpt2, *words)


@pytest.mark.parametrize("changes,words", HF_CASES + GPT1_ONLY)
def test_gpt1_config_refused_before_the_model_is_built(gpt1, no_model_built, changes, words):
    _edit_json(gpt1 / "config.json", **changes)
    _refused(gpt1, *words)


@pytest.mark.parametrize("family", ["gpt2", "gpt1"])
def test_hf_non_finite_weights(request, family):
    d = request.getfixturevalue(family)
    path = d / "model.safetensors"
    state = load_file(str(path))
    key = next(k for k in sorted(state) if k.endswith("attn.c_attn.weight"))
    state[key][0, 0] = float("nan")
    save_file(state, str(path), metadata={"format": "pt"})
    _refused(d, "c_attn.weight", "NaN or infinite", name="model.safetensors")


# ---------------------------------------------------------------------- nanoGPT
NANO_CASES = [
    (dict(n_layer=1_000_000), ("n_layer", "beyond any real GPT")),
    (dict(vocab_size=BIG), ("vocab_size", "beyond any real GPT")),
    (dict(block_size=BIG), ("block_size", "beyond any real GPT")),
    (dict(n_embd=BIG), ("n_embd", "beyond any real GPT")),
    (dict(vocab_size=1 << 22), ("at least", "parameters")),
    (dict(n_layer=300), ("300 layers",)),
    (dict(n_layer="2"), ("n_layer must be a positive integer",)),
    (dict(n_embd=32.0), ("n_embd must be a positive integer",)),
    (dict(bias="false"), ("bias", "must be true or false")),
]


@pytest.mark.parametrize("changes,words", NANO_CASES)
def test_nanogpt_model_args_refused_before_the_model_is_built(tmp_path, tiny_bundle,
                                                              no_model_built, changes, words):
    args = {**_nano_args(tiny_bundle), **changes}
    path = _write_nano(tmp_path, tiny_bundle, args=args)
    _refused(path, *words, name="ckpt.pt")


def test_nanogpt_non_finite_weights(tmp_path, tiny_bundle):
    state = to_nanogpt_state_dict(tiny_bundle.model)
    state["transformer.wte.weight"] = state["transformer.wte.weight"].clone()
    state["transformer.wte.weight"][7, 1] = float("inf")
    state["lm_head.weight"] = state["transformer.wte.weight"]
    path = _write_nano(tmp_path, tiny_bundle, state=state)
    _refused(path, "wte.weight", "NaN or infinite", name="ckpt.pt")


# ---------------------------------------------------------------------- through the CLI
@pytest.mark.parametrize("family", ["native", "gpt2", "gpt1"])
def test_cli_says_one_line(request, capsys, family):
    d = request.getfixturevalue(family)
    _edit_json(d / "config.json", n_layer=1_000_000)
    capsys.readouterr()  # what building the fixture printed (transformers' progress bars)
    assert main(["info", "--model", str(d)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "n_layer" in err and "\n" not in err
