"""Argument types shared by the commands, and the parser that reports errors in one line.

An argparse ``type=`` that raises :class:`argparse.ArgumentTypeError` gets its message
printed as ``error: argument --seed: must be a whole number >= 0 (got '-1')``: the flag is
always named, and nothing reaches the code of a command before its arguments are checked.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import NoReturn

__all__ = ["UsageError", "OneLineParser", "whole_number", "text", "MODEL_HELP", "device_name",
           "add_device_args"]

#: What ``--model`` takes, in every command and in the app.
MODEL_HELP = ("model folder, nanoGPT .pt file, or the name of a model in the local Hugging Face "
              "cache (gpt2, org/name, org/name@revision; never downloaded) (default: the "
              "bundled model)")

_SURROGATE = re.compile("[\ud800-\udfff]")


class UsageError(Exception):
    """A command line that does not parse; the message is one line naming the argument."""


class OneLineParser(argparse.ArgumentParser):
    """:class:`argparse.ArgumentParser` whose errors raise :class:`UsageError` (one line,
    printed by :func:`gptviz.cli.main`) instead of printing the usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def whole_number(minimum: int | None = None, maximum: int | None = None
                 ) -> Callable[[str], int]:
    """An argparse type: an integer within ``[minimum, maximum]`` (either end optional)."""
    def parse(s: str) -> int:
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number (got {s!r})") from None
        if minimum is not None and v < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum} "
                                             f"(got {s!r})")
        if maximum is not None and v > maximum:
            raise argparse.ArgumentTypeError(f"must be a whole number <= {maximum} "
                                             f"(got {s!r})")
        return v
    parse.__name__ = "whole number"  # argparse names the type in its own messages
    return parse


def text(s: str) -> str:
    """An argparse type: text that is valid Unicode.

    Arguments that were not UTF-8 reach Python with lone surrogates standing for the bytes
    (``surrogateescape``); they cannot be tokenized, so they are refused here, by name.
    """
    m = _SURROGATE.search(s)
    if m is not None:
        raise argparse.ArgumentTypeError(
            f"not valid UTF-8 text (byte 0x{ord(m.group()) - 0xDC00:02X} at character "
            f"{m.start()})" if 0xDC80 <= ord(m.group()) <= 0xDCFF else
            f"not valid Unicode text (a lone surrogate U+{ord(m.group()):04X} at character "
            f"{m.start()})")
    return s


def device_name(s: str) -> str:
    """An argparse type: ``auto``, ``cpu``, ``cuda`` (``cuda:N``) or ``mps``, and one this
    machine has (``auto`` is returned as the device it chose)."""
    from gptviz.io.device import resolve_device

    try:
        return resolve_device(s)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_device_args(p: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype``, as every command that loads a model takes them."""
    from gptviz.io.device import DEVICES, DTYPES

    p.add_argument("--device", type=device_name, default="auto", metavar="|".join(DEVICES),
                   help="where the model runs (default auto: CUDA or MPS when present, else "
                        "the CPU)")
    p.add_argument("--dtype", choices=tuple(DTYPES), default="float32",
                   help="precision of the weights and activations (default float32; bfloat16 "
                        "and float16 halve the memory, see the README for how far they move "
                        "the numbers)")
