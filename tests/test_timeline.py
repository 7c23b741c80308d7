"""The training timeline: snapshots written by ``train`` (float16, numbered over the run), the
shipped series in ``resources/timeline/`` (complete, small, an induction head forms), the
synthetic tales corpus, and the prompt run on a snapshot (against a fresh forward)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gptviz.analysis.timeline import (
    LOSSES_FILE,
    TimelineError,
    default_series_dir,
    read_series,
    run_prompt,
)
from gptviz.io.checkpoint import load_gptviz_checkpoint
from gptviz.train.snapshots import parse_iterations, save_snapshot, snapshot_name
from gptviz.train.tales import TALE_GENRES, TALES_CORPUS, tales

SERIES = default_series_dir()
STAGES = ("pretrain", "induct", "anneal", "finetune")


def _folders(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if p.is_dir())


def _dtypes(path: Path) -> set[str]:
    """The dtypes in a safetensors header (8-byte little-endian length, then JSON)."""
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    return {v["dtype"] for k, v in header.items() if k != "__metadata__"}


def _probe(model, n: int = 40, batch: int = 8, seed: int = 123) -> np.ndarray:
    """Induction score per head, written out here (not the app's code): random distinct
    tokens repeated twice; mean attention from each token of the second copy to the token
    right after its first occurrence."""
    rng = np.random.default_rng(seed)
    n = min(n, model.config.block_size // 2)
    v = model.config.vocab_size
    first = np.stack([rng.permutation(v)[:n] for _ in range(batch)])
    x = torch.from_numpy(np.concatenate([first, first], 1)).long()  # (B, 2n)
    with torch.no_grad():
        att = model(x, return_attn=True).attentions  # L x (B, H, 2n, 2n)
    i = np.arange(n, 2 * n)
    return np.array([[float(a[:, h, i, i - n + 1].mean()) for h in range(a.shape[1])]
                     for a in att])  # (L, H)


# ---------------------------------------------------------------------- the shipped series
def test_shipped_series_is_complete_and_small():
    folders = _folders(SERIES)
    assert len(folders) >= 12
    size = sum(p.stat().st_size for p in SERIES.rglob("*") if p.is_file())
    assert size <= 30 * 2 ** 20
    stages = []
    for d in folders:
        meta = json.loads((d / "metadata.json").read_text())
        assert isinstance(meta["iteration"], int) and d.name == f"{meta['iteration']:06d}"
        stages.append(meta["stage"])
        assert _dtypes(d / "model.safetensors") == {"F16"}
    ranks = [STAGES.index(s) for s in stages]
    assert ranks == sorted(ranks) and stages[0] == "pretrain" and stages[-1] == "finetune"
    assert json.loads((folders[0] / "metadata.json").read_text())["iteration"] == 0


def test_every_shipped_snapshot_loads_as_float32():
    for d in _folders(SERIES):
        bundle = load_gptviz_checkpoint(d)
        assert all(p.dtype == torch.float32 for p in bundle.model.parameters())
    last = load_gptviz_checkpoint(_folders(SERIES)[-1])
    assert last.model.classifier is not None  # the fine-tuning head W_y


def test_an_induction_head_forms_in_the_shipped_series():
    folders = _folders(SERIES)
    first = _probe(load_gptviz_checkpoint(folders[0]).model).max()
    last = _probe(load_gptviz_checkpoint(folders[-1]).model).max()
    assert first < 0.1
    assert last >= 0.5


def test_shipped_loss_curves_show_both_stages():
    data = json.loads((SERIES / LOSSES_FILE).read_text())
    names = [s["stage"] for s in data["stages"]]
    assert names == ["pretrain", "finetune"]
    pre, ft = data["stages"]
    assert pre["start"] == 0 and pre["end"] == ft["start"] < ft["end"]
    l1 = np.array(data["curves"]["l1"])
    l3 = np.array(data["curves"]["l3"])
    assert l1[:, 0].min() <= pre["end"] < l1[:, 0].max()  # L1 through both stages
    assert (l3[:, 0] > ft["start"]).all() and (l3[:, 0] <= ft["end"]).all()  # L3 only in FT
    series = read_series(SERIES)
    assert series.iterations[-1] == ft["end"]
    assert l1[0, 1] > l1[-1, 1]  # it learned


# ---------------------------------------------------------------------- snapshots from train
def _train_args(tmp_path: Path, **kw) -> argparse.Namespace:
    from gptviz.cli.train import configure

    p = argparse.ArgumentParser()
    configure(p)
    argv = ["--corpus", TALES_CORPUS, "--run-dir", str(tmp_path / "run"),
            "--vocab-size", "300", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--block-size", "32", "--dropout", "0", "--iters", "4", "--batch-size", "2",
            "--copy-rows", "2", "--log-every", "1", "--eval-every", "100", "--ckpt-every",
            "100", "--ft-iters", "3", "--ft-batch-size", "3", "--threads", "1",
            "--snapshot-every", "2", "--snapshot-dir", str(tmp_path / "snaps")]
    for k, v in kw.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return p.parse_args(argv)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from gptviz.train import stages

    tmp = tmp_path_factory.mktemp("timeline")
    args = _train_args(tmp, snapshots="1,5")
    quiet = lambda _s: None  # noqa: E731
    stages.pretrain(args, log=quiet)
    stages.finetune(args, log=quiet)
    return tmp / "snaps", args


def test_train_writes_float16_snapshots_numbered_over_the_run(trained):
    snaps, args = trained
    names = [d.name for d in _folders(snaps)]
    # every 2 iterations, and 1 and 5, over pretraining (0..4) then fine-tuning (5..7); the
    # last iteration of every stage too
    assert names == [snapshot_name(i) for i in (0, 1, 2, 4, 5, 6, 7)]
    for d in _folders(snaps):
        meta = json.loads((d / "metadata.json").read_text())
        assert meta["iteration"] == int(d.name)
        assert meta["stage"] == ("pretrain" if int(d.name) <= 4 else "finetune")
        assert _dtypes(d / "model.safetensors") == {"F16"}
    # the last snapshot is the fine-tuned model, to float16 precision
    final = load_gptviz_checkpoint(Path(args.run_dir) / "finetuned").model
    snap = load_gptviz_checkpoint(snaps / snapshot_name(7)).model
    for (name, a), (_, b) in zip(final.state_dict().items(), snap.state_dict().items()):
        assert b.dtype == torch.float32
        assert torch.equal(a.half().float(), b), name


def test_train_writes_the_loss_curves(trained):
    snaps, args = trained
    data = json.loads((snaps / LOSSES_FILE).read_text())
    assert [s["stage"] for s in data["stages"]] == ["pretrain", "finetune"]
    log = [json.loads(x) for x in (Path(args.run_dir) / "finetune_log.jsonl").read_text()
           .splitlines()]
    assert data["curves"]["l3"] == [[4 + r["iter"], round(r["l3"], 5)] for r in log]


def test_save_snapshot_leaves_the_model_as_it_was(tmp_path, tiny_bundle):
    model = tiny_bundle.model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    d = save_snapshot(tmp_path, model, tiny_bundle.tokenizer, 12, "pretrain")
    assert d.name == "000012" and model.training
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k])
               for k, v in model.state_dict().items())


def test_parse_iterations_and_bad_values():
    assert parse_iterations("50, 0,50,100") == (0, 50, 100)
    with pytest.raises(ValueError, match="non-negative integers"):
        parse_iterations("0,-5")


def test_bad_snapshot_list_is_one_line_error(capsys):
    from gptviz.cli import main

    assert main(["train", "--snapshots", "0,x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--snapshots" in err[0]


# ---------------------------------------------------------------------- reading a series
def _series(tmp_path: Path, bundle, points) -> Path:
    for it, stage in points:
        save_snapshot(tmp_path, bundle.model, bundle.tokenizer, it, stage)
    return tmp_path


def test_read_series_checks_names_and_stage_order(tmp_path, tiny_bundle):
    d = _series(tmp_path / "ok", tiny_bundle, [(0, "pretrain"), (10, "finetune")])
    assert read_series(d).iterations == [0, 10]
    bad = _series(tmp_path / "order", tiny_bundle, [(0, "finetune"), (10, "pretrain")])
    with pytest.raises(TimelineError, match="out of order"):
        read_series(bad)
    wrong = _series(tmp_path / "name", tiny_bundle, [(0, "pretrain")])
    (wrong / "000000").rename(wrong / "000007")
    with pytest.raises(TimelineError, match="iteration 0 in folder 000007"):
        read_series(wrong)
    with pytest.raises(TimelineError, match="no snapshot folders"):
        read_series(tmp_path)


def test_the_live_timeline_reads_a_series_again_when_a_file_in_it_changes(tmp_path,
                                                                          tiny_bundle):
    """A ``metadata.json`` edited in place (its folders' times put back, as an editor that
    writes in place leaves them) and a snapshot folder added are both noticed; an unchanged
    series is not read again."""
    import os

    from gptviz.analysis.live_timeline import TimelineSettings, TrainingTimeline

    d = _series(tmp_path / "run", tiny_bundle, [(0, "pretrain"), (10, "pretrain")])
    timeline = TrainingTimeline()
    timeline.reset()
    assert timeline.compute(None, TimelineSettings(str(d), 1)).frame.stage == "pretrain"
    first = timeline.series(str(d))
    assert timeline.series(str(d)) is first  # nothing changed: the same series
    meta = d / "000010" / "metadata.json"
    folder_times = [(p, p.stat()) for p in (d, d / "000010")]
    data = json.loads(meta.read_text())
    data["stage"] = "finetune"
    meta.write_text(json.dumps(data))
    st = meta.stat()
    os.utime(meta, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    for p, t in folder_times:
        os.utime(p, ns=(t.st_atime_ns, t.st_mtime_ns))
    edited = timeline.series(str(d))
    assert [e.stage for e in edited.snapshots] == ["pretrain", "finetune"]
    # and the frame shown says so too (not the one computed before the edit)
    assert timeline.compute(None, TimelineSettings(str(d), 1)).frame.stage == "finetune"
    save_snapshot(d, tiny_bundle.model, tiny_bundle.tokenizer, 20, "finetune")
    assert timeline.series(str(d)).iterations == [0, 10, 20]
    assert timeline.compute(None, TimelineSettings(str(d), 1)).frame.iteration == 10


def test_run_prompt_is_a_fresh_forward(tiny_bundle):
    prompt = "the cat sat. the cat sat."
    frame = run_prompt(tiny_bundle, prompt, 2, 40, "pretrain", top_k=5)
    ids = tiny_bundle.tokenizer.encode(prompt)
    x = torch.tensor([ids])
    with torch.no_grad():
        out = tiny_bundle.model(x, return_attn=True)
    want = torch.stack([a[0] for a in out.attentions]).numpy()  # (L, H, T, T)
    np.testing.assert_allclose(frame.attention, want, rtol=0, atol=1e-6)
    probs = torch.softmax(out.logits[0, -1], -1)
    np.testing.assert_allclose(frame.top_probs, torch.topk(probs, 5).values.numpy(), atol=1e-6)
    assert frame.ids.tolist() == ids and (frame.iteration, frame.index) == (40, 2)
    # the prompt's previous-token score, by hand
    T = len(ids)
    prev = np.array([[want[la, h, np.arange(1, T), np.arange(T - 1)].mean()
                      for h in range(want.shape[1])] for la in range(want.shape[0])])
    np.testing.assert_allclose(frame.scores.prev_token, prev, atol=1e-6)


# ---------------------------------------------------------------------- the tales corpus
def test_tales_are_reproducible_labelled_and_repeat_spans():
    train, held, genre_of = tales()
    again, _, _ = tales()
    assert train == again
    assert not set(train) & set(held)
    assert set(genre_of.values()) == set(TALE_GENRES)
    assert {genre_of[k] for k in held} == set(TALE_GENRES)
    text = next(iter(train.values()))
    sentences = [s.strip() for s in text.replace("\n", " ").split(".") if s.strip()]
    assert len(set(sentences)) < len(sentences)  # sentences come back
    assert not set(held.values()) & set(train.values())
