"""Opening a checkpoint builds no random weights it would overwrite, yet every family loader
gives the model it gave before, bit for bit.

Before, every loader built ``GPT(config)`` (random initialisation) and copied the file's
weights over it (:func:`gptviz.io.checkpoint.load_state`); now it builds the modules on the
``meta`` device and assigns the weights (:func:`gptviz.io.checkpoint.model_from_state`). Each
family's tiny random checkpoint is written to disk and opened both ways (the old way by
putting it back in the loader's place), and the two models must hold equal parameters and
buffers and compute equal logits, attentions and one-token steps. The weights are also
compared with the file read independently (``safetensors`` / ``torch.load``, mapped by hand)
or the logits with ``transformers``' model of the same weights. Nothing may be left on the
``meta`` device; the rotary tables (computed, not loaded) are compared with their formula; a
checkpoint holding NaN or infinity gets the one-line error it got before; ``GPT(config)``
still draws the seeded initialisation training starts from.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from gptviz import CheckpointError
from gptviz.families import hf_common, hf_decoder, load_model, nanogpt, to_nanogpt_state_dict
from gptviz.io import checkpoint
from gptviz.io.checkpoint import load_state, save_checkpoint
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

TOL = 1e-4  # logits against transformers (another order of sums)


def _randomise(model: nn.Module, seed: int = 3) -> None:
    """Weights far from any init: matrices ~0.3, norm gains near 1, small biases."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            r = torch.randn(p.shape, generator=g)
            if p.dim() >= 2:
                p.copy_(0.3 * r)
            elif name.endswith("weight"):  # a norm's gain
                p.copy_(1.0 + 0.2 * r)
            else:
                p.copy_(0.1 * r)


def _old_model_from_state(config: GPTConfig, state: dict[str, torch.Tensor], path: Path) -> GPT:
    """What every loader did before: random weights, then the file's copied over them."""
    model = GPT(config)
    load_state(model, state, path)
    return model


def _native(d: Path, tok, **cfg) -> tuple[Path, None]:
    config = GPTConfig(n_layer=2, n_head=4, n_embd=32, block_size=32,
                       vocab_size=tok.vocab_size, **cfg)
    torch.manual_seed(0)
    model = GPT(config)
    _randomise(model)
    save_checkpoint(d, model, tok)
    return d, None


def _hf_dir(d: Path, tok, model: nn.Module) -> tuple[Path, nn.Module]:
    _randomise(model)
    model.eval()
    model.save_pretrained(d, safe_serialization=True)
    tok.save(d / "tokenizer.json")
    return d, model


def _gpt2(d: Path, tok, **kw) -> tuple[Path, nn.Module]:
    cfg = transformers.GPT2Config(n_layer=2, n_head=4, n_embd=32, n_positions=32,
                                  vocab_size=tok.vocab_size, bos_token_id=None,
                                  eos_token_id=None, attn_implementation="eager", **kw)
    return _hf_dir(d, tok, transformers.GPT2LMHeadModel(cfg))


def _gpt1(d: Path, tok) -> tuple[Path, nn.Module]:
    cfg = transformers.OpenAIGPTConfig(n_layer=2, n_head=4, n_embd=32, n_positions=32,
                                       vocab_size=tok.vocab_size, attn_implementation="eager")
    return _hf_dir(d, tok, transformers.OpenAIGPTLMHeadModel(cfg))


def _neo(d: Path, tok) -> tuple[Path, nn.Module]:
    cfg = transformers.GPTNeoConfig(vocab_size=tok.vocab_size, hidden_size=32, num_layers=2,
                                    num_heads=4, max_position_embeddings=32,
                                    attention_types=[[["global", "local"], 1]], window_size=4,
                                    attn_implementation="eager")
    return _hf_dir(d, tok, transformers.GPTNeoForCausalLM(cfg))


