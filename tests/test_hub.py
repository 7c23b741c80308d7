"""Models by name from the local Hugging Face cache, offline; ``--device`` and ``--dtype``.

The cache is built in ``tmp_path`` in the real layout (blobs, snapshot links, refs) from tiny
random ``transformers`` models, and the environment points there. Every test runs with the
network cut off: a socket that tries to connect fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptviz import CheckpointError, load_model
from gptviz.cli import main as cli_main
from gptviz.families import find_family, hub
from gptviz.io import device as devices

transformers = pytest.importorskip("transformers")
pytest.importorskip("huggingface_hub")
transformers.logging.set_verbosity_error()

from hub_cache import PROBE, add_to_cache, bpe_tokenizer, refuse_network, save_model_dir, tiny_gpt2  # noqa: E402

TOL = 1e-4


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection or look up a host fails loudly."""
    refuse_network(monkeypatch)


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def models(tok, tmp_path_factory):
    """Two different tiny GPT-2s saved as plain folders (``a``, ``b``)."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for key, seed in (("a", 0), ("b", 1)):
        hf = tiny_gpt2(tok.get_vocab_size(), seed=seed)
        out[key] = (hf, save_model_dir(hf, tok, root / key))
    return out


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "hf" / "hub"
    c.mkdir(parents=True)
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


def _logits(bundle, hf, text: str = PROBE) -> tuple[float, float]:
    ids = torch.tensor([bundle.tokenizer.encode(text)])
    with torch.no_grad():
        ref = hf(ids, output_attentions=True)
        out = bundle.model(ids, return_attn=True)
    d_att = max((a - b).abs().max().item() for a, b in zip(out.attentions, ref.attentions))
    return (out.logits - ref.logits).abs().max().item(), d_att


# ------------------------------------------------------------------ names
@pytest.mark.parametrize("text,repo,rev", [
    ("gpt2", "gpt2", None), ("openai-community/gpt2", "openai-community/gpt2", None),
    ("EleutherAI/pythia-70m", "EleutherAI/pythia-70m", None),
    ("org/name@v1.0", "org/name", "v1.0"), ("org/name@" + "a" * 40, "org/name", "a" * 40),
])
def test_names_parse(text, repo, rev):
    assert hub.parse_name(text) == hub.HubName(repo, rev)


@pytest.mark.parametrize("text", ["./gpt2", "/abs/gpt2", "a/b/c", "ckpt.pt", "out/ckpt.pt",
                                  "~/model", "bad--name/x", "x/", "", " gpt2", "a\\b",
                                  "model.safetensors"])
def test_paths_are_not_names(text):
    assert hub.parse_name(text) is None


def test_bare_and_full_names_resolve_to_the_cached_snapshot(cache, models):
    snap = add_to_cache(cache, "openai-community/gpt2", models["a"][1])
    assert hub.resolve_name("gpt2") == snap
    assert hub.resolve_name("openai-community/gpt2") == snap
    other = add_to_cache(cache, "EleutherAI/pythia-70m", models["b"][1])
    assert hub.resolve_name("EleutherAI/pythia-70m") == other


def test_a_cache_made_with_the_old_bare_name_is_found_by_the_new_one(cache, models):
    snap = add_to_cache(cache, "distilgpt2", models["a"][1])
    assert hub.resolve_name("distilbert/distilgpt2") == snap
    assert hub.resolve_name("distilgpt2") == snap


@pytest.mark.parametrize("legacy,current", sorted(hub.LEGACY_NAMES.items()))
def test_every_legacy_name_finds_its_current_repository(cache, models, legacy, current):
    snap = add_to_cache(cache, current, models["a"][1])
    assert hub.resolve_name(legacy) == snap


def test_revision_by_branch_and_by_commit(cache, models):
    main = add_to_cache(cache, "org/tiny", models["a"][1], commit="1" * 40)
    dev = add_to_cache(cache, "org/tiny", models["b"][1], commit="2" * 40, ref="dev")
    assert hub.resolve_name("org/tiny") == main
    assert hub.resolve_name("org/tiny@dev") == dev
    assert hub.resolve_name("org/tiny@" + "2" * 40) == dev
    a, b = load_model("org/tiny@dev"), load_model("org/tiny")
    assert not torch.equal(a.model.wte.weight, b.model.wte.weight)
    assert a.metadata["hub_revision"] == "2" * 40


def test_load_by_name_matches_transformers_and_is_named_after_the_repo(cache, models):
    hf, src = models["a"]
    add_to_cache(cache, "openai-community/gpt2", src)
    bundle = load_model("gpt2")
    d_logits, d_att = _logits(bundle, hf)
    assert d_logits <= TOL and d_att <= TOL
    assert bundle.name == "openai-community/gpt2"  # not the commit hash of the folder
    assert bundle.metadata["hub_repo"] == "openai-community/gpt2"
    assert Path(bundle.source).parent.name == "snapshots"


def test_a_model_not_in_the_cache_says_so_and_how_to_get_it(cache, models):
    with pytest.raises(CheckpointError) as e:
        load_model("gpt2")
    msg = str(e.value)
    assert "not in the Hugging Face cache" in msg and str(cache) in msg
    assert "hf download openai-community/gpt2" in msg and "\n" not in msg
    add_to_cache(cache, "org/tiny", models["a"][1])
    with pytest.raises(CheckpointError, match=r"not at revision 'v9'.*--revision v9"):
        load_model("org/tiny@v9")


def test_a_local_path_wins_over_a_name(cache, models, tmp_path, monkeypatch):
    add_to_cache(cache, "openai-community/gpt2", models["a"][1])
    here = tmp_path / "cwd"
    here.mkdir()
    import shutil

    shutil.copytree(models["b"][1], here / "gpt2")
    monkeypatch.chdir(here)
    local = load_model("gpt2")
    assert Path(local.source).resolve() == (here / "gpt2").resolve()
    d_logits, _ = _logits(local, models["b"][0])
    assert d_logits <= TOL


@pytest.mark.parametrize("how", ["HF_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"])
def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch, models, how):
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "root"
    cache = {"HF_HUB_CACHE": root, "HF_HOME": root / "hub",
             "XDG_CACHE_HOME": root / "huggingface" / "hub",
             "HOME": root / ".cache" / "huggingface" / "hub"}[how]
    monkeypatch.setenv(how, str(root))
    assert hub.hub_cache_dir() == cache
    snap = add_to_cache(cache, "openai-community/gpt2", models["a"][1])
    assert load_model("gpt2").source == str(snap)


# ------------------------------------------------------------------ the cache's list
def test_cached_models_lists_family_parameters_size_and_unsupported(cache, models, tok,
                                                                    tmp_path):
    hf, src = models["a"]
    add_to_cache(cache, "openai-community/gpt2", src)
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert-ish", "hidden_size": 8}))
    add_to_cache(cache, "org/bert-ish", other)
    listed = {m.repo_id: m for m in hub.cached_models()}
    assert set(listed) == {"openai-community/gpt2", "org/bert-ish"}
    g = listed["openai-community/gpt2"]
    assert g.family == "hf-gpt2" and g.supported and g.reason is None
    assert g.n_params == hf.num_parameters()  # from the safetensors header, no weights read
    assert g.refs == ("main",)
    blobs = cache / "models--openai-community--gpt2" / "blobs"
    assert g.size_on_disk == sum(f.stat().st_size for f in blobs.iterdir())
    b = listed["org/bert-ish"]
    assert not b.supported and find_family(b.path) is None
    assert "model_type 'bert-ish'" in b.reason


def test_no_cache_is_an_empty_list(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "none"))
    assert hub.cached_models() == []


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_count_from_config_json_alone(tmp_path, tok, tied):
    from transformers import OpenAIGPTConfig, OpenAIGPTLMHeadModel

    hf = tiny_gpt2(tok.get_vocab_size(), tie_word_embeddings=tied, n_inner=48)
    d = tmp_path / "gpt2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(hf.config.to_dict()))
    assert hub.parameter_count(d) == hf.num_parameters()
    gpt1 = OpenAIGPTLMHeadModel(OpenAIGPTConfig(n_layer=2, n_head=2, n_embd=32, n_positions=16,
                                                vocab_size=50))
    (d / "config.json").write_text(json.dumps(gpt1.config.to_dict()))
    assert hub.parameter_count(d) == gpt1.num_parameters()


# ------------------------------------------------------------------ command line
def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_command_with_model_takes_a_name(cache, models, tmp_path, capsys):
    add_to_cache(cache, "openai-community/gpt2", models["a"][1])
    text = tmp_path / "t.txt"
    text.write_text("hello world, hello model")
    runs = {
        "info": ["info", "--model", "gpt2"],
        "generate": ["generate", "--model", "gpt2", "--prompt", "hello", "--steps", "3",
                     "--greedy"],
        "trace": ["trace", "--model", "openai-community/gpt2", "--prompt", "hello", "--steps",
                  "2", "--out", str(tmp_path / "t.npz")],
        "heads": ["heads", "--model", "gpt2", "--prompt", "hello world hello world",
                  "--probe-len", "0", "--json"],
        "lens": ["lens", "--model", "gpt2", "--prompt", "hello world", "--json"],
        "eval": ["eval", "--model", "gpt2", "--text", str(text)],
    }
    for name, argv in runs.items():
        rc, out, err = _cli(capsys, *argv)
        assert rc == 0, (name, err)
    rc, out, _ = _cli(capsys, "info", "--model", "gpt2")
    info = json.loads(out)
    assert info["n_params"] == models["a"][0].num_parameters()
    rc, _, err = _cli(capsys, "info", "--model", "EleutherAI/pythia-70m")
    assert rc == 2 and err.count("\n") == 1 and "hf download EleutherAI/pythia-70m" in err


# ------------------------------------------------------------------ device and dtype
def test_auto_is_the_cpu_here_and_absent_devices_are_refused_clearly(monkeypatch, capsys):
    if torch.cuda.is_available() or devices._mps_available():
        pytest.skip("this machine has an accelerator")
    assert devices.resolve_device("auto") == "cpu" == devices.resolve_device(None)
    assert devices.available_devices() == ["cpu"]
    for name, words in (("cuda", "no CUDA device"), ("cuda:1", "no CUDA device"),
                        ("mps", "MPS is not available")):
        with pytest.raises(ValueError, match=words):
            devices.resolve_device(name)
        with pytest.raises(ValueError, match=words):
            load_model(None, device=name)
        rc, _, err = _cli(capsys, "info", "--device", name)
        assert rc == 2 and words in err and err.startswith("error: argument --device")
    with pytest.raises(ValueError, match="not one of"):
        devices.resolve_device("tpu")
    rc, _, err = _cli(capsys, "info", "--dtype", "float64")
    assert rc == 2 and "--dtype" in err


def test_auto_takes_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert devices.resolve_device("auto") == "cuda"


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_lower_precision_loads_and_steps_near_float32(dtype):
    from gptviz.engine.sampling import SamplingSettings
    from gptviz.engine.session import Session

    ref = Session(load_model(None), "ROMEO: But soft", SamplingSettings(greedy=True))
    low_bundle = load_model(None, dtype=dtype)
    assert {p.dtype for p in low_bundle.model.parameters()} == {devices.DTYPES[dtype]}
    assert low_bundle.metadata["dtype"] == dtype
    low = Session(low_bundle, "ROMEO: But soft", SamplingSettings(greedy=True))
    for _ in range(5):
        t = ref.step().token_id
        low.step(force=t)
        assert low.attention().dtype == np.float32  # the history stays float32 on the CPU
        # bfloat16 keeps 8 bits of mantissa: the shown numbers move by about 1e-2 (README)
        assert np.abs(low.attention() - ref.attention()).max() < 0.05
        assert np.abs(low.next_probs() - ref.next_probs()).max() < 0.05
