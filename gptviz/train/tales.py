"""A built-in synthetic corpus, ``--corpus builtin:tales``: short tales in three genres,
generated from a fixed seed, that need nothing installed.

It exists for the training timeline (``resources/timeline/``): a model small enough to train
on a CPU in minutes, on text where looking back pays off. Every tale repeats spans of itself
(a refrain that comes back, and sentences told twice), so an induction head — attend to the
token after an earlier copy of the current token, and predict it — lowers the loss on the
text as well as on the copying rows. The three genres (``sea``, ``forest``, ``city``) draw
their nouns, verbs and adjectives from word lists of their own, so the fine-tuning head W_y
has something to learn. The held-out tales come from a different seed and never reach the
tokenizer or training.
"""

from __future__ import annotations

import random

__all__ = ["TALES_CORPUS", "TALE_GENRES", "tale", "tales", "is_builtin"]

#: The ``--corpus`` value that selects this corpus.
TALES_CORPUS = "builtin:tales"

#: Genres, in the order of the classifier's outputs.
TALE_GENRES: tuple[str, ...] = ("sea", "forest", "city")

_COMMON_NOUNS = "friend child stranger dog lamp letter song door name".split()
_COMMON_VERBS = "saw found followed called lost kept".split()
_WORDS: dict[str, dict[str, list[str]]] = {
    "sea": {
        "noun": "ship sailor wave gull anchor harbour captain storm island whale net tide"
                .split(),
        "verb": "sailed drifted rowed dived sank floated".split(),
        "adj": "salty grey wild deep blue cold".split(),
        "place": "on the shore|under the waves|near the harbour|across the bay".split("|"),
    },
    "forest": {
        "noun": "fox owl oak deer path mushroom hunter wolf moss river bear acorn".split(),
        "verb": "wandered hid climbed crept slept howled".split(),
        "adj": "green dark old quiet tall mossy".split(),
        "place": "in the woods|under the oak|by the river|beyond the hill".split("|"),
    },
    "city": {
        "noun": "train tower clerk market taxi baker street bridge clock shop bus crowd"
                .split(),
        "verb": "rushed waited shopped parked worked queued".split(),
        "adj": "busy loud bright narrow crowded new".split(),
        "place": "in the square|at the station|near the bridge|on the corner".split("|"),
    },
}


def is_builtin(corpus: object) -> bool:
    """Whether a ``--corpus`` value names this corpus (and not a folder)."""
    return isinstance(corpus, str) and corpus == TALES_CORPUS


def _sentence(rng: random.Random, words: dict[str, list[str]]) -> str:
    nouns = words["noun"] + _COMMON_NOUNS
    verbs = words["verb"] + _COMMON_VERBS
    form = rng.randrange(3)
    if form == 0:
        return (f"the {rng.choice(words['adj'])} {rng.choice(nouns)} {rng.choice(verbs)} "
                f"{rng.choice(words['place'])}.")
    if form == 1:
        return (f"a {rng.choice(nouns)} {rng.choice(verbs)} the {rng.choice(words['adj'])} "
                f"{rng.choice(nouns)}.")
    return f"then the {rng.choice(nouns)} {rng.choice(verbs)} and the {rng.choice(nouns)} " \
           f"{rng.choice(verbs)}."


def tale(rng: random.Random, genre: str, n_sentences: int = 24) -> str:
    """One tale of ``genre``: sentences from its word lists, a refrain that comes back, and
    earlier sentences told again (so spans of the tale repeat exactly)."""
    words = _WORDS[genre]
    refrain = _sentence(rng, words)
    told: list[str] = [refrain]
    for _ in range(n_sentences - 1):
        r = rng.random()
        if r < 0.2:
            told.append(refrain)
        elif r < 0.45:
            told.append(rng.choice(told))
        else:
            told.append(_sentence(rng, words))
    lines = [" ".join(told[i:i + 3]) for i in range(0, len(told), 3)]
    return "\n".join(lines) + "\n"


def tales(seed: int = 0, per_genre: int = 300, held_per_genre: int = 20
          ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The corpus: (training works, held-out works, genre of every work).

    Parameters
    ----------
    seed
        Seed of the training tales; the held-out tales use another generator.
    per_genre, held_per_genre
        Tales per genre in each part. Every work is a "book" of 10 tales of one genre.

    Returns
    -------
    (train, held, genre_of)
        ``{work id: text}`` twice, and ``{work id: genre}`` for both.
    """
    train: dict[str, str] = {}
    held: dict[str, str] = {}
    genre_of: dict[str, str] = {}
    for part, count, rng in ((train, per_genre, random.Random(seed)),
                             (held, held_per_genre, random.Random(f"held-out {seed}"))):
        prefix = "tales" if part is train else "held"
        for genre in TALE_GENRES:
            for book in range(0, count, 10):
                key = f"{prefix}_{genre}_{book // 10:03d}"
                part[key] = "\n".join(tale(rng, genre) for _ in range(min(10, count - book)))
                genre_of[key] = genre
    return train, held, genre_of
