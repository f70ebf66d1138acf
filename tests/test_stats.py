"""The significance tests find planted effects and stay quiet when there are none (constructed data, known answers)."""

import numpy as np
import pytest

from distilwhisper import stats
from distilwhisper.results import rate


def _rows(n: int, error_rate: float, seed: int, prefix: str = "u", words: int = 10) -> list[dict]:
    """n utterances of `words` words with binomial word errors at `error_rate`."""
    rng = np.random.default_rng(seed)
    return [{"id": f"{prefix}{i}", "word_errors": int(rng.binomial(words, error_rate)), "words": words,
             "char_errors": 0, "chars": 40} for i in range(n)]


def test_rate_is_a_corpus_rate():
    rows = [{"word_errors": 1, "words": 1}, {"word_errors": 0, "words": 9}]
    assert rate(rows, "wer") == pytest.approx(10.0)  # 1/10, not the mean of 100 % and 0 %


def test_planted_group_gap_is_found():
    women, men = _rows(150, 0.30, seed=1, prefix="f"), _rows(150, 0.10, seed=2, prefix="m")
    gap = stats.group_gap(women, men, "wer", n_resamples=1000)
    assert gap.value == pytest.approx(rate(women, "wer") - rate(men, "wer"))
    assert 15 < gap.value < 25 and gap.low > 10 and gap.p < 0.01 and gap.significant


def test_no_gap_is_not_significant():
    a, b = _rows(150, 0.2, seed=3, prefix="a"), _rows(150, 0.2, seed=4, prefix="b")
    gap = stats.group_gap(a, b, "wer", n_resamples=1000)
    assert gap.low < 0 < gap.high and gap.p > 0.05 and not gap.significant


def test_paired_delta_detects_a_planted_degradation_and_matches_ids():
    base = _rows(100, 0.1, seed=5)
    worse = [dict(r, word_errors=r["word_errors"] + (1 if i % 2 else 0)) for i, r in enumerate(base)]
    delta = stats.paired_delta(base, list(reversed(worse)), "wer", n_resamples=1000)  # order must not matter
    assert delta.value == pytest.approx(5.0)  # 50 extra errors over 1000 words
    assert delta.low > 0 and delta.p < 0.01 and delta.n == 100
    same = stats.paired_delta(base, base, "wer", n_resamples=200)
    assert same.value == 0 and same.p == 1.0


def test_gap_change_is_difference_in_differences():
    f, m = _rows(120, 0.2, seed=6, prefix="f"), _rows(120, 0.2, seed=7, prefix="m")
    f_q = [dict(r, word_errors=r["word_errors"] + 2) for r in f]  # quantization hurts only group f: +20 points
    did = stats.gap_change((f, m), (f_q, m), "wer", n_resamples=1000)
    assert did.value == pytest.approx(20.0) and did.low > 15 and did.p < 0.01
    uniform = stats.gap_change((f, m), ([dict(r, word_errors=r["word_errors"] + 1) for r in f],
                                        [dict(r, word_errors=r["word_errors"] + 1) for r in m]), "wer", 1000)
    assert uniform.value == pytest.approx(0.0) and uniform.low <= 0 <= uniform.high


def test_spearman_and_its_degenerate_cases():
    rho, p, n = stats.spearman([1, 2, 3, 4, 5], [50, 40, 30, 20, 10])
    assert rho == pytest.approx(-1.0) and n == 5 and p == pytest.approx(2 / 120)  # exact: 2 of 5! orderings
    rho, p, _ = stats.spearman([1, 2, 3, 4], [4, 3, 2, 1])
    assert rho == pytest.approx(-1.0) and p == pytest.approx(2 / 24) and p > 0.05  # 4 languages cannot be "significant"
    rho, p, _ = stats.spearman(list(range(12)), [v + (3 if v % 2 else -3) for v in range(12)])
    assert rho > 0.7 and p < 0.01  # large n: scipy's approximation
    assert np.isnan(stats.spearman([1, 2], [3, 4])[0])
    assert np.isnan(stats.spearman([1, 2, 3], [5, 5, 5])[0])
    assert stats.spearman([1, None, 3, 4], [1, 2, float("nan"), 4])[2] == 2


def test_empty_groups_give_nan():
    assert np.isnan(stats.group_gap([], _rows(5, 0.1, 0), "wer").value)
    assert np.isnan(stats.paired_delta(_rows(5, 0.1, 0, "a"), _rows(5, 0.1, 0, "b"), "wer").value)
