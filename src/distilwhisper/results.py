"""Per-utterance results and the rates computed from them.

A result row (one line of `results.jsonl`) holds an utterance's id, language, metadata, both texts and its
edit-distance counts.  Rates are ratios of sums (total errors / total reference units, in %), never means of
per-utterance rates: that is how WER is defined, and it keeps short utterances from dominating.  Because rows keep
their counts, any grouping can be scored later without decoding again.  Intervals come from one bootstrap over
utterances (`resampled_rates`), which the significance tests in `stats.py` use too.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import jiwer
import numpy as np

from distilwhisper.io import read_jsonl
from distilwhisper.languages import uses_characters
from distilwhisper.report import interval, markdown_table

FIELDS = {"wer": ("word_errors", "words"), "cer": ("char_errors", "chars")}
TRANSLATION_METRICS = ("bleu", "chrf")  # sacrebleu's, from per-sentence sufficient statistics
N_BOOT = 1000  # resamples of a rate's interval in summaries


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


@lru_cache(maxsize=None)
def _sacrebleu(metric: str):
    from sacrebleu.metrics import BLEU, CHRF

    return BLEU() if metric == "bleu" else CHRF()


def translation_stats(reference: str, hypothesis: str) -> dict[str, list[int]]:
    """sacrebleu's sufficient statistics of one sentence (n-gram matches and totals, lengths) for BLEU and chrF:
    summed over sentences they give exactly sacrebleu's corpus scores, so any grouping or resample is scored
    without decoding again, like error counts."""
    return {f"{metric}_stats": [int(x) for x in _sacrebleu(metric)._extract_corpus_statistics(
        [hypothesis], [[reference]])[0]] for metric in TRANSLATION_METRICS}


def translation_stats_of(rows: list[dict], metric: str) -> np.ndarray:
    """(rows, statistics) array of a translation metric's per-sentence statistics (the counterpart of `counts`)."""
    return np.array([r[f"{metric}_stats"] for r in rows])


def translation_score(rows: list[dict], metric: str) -> float:
    """Corpus BLEU or chrF of the rows (NaN without rows)."""
    if not rows:
        return float("nan")
    return translation_score_of_stats(metric, translation_stats_of(rows, metric).sum(0))


def translation_score_of_stats(metric: str, total: np.ndarray) -> float:
    """BLEU or chrF from sufficient statistics summed over sentences."""
    return float(_sacrebleu(metric)._compute_score_from_stats([int(x) for x in total]).score)


def corpus_translation(rows: list[dict], metric: str, n_boot: int = N_BOOT, seed: int = 0) -> Rate:
    """Corpus BLEU or chrF with a percentile bootstrap interval over utterances."""
    if not rows:
        return Rate(float("nan"), float("nan"), float("nan"), 0)
    stats = translation_stats_of(rows, metric)
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n_boot, len(rows)))
    draws = np.array([translation_score_of_stats(metric, stats[i].sum(0)) for i in idx])
    low, high = np.percentile(draws, [2.5, 97.5])
    return Rate(translation_score_of_stats(metric, stats.sum(0)), float(low), float(high), len(rows))


def is_translation(rows: list[dict]) -> bool:
    """Rows of a translate-task evaluation (scored by BLEU/chrF, not by error counts)."""
    return bool(rows) and "bleu_stats" in rows[0]