def _neox(d: Path, tok) -> tuple[Path, nn.Module]:
    cfg = transformers.GPTNeoXConfig(vocab_size=tok.vocab_size, hidden_size=32,
                                     intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=4, max_position_embeddings=32,
                                     rotary_pct=0.5, rotary_emb_base=1000,
                                     use_parallel_residual=True, tie_word_embeddings=False,
                                     hidden_act="gelu", attn_implementation="eager")
    return _hf_dir(d, tok, transformers.GPTNeoXForCausalLM(cfg))


def _llama(d: Path, tok, kind: str = "llama") -> tuple[Path, nn.Module]:
    args = dict(vocab_size=tok.vocab_size, hidden_size=32, intermediate_size=48,
                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                max_position_embeddings=32, tie_word_embeddings=False,
                attn_implementation="eager")
    if kind == "llama":
        return _hf_dir(d, tok, transformers.LlamaForCausalLM(transformers.LlamaConfig(**args)))
    return _hf_dir(d, tok, transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**args)))


def _nanogpt(d: Path, tok) -> tuple[Path, None]:
    """A nanoGPT ``ckpt.pt`` as nanoGPT saves it: ``lm_head.weight`` IS ``wte.weight`` (one
    storage in the file), names under ``_orig_mod.`` (torch.compile); one matrix stored
    column-major."""
    config = GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=32, vocab_size=tok.vocab_size)
    torch.manual_seed(1)
    model = GPT(config)
    _randomise(model)
    state = {f"_orig_mod.{k}": v for k, v in to_nanogpt_state_dict(model).items()}
    assert state["_orig_mod.lm_head.weight"] is state["_orig_mod.transformer.wte.weight"]
    key = "_orig_mod.transformer.h.0.mlp.c_fc.weight"  # saved column-major: torch.save keeps
    state[key] = state[key].t().contiguous().t()  # the strides, the loader must not
    d.mkdir()
    torch.save({"model": state, "iter_num": 7,
                "model_args": dict(n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True,
                                   vocab_size=tok.vocab_size, dropout=0.0)}, d / "ckpt.pt")
    tok.save(d / "tokenizer.json")
    return d / "ckpt.pt", None


FAMILIES = {
    "gptviz": lambda d, tok: _native(d, tok),
    "gptviz-rotary-gated": lambda d, tok: _native(
        d, tok, positional_embedding_type="rotary", rotary_dim=4, norm_type="rmsnorm",
        mlp_type="gated", activation="silu", n_kv_head=2, tie_word_embeddings=False,
        bias=False),
    "hf-gpt2": _gpt2,
    "hf-gpt2-scaled": lambda d, tok: _gpt2(d, tok, scale_attn_by_inverse_layer_idx=True),
    "hf-openai-gpt": _gpt1,
    "nanogpt": _nanogpt,
    "hf-gpt-neo": _neo,
    "hf-gpt-neox": _neox,
    "hf-llama": _llama,
    "hf-qwen2": lambda d, tok: _llama(d, tok, "qwen2"),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory, tiny_tokenizer) -> dict[str, tuple[Path, nn.Module | None]]:
    """Every family's checkpoint on disk (and the ``transformers`` model written there)."""
    root = tmp_path_factory.mktemp("families")
    return {name: make(root / name, tiny_tokenizer) for name, make in FAMILIES.items()}


def _load_old_way(path: Path, monkeypatch) -> GPT:
    with monkeypatch.context() as m:
        for module in (checkpoint, hf_common, hf_decoder, nanogpt):
            m.setattr(module, "model_from_state", _old_model_from_state)
        return load_model(path).model


def _meta_tensors(model: nn.Module) -> list[str]:
    """Every parameter, buffer and tensor attribute of any module that is on ``meta``."""
    found = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    for name, module in model.named_modules():
        found += [f"{name}.{k}" for k, v in vars(module).items()
                  if isinstance(v, torch.Tensor) and v.is_meta]
    return found


