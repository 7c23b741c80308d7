"""The model-family registry: recognition, registration, entry-point plug-ins, messages."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import pytest
import torch

from gptviz import CheckpointError, load_model, save_checkpoint
from gptviz.families import (
    ENTRY_POINT_GROUP,
    Family,
    families,
    find_family,
    register_family,
    unregister_family,
)
from gptviz.io.checkpoint import ModelBundle


def _write_json(path: Path, obj: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj), encoding="utf-8")
    return path


def test_builtin_families_in_order():
    names = [f.name for f in families()]
    assert names[:4] == ["gptviz", "hf-gpt2", "hf-openai-gpt", "nanogpt"]


def test_each_format_is_recognised_by_its_family(tmp_path, tiny_bundle):
    ours = save_checkpoint(tmp_path / "ours", tiny_bundle.model, tiny_bundle.tokenizer)
    gpt2 = _write_json(tmp_path / "gpt2" / "config.json", {"model_type": "gpt2"}).parent
    gpt1 = _write_json(tmp_path / "gpt1" / "config.json", {"model_type": "openai-gpt"}).parent
    nano_dir = tmp_path / "nano"
    nano_dir.mkdir()
    (nano_dir / "ckpt.pt").write_bytes(b"")
    nano_file = tmp_path / "model.pth"
    nano_file.write_bytes(b"")
    other = _write_json(tmp_path / "bert" / "config.json", {"model_type": "bert"}).parent
    found = {p: (find_family(p).name if find_family(p) else None)
             for p in (ours, gpt2, gpt1, nano_dir, nano_file, other, tmp_path / "missing")}
    assert found == {ours: "gptviz", gpt2: "hf-gpt2", gpt1: "hf-openai-gpt",
                     nano_dir: "nanogpt", nano_file: "nanogpt", other: None,
                     tmp_path / "missing": None}


def test_broken_config_is_not_recognised_but_reported(tmp_path):
    d = tmp_path / "broken"
    d.mkdir()
    (d / "config.json").write_text("{not json", encoding="utf-8")
    assert find_family(d) is None
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_model(d)


def test_unsupported_model_type_names_every_family(tmp_path):
    d = _write_json(tmp_path / "bert" / "config.json", {"model_type": "bert"}).parent
    with pytest.raises(CheckpointError) as e:
        load_model(d)
    msg = str(e.value)
    assert "unsupported model_type 'bert'" in msg
    for f in families():
        assert f.title in msg


def _toy_family(tiny_bundle: ModelBundle, name: str = "toy") -> Family:
    def load(path: Path) -> ModelBundle:
        return ModelBundle(model=tiny_bundle.model, tokenizer=tiny_bundle.tokenizer,
                           metadata={"toy": path.read_text(encoding="utf-8")},
                           source=str(path), kind=name)

    return Family(name, "Toy format", lambda p: p.suffix == ".toy", load)


def test_a_registered_family_opens_its_files(tmp_path, tiny_bundle):
    f = tmp_path / "m.toy"
    f.write_text("hello", encoding="utf-8")
    with pytest.raises(CheckpointError):
        load_model(f)
    register_family(_toy_family(tiny_bundle))
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_family(_toy_family(tiny_bundle))
        b = load_model(f)
        assert (b.kind, b.metadata, b.source) == ("toy", {"toy": "hello"}, str(f))
        ids = torch.tensor([[1, 2, 3]])
        assert torch.equal(b.model(ids).logits, tiny_bundle.model(ids).logits)
    finally:
        unregister_family("toy")
    assert "toy" not in [x.name for x in families()]


def _install_plugin(root: Path, module: str, body: str, entry: str) -> None:
    """A real installed distribution on ``root``: a module plus its dist-info with an entry
    point of the families group (what ``pip install`` of a plug-in package leaves)."""
    (root / f"{module}.py").write_text(textwrap.dedent(body), encoding="utf-8")
    info = root / f"{module}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n",
                                   encoding="utf-8")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry}\n",
                                           encoding="utf-8")


def test_entry_point_plugin_adds_a_family(tmp_path, monkeypatch, tiny_bundle):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, "gptviz_toyfam", """
        from pathlib import Path
        from gptviz.families import Family
        from gptviz.io.checkpoint import CheckpointError

        def _load(path: Path):
            raise CheckpointError(f"{path}: toy files hold no weights")

        FAMILY = Family("toy-plugin", "Toy plug-in", lambda p: p.suffix == ".toyp", _load)
    """, "toy = gptviz_toyfam:FAMILY")
    monkeypatch.syspath_prepend(str(site))
    f = tmp_path / "x.toyp"
    f.write_text("", encoding="utf-8")
    try:
        names = [x.name for x in families(rescan=True)]
        assert names[-1] == "toy-plugin" and names[:4] == ["gptviz", "hf-gpt2",
                                                             "hf-openai-gpt", "nanogpt"]
        with pytest.raises(CheckpointError, match="toy files hold no weights"):
            load_model(f)
    finally:
        monkeypatch.undo()
        families(rescan=True)
    assert "toy-plugin" not in [x.name for x in families()]


def test_broken_plugin_warns_and_builtins_still_work(tmp_path, monkeypatch, tiny_bundle):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, "gptviz_badfam", "raise ImportError('missing dependency')\n",
                    "bad = gptviz_badfam:FAMILY")
    monkeypatch.syspath_prepend(str(site))
    ours = save_checkpoint(tmp_path / "ours", tiny_bundle.model, tiny_bundle.tokenizer)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            names = [x.name for x in families(rescan=True)]
        assert any("'bad'" in str(w.message) and "missing dependency" in str(w.message)
                   for w in caught)
        assert "bad" not in names
        assert load_model(ours).kind == "gptviz"
    finally:
        monkeypatch.undo()
        families(rescan=True)


def test_old_import_paths_still_work():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from gptviz.checkpoint import load_model as old_load_model
        from gptviz.loaders import load_nanogpt, read_meta_pkl
        from gptviz.sampling import SamplingSettings

    from gptviz.engine import SamplingSettings as new_settings
    from gptviz.families import load_nanogpt as new_nanogpt
    from gptviz.io.tokenizer_files import read_meta_pkl as new_meta

    assert old_load_model is load_model and SamplingSettings is new_settings
    assert load_nanogpt is new_nanogpt and read_meta_pkl is new_meta
    # modules whose old names are packages now look their old names up themselves
    from gptviz.analysis import bench_analysis
    from gptviz.bench import run_bench
    from gptviz.bench.analysis import bench_analysis as new_bench_analysis
    from gptviz.bench.speed import run_bench as new_run_bench
    from gptviz.loaders import GPT2_ACTIVATIONS
    from gptviz.model import Block
    from gptviz.model.gpt import Block as new_block
    from gptviz.train import pretrain
    from gptviz.train.stages import pretrain as new_pretrain

    assert (run_bench, pretrain, Block) == (new_run_bench, new_pretrain, new_block)
    assert bench_analysis is new_bench_analysis and GPT2_ACTIVATIONS["gelu_new"] == "gelu_tanh"
    with pytest.raises(ImportError):
        from gptviz.train import no_such_name  # noqa: F401


def test_a_plugin_that_raises_while_looking_warns_and_others_still_answer(tmp_path, tiny_bundle):
    def boom(path: Path) -> bool:
        raise OSError("boom")

    register_family(Family("looks-badly", "Broken", boom, lambda p: None))  # type: ignore
    try:
        d = _write_json(tmp_path / "bert" / "config.json", {"model_type": "bert"}).parent
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with pytest.raises(CheckpointError, match="unsupported model_type 'bert'"):
                load_model(d)
        assert any("looks-badly" in str(w.message) and "boom" in str(w.message)
                   for w in caught)
        ours = save_checkpoint(tmp_path / "ours", tiny_bundle.model, tiny_bundle.tokenizer)
        assert load_model(ours).kind == "gptviz"  # asked before the broken one
    finally:
        unregister_family("looks-badly")


def test_a_plugin_cannot_take_a_builtin_name(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    _install_plugin(site, "gptviz_samename", """
        from gptviz.families import Family
        FAMILY = Family("gptviz", "Impostor", lambda p: True, lambda p: None)
    """, "impostor = gptviz_samename:FAMILY")
    monkeypatch.syspath_prepend(str(site))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fams = families(rescan=True)
        assert any("already registered" in str(w.message) for w in caught)
        assert [f.title for f in fams if f.name == "gptviz"] == ["gptviz checkpoint"]
    finally:
        monkeypatch.undo()
        families(rescan=True)


def test_config_with_neither_kind_says_so(tmp_path):
    d = _write_json(tmp_path / "odd" / "config.json", {"hidden_size": 8}).parent
    with pytest.raises(CheckpointError, match="neither a gptviz config"):
        load_model(d)
