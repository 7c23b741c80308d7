"""Sample prompts: the shipped file parses and the random-repeat probe really repeats."""

from __future__ import annotations

from gptviz.io.prompts import expand_prompt, load_sample_prompts, random_repeat_text


def test_sample_prompts_load_and_include_the_demos():
    prompts = load_sample_prompts()
    assert len(prompts) >= 3
    texts = [p.text for p in prompts]
    assert any(t.startswith("@random-repeat:") for t in texts)
    assert all(p.title and p.shows for p in prompts)


def test_random_repeat_tokens_repeat_exactly(tiny_bundle):
    tok = tiny_bundle.tokenizer
    text = random_repeat_text(tok, 5, seed=1)
    ids = tok.encode(text)
    half = len(ids) // 2
    assert len(ids) == 2 * half and ids[:half] == ids[half:]
    assert expand_prompt("@random-repeat:5", tok, seed=1) == text
    assert expand_prompt("plain text", tok) == "plain text"
    assert random_repeat_text(tok, 5, seed=2) != text
