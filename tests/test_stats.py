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


def _scenes(n_scenes: int, per_scene: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Rows of `n_scenes` scenes whose lines move together: a system that is better on some scenes and worse on
    others by the same amount on every line of a scene (perfectly correlated within a scene)."""
    rng = np.random.default_rng(seed)
    base, other = [], []
    for scene in range(n_scenes):
        shift = int(rng.choice([-2, 2]))
        for line in range(per_scene):
            row = {"id": f"s{scene}-{line}", "level": f"scene{scene}", "word_errors": 4, "words": 10}
            base.append(row)
            other.append(dict(row, word_errors=4 + shift))
    return base, other


def test_a_set_whose_scenes_move_together_gets_a_wider_interval_by_scene():
    base, other = _scenes(12, 10, seed=7)
    lines = stats.paired_delta(base, other, "wer", n_resamples=2000)
    scenes = stats.paired_delta(base, other, "wer", n_resamples=2000, cluster="level")
    assert scenes.value == lines.value and (lines.n, scenes.n) == (120, 12)
    assert scenes.high - scenes.low > 2 * (lines.high - lines.low)  # ~sqrt(10) wider: 10 lines per scene
    assert scenes.p > lines.p


def test_one_cluster_per_utterance_is_the_utterance_bootstrap():
    base = _rows(80, 0.2, seed=8)
    other = [dict(r, word_errors=r["word_errors"] + i % 3) for i, r in enumerate(base)]
    by_id = [dict(r, scene=r["id"]) for r in base]
    assert stats.paired_delta(by_id, other, "wer", cluster="scene") == stats.paired_delta(base, other, "wer")
    # rows without the column are clusters of one each: the same answer again
    assert stats.paired_delta(base, other, "wer", cluster="level") == stats.paired_delta(base, other, "wer")


def test_seeds_delta_averages_the_runs_and_widens_when_they_disagree():
    base, _ = _scenes(12, 10, seed=9)
    better = [dict(r, word_errors=3) for r in base]  # every line one error fewer: -10 points
    worse = [dict(r, word_errors=5) for r in base]  # +10 points
    agree = stats.seeds_delta(base, [better, better, better], "wer", cluster="level")
    assert agree.value == pytest.approx(-10.0) and agree.high < 0 and agree.p < 0.01 and agree.n == 12
    split = stats.seeds_delta(base, [better, worse, better], "wer", cluster="level")
    assert split.value == pytest.approx(-10.0 / 3)  # the mean of the three runs' changes
    assert split.low < 0 < split.high and split.p > 0.05  # one run against: the claim does not hold across seeds
    one = stats.seeds_delta(base, [better], "wer", cluster="level")
    assert one.value == stats.paired_delta(base, better, "wer", cluster="level").value
