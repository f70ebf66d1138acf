"""Whisper's languages and what the toolkit needs to know about each.

- codes and names: the tokenizer's language list (from `transformers`, the same list the model's tokens use);
- resource level: hours of ASR training audio per language in Whisper's training set (Radford et al. 2022,
  Appendix E), shipped as `facts/whisper_training_hours.csv`;
- scoring: scripts written without spaces between words are scored on characters (WER on split characters
  would otherwise be the error rate of whole sentences).
"""

from __future__ import annotations

import csv
import math
from functools import lru_cache
from importlib import resources

from transformers.models.whisper.tokenization_whisper import LANGUAGES

# Scripts without word-separating spaces: WER is computed after splitting characters, CER is the headline metric.
CHARACTER_LANGUAGES = frozenset({"th", "lo", "my", "zh", "ja", "km", "yue", "bo"})

# Tier thresholds on Whisper's ASR training hours. Chosen so that the paper's target languages spread over tiers:
# high >= 1000 h (ca, pl), medium 100-1000 h (cs, hu, uk, th, ta), low 10-100 h, very low < 10 h (gl).
TIERS: tuple[tuple[str, float], ...] = (("high", 1000.0), ("medium", 100.0), ("low", 10.0), ("very-low", 0.0))


class UnknownLanguageError(ValueError):
    """A language code Whisper does not know."""


def is_known(code: str) -> bool:
    """True for a Whisper tokenizer language code such as `ca`, `cs` or `haw`."""
    return code in LANGUAGES


def check(code: str) -> str:
    """Return `code` or raise with the nearest valid spelling hint."""
    if code in LANGUAGES:
        return code
    by_name = {name: c for c, name in LANGUAGES.items()}
    if code.lower() in by_name:
        raise UnknownLanguageError(f"unknown language code {code!r}: did you mean {by_name[code.lower()]!r}?")
    raise UnknownLanguageError(f"unknown language code {code!r} (Whisper codes are like 'ca', 'cs', 'en'; "
                               f"{len(LANGUAGES)} are known)")



@lru_cache(maxsize=1)
def _training_hours() -> dict[str, float]:
    text = resources.files("distilwhisper.facts").joinpath("whisper_training_hours.csv").read_text()
    return {row["code"]: float(row["asr_hours"]) for row in csv.DictReader(text.splitlines())}


def training_hours(code: str) -> float | None:
    """Hours of ASR audio Whisper was trained on for this language (None when not published, e.g. `yue`)."""
    return _training_hours().get(check(code))


def log_hours(code: str) -> float | None:
    """log10(1 + hours): the resource axis for correlations (0 h stays finite)."""
    hours = training_hours(code)
    return None if hours is None else math.log10(1.0 + hours)


def resource_tier(code: str) -> str:
    """`high`/`medium`/`low`/`very-low` from training hours (`unknown` when unpublished)."""
    hours = training_hours(code)
    if hours is None:
        return "unknown"
    return next(tier for tier, threshold in TIERS if hours >= threshold)


def uses_characters(code: str) -> bool:
    """Whether the language is scored on characters (no spaces between words)."""
    return code in CHARACTER_LANGUAGES
