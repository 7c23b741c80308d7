"""The block diagram follows the config: the parts of a block in the order the model runs
them (checked with forward hooks on a real GPT), norms, positions, tied or own output, W_y; and
a click on a layer selects it."""

from __future__ import annotations

import pytest
import torch

from gptviz.analysis.architecture import PAPER_LAYERS, architecture, block_parts
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

BASE = dict(n_layer=2, n_head=2, n_embd=16, block_size=16, vocab_size=32)

CASES = {
    "pre": {},
    "post": {"ln_placement": "post", "final_ln": False},
    "parallel": {"parallel_attn": True},
    "rmsnorm": {"norm_type": "rmsnorm", "bias": False},
    "untied": {"tie_word_embeddings": False},
    "finetune": {"n_classes": 3, "class_names": ("a", "b", "c")},
    "rotary": {"positional_embedding_type": "rotary"},
    "none": {"positional_embedding_type": "none"},
}


def _config(**kw) -> GPTConfig:
    return GPTConfig(**{**BASE, **kw})


def _run_order(config: GPTConfig) -> list[str]:
    """Names of block 0's modules in the order a forward pass calls them (forward hooks,
    removed afterwards)."""
    torch.manual_seed(0)
    model = GPT(config).eval()
    block = model.h[0]
    order: list[str] = []
    handles = [getattr(block, name).register_forward_hook(
        lambda _m, _i, _o, name=name: order.append(name))
        for name in ("ln_1", "attn", "ln_2", "mlp")]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 4, dtype=torch.long))
    finally:
        for h in handles:
            h.remove()
    assert not block.ln_1._forward_hooks  # nothing left registered
    return order


@pytest.mark.parametrize("case", sorted(CASES))
def test_block_parts_run_in_the_models_order(case):
    config = _config(**CASES[case])
    parts = block_parts(config)
    assert [b.name for b in parts if b.kind != "add"] == _run_order(config)


@pytest.mark.parametrize("case", sorted(CASES))
def test_diagram_boxes_match_the_models_modules(case):
    config = _config(**CASES[case])
    model = GPT(config)
    d = architecture(config)
    names = {b.name for b in d.bottom + d.top if b.name}
    assert ("wpe" in names) == (model.wpe is not None)
    assert ("unembed" in names) == (model.unembed is not None)
    assert ("classifier" in names) == (model.classifier is not None)
    assert ("ln_f" in names) == (not isinstance(model.ln_f, torch.nn.Identity))
    norm_cls = type(model.h[0].ln_1).__name__  # LayerNorm or RMSNorm
    assert all(b.label == norm_cls for b in d.block if b.kind == "norm")
    assert d.n_layer == config.n_layer and d.n_head == config.n_head
    assert d.kinds().count("attention") == config.n_layer


def test_pre_post_and_parallel_shapes():
    pre = [b.kind for b in block_parts(_config())]
    post = [b.kind for b in block_parts(_config(ln_placement="post"))]
    par = block_parts(_config(parallel_attn=True))
    assert pre == ["norm", "attention", "add", "norm", "mlp", "add"]
    assert post == ["attention", "add", "norm", "mlp", "add", "norm"]
    assert [b.kind for b in par] == ["norm", "attention", "norm", "mlp", "add"]
    assert [b.branch for b in par] == ["attn", "attn", "mlp", "mlp", ""]  # side by side


def test_output_tied_or_own_and_the_fine_tuning_head():
    tied = architecture(_config())
    own = architecture(_config(tie_word_embeddings=False))
    ft = architecture(_config(n_classes=3, class_names=("sea", "forest", "city")))
    assert tied.tied and "W_e" in tied.top[-1].label and "tied" in tied.top[-1].label
    assert not own.tied and own.top[-1].name == "unembed"
    assert ft.top[-1].kind == "classifier" and "sea, forest, city" in ft.top[-1].detail
    assert "classifier" not in tied.kinds()


def test_the_papers_twelve_blocks_are_noted_for_other_depths():
    assert any(str(PAPER_LAYERS) in n for n in architecture(_config()).notes)
    assert not architecture(_config(n_layer=PAPER_LAYERS)).notes


def test_clicking_a_layer_and_a_head_selects_them(qtbot):
    pytest.importorskip("pytestqt")
    from PySide6.QtCore import Qt

    from gptviz_app.panels.block_diagram import DiagramView

    picked: list[tuple[int, int]] = []
    view = DiagramView(lambda layer, head: picked.append((layer, head)))
    qtbot.addWidget(view)
    view.resize(420, 640)
    view.set_state(architecture(_config(n_layer=4, n_head=4)), 1, 2, False)
    view.show()
    qtbot.waitExposed(view)
    view.grab()  # paints it: the click regions are laid out by the paint
    layer3 = next(h for h in view.hits if h.layer == 3 and h.head < 0)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=layer3.rect.center().toPoint())
    assert picked[-1] == (3, 2)  # the layer, keeping the selected head
    head0 = next(h for h in view.hits if h.layer == 1 and h.head == 0)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=head0.rect.center().toPoint())
    assert picked[-1] == (1, 0)
    view.close()
