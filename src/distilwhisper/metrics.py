"""Error counts per utterance and corpus-level rates with bootstrap confidence intervals.

Rates are ratios of sums (total errors / total reference units), never means of per-utterance rates: that is how
WER is defined and it keeps short utterances from dominating.  Per-utterance counts are stored so any grouping can
be scored later without decoding again.
"""

from __future__ import annotations

from dataclasses import dataclass

import jiwer
import numpy as np


@dataclass(frozen=True)
class ErrorCounts:
    """Edit-distance counts of one hypothesis against one reference."""

    word_errors: int
    words: int
    char_errors: int
    chars: int


def _edit_errors(reference: str, hypothesis: str, characters: bool) -> tuple[int, int]:
    ref_units = len(reference) if characters else len(reference.split())
    hyp_units = len(hypothesis) if characters else len(hypothesis.split())
    if ref_units == 0:
        return hyp_units, 0
    if hyp_units == 0:
        return ref_units, ref_units
    out = jiwer.process_characters(reference, hypothesis) if characters else jiwer.process_words(reference, hypothesis)
    return out.substitutions + out.deletions + out.insertions, ref_units


def error_counts(reference: str, hypothesis: str) -> ErrorCounts:
    """Word and character errors of normalised texts (characters counted without spaces)."""
    word_errors, words = _edit_errors(reference, hypothesis, characters=False)
    char_errors, chars = _edit_errors(reference.replace(" ", ""), hypothesis.replace(" ", ""), characters=True)
    return ErrorCounts(word_errors, words, char_errors, chars)


@dataclass(frozen=True)
class Rate:
    """A corpus-level error rate in percent with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def corpus_rate(errors: np.ndarray, units: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Rate:
    """Total errors / total units in %, with a percentile bootstrap over utterances (resampled with replacement)."""
    errors = np.asarray(errors, dtype=np.float64)
    units = np.asarray(units, dtype=np.float64)
    n = len(errors)
    if n == 0 or units.sum() == 0:
        return Rate(float("nan"), float("nan"), float("nan"), n)
    value = 100.0 * errors.sum() / units.sum()
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    denom = units[idx].sum(axis=1)
    boots = 100.0 * errors[idx].sum(axis=1) / np.where(denom > 0, denom, np.nan)
    low, high = np.nanpercentile(boots, [2.5, 97.5])
    return Rate(float(value), float(low), float(high), n)