def _ids(n: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (1, n), generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_loads_what_it_loaded_before(family, written, monkeypatch):
    path, _ = written[family]
    new = load_model(path).model
    old = _load_old_way(path, monkeypatch)
    assert new.training is old.training is False
    assert _meta_tensors(new) == []
    got, want = dict(new.named_parameters()), dict(old.named_parameters())
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == want[k].dtype and got[k].stride() == want[k].stride(), k
        assert got[k].requires_grad and torch.equal(got[k], want[k]), k
    got_b, want_b = dict(new.named_buffers()), dict(old.named_buffers())
    assert list(got_b) == list(want_b)
    for k in want_b:
        assert torch.equal(got_b[k], want_b[k]), k
    idx = _ids(12, new.config.vocab_size)
    with torch.inference_mode():
        a, b = new(idx, return_attn=True), old(idx, return_attn=True)
        assert torch.equal(a.logits, b.logits)
        assert all(torch.equal(x, y) for x, y in zip(a.attentions, b.attentions, strict=True))
        caches = new.new_cache(), old.new_cache()
        for token in idx[0].tolist():
            (la, _), (lb, _) = new.decode_step(token, caches[0]), old.decode_step(token, caches[1])
            assert torch.equal(la, lb)


@pytest.mark.parametrize("family", [f for f in FAMILIES if f.startswith("hf-")])
def test_hf_families_compute_what_transformers_computes(family, written):
    path, hf = written[family]
    assert hf is not None
    model = load_model(path).model
    idx = _ids(12, model.config.vocab_size)
    with torch.inference_mode():
        diff = (model(idx).logits - hf(idx).logits).abs().max()
    assert float(diff) < TOL


def test_native_weights_are_the_files(written):
    path, _ = written["gptviz-rotary-gated"]
    model = load_model(path).model
    on_disk = load_file(str(path / "model.safetensors"))
    own = model.state_dict()
    assert sorted(own) == sorted(on_disk)
    assert all(torch.equal(own[k], on_disk[k]) for k in on_disk)


def test_gpt2_weights_are_the_files_transposed(written):
    path, _ = written["hf-gpt2"]
    model = load_model(path).model
    on_disk = {k.removeprefix("transformer."): v
               for k, v in load_file(str(path / "model.safetensors")).items()}
    own = model.state_dict()
    conv1d = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    for k, v in own.items():
        assert torch.equal(v, on_disk[k].t() if k.endswith(conv1d) else on_disk[k]), k


def test_nanogpt_weights_are_the_files_and_own_their_memory(written):
    path, _ = written["nanogpt"]
    model = load_model(path).model
    raw = torch.load(path, map_location="cpu", weights_only=True)["model"]
    on_disk = {k.removeprefix("_orig_mod.").removeprefix("transformer."): v
               for k, v in raw.items()}
    own = model.state_dict()
    assert sorted(own) == sorted(k for k in on_disk if k != "lm_head.weight")
    assert all(torch.equal(v, on_disk[k]) for k, v in own.items())
    # The file ties lm_head to wte in one storage: no two parameters share memory, and one
    # changed in place (as a loader folding a scale into a projection does) changes no other.
    storages = [p.untyped_storage().data_ptr() for p in model.parameters()]
    assert len(set(storages)) == len(storages)


def test_views_and_tied_tensors_load_as_fresh_copies_did(tmp_path, tiny_tokenizer):
    """A state of views of one buffer at unaligned offsets (as a torch.save of slices), one
    tensor under three names (tied copies) and a transposed layout: the same parameters,
    strides and one-token steps as copying them into fresh parameters gave, and changing one
    parameter in place changes no other."""
    config = GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8,
                       vocab_size=tiny_tokenizer.vocab_size)
    torch.manual_seed(0)
    model = GPT(config)
    _randomise(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["h.0.ln_2.weight"] = state["ln_f.weight"] = state["h.0.ln_1.weight"]  # tied
    flat = torch.cat([torch.zeros(1)] + [v.reshape(-1) for v in state.values()])
    views, at = {}, 1  # 4 bytes into the buffer: nothing aligned
    for k, v in state.items():
        views[k] = flat[at:at + v.numel()].view(v.shape)
        at += v.numel()
    w = views["h.0.mlp.c_fc.weight"]
    views["h.0.mlp.c_fc.weight"] = w.t().contiguous().t()  # same values, column-major
    assert not views["h.0.mlp.c_fc.weight"].is_contiguous()
    new = checkpoint.model_from_state(config, dict(views), tmp_path / "x").eval()
    old = _old_model_from_state(config, dict(views), tmp_path / "x").eval()
    for k, p in old.named_parameters():
        q = dict(new.named_parameters())[k]
        assert torch.equal(q, p) and q.stride() == p.stride() and q.data_ptr() % 64 == 0, k
    with torch.inference_mode():
        ca, cb = new.new_cache(), old.new_cache()
        for token in (3, 1, 4, 1, 5):
            assert torch.equal(new.decode_step(token, ca)[0], old.decode_step(token, cb)[0])
    storages = [p.untyped_storage().data_ptr() for p in new.parameters()]
    assert len(set(storages)) == len(storages)
    with torch.no_grad():
        new.h[0].ln_1.weight.mul_(2.0)
    assert torch.equal(new.h[0].ln_2.weight, state["ln_f.weight"])
    assert torch.equal(new.ln_f.weight, state["ln_f.weight"])
    # and no parameter keeps the flat buffer alive: each holds its own bytes only
    for k, p in new.named_parameters():
        assert p.untyped_storage().nbytes() == p.numel() * p.element_size(), k


def test_a_view_at_the_start_of_a_flat_buffer_does_not_keep_the_buffer(tmp_path,
                                                                       tiny_tokenizer):
    """A flat save whose first tensor starts the buffer (aligned, the first of its storage):
    its parameter is a copy of its own bytes, not the whole buffer."""
    config = GPTConfig(n_layer=1, n_head=2, n_embd=8, block_size=8,
                       vocab_size=tiny_tokenizer.vocab_size)
    torch.manual_seed(1)
    state = {k: v.clone() for k, v in GPT(config).state_dict().items()}
    flat = torch.cat([v.reshape(-1) for v in state.values()])
    views, at = {}, 0
    for k, v in state.items():
        views[k] = flat[at:at + v.numel()].view(v.shape)
        at += v.numel()
    first = next(iter(views))
    assert views[first].data_ptr() == flat.data_ptr()
    model = checkpoint.model_from_state(config, views, tmp_path / "x")
    held = sum(p.untyped_storage().nbytes() for p in model.parameters())
    assert held == sum(p.numel() * p.element_size() for p in model.parameters())
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items() if k in state)


