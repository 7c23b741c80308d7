"""Hostile folders for the later Hugging Face families (GPT-Neo, GPT-NeoX, Llama, Qwen2) and
hostile names and caches for the hub lookup: each is refused with one clear line (a
:class:`CheckpointError`), never a traceback, a hang or a memory spike.

Every case starts from a valid tiny ``save_pretrained`` folder (checked to load) and edits
one thing. The hub cases run with every socket refused: a connection attempt fails the test.
"""

from __future__ import annotations

import json
import os
import shutil
import struct

import pytest
import torch
from hub_cache import add_to_cache, fail_after, refuse_network
from safetensors.torch import load_file, save_file

from gptviz.families import load_model
from gptviz.families.hub import cached_models, resolve_name
from gptviz.io.checkpoint import CheckpointError

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

HUGE = 10 ** 400  # an integer JSON allows and no float holds


def _models(vocab: int) -> dict:
    return {
        "neo": transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(
            vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4,
            max_position_embeddings=64, attention_types=[[["global", "local"], 1]],
            window_size=4)),
        "neox": transformers.GPTNeoXForCausalLM(transformers.GPTNeoXConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=4, max_position_embeddings=64, rotary_pct=0.5,
            tie_word_embeddings=False)),
        "llama": transformers.LlamaForCausalLM(transformers.LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
            tie_word_embeddings=False)),
        "qwen2": transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
            vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)),
    }


@pytest.fixture(scope="module")
def saved(tmp_path_factory, tiny_tokenizer):
    """The four tiny folders, saved once."""
    root = tmp_path_factory.mktemp("families")
    out = {}
    for name, model in _models(tiny_tokenizer.vocab_size).items():
        model.save_pretrained(root / name, safe_serialization=True)
        tiny_tokenizer.save(root / name / "tokenizer.json")
        out[name] = root / name
    return out


@pytest.fixture
def copy(saved, tmp_path):
    def make(name):
        d = tmp_path / name
        shutil.copytree(saved[name], d)
        return d
    return make


def _edit_config(d, fn):
    cfg = json.loads((d / "config.json").read_text())
    fn(cfg)
    (d / "config.json").write_text(json.dumps(cfg, allow_nan=True))


def _refused(d, *words):
    with pytest.raises(CheckpointError) as e:
        load_model(d)
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert w in msg, msg
    return msg


def test_the_unedited_folders_load(saved):
    for name, d in saved.items():
        assert load_model(d).config.n_layer == 2, name


# ---------------------------------------------------------------------- rotary settings
@pytest.mark.parametrize("name, params, words", [
    ("neox", {"partial_rotary_factor": 0.5, "rope_type": "linear", "factor": HUGE},
     ("factor must be a positive number",)),
    ("llama", {"rope_type": "dynamic", "factor": HUGE}, ("factor must be a positive number",)),
    ("llama", {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": HUGE},
     ("original_max_position_embeddings", "beyond any real context")),
])
def test_rope_numbers_no_float_holds_are_refused(copy, name, params, words):
    d = copy(name)
    _edit_config(d, lambda c: c.__setitem__("rope_parameters", params))
    _refused(d, "config.json", *words)


def test_a_legacy_rope_scaling_that_contradicts_rope_parameters_is_refused(copy):
    """Not silently dropped: the file says two things and either may be what was trained."""
    d = copy("llama")
    _edit_config(d, lambda c: c.__setitem__("rope_scaling", {"type": "yarn", "factor": 4}))
    _refused(d, "config.json", "rope_parameters says", "'yarn'")


# ---------------------------------------------------------------------- weights
@pytest.mark.parametrize("name, key, how", [
    ("neo", "transformer.h.0.attn.attention.k_proj.weight", "flat"),
    ("llama", "model.layers.0.self_attn.v_proj.weight", "flat"),
    ("llama", "model.layers.1.self_attn.k_proj.weight", "transposed"),
    ("llama", "model.layers.0.self_attn.q_proj.weight", "scalar"),
    ("qwen2", "model.layers.0.self_attn.v_proj.weight", "3-D"),
])
def test_qkv_tensors_that_cannot_be_stacked_are_refused(copy, name, key, how):
    d = copy(name)
    state = load_file(str(d / "model.safetensors"))
    t = state[key]
    state[key] = {"flat": t.flatten(), "transposed": t.t().contiguous(),
                  "scalar": t.flatten()[0].clone(), "3-D": t[None]}[how]
    save_file(state, str(d / "model.safetensors"))
    _refused(d, "model.safetensors", "cannot be stacked")


def _shard(d, edit):
    state = load_file(str(d / "model.safetensors"))
    (d / "model.safetensors").unlink()
    keys = sorted(state)
    save_file({k: state[k] for k in keys[::2]}, str(d / "a.safetensors"))
    save_file({k: state[k] for k in keys[1::2]}, str(d / "b.safetensors"))
    weight_map = dict.fromkeys(keys[::2], "a.safetensors") | dict.fromkeys(keys[1::2],
                                                                            "b.safetensors")
    edit(weight_map)
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))


