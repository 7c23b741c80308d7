"""File ▸ Open model…: the dialog's list (bundled, recent, cached; unsupported greyed), opening
a cached model by name on the worker with progress, cancelling, a failed load, device and
precision, and ``main.py --model NAME``. The hub cache is a fake one in ``tmp_path``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("pytestqt")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from hub_cache import (  # noqa: E402
    add_to_cache,
    bpe_tokenizer,
    fake_config_only,
    save_model_dir,
    tiny_gpt2,
)
from PySide6.QtCore import Qt  # noqa: E402

from .conftest import TIMEOUT, close_window, settle, show_window  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok():
    return bpe_tokenizer()


@pytest.fixture(scope="module")
def hf_model(tok):
    return tiny_gpt2(tok.get_vocab_size(), seed=0)


@pytest.fixture
def cache(tmp_path, monkeypatch, tok, hf_model):
    c = tmp_path / "hub"
    add_to_cache(c, "openai-community/gpt2", save_model_dir(hf_model, tok, tmp_path / "src"))
    fake_config_only(c, "google-bert/bert-base-uncased",
                     {"model_type": "bert", "hidden_size": 8, "num_hidden_layers": 1})
    monkeypatch.setenv("HF_HUB_CACHE", str(c))
    return c


@pytest.fixture
def win(qtbot, tiny_bundle, cache):
    w = show_window(qtbot, tiny_bundle)
    yield w
    close_window(w)


def _worker_bundle(win):
    return win.controller.client.worker.bundle


def _titles(dialog):
    t = dialog.tree
    return [t.topLevelItem(i).text(0).strip() for i in range(t.topLevelItemCount())]


def test_the_menu_opens_a_dialog_listing_bundled_recent_and_cached_models(qtbot, win, cache,
                                                                          hf_model):
    win.features.prefs.add_recent("models", "openai-community/gpt2")
    a = win.actions["open_model"]
    assert a in win.menus["file"].actions() and a.shortcut().toString() == "Ctrl+Shift+O"
    a.trigger()
    d = win.features.models.dialog
    assert d is not None and d.isVisible()
    titles = _titles(d)
    assert titles[0] == "Bundled" and "Recent" in titles
    assert any(t.startswith("Hugging Face cache") and str(cache) in t for t in titles)
    cached = [i for i in range(d.tree.topLevelItemCount())
              if d.tree.topLevelItem(i).text(0).strip() == "openai-community/gpt2"]
    assert len(cached) == 2  # once as recent, once in the cache
    item = d.tree.topLevelItem(cached[-1])
    assert item.text(1) == "Hugging Face GPT-2"
    assert item.text(2) == f"{hf_model.num_parameters() / 1e3:.1f}k"
    assert item.flags() & Qt.ItemFlag.ItemIsEnabled
    bert = d.row_item("google-bert/bert-base-uncased")
    assert bert is not None and not bert.flags() & Qt.ItemFlag.ItemIsEnabled  # greyed
    assert bert.text(1) == "unsupported (bert)" and "model_type 'bert'" in bert.toolTip(0)
    # No accelerator here: only auto and cpu can be chosen.
    if not torch.cuda.is_available():
        m = d.device.model()
        enabled = [d.device.itemText(i) for i in range(d.device.count())
                   if m.item(i).isEnabled()]
        assert enabled == ["auto (cpu)", "cpu"]
    d.close()


def test_opening_a_cached_model_by_name_on_the_worker(qtbot, win, hf_model):
    old = _worker_bundle(win)
    d = win.features.models.show_dialog()
    d.tree.setCurrentItem(d.row_item("openai-community/gpt2"))
    stages = []
    win.controller.client.result.connect(
        lambda gen, cmd, r: stages.append(r.get("stage")) if cmd == "open_model" else None)
    with qtbot.waitSignal(win.features.models.opened, timeout=TIMEOUT) as sig:
        qtbot.mouseClick(d.open_button, Qt.MouseButton.LeftButton)
        assert d.loading and not d.open_button.isEnabled()
        assert d.close_button.text() == "Cancel loading"
    assert sig.args == ["openai-community/gpt2"]
    snap = settle(qtbot, win)
    assert [s for s in stages if s] == ["Reading the model", "Moving it to cpu in float32",
                                        "Running the prompt"]
    bundle = _worker_bundle(win)
    assert bundle is not old and bundle.name == "openai-community/gpt2"
    assert win.windowTitle() == "gptviz — openai-community/gpt2"
    assert not d.isVisible()
    assert win.features.prefs.recent("models")[0] == "openai-community/gpt2"
    # The next-token probabilities shown are transformers' own.
    with torch.no_grad():
        p = torch.softmax(hf_model(torch.tensor([snap.ids.tolist()])).logits[0, -1], -1)
    np.testing.assert_allclose(snap.candidates.probs, p[snap.candidates.ids].numpy(),
                               atol=1e-5)


def test_a_cancelled_load_leaves_the_open_model(qtbot, win):
    old = _worker_bundle(win)
    title = win.windowTitle()
    opener = win.features.models
    d = opener.show_dialog()
    with qtbot.waitSignal(opener.cancelled, timeout=TIMEOUT):
        opener.open("openai-community/gpt2")
        qtbot.mouseClick(d.close_button, Qt.MouseButton.LeftButton)  # "Cancel loading"
    qtbot.waitUntil(lambda: not win.controller.client.busy, timeout=TIMEOUT)
    assert _worker_bundle(win) is old and win.windowTitle() == title
    assert d.isVisible() and not d.loading and "Cancelled" in d.status.text()
    assert win.features.prefs.recent("models") == []
    # The old model still steps.
    n = win.controller.snapshot.ids.size
    win.controller.step(1)
    assert settle(qtbot, win).ids.size == n + 1
    d.close()


def test_a_name_not_in_the_cache_fails_clearly_and_keeps_the_model(qtbot, win):
    old = _worker_bundle(win)
    opener = win.features.models
    d = opener.show_dialog()
    with qtbot.waitSignal(opener.failed, timeout=TIMEOUT) as sig:
        opener.open("EleutherAI/pythia-70m")
    assert "hf download EleutherAI/pythia-70m" in sig.args[0]
    assert _worker_bundle(win) is old
    assert not d.loading and "not in the Hugging Face cache" in d.status.text()
    assert win.last_error_box is not None
    win.last_error_box.close()
    d.close()


def test_bfloat16_from_the_dialog(qtbot, win):
    opener = win.features.models
    d = opener.show_dialog()
    d.dtype.setCurrentText("bfloat16")
    d.tree.setCurrentItem(d.row_item("openai-community/gpt2"))
    with qtbot.waitSignal(opener.opened, timeout=TIMEOUT):
        d.open_button.click()
    snap = settle(qtbot, win)
    assert _worker_bundle(win).model.wte.weight.dtype == torch.bfloat16
    assert snap.attn.dtype == np.float32 and np.isfinite(snap.candidates.probs).all()
    win.controller.step(3)
    assert settle(qtbot, win).ids.size == snap.ids.size + 3
    assert win.features.prefs.value("model/dtype") == "bfloat16"


def test_launcher_options(cache):
    from gptviz_app.launch import parse_args

    a = parse_args(["--model", "gpt2", "--device", "auto", "--dtype", "bfloat16"])
    assert (a.model, a.dtype) == ("gpt2", "bfloat16")
    assert a.device == ("cuda" if torch.cuda.is_available() else
                        "mps" if torch.backends.mps.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as e:
            parse_args(["--device", "cuda"])
        assert e.value.code == 2


def test_main_py_opens_a_cached_model_by_name(tmp_path, cache):
    out = tmp_path / "shot.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HF_HUB_CACHE": str(cache),
           "GPTVIZ_SETTINGS": str(tmp_path / "settings.ini")}
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--model", "gpt2", "--steps", "2",
                        "--greedy", "--size", "1024x640", "--screenshot", str(out)],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert out.is_file() and out.stat().st_size > 10_000
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), "--model", "org/none",
                        "--screenshot", str(tmp_path / "x.png")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "hf download org/none" in r.stderr


def test_head_grid_names_the_key_value_head_each_query_head_shares(qtbot):
    """Grouped-query attention: the read-out's key/value head is the one the model really
    uses, found by changing one key/value head's key weights and seeing which query heads'
    attention moves."""
    from types import SimpleNamespace

    from gptviz import GPT, GPTConfig
    from gptviz_app.views.head_grid import HeadGrid

    cfg = GPTConfig(n_layer=1, n_head=8, n_kv_head=2, n_embd=32, block_size=16, vocab_size=20)
    torch.manual_seed(0)
    model = GPT(cfg).eval()
    ids = torch.randint(0, 20, (1, 10))
    C, hd = cfg.n_embd, cfg.head_dim
    with torch.no_grad():
        before = model(ids, return_attn=True).attentions[0][0]  # (H, T, T)
    users = {}
    for j in range(2):
        w = model.h[0].attn.c_attn.weight
        saved = w.detach().clone()
        with torch.no_grad():
            w[C + j * hd:C + (j + 1) * hd] += torch.randn(hd, C)  # key rows of kv head j
            after = model(ids, return_attn=True).attentions[0][0]
            w.copy_(saved)
        moved = (after - before).abs().amax(dim=(1, 2)) > 1e-4  # (H,)
        users[j] = [h for h in range(8) if moved[h]]
    assert sorted(users[0] + users[1]) == list(range(8)) and users[0] and users[1]
    grid = HeadGrid()
    qtbot.addWidget(grid)
    grid.set_model(SimpleNamespace(n_layer=1, n_head=8, kv_heads=2))
    for j, heads in users.items():
        for h in heads:
            assert grid.kv_note(h) == (f" (key/value head {j}, shared with heads "
                                       f"{heads[0]}–{heads[-1]})")
    grid.set_model(SimpleNamespace(n_layer=1, n_head=8, kv_heads=8))
    assert grid.kv_note(3) == ""
