"""Normalisation keeps what matters per script; error counts and bootstrap intervals are right."""

from __future__ import annotations

from distilwhisper import languages
from distilwhisper.results import corpus_rate, error_counts
from distilwhisper.normalize import normalize


def test_normalize_keeps_diacritics_and_marks():
    assert normalize("Ça va? [música] (risas) ¡Sí, señor!", "es") == "ça va sí señor"
    # Devanagari vowel signs and virama are combining marks: Whisper's basic normaliser would split the words
    assert normalize("नमस्ते दुनिया।", "hi") == "नमस्ते दुनिया"
    assert normalize("Příliš žluťoučký kůň.", "cs") == "příliš žluťoučký kůň"


def test_character_languages_split_characters():
    assert normalize("สวัสดี ครับ", "th").split() == list("สวัสดีครับ")
    assert normalize("你好，世界", "zh") == "你 好 世 界"
    assert languages.uses_characters("th") and not languages.uses_characters("ca")


def test_error_counts():
    c = error_counts("el gat negre", "el gos negre dorm")
    assert (c.word_errors, c.words) == (2, 3)  # one substitution, one insertion
    assert c.chars == len("elgatnegre") and c.char_errors == 2 + 4
    assert (error_counts("", "hola").word_errors, error_counts("", "hola").words) == (1, 0)  # nothing to hit
    assert error_counts("a b", "").word_errors == 2


def test_corpus_rate_is_ratio_of_sums_with_interval():
    rows = [{"word_errors": e, "words": 10} for e in (1, 0, 0, 9)]
    rate = corpus_rate(rows, "wer")
    assert rate.value == 25.0 and rate.n == 4
    assert rate.low < 25.0 < rate.high
    constant = corpus_rate([{"word_errors": 2, "words": 10}] * 50, "wer")
    assert constant.low == constant.high == 20.0


def test_language_facts():
    assert languages.training_hours("ca") == 1883 and languages.resource_tier("ca") == "high"
    assert languages.resource_tier("cs") == "medium" and languages.resource_tier("gl") == "very-low"
    assert languages.training_hours("yue") is None and languages.resource_tier("yue") == "unknown"