def test_rotary_tables_are_computed_not_left_on_meta(written):
    path, _ = written["hf-gpt-neox"]
    model = load_model(path).model
    c = model.config
    rd = c.rotary_width
    assert rd == 4  # half of the 8-wide heads
    # The formula, by hand: angle(p, i) = p / base^(2i / rd), each written twice.
    inv = [1.0 / (c.rotary_base ** (2 * i / rd)) for i in range(rd // 2)]
    angles = torch.tensor([[p * f for f in inv] * 2 for p in range(c.block_size)],
                          dtype=torch.float64)
    assert model.rope_cos.device.type == "cpu" and model.rope_cos.dtype == torch.float32
    assert torch.allclose(model.rope_cos.double(), angles.cos(), atol=1e-6)
    assert torch.allclose(model.rope_sin.double(), angles.sin(), atol=1e-6)
    assert "rope_cos" not in model.state_dict()  # computed, never saved


def test_a_loaded_model_moves_and_trains(written):
    """Parameters that are real leaves: ``to`` works, gradients reach every one."""
    model = load_model(written["gptviz"][0]).model.to(torch.float64).train()
    idx = _ids(6, model.config.vocab_size)
    model(idx).logits.sum().backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float64
               for p in model.parameters())


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nan_or_inf_in_a_checkpoint_is_one_clear_line(tmp_path, written, bad, dtype):
    src, _ = written["gptviz"]
    d = tmp_path / "bad"
    d.mkdir()
    for f in ("config.json", "tokenizer.json", "metadata.json"):
        (d / f).write_bytes((src / f).read_bytes())
    state = {k: v.to(dtype) for k, v in load_file(str(src / "model.safetensors")).items()}
    name = "h.1.mlp.c_fc.weight"
    state[name].view(-1)[state[name].numel() // 2 + 3] = bad
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        load_model(d)
    n = state[name].numel()
    assert str(e.value) == (f"{d / 'model.safetensors'}: tensor {name} holds 1 NaN or "
                            f"infinite value(s) of {n:,}; the weights are corrupt")


def test_nan_in_a_nanogpt_or_gpt2_checkpoint_is_one_clear_line(tmp_path, written):
    path, _ = written["nanogpt"]
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    w = ckpt["model"]["_orig_mod.transformer.h.0.attn.c_proj.weight"].clone()
    w[0, :3] = float("nan")
    ckpt["model"]["_orig_mod.transformer.h.0.attn.c_proj.weight"] = w
    torch.save(ckpt, tmp_path / "bad.pt")
    (tmp_path / "tokenizer.json").write_bytes((path.parent / "tokenizer.json").read_bytes())
    with pytest.raises(CheckpointError, match=r"^.*bad\.pt: tensor h\.0\.attn\.c_proj\.weight "
                       r"holds 3 NaN or infinite value\(s\) of 1,024; the weights are corrupt$"):
        load_model(tmp_path / "bad.pt")
    src, _ = written["hf-gpt2"]
    d = tmp_path / "gpt2"
    d.mkdir()
    for f in src.iterdir():
        if f.name != "model.safetensors":
            (d / f.name).write_bytes(f.read_bytes())
    state = load_file(str(src / "model.safetensors"))
    key = next(k for k in state if k.endswith("ln_f.bias"))
    state[key] = state[key].clone()
    state[key][1] = float("inf")
    save_file(state, str(d / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"tensor ln_f\.bias holds 1 NaN or infinite "
                       r"value\(s\) of 32; the weights are corrupt$"):
        load_model(d)


def test_check_finite_finds_what_isfinite_finds():
    """The one-pass check against torch.isfinite on every value, over many placements."""
    from gptviz.io.config_checks import check_finite

    g = torch.Generator().manual_seed(0)
    for trial in range(200):
        n = int(torch.randint(1, 5000, (1,), generator=g))
        dtype = (torch.float32, torch.float16, torch.bfloat16, torch.float64)[trial % 4]
        t = (torch.randn(n, generator=g) * 100).to(dtype)
        for _ in range(int(torch.randint(0, 3, (1,), generator=g))):
            at = int(torch.randint(0, n, (1,), generator=g))
            t[at] = (float("nan"), float("inf"), float("-inf"))[at % 3]
        bad = int((~torch.isfinite(t)).sum())
        if bad:
            with pytest.raises(CheckpointError, match=f"holds {bad:,} NaN"):
                check_finite({"w": t}, Path("f"))
        else:
            check_finite({"w": t}, Path("f"))
    check_finite({"i": torch.tensor([1, 2]), "e": torch.empty(0)}, Path("f"))  # not floats


def test_overwriting_the_file_leaves_the_open_model_intact(written, tmp_path):
    """The model owns its weights: a training run saving over the checkpoint while it is
    open must not crash the process (a view of the mapped file would: SIGBUS)."""
    src, _ = written["gptviz"]
    d = tmp_path / "open"
    d.mkdir()
    for f in src.iterdir():
        (d / f.name).write_bytes(f.read_bytes())
    code = (
        "import sys, torch\n"
        "from gptviz.families import load_model\n"
        "m = load_model(sys.argv[1]).model\n"
        "idx = torch.arange(5).view(1, 5)\n"
        "before = m(idx).logits\n"
        "open(sys.argv[1] + '/model.safetensors', 'wb').close()\n"
        "assert torch.equal(m(idx).logits, before)\n"
        "print('intact')\n")
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "-c", code, str(d)], capture_output=True, text=True,
                         cwd=root, timeout=120)
    assert run.returncode == 0 and "intact" in run.stdout, run.stderr[-2000:]


def test_training_from_scratch_draws_the_seeded_initialisation():
    """``GPT(config)``: the modules made in order (each drawing its default init), then
    N(0, 0.02) for every matrix and embedding (children before parents), zero biases, and
    N(0, 0.02 / sqrt(2 n_layer)) for the projections into the residual stream: rebuilt here
    by hand from the same seed."""
    L, C, V, T = 2, 16, 50, 8
    config = GPTConfig(n_layer=L, n_head=2, n_embd=C, block_size=T, vocab_size=V)
    torch.manual_seed(1234)
    model = GPT(config)
    torch.manual_seed(1234)
    wte, wpe = nn.Embedding(V, C), nn.Embedding(T, C)
    layers = []
    for _ in range(L):
        ln_1, c_attn, a_proj = nn.LayerNorm(C), nn.Linear(C, 3 * C), nn.Linear(C, C)
        ln_2, c_fc, m_proj = nn.LayerNorm(C), nn.Linear(C, 4 * C), nn.Linear(4 * C, C)
        layers.append((ln_1, c_attn, a_proj, ln_2, c_fc, m_proj))
    ln_f = nn.LayerNorm(C)
    with torch.no_grad():
        for m in [wte, wpe] + [m for layer in layers for m in layer]:
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, 0.02)
            if isinstance(m, nn.Linear):
                m.bias.zero_()
        for layer in layers:
            for proj in (layer[2], layer[5]):
                proj.weight.normal_(0.0, 0.02 / math.sqrt(2 * L))
    want = {"wte.weight": wte.weight, "wpe.weight": wpe.weight,
            "ln_f.weight": ln_f.weight, "ln_f.bias": ln_f.bias}
    names = ("ln_1", "attn.c_attn", "attn.c_proj", "ln_2", "mlp.c_fc", "mlp.c_proj")
    for i, layer in enumerate(layers):
        for name, m in zip(names, layer, strict=True):
            want[f"h.{i}.{name}.weight"], want[f"h.{i}.{name}.bias"] = m.weight, m.bias
    got = model.state_dict()
    assert sorted(got) == sorted(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert _meta_tensors(model) == []


def test_load_bench_measures_each_part(written):
    """``bench`` load figures on a tiny checkpoint: every part measured, the old way too
    (no timing asserted: figures only)."""
    from gptviz.bench.load import _child, format_load_table, measure_once

    d, _ = written["gptviz"]
    opened = _child(d, "open", 1)  # as bench_load runs it: a fresh process
    assert set(opened) == {"open", "open_cpu"} and opened["open"] > 0
    parts, old = measure_once(d, "parts"), measure_once(d, "old")
    assert all(v >= 0 for v in [*parts.values(), *old.values()]) and len(parts) == 4
    res = {"reps": 1, "threads": 1, "tiny": {"n_params": 10, "open_s": 0.1, "open_cpu_s": 0.1,
                                             "parts_s": parts, "old_way_s": old}}
    text = format_load_table(res)
    assert "tiny (10 weights): open 0.100" in text and "random init (GPT(config))" in text
    with pytest.raises(ValueError, match="kind must be one of"):
        measure_once(d, "other")
