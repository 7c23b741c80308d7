"""The bundled Shakespeare model: it loads, its metadata is what `eval` measures, it writes
English, it has an induction head and a genre head."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import numpy as np
import pytest
from safetensors import safe_open

from gptviz import load_model
from gptviz.engine.sampling import SamplingSettings
from gptviz.engine.session import Session
from gptviz.io.checkpoint import DEFAULT_MODEL_DIR
from gptviz.train.data import GENRES, HELD_OUT
from gptviz.train.evaluate import evaluate_text

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(),
                                reason="the bundled model has not been trained yet")


@pytest.fixture(scope="module")
def bundle():
    return load_model()


def test_loads_with_the_shape_and_metadata_it_claims(bundle):
    cfg = bundle.config
    assert cfg.n_layer >= 4 and cfg.n_head >= 4
    # The parameter count in metadata.json is that of the tensors in the weights file.
    with safe_open(str(DEFAULT_MODEL_DIR / "model.safetensors"), "pt") as f:
        names = f.keys()
        stored = sum(math.prod(f.get_slice(k).get_shape()) for k in names)
    assert bundle.metadata["n_params"] == stored == bundle.model.num_params()
    assert bundle.metadata["held_out_works"] == sorted(HELD_OUT)
    assert cfg.n_classes == len(GENRES) and tuple(cfg.class_names) == GENRES
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 30 * 2**20


def test_metadata_matches_what_eval_measures(bundle):
    meta = bundle.metadata["held_out_sample"]
    text = (DEFAULT_MODEL_DIR / meta["file"]).read_text(encoding="utf-8")
    got = evaluate_text(bundle, text)
    assert got["tokens"] == meta["tokens"]
    assert got["bits_per_character"] == pytest.approx(meta["bits_per_character"], abs=2e-3)
    assert got["loss_per_token"] == pytest.approx(meta["loss_per_token"], abs=5e-3)
    # The same through the command line.
    out = subprocess.run([sys.executable, "-m", "gptviz", "eval", "--text",
                          str(DEFAULT_MODEL_DIR / meta["file"])],
                         capture_output=True, text=True, check=True)
    total = json.loads(out.stdout)["total"]
    assert total["bits_per_character"] == pytest.approx(meta["bits_per_character"], abs=2e-3)


def test_held_out_headline_pools_the_works(bundle):
    """The headline figures are those of the three held-out works pooled (their texts are
    not shipped, so the works' own figures are what the headline is checked against)."""
    held = bundle.metadata["held_out"]
    works = held["works"]
    assert sorted(works) == sorted(HELD_OUT)
    for w in works.values():
        assert w["bits_per_character"] == pytest.approx(
            w["loss_per_token"] * w["scored_tokens"] / math.log(2) / w["scored_characters"])
    nats = sum(w["loss_per_token"] * w["scored_tokens"] for w in works.values())
    for key in ("tokens", "characters", "scored_tokens", "scored_characters"):
        assert held[key] == sum(w[key] for w in works.values()), key
    assert held["loss_per_token"] == pytest.approx(nats / held["scored_tokens"])
    assert held["bits_per_character"] == pytest.approx(
        nats / math.log(2) / held["scored_characters"])
    # A floor under the quality of what ships (the target was 2.0 bits per character).
    assert held["bits_per_character"] <= 2.1


def test_greedy_generation_writes_english_words(bundle):
    sample = (DEFAULT_MODEL_DIR / "heldout_sample.txt").read_text(encoding="utf-8")
    dictionary = set(re.findall(r"[a-z]+", sample.lower())) | {
        "the", "and", "to", "of", "i", "you", "my", "a", "that", "in", "is", "not", "it",
        "me", "with", "be", "his", "your", "this", "but", "he", "have", "as", "thou", "so",
        "him", "will", "what", "thy", "all", "her", "no", "by", "do", "shall", "if", "are",
        "we", "thee", "our", "on", "lord", "now", "good", "king", "sir", "love", "come",
        "enter", "exit", "exeunt", "scene", "act", "room", "palace", "house", "street", "side",
        "other", "queen", "prince", "duke", "lady", "man"}
    s = Session(bundle, "To be, or not to be, that is the question:\n",
                SamplingSettings(greedy=True))
    s.generate(60)
    # Speaker names and scene numbers are written in capitals (QUEEN., SCENE II.): not words
    # a dictionary would hold, so only mixed- and lower-case words are checked.
    words = [w for w in re.findall(r"[A-Za-z]+", s.generated_text())
             if not (w.isupper() and len(w) > 1)]
    assert len(words) >= 15
    known = [w for w in words if w.lower() in dictionary]
    assert len(known) / len(words) >= 0.8, s.generated_text()


def test_reported_induction_scores_are_what_the_probe_measures(bundle):
    from gptviz.analysis import induction_scores

    record = bundle.metadata["induction"]
    ind = np.asarray(record["scores"])
    assert ind.shape == (bundle.config.n_layer, bundle.config.n_head)
    probe = induction_scores(bundle.model)
    np.testing.assert_allclose(probe, ind, atol=1e-3)
    assert record["max"] == pytest.approx(probe.max(), abs=1e-3)
    assert record["max"] == pytest.approx(ind.max(), abs=5e-5)  # the scores: 4 decimals
    assert tuple(record["best_head"]) == np.unravel_index(np.argmax(ind), ind.shape)


def test_it_has_a_genre_head(bundle):
    ft = bundle.metadata["finetune"]["held_out"]
    assert 0.0 <= ft["accuracy"] <= 1.0 and "majority_baseline" in ft
    s = Session(bundle, "Enter the KING, with lords and soldiers. Alarum. Excursions.")
    p = s.class_probs()
    assert p is not None and p.shape == (3,) and abs(float(p.sum()) - 1.0) < 1e-5


def test_readme_quotes_the_metadata(bundle):
    """The README's figures for the bundled model are those of its metadata.json, rounded as
    printed (so that retraining the model and forgetting the README fails here)."""
    path = DEFAULT_MODEL_DIR.parents[1] / "README.md"
    if not path.is_file():
        pytest.skip("an installed model: no README next to it")
    readme = " ".join(path.read_text(encoding="utf-8").split())  # one line: figures may wrap
    meta, cfg = bundle.metadata, bundle.config

    def quoted(pattern: str) -> tuple[str, ...]:
        m = re.search(pattern, readme)
        assert m, f"README: no match for {pattern!r}"
        return m.groups()

    def same(text: str, value: float, scale: float = 1.0) -> None:
        """``text`` is ``value * scale`` printed with as many decimals as it has."""
        decimals = len(text.split(".")[1]) if "." in text else 0
        assert float(text) == round(value * scale, decimals), (text, value)

    layers, heads, width, params = quoted(
        r"a (\d+)-layer, (\d+)-head, (\d+)-wide GPT \(([\d.]+)M parameters")
    assert (int(layers), int(heads), int(width)) == (cfg.n_layer, cfg.n_head, cfg.n_embd)
    same(params, meta["n_params"], 1e-6)
    held = meta["held_out"]
    nats, bpc = quoted(r"\*\*([\d.]+) nats per token, ([\d.]+) bits per character\*\*")
    same(nats, held["loss_per_token"])
    same(bpc, held["bits_per_character"])
    for name, work in (("Cymbeline", "cymbeline_gut"), ("Timon", "timon_of_athens_gut"),
                       ("Pericles", "pericles_gut")):
        same(quoted(rf"\b{name} ([\d.]+)")[0], held["works"][work]["bits_per_character"])
    best, layer, head = quoted(r"best \*\*([\d.]+)\*\* \(layer (\d+), head (\d+)\)")
    same(best, meta["induction"]["max"])
    assert [int(layer), int(head)] == list(meta["induction"]["best_head"])
    ft = meta["finetune"]["held_out"]
    acc, n = quoted(r"([\d.]+)% accuracy on (\d+) held-out passages")
    same(acc, ft["accuracy"], 100)
    assert int(n) == ft["n_passages"]
    same(quoted(r"majority-class baseline of ([\d.]+)%")[0], ft["majority_baseline"], 100)
    comedy, tragedy = quoted(r"\(comedy ([\d.]+)%, tragedy ([\d.]+)%\)")
    same(comedy, ft["per_class_accuracy"]["comedy"], 100)
    same(tragedy, ft["per_class_accuracy"]["tragedy"], 100)
