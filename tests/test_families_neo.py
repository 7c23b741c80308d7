"""Hugging Face GPT-Neo folders (TinyStories' architecture) opened by gptviz: tiny random
``transformers`` models saved with ``save_pretrained``, compared with ``transformers`` (eager)
on logits and every attention map (<= 1e-4), one-token KV-cache steps (<= 1e-5), local
attention windows (exactly 0 outside, drawn NaN on the map and the thumbnails), unscaled
attention and q/k/v without bias, head ablation, the logit lens and every live analysis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from family_checks import (
    compare_ablation,
    compare_forward,
    compare_lens,
    compare_steps,
    ids_of,
    load,
    randomise,
    run_every_analysis,
    save,
)

from gptviz import CheckpointError
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import attention_mask, key_window

transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

WINDOW = 4


def _hf(vocab: int, **extra):
    base = dict(vocab_size=vocab, hidden_size=32, num_layers=2, num_heads=4,
                max_position_embeddings=64, attention_types=[[["global", "local"], 1]],
                window_size=WINDOW, attn_implementation="eager")
    base.update(extra)
    model = transformers.GPTNeoForCausalLM(transformers.GPTNeoConfig(**base))
    randomise(model.eval())
    return model


def _open(tmp_path, tiny_tokenizer, **extra):
    hf = _hf(tiny_tokenizer.vocab_size, **extra)
    return hf, load(save(hf, tmp_path / "neo", tiny_tokenizer))


def _outside(T: int, window: int) -> np.ndarray:
    """Written out: key j is hidden from query i unless i - window < j <= i."""
    i, j = np.meshgrid(np.arange(T), np.arange(T), indexing="ij")
    return (j > i) | (j <= i - window)


CASES = {
    "global + local": {},
    "local + local, window 3": dict(attention_types=[[["local"], 2]], window_size=3),
    "all global, relu, untied": dict(attention_types=[[["global"], 2]],
                                     activation_function="relu", tie_word_embeddings=False),
}


@pytest.mark.parametrize("extra", CASES.values(), ids=CASES.keys())
def test_logits_maps_and_steps_match_transformers(tmp_path, tiny_tokenizer, extra):
    hf, bundle = _open(tmp_path, tiny_tokenizer, **extra)
    cfg = bundle.config
    assert bundle.kind == "hf-gpt-neo" and cfg.attn_scale == 1.0
    assert cfg.qkv_bias is False and cfg.bias is True
    assert bundle.model.h[0].attn.c_attn.bias is None
    assert bundle.model.h[0].attn.c_proj.bias is not None
    assert list(cfg.attention_layers or ["global"] * 2) == hf.config.attention_layers
    idx = ids_of(bundle)
    compare_forward(bundle, hf, idx)
    compare_steps(bundle.model, idx)


def test_local_layers_attend_only_inside_their_window(tmp_path, tiny_tokenizer):
    _, bundle = _open(tmp_path, tiny_tokenizer)
    cfg = bundle.config
    assert [key_window(cfg, i) for i in range(2)] == [None, WINDOW]
    idx = ids_of(bundle)
    T = idx.shape[1]
    with torch.inference_mode():
        att = [a[0].numpy() for a in bundle.model(idx, return_attn=True).attentions]
    outside = _outside(T, WINDOW)
    assert (att[1][:, outside] == 0).all() and (att[1][:, ~outside] > 0).all()
    assert (att[0][:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0).all()
    assert (att[0][:, outside & ~(np.triu(np.ones((T, T), bool), 1))] > 0).all()  # global
    assert np.array_equal(attention_mask(cfg, 1, T, T).numpy(), outside)
    # a query over a longer cache: its row masks the keys before its window
    assert np.array_equal(attention_mask(cfg, 1, 2, 10).numpy(), _outside(10, WINDOW)[-2:])


def test_local_windows_are_drawn_masked_on_the_map_and_the_thumbnails(tmp_path, tiny_tokenizer):
    from gptviz.engine.session import Session
    from gptviz_app.runtime.snapshot import ViewSpec
    from gptviz_app.runtime.snapshots import SnapshotBuilder

    _, bundle = _open(tmp_path, tiny_tokenizer)
    s = Session(bundle, "Once upon a time there was")
    b = SnapshotBuilder(s, cell=64, gap=2)
    b.build(1, "init", ViewSpec(grid_mode="map"))
    for _ in range(4):
        b.note_step(s.step())  # the thumbnails grow one row at a time
    for layer in (0, 1):
        snap = b.build(2, "view", ViewSpec(layer=layer, head=2, grid_mode="map",
                                           sqrt_scale=False))
        T = snap.T
        want = _outside(T, WINDOW) if layer == 1 else np.triu(np.ones((T, T), bool), 1)
        assert np.array_equal(np.isnan(snap.attn), want)
        np.testing.assert_array_equal(snap.attn[~want], s.attention_head(layer, 2)[~want])
        u = 64 // T  # thumbnail pixels per token
        cell = snap.grid[layer * 66:layer * 66 + T * u:u, 2 * 66:2 * 66 + T * u:u]
        assert np.array_equal(np.isnan(cell), want)
    # an incremental mosaic equals one drawn from scratch, also when pooled (T > cell)
    from gptviz_app.runtime.snapshots import GridMosaic

    windows = (None, WINDOW)
    rng = np.random.default_rng(0)
    full = np.tril(rng.random((2, 3, 40, 40)).astype(np.float32))
    full[1][:, _outside(40, WINDOW)] = 0
    inc = GridMosaic(2, 3, cell=8, gap=1, windows=windows)
    inc.rebuild_maps(full[:, :, :3, :3])
    for T in range(4, 41):
        if not inc.add_row(full[:, :, T - 1, :T]):
            inc.rebuild_maps(full[:, :, :T, :T])
        ref = GridMosaic(2, 3, cell=8, gap=1, windows=windows)
        ref.rebuild_maps(full[:, :, :T, :T])
        np.testing.assert_array_equal(inc.data, ref.data)
    # pooled by 5: a block is NaN exactly when every token cell in it is masked
    blocks = _outside(40, WINDOW).reshape(8, 5, 8, 5).all(axis=(1, 3))
    assert np.array_equal(np.isnan(ref.cells[1, 0, :8, :8]), blocks)
    assert blocks.sum() > np.triu(np.ones((8, 8)), 1).sum()  # the window hid blocks too


def test_ablating_a_query_head_and_the_lens_match_transformers(tmp_path, tiny_tokenizer):
    hf, bundle = _open(tmp_path, tiny_tokenizer)
    idx = ids_of(bundle)
    for layer, head in ((0, 2), (1, 0)):
        compare_ablation(bundle, hf, lambda m, i: m.transformer.h[i].attn.attention.out_proj,
                         idx, layer, head)
    compare_lens(bundle, hf, hf.transformer.ln_f, hf.lm_head, idx)


def test_every_live_analysis_runs(tmp_path, tiny_tokenizer):
    _, bundle = _open(tmp_path, tiny_tokenizer)
    run_every_analysis(bundle)


def test_a_loaded_model_round_trips_through_our_checkpoint(tmp_path, tiny_tokenizer):
    from gptviz.io.checkpoint import save_checkpoint

    hf, bundle = _open(tmp_path, tiny_tokenizer)
    again = load(save_checkpoint(tmp_path / "ours", bundle.model, bundle.tokenizer))
    assert again.config == bundle.config and again.config.attention_layers == ("global", "local")
    compare_forward(again, hf, ids_of(again))


@pytest.mark.parametrize(("change", "message"), [
    ({"attention_layers": ["global", "sliding"]}, "only 'global' and 'local'"),
    ({"attention_layers": ["global"]}, "names 1 layers but num_layers is 2"),
    ({"attention_layers": None, "attention_types": [["global", 2]]}, "attention_types must be"),
    ({"window_size": 0}, "window_size must be a positive integer"),
    ({"activation_function": "swiglu"}, "activation_function 'swiglu' is not supported"),
])
def test_bad_configs_are_refused_in_one_line(tmp_path, tiny_tokenizer, change, message):
    _open(tmp_path, tiny_tokenizer)
    path = tmp_path / "neo" / "config.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(CheckpointError, match=message) as e:
        load(tmp_path / "neo")
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_q_k_v_biases_in_the_file_are_refused(tmp_path, tiny_tokenizer):
    from safetensors.torch import load_file, save_file

    _open(tmp_path, tiny_tokenizer)
    f = tmp_path / "neo" / "model.safetensors"
    state = load_file(f)
    state["transformer.h.0.attn.attention.q_proj.bias"] = torch.zeros(32)
    save_file(state, f)
    with pytest.raises(CheckpointError, match="layer 0 has q/k/v biases"):
        load(tmp_path / "neo")


@pytest.mark.parametrize(("fields", "message"), [
    (dict(attention_layers=("local", "global")), "window_size is not set"),
    (dict(attention_layers=("global", "global"), window_size=4), "no layer of attention_layers"),
    (dict(attention_layers=("local",), window_size=4), "names 1 layers but n_layer is 2"),
    (dict(attention_layers=("near", "global"), window_size=4), "only 'global' and 'local'"),
    (dict(attention_layers="local", window_size=4), "must be a list"),
    (dict(attention_layers=("local", "global"), window_size=0), "window_size must be a positive"),
    (dict(attention_layers=("local", "global"), window_size=True), "window_size must be"),
])
def test_bad_window_fields_are_refused_by_the_config(fields, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=8, vocab_size=10, **fields)
