"""Tokenizers from the files other tools ship: ``tokenizer.json``, GPT-2's byte-level
``vocab.json`` + ``merges.txt``, GPT-1's lowercasing BPE, nanoGPT's character ``meta.pkl``.

* GPT-2: ``tokenizer.json`` when present, else byte-level BPE from ``vocab.json`` +
  ``merges.txt``. Any text round-trips exactly.
* GPT-1: ``tokenizer.json`` when present, else a BPE with the ``</w>`` end-of-word suffix, a
  lowercasing BERT normalizer and BERT pre-tokenizer (what ``transformers``'
  ``OpenAIGPTTokenizer`` builds). GPT-1's tokenizer **lowercases and splits off punctuation**:
  decoding gives back lowercased text with normalised spacing, never an exact round trip.
  Characters outside its vocabulary become ``<unk>``.
* nanoGPT's ``meta.pkl`` is read by an unpickler that builds only dicts of strings and ints.
"""

from __future__ import annotations

import builtins
import io
import os
import pickle
from pathlib import Path
from typing import Any

from gptviz.io.checkpoint import CheckpointError, require_file
from gptviz.io.files import file_problem
from gptviz.io.tensor_files import short_message
from gptviz.io.tokenizer import Tokenizer
from gptviz.model.config import GPTConfig

__all__ = ["tokenizer_from_json", "bpe_files", "gpt2_tokenizer", "openai_gpt_tokenizer",
           "char_tokenizer", "read_meta_pkl", "check_tokenizer"]


# Largest token id a tokenizer file may hold (LIMITS["vocab_size"] of config_checks): the
# tokenizers library fills every id up to the largest one when it serialises a vocabulary, so
# one token with id 10**9 costs gigabytes and seconds.
_MAX_TOKEN_ID = 1 << 22


def _largest_id(hf: Any) -> int:
    """The largest token id of a ``tokenizers.Tokenizer`` (-1 when it has none)."""
    return max(hf.get_vocab(with_added_tokens=True).values(), default=-1)


def tokenizer_from_json(path: Path) -> Tokenizer:
    from tokenizers import Tokenizer as HFTokenizer

    try:
        hf = HFTokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on malformed files
        raise CheckpointError(f"{path}: not a valid tokenizers file "
                              f"({short_message(str(e))})") from None
    top = _largest_id(hf)
    if top >= _MAX_TOKEN_ID:
        raise CheckpointError(f"{path}: token id {top:,} is beyond any real vocabulary (at "
                              f"most {_MAX_TOKEN_ID - 1:,} accepted)")
    try:
        return Tokenizer(hf)
    except Exception as e:
        raise CheckpointError(f"{path}: not a valid tokenizers file "
                              f"({short_message(str(e))})") from None


def bpe_files(d: Path, what: str) -> tuple[Path, Path] | None:
    """``(vocab.json, merges.txt)`` in ``d``; None if neither exists; error if one is missing."""
    vocab, merges = d / "vocab.json", d / "merges.txt"
    if vocab.is_file() and merges.is_file():
        return vocab, merges
    if vocab.is_file() or merges.is_file():
        missing = merges if vocab.is_file() else vocab
        raise CheckpointError(f"{missing}: file is missing ({what} needs both vocab.json and "
                              "merges.txt, or a tokenizer.json)")
    return None


def gpt2_tokenizer(d: Path, what: str = "the GPT-2 tokenizer") -> tuple[Tokenizer, Path] | None:
    problem = file_problem(d / "tokenizer.json")
    if problem is not None and os.path.lexists(d / "tokenizer.json"):  # a pipe, a dangling link
        raise CheckpointError(f"{d / 'tokenizer.json'}: {problem}")
    if (d / "tokenizer.json").is_file():
        return tokenizer_from_json(d / "tokenizer.json"), d / "tokenizer.json"
    files = bpe_files(d, what)
    if files is None:
        return None
    try:
        return Tokenizer.from_bpe_files(*files), files[0]
    except Exception as e:
        raise CheckpointError(f"{files[0]} / {files[1].name}: not a valid byte-level BPE "
                              f"vocabulary ({short_message(str(e))})") from None