def counts(rows: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(errors, reference units) per row for `metric` ("wer" or "cer")."""
    err, units = FIELDS[metric]
    return (np.array([r[err] for r in rows], dtype=np.float64), np.array([r[units] for r in rows], dtype=np.float64))


def rate(rows: list[dict], metric: str) -> float:
    """Corpus rate in % of the rows (NaN when they hold no reference units)."""
    errors, units = counts(rows, metric)
    return 100.0 * errors.sum() / units.sum() if units.sum() > 0 else float("nan")


def ratio(errors: np.ndarray, units: np.ndarray) -> np.ndarray:
    """Row-wise 100 * sum(errors) / sum(units) of resampled (n_resamples, n) arrays (NaN where no units)."""
    total = units.sum(axis=-1)
    return 100.0 * errors.sum(axis=-1) / np.where(total > 0, total, np.nan)


def resampled_rates(errors: np.ndarray, units: np.ndarray, rng: np.random.Generator, n_resamples: int) -> np.ndarray:
    """Bootstrap draws of the corpus rate: utterances resampled with replacement."""
    idx = rng.integers(0, len(units), size=(n_resamples, len(units)))
    return ratio(errors[idx], units[idx])


@dataclass(frozen=True)
class Rate:
    """A corpus-level error rate in percent with its 95 % bootstrap interval."""

    value: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float | int]:
        return {"value": self.value, "ci_low": self.low, "ci_high": self.high, "n": self.n}


def corpus_rate(rows: list[dict], metric: str, n_boot: int = N_BOOT, seed: int = 0) -> Rate:
    """Total errors / total units in %, with a percentile bootstrap interval over utterances."""
    errors, units = counts(rows, metric)
    if len(rows) == 0 or units.sum() == 0:
        return Rate(float("nan"), float("nan"), float("nan"), len(rows))
    low, high = np.nanpercentile(resampled_rates(errors, units, np.random.default_rng(seed), n_boot), [2.5, 97.5])
    return Rate(float(100.0 * errors.sum() / units.sum()), float(low), float(high), len(rows))


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results.jsonl (a row torn by an interruption is left out)."""
    return read_jsonl(path)[0]


def by_column(rows: list[dict], column: str) -> dict[str, list[dict]]:
    """Rows grouped by a metadata column ("a+b" groups on the pair of values), sorted by value."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[" / ".join(str(r.get(c) or "unknown") for c in column.split("+"))].append(r)
    return dict(sorted(groups.items()))


def by_language(rows: list[dict]) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r["language"]].append(r)
    return dict(sorted(groups.items()))


def where(rows: list[dict], **values) -> list[dict]:
    """Rows whose metadata match every given value (e.g. `where(rows, domain="control", language="en")`)."""
    return [r for r in rows if all(r.get(k) == v for k, v in values.items())]


# ----- summaries ----------------------------------------------------------------------------------------------
GROUP_COLUMNS = ("gender", "age", "domain", "domain+gender", "split", "source", "condition")


def _rates(rows: list[dict]) -> dict:
    if is_translation(rows):
        scores = {metric: corpus_translation(rows, metric).as_dict() for metric in TRANSLATION_METRICS}
    else:
        scores = {"wer": corpus_rate(rows, "wer").as_dict(), "cer": corpus_rate(rows, "cer").as_dict(),
                  "primary": "cer" if all(uses_characters(r["language"]) for r in rows) else "wer"}
    return {
        "utterances": len(rows),
        **scores,
        "audio_hours": sum(r.get("audio_seconds", 0.0) for r in rows) / 3600,
        "decode_seconds_per_utt": float(np.mean([r.get("decode_seconds", 0.0) for r in rows])),
    }


def summarize(rows: list[dict], group_columns: tuple[str, ...] = GROUP_COLUMNS) -> dict:
    """WER/CER (with 95 % bootstrap CIs) overall, per language, and per language x value of each column that
    takes more than one value within a language."""
    languages = by_language(rows)
    summary: dict = {"overall": _rates(rows) if rows else {},
                     "languages": {lang: _rates(lang_rows) for lang, lang_rows in languages.items()}, "groups": {}}
    for column in group_columns:
        table = {lang: {value: _rates(group) for value, group in by_column(lang_rows, column).items()}
                 for lang, lang_rows in languages.items()}
        table = {lang: values for lang, values in table.items() if len(values) > 1}  # one value says nothing more
        if table:
            summary["groups"][column] = table
    return summary


def _rate_text(rate: dict) -> str:
    if rate["value"] is None or math.isnan(rate["value"]):
        return "n/a"
    return interval(rate["value"], rate["ci_low"], rate["ci_high"])


def summary_markdown(summary: dict) -> str:
    """Readable tables: per language, then per metadata group."""
    translate = "bleu" in (summary["overall"] or {})
    metrics = TRANSLATION_METRICS if translate else ("wer", "cer")
    names = ["BLEU", "chrF"] if translate else ["WER", "CER"]

    def line(name: str, r: dict) -> list:
        return [name, r["utterances"], f"{r['audio_hours']:.2f}", *(_rate_text(r[m]) for m in metrics),
                f"{r['decode_seconds_per_utt']:.2f}"]

    rows = [line(lang, r) for lang, r in summary["languages"].items()]
    if summary["overall"]:
        rows.append(line("**all**", summary["overall"]))
    intro = ("Translation into English: corpus BLEU and chrF (sacrebleu)" if translate else "WER and CER in %")
    lines = ["# Evaluation summary", "", f"{intro}, with 95 % bootstrap confidence intervals over utterances.",
             "", *markdown_table(["language", "utts", "hours", *names, "s/utt"], rows)]
    for column, table in summary["groups"].items():
        lines += ["", f"## By {column}", "", *markdown_table(
            ["language", column, "utts", *names],
            ([lang, value, r["utterances"], *(_rate_text(r[m]) for m in metrics)]
             for lang, values in table.items() for value, r in values.items()))]
    return "\n".join(lines) + "\n"
