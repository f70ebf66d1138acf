"""Significance tests on per-utterance error counts (the rows of `results.jsonl`).

Every rate is a corpus rate (total errors / total reference units, in %), so every test resamples *utterances* and
recomputes corpus rates, never averages per-utterance rates:
- `paired_delta`: the same utterances under two systems (e.g. fp32 vs int8): paired bootstrap (Bisani & Ney 2004),
  over utterances or, with `cluster`, over whole clusters (scenes, speakers) when utterances come in groups that
  are not independent (lines of one scene share its words and acoustics: resampling them one by one understates
  the interval);
- `group_gap`: two disjoint speaker groups under one system (e.g. female vs male): permutation test of the gap, and
  a bootstrap interval resampling within each group;
- `gap_change`: how a group gap moves between two systems on the same utterances (difference-in-differences):
  bootstrap resampling utterances within each group, the same draw for both systems;
- `seeds_delta`: the mean change of several training runs (seeds) against one base, with an interval that
  resamples the runs as well as the scenes (or utterances);
- `spearman`: rank correlation across languages (e.g. WER vs log training hours).

p-values treat utterances as independent; utterances of one speaker are not, so with few speakers per group a gap
is a difference between those voices (the report prints speaker counts next to every gap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from distilwhisper.results import counts, ratio, translation_score_of_stats, translation_stats_of

N_RESAMPLES = 2000
EXACT_UP_TO = 8  # pairs for which Spearman's p-value is computed exactly (8! orderings)


@dataclass(frozen=True)
class Estimate:
    """A difference in percentage points with its 95 % interval and two-sided p-value."""

    value: float
    low: float
    high: float
    p: float
    n: int

    @property
    def significant(self) -> bool:
        return not math.isnan(self.p) and self.p < 0.05


NAN = Estimate(float("nan"), float("nan"), float("nan"), float("nan"), 0)


def _two_sided(draws: np.ndarray) -> float:
    """Bootstrap p-value of 'the difference is zero': twice the smaller tail mass on either side of zero."""
    draws = draws[~np.isnan(draws)]
    if len(draws) == 0:
        return float("nan")
    tail = min(np.mean(draws <= 0), np.mean(draws >= 0))
    return float(min(1.0, max(2 * tail, 1.0 / len(draws))))


def _interval(draws: np.ndarray) -> tuple[float, float]:
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(low), float(high)


def _paired_counts(base: list[dict], other: list[dict], metric: str
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(errors under base, errors under other, reference units) of the utterances both scored (matched by id);
    None when there are none or they hold no reference units."""
    first, second = _pairs(base, other)
    if not first:
        return None
    e_base, units = counts(first, metric)
    e_other, _ = counts(second, metric)
    return None if units.sum() == 0 else (e_base, e_other, units)


def _pairs(base: list[dict], other: list[dict]) -> tuple[list[dict], list[dict]]:
    """The rows of the utterances both scored (matched by id), in `base`'s order."""
    other_by_id = {r["id"]: r for r in other}
    kept = [r for r in base if r["id"] in other_by_id]
    return kept, [other_by_id[r["id"]] for r in kept]


def cluster_labels(rows: list[dict], column: str) -> list[str]:
    """Each row's cluster: its `column` value, or its own id where it has none (a row of a set without that
    column, e.g. a synthetic sentence among scene lines, is a cluster of one)."""
    return [str(r[column]) if r.get(column) not in (None, "") else f"id:{r['id']}" for r in rows]


