"""The bundled Shakespeare model: it loads, its metadata is what `eval` measures, it writes
English, it has an induction head and a genre head."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from gptviz import load_model
from gptviz.io.checkpoint import DEFAULT_MODEL_DIR
from gptviz.train.data import GENRES, HELD_OUT
from gptviz.engine.session import Session
from gptviz.train.evaluate import evaluate_text
from gptviz.engine.sampling import SamplingSettings

pytestmark = pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "model.safetensors").is_file(),
                                reason="the bundled model has not been trained yet")


@pytest.fixture(scope="module")
def bundle():
    return load_model()


def test_loads_with_the_shape_and_metadata_it_claims(bundle):
    cfg = bundle.config
    assert cfg.n_layer >= 4 and cfg.n_head >= 4
    assert bundle.model.num_params() == bundle.metadata["n_params"]
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
    # The headline figure: 2.07 measured on the three held-out works (the target is
    # 2.0, a 10-minute reference run reached 2.17); guard against a worse model shipping.
    assert bundle.metadata["held_out"]["bits_per_character"] <= 2.1


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

    ind = np.asarray(bundle.metadata["induction"]["scores"])
    assert ind.shape == (bundle.config.n_layer, bundle.config.n_head)
    np.testing.assert_allclose(induction_scores(bundle.model), ind, atol=1e-3)


def test_it_has_a_genre_head(bundle):
    ft = bundle.metadata["finetune"]["held_out"]
    assert 0.0 <= ft["accuracy"] <= 1.0 and "majority_baseline" in ft
    s = Session(bundle, "Enter the KING, with lords and soldiers. Alarum. Excursions.")
    p = s.class_probs()
    assert p is not None and p.shape == (3,) and abs(float(p.sum()) - 1.0) < 1e-5
