"""A bounded fuzz (hypothesis, derandomized) of the newer commands: ``attribute``, ``patch``,
``saliency``, ``trace --scores/--value-weighted``, ``--device``/``--dtype`` and the snapshot
flags of ``train``. Every command line ends in exit 0, or exit 2 with one ``error: ...``
line on stderr; never a traceback.
"""

from __future__ import annotations

import contextlib
import io
import os

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from gptviz.cli import main
from gptviz.io.checkpoint import save_checkpoint
from gptviz.model.config import GPTConfig
from gptviz.model.gpt import GPT

FUZZ = settings(max_examples=int(os.environ.get("GPTVIZ_FUZZ_EXAMPLES", "120")),
                deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def place(tmp_path_factory, tiny_tokenizer):
    root = tmp_path_factory.mktemp("newcli")
    torch.manual_seed(0)
    model = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=16, block_size=32,
                          vocab_size=tiny_tokenizer.vocab_size)).eval()
    ckpt = save_checkpoint(root / "ckpt", model, tiny_tokenizer)
    (root / "dir").mkdir()
    return {"root": root, "ckpt": str(ckpt)}


NUMBERS = st.one_of(
    st.sampled_from(["0", "1", "2", "3", "-1", "-2", "5"]),
    st.sampled_from(["2.5", "abc", "", "1e400", "nan", "inf", "-0", str(2 ** 64),
                     str(-(2 ** 63)), "9" * 400, "0x10", " 1", "1_0"]))
TEXTS = st.one_of(st.sampled_from(["hello", "hello world hello", " the", "o", "h"]),
                  st.sampled_from(["", " ", "\udcff", "a\ud800b", "\x00", "\n" * 40,
                                   "😀" * 10, "-" * 2000, "--json"]),
                  st.text(max_size=20))
DEVICES = st.sampled_from(["cpu", "auto", "cuda", "cuda:0", "cuda:99", "mps", "tpu", "",
                           "CPU", "cpu:0", "cuda:-1", "cuda:x"])
DTYPES = st.sampled_from(["float32", "bfloat16", "float16", "float64", "int8", "", "fp16"])

FLAGS = {
    "attribute": {"--prompt": TEXTS, "--position": NUMBERS, "--target-id": NUMBERS,
                  "--target": TEXTS, "--vs-id": NUMBERS, "--vs": TEXTS, "--json": None,
                  "--device": DEVICES, "--dtype": DTYPES},
    "patch": {"--clean": TEXTS, "--corrupt": TEXTS, "--target-id": NUMBERS, "--target": TEXTS,
              "--vs-id": NUMBERS, "--vs": TEXTS, "--json": None},
    "saliency": {"--prompt": TEXTS, "--target": TEXTS, "--target-id": NUMBERS,
                 "--method": st.sampled_from(["grad", "ig", "x", ""]), "--steps": NUMBERS,
                 "--json": None, "--device": DEVICES, "--dtype": DTYPES},
    "trace": {"--prompt": TEXTS, "--steps": NUMBERS, "--scores": None,
              "--value-weighted": None, "--greedy": None, "--device": DEVICES,
              "--dtype": DTYPES},
}

# What a valid call of each command needs (dropped now and then, to fuzz their absence too).
REQUIRED = {
    "attribute": ["--prompt", "hello world hello", "--target-id", "3"],
    "patch": ["--clean", "hello world", "--corrupt", "hello there", "--target-id", "3",
              "--vs-id", "4"],
    "saliency": ["--prompt", "hello world hello"],
    "trace": ["--prompt", "hello world hello", "--steps", "2"],
}


@st.composite
def command_lines(draw, place):
    command = draw(st.sampled_from(sorted(FLAGS)))
    argv = [command, "--model", place["ckpt"]]
    if draw(st.integers(0, 5)):
        argv += REQUIRED[command]
    if command == "trace":
        out = draw(st.sampled_from(["out.npz", "dir", "nowhere/x.npz", "", "o.npz"]))
        argv += ["--out", str(place["root"] / out) if out else ""]
    flags = FLAGS[command]
    for flag in draw(st.lists(st.sampled_from(sorted(flags)), max_size=4, unique=True)):
        kind = flags[flag]
        if kind is None:
            argv.append(flag)
            continue
        value = draw(kind)
        if flag == "--steps" and value.isdigit() and len(value) > 1:
            value = "3"  # a valid but long run is not what is fuzzed here
        argv += [flag, value]
    return argv


def _call(argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main(argv)
    return rc, err.getvalue().strip()


def _check(argv, rc, err):
    if rc != 0:
        assert rc == 2, (argv, rc, err)
        assert err.startswith("error:") and "\n" not in err, (argv, err)


@FUZZ
@given(data=st.data())
def test_fuzz_new_commands(place, data):
    argv = data.draw(command_lines(place), label="argv")
    rc, err = _call(argv)
    event(f"exit {rc}")
    _check(argv, rc, err)


@pytest.mark.parametrize("argv", [
    ["attribute", "--prompt", "hello world", "--target-id", "3", "--position", str(10 ** 30)],
    ["attribute", "--prompt", "hello world", "--target-id", "3", "--position", "-999"],
    ["attribute", "--prompt", "hello world", "--target", "\udcff"],
    ["saliency", "--prompt", "hello world", "--target", "\udcff"],
    ["saliency", "--prompt", "hello world", "--target", "a\ud800b"],
    ["saliency", "--prompt", "hello world", "--method", "ig", "--steps", "5000"],
    ["patch", "--clean", "hello", "--corrupt", "hello", "--target-id", "3", "--vs-id",
     str(10 ** 9)],
    ["trace", "--prompt", "hello", "--steps", "1", "--scores", "--value-weighted",
     "--out", "/dev/null"],
])
def test_named_hostile_calls(place, argv):
    argv = [argv[0], "--model", place["ckpt"], *argv[1:]]
    rc, err = _call(argv)
    _check(argv, rc, err)


@pytest.mark.parametrize("value", ["", ",", "1,,2", "-1", "a", "1e3", "1,2,x", "9" * 400,
                                   "\udcff", "0," * 5000])
def test_train_snapshot_flags_are_checked_before_training(value, tmp_path):
    """A bad ``--snapshots`` is refused in one line; an empty list is none (the run then
    stops at the missing corpus, also in one line)."""
    rc, err = _call(["train", "--run-dir", str(tmp_path / "run"), "--corpus",
                     str(tmp_path / "no-corpus"), "--snapshots", value])
    _check(["--snapshots", value], rc, err)


@pytest.mark.parametrize("flag, value", [("--snapshot-every", "-1"),
                                         ("--snapshot-every", "x"),
                                         ("--snapshot-every", "1e400")])
def test_train_snapshot_every_is_checked(flag, value, tmp_path):
    rc, err = _call(["train", "--run-dir", str(tmp_path / "run"), flag, value])
    assert rc == 2 and err.startswith("error:") and "\n" not in err, err
