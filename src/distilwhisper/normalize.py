"""Text normalisation before scoring, per language.

Follows Whisper's basic (non-English) normaliser -- lowercase, drop bracketed spans, punctuation and symbols to
spaces -- with one fix: combining marks are kept.  Whisper's stock basic normaliser maps every Unicode mark to a
space, which cuts Indic and Thai words at each vowel sign and inflates their WER.
"""

from __future__ import annotations

import re
import unicodedata

from distilwhisper.languages import uses_characters

_BRACKETS = re.compile(r"[<\[][^>\]]*[>\]]")
_PARENS = re.compile(r"\(([^)]+?)\)")
_SPACES = re.compile(r"\s+")


def _symbols_to_spaces(text: str) -> str:
    return "".join(" " if unicodedata.category(c)[0] in "SP" else c for c in text)


def normalize(text: str, language: str) -> str:
    """Normalised words separated by single spaces; for languages written without spaces, one character a word."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = _PARENS.sub("", _BRACKETS.sub("", text))
    text = _SPACES.sub(" ", _symbols_to_spaces(text)).strip()
    if uses_characters(language):
        text = " ".join(c for c in text if not c.isspace())
    return text
