"""Sample prompts shipped in ``resources/prompts.json``, each chosen to show something.

A prompt text of the form ``@random-repeat:N`` is expanded against a tokenizer into N random
whole-word tokens followed by the same N again: the probe on which induction heads light up.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gptviz.io.resources import resource_path
from gptviz.io.tokenizer import Tokenizer

PROMPTS_FILE = resource_path("prompts.json")
_RANDOM_REPEAT = re.compile(r"@random-repeat:(\d+)")


@dataclass(frozen=True)
class SamplePrompt:
    """One sample prompt: a menu title, its text (or a ``@random-repeat:N`` recipe), and
    what it demonstrates."""

    title: str
    text: str
    shows: str = ""


def load_sample_prompts(path: Path = PROMPTS_FILE) -> list[SamplePrompt]:
    """The sample prompts (an empty list when the file is absent)."""
    if not path.is_file():
        return []
    data = json.loads(path.read_text(encoding="utf-8"))
    return [SamplePrompt(p["title"], p["text"], p.get("shows", "")) for p in data["prompts"]]


def random_repeat_text(tokenizer: Tokenizer, n: int, seed: int = 0) -> str:
    """N random whole-word tokens (a leading space, letters only), then the same N again."""
    if n <= 0:
        raise ValueError("n must be positive")
    words = sorted({tokenizer.decode([i]) for i in range(tokenizer.vocab_size)
                    if re.fullmatch(r" [a-z]{3,}", tokenizer.decode([i]) or "")})
    if len(words) < n:
        raise ValueError(f"the vocabulary has only {len(words)} whole-word tokens (< {n})")
    rng = np.random.default_rng(seed)
    picked = [words[i] for i in rng.choice(len(words), size=n, replace=False)]
    once = "".join(picked)
    return once + once


def expand_prompt(text: str, tokenizer: Tokenizer, seed: int = 0) -> str:
    """Expand a ``@random-repeat:N`` recipe; any other text is returned unchanged."""
    m = _RANDOM_REPEAT.fullmatch(text.strip())
    return random_repeat_text(tokenizer, int(m.group(1)), seed) if m else text
