"""Tokenizer wrapper around Hugging Face ``tokenizers`` with readable display strings.

Byte-level BPE (ours, GPT-2) round-trips any Unicode text exactly. Display strings make
whitespace visible for the GUI: ``·`` for a space, ``↵`` for a newline, ``⇥`` for a tab, and
``<0xAB>`` for a byte that is only part of a UTF-8 character (an emoji split over tokens).
"""

from __future__ import annotations

import json
import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers

SPACE_MARK = "·"
NEWLINE_MARK = "↵"
TAB_MARK = "⇥"
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
_SURROGATE = re.compile("[\ud800-\udfff]")


@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """Inverse of GPT-2's bytes_to_unicode table: printable stand-in character -> byte."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _visible(text: str) -> str:
    """Make whitespace and control characters visible."""
    out = []
    for ch in text:
        if ch == " ":
            out.append(SPACE_MARK)
        elif ch == "\n":
            out.append(NEWLINE_MARK)
        elif ch == "\t":
            out.append(TAB_MARK)
        elif ch == "\r":
            out.append("␍")
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"<0x{ord(ch):02X}>")
        elif unicodedata.category(ch) in _INVISIBLE:
            # C1 controls, format characters, unassigned or private code points: no glyph
            # to draw, so name them instead of showing an empty box.
            out.append(f"<U+{ord(ch):04X}>")
        else:
            out.append(ch)
    return "".join(out)


def display_bytes(raw: bytes) -> str:
    """Readable form of a token's bytes; bytes that are not whole UTF-8 characters show as hex."""
    out = []
    i = 0
    while i < len(raw):
        # Try the longest valid UTF-8 character starting here (1-4 bytes).
        for n in (1, 2, 3, 4):
            try:
                ch = raw[i:i + n].decode("utf-8")
            except UnicodeDecodeError:
                continue
            out.append(_visible(ch))
            i += n
            break
        else:
            out.append(f"<0x{raw[i]:02X}>")
            i += 1
    return "".join(out)


class Tokenizer:
    """Text <-> token ids, plus per-token bytes and display strings.

    Parameters
    ----------
    hf
        A ``tokenizers.Tokenizer``.
    """

    def __init__(self, hf: HFTokenizer) -> None:
        self.hf = hf
        spec = json.loads(hf.to_str())
        self.byte_level = (spec.get("decoder") or {}).get("type") == "ByteLevel"
        self._display: list[str | None] = [None] * self.vocab_size

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_file(cls, path: str | Path) -> Tokenizer:
        """Load a ``tokenizer.json``."""
        return cls(HFTokenizer.from_file(str(path)))

    @classmethod
    def from_bpe_files(cls, vocab: str | Path, merges: str | Path) -> Tokenizer:
        """A GPT-2 style byte-level BPE from ``vocab.json`` + ``merges.txt``."""
        bpe = models.BPE.from_file(str(vocab), str(merges))
        hf = HFTokenizer(bpe)
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        return cls(hf)

    def save(self, path: str | Path) -> None:
        """Write ``tokenizer.json``."""
        self.hf.save(str(path))

    # ------------------------------------------------------------------ use
    @property
    def vocab_size(self) -> int:
        """Number of ids the tokenizer can produce."""
        return self.hf.get_vocab_size(with_added_tokens=True)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no special tokens added).

        Raises
        ------
        ValueError
            ``text`` holds a lone surrogate (e.g. bytes that were not UTF-8, decoded with
            ``surrogateescape`` as Python does for command-line arguments): not Unicode
            text that can be tokenized.
        """
        m = _SURROGATE.search(text)
        if m is not None:
            raise ValueError(f"the text is not valid Unicode: a lone surrogate "
                             f"U+{ord(m.group()):04X} at character {m.start()} (bytes that "
                             "are not UTF-8?)")
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids``; byte-level tokenizers decode the joined bytes exactly."""
        if self.byte_level:
            return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")
        return self.hf.decode(list(ids), skip_special_tokens=False)

    def token_string(self, token_id: int) -> str:
        """The raw vocabulary entry (e.g. ``Ġthe`` for byte-level BPE)."""
        s = self.hf.id_to_token(int(token_id))
        if s is None:
            raise ValueError(f"token id {token_id} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")
        return s

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for."""
        s = self.token_string(token_id)
        if self.byte_level:
            table = _byte_decoder()
            try:
                return bytes(table[c] for c in s)
            except KeyError:  # an added/special token written in plain text
                return s.encode("utf-8")
        return s.replace("</w>", " ").encode("utf-8")

    def display(self, token_id: int) -> str:
        """Readable display string of one token (cached)."""
        token_id = int(token_id)
        if not 0 <= token_id < len(self._display):
            raise ValueError(f"token id {token_id} is outside the vocabulary "
                             f"(0..{self.vocab_size - 1})")
        cached = self._display[token_id]
        if cached is None:
            if self.byte_level:
                cached = display_bytes(self.token_bytes(token_id))
            else:
                cached = _visible(self.token_string(token_id).replace("</w>", " "))
            self._display[token_id] = cached
        return cached