def test_a_shard_name_with_a_nul_is_refused(copy):
    d = copy("llama")
    _shard(d, lambda m: m.__setitem__(next(iter(m)), "a\x00.safetensors"))
    _refused(d, "index.json", "not a file name")


def test_a_sharded_folder_loads(copy):
    d = copy("llama")
    _shard(d, lambda m: None)
    assert load_model(d).kind == "hf-llama"


# ---------------------------------------------------------------------- tokenizer files
def _one_token_tokenizer(d, token_id: int) -> None:
    (d / "tokenizer.json").write_text(json.dumps(
        {"model": {"type": "BPE", "vocab": {"a": token_id}, "merges": []}}))


def test_a_tokenizer_id_of_a_billion_is_refused_before_its_table_is_built(copy):
    """The tokenizers library fills every id up to the largest when it serialises: 10 s and
    ~4 GB for this one-token file, before the refusal."""
    import resource

    d = copy("llama")
    _one_token_tokenizer(d, 10 ** 9)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    _refused(d, "tokenizer.json", "beyond any real vocabulary")
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200, grown_mb


def test_a_tokenizer_id_past_the_embedding_is_refused(copy):
    """One token, so fewer tokens than vocab_size, yet its id has no embedding row."""
    d = copy("qwen2")
    _one_token_tokenizer(d, 500)  # vocab_size is about 360
    _refused(d, "tokenizer.json", "token id 500")


def test_a_tokenizer_json_that_is_a_pipe_is_named(copy):
    d = copy("neo")
    (d / "tokenizer.json").unlink()
    os.mkfifo(d / "tokenizer.json")
    _refused(d, "tokenizer.json", "named pipe")


# ---------------------------------------------------------------------- hub cache
@pytest.fixture
def no_network(monkeypatch):
    """Every connection and name lookup fails the test."""
    refuse_network(monkeypatch)


@pytest.fixture
def cache(tmp_path, saved, monkeypatch, no_network):
    c = tmp_path / "hub"
    c.mkdir()
    add_to_cache(c, "org/llama", saved["llama"], commit="a" * 40)
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


@pytest.fixture
def alarm():
    """Fail instead of hanging (a read of a pipe blocks forever)."""
    with fail_after(20):
        yield


def test_a_ref_that_is_a_pipe_neither_blocks_the_lookup_nor_the_listing(cache, alarm):
    refs = cache / "models--org--llama" / "refs"
    os.mkfifo(refs / "fifo")
    _refused("org/llama@fifo", "org/llama is in the Hugging Face cache",
             "damaged: refs/fifo is a named pipe")
    assert [m.repo_id for m in cached_models() if m.supported] == ["org/llama"]
    assert load_model("org/llama").kind == "hf-llama"  # the good ref still works


def test_an_empty_ref_is_not_the_snapshots_folder(cache):
    (cache / "models--org--llama" / "refs" / "empty").write_text("")
    _refused("org/llama@empty", "damaged: refs/empty is empty")


def test_a_cache_folder_that_is_a_link_loop(tmp_path, monkeypatch, no_network):
    loop = tmp_path / "loop"
    loop.symlink_to(loop.name)
    monkeypatch.setenv("HF_HUB_CACHE", str(loop))
    _refused("org/llama", "not in the Hugging Face cache")
    assert cached_models() == []


@pytest.mark.parametrize("name", ["org/llama@main\n", "org/llama\x00", "org/llama\n@main"])
def test_names_with_control_characters_give_one_line(cache, name):
    with pytest.raises(CheckpointError) as e:
        resolve_name(name)
    assert "\n" not in str(e.value) and "\x00" not in str(e.value)
    _refused(name)


def test_a_safetensors_header_claiming_a_huge_tensor_is_refused(copy):
    d = copy("llama")
    raw = (d / "model.safetensors").read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    key = next(k for k in header if k != "__metadata__")
    header[key]["shape"] = [10 ** 9, 10 ** 9]
    text = json.dumps(header).encode()
    (d / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    _refused(d, "model.safetensors", "not a readable safetensors file")
    assert torch.get_num_threads() >= 1