def openai_gpt_tokenizer(vocab: str | Path, merges: str | Path, unk_token: str = "<unk>"
                         ) -> Tokenizer:
    """GPT-1's tokenizer from ``vocab.json`` + ``merges.txt``.

    The same pipeline as ``transformers``' ``OpenAIGPTTokenizer``: BERT normalizer (lowercase,
    accents kept), BERT pre-tokenizer (split on whitespace and punctuation), BPE whose
    word-final pieces end in ``</w>``, and a BPE decoder that turns ``</w>`` back into spaces.
    It lowercases, so text does not round-trip exactly.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, normalizers, pre_tokenizers

    bpe = models.BPE.from_file(str(vocab), str(merges), end_of_word_suffix="</w>",
                               continuing_subword_prefix="", fuse_unk=False,
                               unk_token=unk_token, dropout=None)
    hf = HFTokenizer(bpe)
    hf.normalizer = normalizers.BertNormalizer(lowercase=True)
    hf.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    hf.decoder = decoders.BPEDecoder(suffix="</w>")
    return Tokenizer(hf)


def char_tokenizer(stoi: dict[str, int]) -> Tokenizer:
    """A character-level tokenizer (nanoGPT's ``meta.pkl``): one id per character.

    Built as a ``tokenizers`` BPE with single-character tokens and no merges, no normalizer or
    pre-tokenizer (spaces and newlines are ordinary characters), and a decoder that simply
    concatenates. Characters outside the vocabulary are dropped by ``tokenizers``.
    """
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models

    hf = HFTokenizer(models.BPE(vocab=dict(stoi), merges=[]))
    hf.decoder = decoders.Fuse()
    return Tokenizer(hf)


class _MetaUnpickler(pickle.Unpickler):
    """Unpickler for nanoGPT's ``meta.pkl`` that can build nothing but dicts, strings and ints."""

    _ALLOWED = {("builtins", "dict"), ("builtins", "str"), ("builtins", "int")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return getattr(builtins, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("refusing persistent ids")


def read_meta_pkl(path: Path) -> Tokenizer:
    """nanoGPT's character-level ``meta.pkl`` (``{'vocab_size', 'stoi', 'itos'}``) as a tokenizer,
    read without executing any code."""
    require_file(path, allow_empty=False)
    try:
        meta = _MetaUnpickler(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: holds more than plain dicts of strings and integers "
                              f"({e}); gptviz will not execute pickled code") from None
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable pickle (truncated or corrupt: "
                              f"{short_message(str(e), e)})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: expected a dict with 'stoi'/'itos'")
    stoi = meta.get("stoi")
    if stoi is None and isinstance(meta.get("itos"), dict):
        stoi = {s: i for i, s in meta["itos"].items()}
    if not isinstance(stoi, dict) or not stoi:
        raise CheckpointError(f"{path}: no character vocabulary ('stoi' or 'itos'); only "
                              "character-level meta.pkl files are supported")
    ok = all(isinstance(s, str) and len(s) == 1 and isinstance(i, int) and not isinstance(i, bool)
             and 0 <= i < _MAX_TOKEN_ID for s, i in stoi.items())
    if not ok or len(set(stoi.values())) != len(stoi):
        raise CheckpointError(f"{path}: 'stoi' must map single characters to distinct ids >= 0 "
                              f"(below {_MAX_TOKEN_ID:,})")
    return char_tokenizer(stoi)


def check_tokenizer(tok: Tokenizer, tok_path: Path, config: GPTConfig) -> None:
    if tok.vocab_size > config.vocab_size:
        raise CheckpointError(f"{tok_path}: tokenizer has {tok.vocab_size} tokens but the "
                              f"model's vocab_size is {config.vocab_size}")
    top = _largest_id(tok.hf)
    if top >= config.vocab_size:  # ids with gaps: fewer tokens, yet one past the embedding
        raise CheckpointError(f"{tok_path}: tokenizer has token id {top:,} but the model's "
                              f"vocab_size is {config.vocab_size}")
