"""Hostile command lines: every bad argument, closed or full output and bad GUI option is one
line ``error: ...`` naming what is wrong (exit code 2), never a traceback or an abort."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from gptviz.cli import main
from gptviz.io.checkpoint import save_checkpoint

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "QT_QPA_PLATFORM": "offscreen"}


@pytest.fixture
def ckpt(tmp_path, tiny_bundle):
    return str(save_checkpoint(tmp_path / "tiny", tiny_bundle.model, tiny_bundle.tokenizer))


def _one_line(err: str) -> str:
    err = err.strip()
    assert err.startswith("error:") and "\n" not in err, err
    assert "Traceback" not in err
    return err


# A prompt given as bytes that are not UTF-8 reaches Python as lone surrogates.
NOT_UTF8 = os.fsdecode(b"caf\xe9")


@pytest.mark.parametrize("argv,words", [
    (["generate", "--prompt", NOT_UTF8], ("argument --prompt", "not valid UTF-8", "0xE9")),
    (["generate", "--prompt", "a\ud800b"], ("argument --prompt", "lone surrogate U+D800")),
    (["heads", "--prompt", NOT_UTF8], ("argument --prompt",)),
    (["lens", "--prompt", NOT_UTF8], ("argument --prompt",)),
    (["trace", "--prompt", NOT_UTF8, "--out", "x.npz"], ("argument --prompt",)),
    (["generate", "--prompt", "hi", "--temperature", "1e-39"], ("temperature must be at least",)),
    (["generate", "--prompt", "hi", "--temperature", "1e-300"], ("temperature",)),
    (["generate", "--prompt", "hi", "--temperature", "1e400"], ("temperature", "inf")),
    (["generate", "--prompt", "hi", "--temperature", "nan"], ("temperature",)),
    (["generate", "--prompt", "hi", "--steps", "abc"], ("argument --steps", "'abc'")),
    (["generate", "--prompt", "hi", "--top-k", "1.5"], ("argument --top-k",)),
    (["generate", "--prompt", "hi", "--bogus"], ("unrecognized arguments: --bogus",)),
    (["generate"], ("--prompt", "required")),
    (["heads", "--prompt", "hi", "--seed", "-1"], ("argument --seed", ">= 0", "'-1'")),
    (["heads", "--prompt", "hi", "--probe-batch", "0"], ("argument --probe-batch",)),
    (["heads", "--prompt", "hi", "--probe-batch", "1000000000"], ("argument --probe-batch",)),
    (["heads", "--prompt", "hi", "--probe-len", "-5"], ("argument --probe-len",)),
    (["lens", "--prompt", "hi", "--k", "0"], ("argument --k", ">= 1")),
    (["lens", "--prompt", "hi", "--position", "x"], ("argument --position",)),
    (["frobnicate"], ("invalid choice: 'frobnicate'",)),
])
def test_bad_arguments_name_the_flag(ckpt, capsys, argv, words):
    model = [] if argv[0] == "frobnicate" else ["--model", ckpt]
    assert main(argv[:1] + model + argv[1:]) == 2
    err = _one_line(capsys.readouterr().err)
    for w in words:
        assert w in err, err


def test_help_still_prints_and_exits_0(capsys):
    assert main(["generate", "--help"]) == 0
    assert "--temperature" in capsys.readouterr().out
    assert main([]) == 0


def test_the_smallest_temperature_is_greedy(ckpt, capsys):
    """At the floor (1e-6) sampling is the argmax, as the limit T -> 0 should be."""
    assert main(["generate", "--model", ckpt, "--prompt", "hello", "--steps", "8",
                 "--temperature", "1e-6", "--only-new"]) == 0
    cold = capsys.readouterr().out
    assert main(["generate", "--model", ckpt, "--prompt", "hello", "--steps", "8",
                 "--greedy", "--only-new"]) == 0
    assert cold == capsys.readouterr().out


def test_closed_stdout(ckpt):
    res = subprocess.run(["sh", "-c", 'exec "$0" "$@" >&-', sys.executable, "-m", "gptviz",
                          "info", "--model", ckpt], cwd=ROOT, env=ENV, stderr=subprocess.PIPE,
                         text=True, timeout=180)
    assert res.returncode == 2
    assert "standard output is closed" in _one_line(res.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command", [["info"], ["generate", "--prompt", "hi", "--steps", "2"],
                                     ["heads", "--prompt", "hello", "--json"]])
def test_stdout_on_a_full_disk(ckpt, command):
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "gptviz", command[0], "--model", ckpt,
                              *command[1:]], cwd=ROOT, env=ENV, stdout=full,
                             stderr=subprocess.PIPE, text=True, timeout=180)
    assert res.returncode == 2, res.stderr
    err = _one_line(res.stderr)
    assert "cannot write to standard output" in err and "No space left" in err
    assert "Exception ignored" not in res.stderr


def test_prompt_bytes_that_are_not_utf8_in_a_real_process(ckpt):
    res = subprocess.run([sys.executable, "-m", "gptviz", "generate", "--model", ckpt,
                          "--prompt", b"caf\xe9"], cwd=ROOT, env=ENV, capture_output=True,
                         timeout=180)
    assert res.returncode == 2
    assert "not valid UTF-8" in _one_line(res.stderr.decode("utf-8", "replace"))


@pytest.mark.parametrize("argv,flag", [
    (["--size", "abc"], "--size"),
    (["--size", "0x600"], "--size"),
    (["--size", "800x"], "--size"),
    (["--size", "99999999x2"], "--size"),
    (["--steps", "-3"], "--steps"),
    (["--seed", "-1"], "--seed"),
    (["--seed", str(2 ** 64)], "--seed"),
    (["--layer", "-1"], "--layer"),
    (["--head", "x"], "--head"),
    (["--prompt", b"caf\xe9"], "--prompt"),
])
def test_gui_options_are_checked_before_the_window_exists(argv, flag):
    res = subprocess.run([sys.executable, str(ROOT / "main.py"), *argv], cwd=ROOT, env=ENV,
                         capture_output=True, timeout=180)
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2, err  # argparse's usage error, not SIGABRT (-6)
    assert f"argument {flag}" in err
    assert "Traceback" not in err and "QThread" not in err