def _by_cluster(paired: tuple[np.ndarray, np.ndarray, np.ndarray], labels: list[str]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Paired counts summed per cluster, clusters in order of first appearance (so that one cluster per utterance
    gives the utterances' own arrays, and the same draws as the utterance bootstrap)."""
    index = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    groups = np.array([index[label] for label in labels])
    return tuple(np.bincount(groups, weights=a, minlength=len(index)) for a in paired)


def _delta_draws(paired: tuple[np.ndarray, np.ndarray, np.ndarray], rng: np.random.Generator,
                 n_resamples: int) -> tuple[float, np.ndarray]:
    """rate(other) - rate(base) of paired counts, and its bootstrap draws (units resampled, same draw for both)."""
    e_base, e_other, units = paired
    idx = rng.integers(0, len(units), size=(n_resamples, len(units)))
    draws = ratio(e_other[idx], units[idx]) - ratio(e_base[idx], units[idx])
    return 100.0 * (e_other.sum() - e_base.sum()) / units.sum(), draws


def paired_delta(base: list[dict], other: list[dict], metric: str, n_resamples: int = N_RESAMPLES,
                 seed: int = 0, cluster: str | None = None) -> Estimate:
    """rate(other) - rate(base) on the utterances both scored (matched by id); with `cluster`, a column of the
    rows, the bootstrap resamples whole clusters (`cluster_labels`) instead of utterances, and `n` counts them."""
    paired = _paired_counts(base, other, metric)
    if paired is None:
        return NAN
    if cluster is not None:
        paired = _by_cluster(paired, cluster_labels(_pairs(base, other)[0], cluster))
    value, draws = _delta_draws(paired, np.random.default_rng(seed), n_resamples)
    return Estimate(float(value), *_interval(draws), _two_sided(draws), len(paired[2]))


def seeds_delta(base: list[dict], others: list[list[dict]], metric: str, cluster: str | None = None,
                n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """The mean over training seeds of rate(other) - rate(base), on the utterances every system scored, with the
    interval of a two-level bootstrap: each draw picks as many seeds as there are, with replacement, and clusters
    (`cluster`; utterances without it) with replacement, the same clusters for every seed it picked, and averages
    their changes.  So the interval holds the spread between training runs as well as the sampling of scenes: a
    change that one seed shows and another does not gets a wide one.  `n` counts clusters."""
    common = set.intersection({r["id"] for r in base}, *({r["id"] for r in rows} for rows in others))
    kept = [r for r in base if r["id"] in common]
    if not kept or not others:
        return NAN
    e_base, units = counts(kept, metric)
    if units.sum() == 0:
        return NAN
    labels = cluster_labels(kept, cluster) if cluster else [r["id"] for r in kept]
    e_base, units, *e_others = _by_cluster((e_base, units, *(counts(_pairs(kept, rows)[1], metric)[0]
                                                            for rows in others)), labels)
    e_others = np.stack(e_others)  # (seeds, clusters)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(units), size=(n_resamples, len(units)))
    per_seed = ratio(e_others[:, idx], units[idx]) - ratio(e_base[idx], units[idx])  # (seeds, draws)
    picked = rng.integers(0, len(others), size=(n_resamples, len(others)))
    draws = per_seed[picked, np.arange(n_resamples)[:, None]].mean(axis=1)
    value = float(np.mean(100.0 * (e_others.sum(axis=1) - e_base.sum()) / units.sum()))
    return Estimate(value, *_interval(draws), _two_sided(draws), len(units))


def paired_translation_delta(base: list[dict], other: list[dict], metric: str, n_resamples: int = N_RESAMPLES,
                             seed: int = 0) -> Estimate:
    """score(other) - score(base) of a translation metric ("bleu", "chrf") on the utterances both scored: paired
    bootstrap over utterances, corpus scores recomputed from summed sufficient statistics in every draw."""
    first, second = _pairs(base, other)
    if not first:
        return NAN
    a, b = translation_stats_of(first, metric), translation_stats_of(second, metric)
    idx = np.random.default_rng(seed).integers(0, len(first), size=(n_resamples, len(first)))

    def score(stats: np.ndarray) -> float:
        return translation_score_of_stats(metric, stats.sum(0))

    draws = np.array([score(b[i]) - score(a[i]) for i in idx])
    value = score(b) - score(a)
    return Estimate(value, *_interval(draws), _two_sided(draws), len(first))


def group_gap(first: list[dict], second: list[dict], metric: str, n_resamples: int = N_RESAMPLES,
              seed: int = 0) -> Estimate:
    """rate(first) - rate(second) for two disjoint groups of utterances: permutation p-value (group labels
    shuffled over the pooled utterances), bootstrap interval (each group resampled on its own)."""
    if not first or not second:
        return NAN
    e1, u1 = counts(first, metric)
    e2, u2 = counts(second, metric)
    if u1.sum() == 0 or u2.sum() == 0:
        return NAN
    value = 100.0 * (e1.sum() / u1.sum() - e2.sum() / u2.sum())
    rng = np.random.default_rng(seed)
    errors, units = np.concatenate([e1, e2]), np.concatenate([u1, u2])
    n1 = len(e1)
    perms = np.argsort(rng.random((n_resamples, len(errors))), axis=1)
    gaps = ratio(errors[perms[:, :n1]], units[perms[:, :n1]]) - ratio(errors[perms[:, n1:]], units[perms[:, n1:]])
    p = (1 + np.sum(np.abs(gaps) >= abs(value) - 1e-9)) / (1 + n_resamples)
    i1 = rng.integers(0, n1, size=(n_resamples, n1))
    i2 = rng.integers(0, len(e2), size=(n_resamples, len(e2)))
    draws = ratio(e1[i1], u1[i1]) - ratio(e2[i2], u2[i2])
    return Estimate(float(value), *_interval(draws), float(p), len(errors))


def gap_change(base: tuple[list[dict], list[dict]], other: tuple[list[dict], list[dict]], metric: str,
               n_resamples: int = N_RESAMPLES, seed: int = 0) -> Estimate:
    """(gap under `other`) - (gap under `base`), each gap = rate(group 1) - rate(group 2), on utterances scored by
    both systems; bootstrap over utterances within each group, the same draw for both systems."""
    arrays = [_paired_counts(base[g], other[g], metric) for g in range(2)]
    if any(a is None for a in arrays):
        return NAN
    rng = np.random.default_rng(seed)
    (value1, draws1), (value2, draws2) = (_delta_draws(a, rng, n_resamples) for a in arrays)
    value, draws = value1 - value2, draws1 - draws2
    return Estimate(float(value), *_interval(draws), _two_sided(draws), sum(len(a[2]) for a in arrays))


def spearman(x: list[float], y: list[float]) -> tuple[float, float, int]:
    """(rho, two-sided p, n) over the finite pairs; NaN when fewer than 3 pairs or a constant side.  Up to
    `EXACT_UP_TO` pairs the p-value is exact (all orderings enumerated): the usual t approximation gives p ~ 0 for a
    perfect ranking of 4 languages, whose exact p is 2/24."""
    from scipy.stats import spearmanr

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None and math.isfinite(a) and math.isfinite(b)]
    if len(pairs) < 3 or len({a for a, _ in pairs}) < 2 or len({b for _, b in pairs}) < 2:
        return float("nan"), float("nan"), len(pairs)
    xs, ys = [a for a, _ in pairs], [b for _, b in pairs]
    result = spearmanr(xs, ys)
    rho, p = float(result.statistic), float(result.pvalue)
    if len(pairs) <= EXACT_UP_TO:
        from itertools import permutations

        from scipy.stats import rankdata

        rx, ry = rankdata(xs), rankdata(ys)
        rhos = np.array([np.corrcoef(rx, np.array(perm))[0, 1] for perm in permutations(ry)])
        p = float(np.mean(np.abs(rhos) >= abs(rho) - 1e-9))
    return rho, p, len(pairs)
