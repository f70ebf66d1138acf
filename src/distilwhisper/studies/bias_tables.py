"""The bias study's analysis: from the result rows of every model x precision evaluation to its tables.

- model-related bias: error rate per language against Whisper's training hours for it (resource level), and per
  model size;
- speaker-related bias: error-rate gaps between gender groups and between age groups within a language;
- what quantization does to each: the change of error rate per language and per resource tier against the same
  model's fp32 (paired over utterances), whether that change grows as training hours shrink, and whether it widens
  a speaker gap (difference-in-differences).

Every test is on the language's primary metric (WER, or CER for languages written without spaces); see `stats.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from distilwhisper import stats
from distilwhisper.io import read_json
from distilwhisper.languages import log_hours, resource_tier, training_hours, uses_characters
from distilwhisper.results import by_language as _by_language, corpus_rate, rate, read_results

REFERENCE = "fp32"
SPEAKER_COLUMNS = ("gender", "age", "domain")  # domain: voice groups, e.g. main vs minor characters
MIN_GROUP = 3  # utterances a speaker group needs to be compared


@dataclass
class Run:
    """One model at one precision: where its results are, or why it was not run."""

    model: str
    precision: str
    directory: Path
    skipped: str | None = None
    languages: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"model": self.model, "precision": self.precision, "directory": str(self.directory),
                "skipped": self.skipped, "languages": self.languages}


def run_rows(run: Run) -> list[dict]:
    """Every scored utterance of a run (its own results, or one folder per language for a language subset)."""
    rows: list[dict] = []
    for path in sorted(run.directory.rglob("results.jsonl")):
        rows += read_results(path)
    return rows


def run_info(run: Run) -> dict:
    """Weight size and parameters recorded when the variant was loaded."""
    for path in sorted(run.directory.rglob("variant.json")):
        return read_json(path)
    return {}


def metric_of(language: str) -> str:
    return "cer" if uses_characters(language) else "wer"



def variants_table(runs: list[Run], rows: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """Per model x precision: size, speed (s/utt and real-time factor), overall error rate; speed-up vs fp32."""
    table = []
    for run in runs:
        entry = {"model": run.model, "precision": run.precision, "status": "skipped" if run.skipped else "ok",
                 "reason": run.skipped or ""}
        got = rows.get((run.model, run.precision), [])
        if got:
            info = run_info(run)
            decode = sum(r.get("decode_seconds", 0.0) for r in got)
            audio = sum(r.get("audio_seconds", 0.0) for r in got)
            entry.update({"utterances": len(got), "weight_mb": info.get("weight_bytes", 0) / 1e6,
                          "parameters_m": info.get("parameters", 0) / 1e6, "s_per_utt": decode / len(got),
                          "rtf": decode / audio if audio else float("nan"), "wer": rate(got, "wer"),
                          "cer": rate(got, "cer")})
        table.append(entry)
    for entry in table:
        ref = next((e for e in table if e["model"] == entry["model"] and e["precision"] == REFERENCE
                    and "s_per_utt" in e), None)
        if ref and "s_per_utt" in entry and ref["s_per_utt"] > 0:
            common = {r["id"] for r in rows[(entry["model"], REFERENCE)]} & {
                r["id"] for r in rows[(entry["model"], entry["precision"])]}
            entry["speedup_vs_fp32"] = _seconds(rows[(entry["model"], REFERENCE)], common) / max(
                _seconds(rows[(entry["model"], entry["precision"])], common), 1e-9)
    return table


def _seconds(rows: list[dict], ids: set[str]) -> float:
    return sum(r.get("decode_seconds", 0.0) for r in rows if r["id"] in ids)


def languages_table(rows: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """Per model x precision x language: WER and CER with intervals, training hours, tier, primary metric."""
    table = []
    for (model, precision), got in rows.items():
        for language, lang_rows in _by_language(got).items():
            wer, cer = corpus_rate(lang_rows, "wer"), corpus_rate(lang_rows, "cer")
            table.append({"model": model, "precision": precision, "language": language,
                          "training_hours": training_hours(language), "tier": resource_tier(language),
                          "metric": metric_of(language), "utterances": len(lang_rows),
                          "speakers": len({r.get("speaker") for r in lang_rows}),
                          "sources": ",".join(sorted({_source(r) for r in lang_rows})),
                          "wer": wer.value, "wer_low": wer.low, "wer_high": wer.high,
                          "cer": cer.value, "cer_low": cer.low, "cer_high": cer.high})
    return table


def _source(row: dict) -> str:
    """Where the audio comes from, with the TTS engine for synthetic speech (engine quality confounds language)."""
    source = str(row.get("source") or "?")
    return f"{source}:{row['engine']}" if row.get("engine") else source


def resource_correlation(languages: list[dict], quantization: list[dict]) -> list[dict]:
    """Spearman correlation with log training hours, per model x precision: of the error rate, and of the change
    of error rate under quantization (negative rho on ΔWER = low-resource languages lose more)."""
    table = []
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in languages:
        groups[(row["model"], row["precision"])].append(row)
    for (model, precision), rows in groups.items():
        rho, p, n = stats.spearman([log_hours(r["language"]) for r in rows], [r[r["metric"]] for r in rows])
        table.append({"model": model, "precision": precision, "quantity": "error rate", "rho": rho, "p": p,
                      "languages": n})
    deltas: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for row in quantization:
        if row["scope"] == "language":
            deltas[(row["model"], row["precision"])].append(row)
    for (model, precision), rows in deltas.items():
        rho, p, n = stats.spearman([log_hours(r["group"]) for r in rows], [r["delta"] for r in rows])
        table.append({"model": model, "precision": precision, "quantity": "delta vs fp32", "rho": rho, "p": p,
                      "languages": n})
    return table


def quantization_table(rows: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """Change of the primary error rate against the same model's fp32, paired over utterances: per language, per
    resource tier (languages pooled) and overall."""
    table = []
    for (model, precision), got in rows.items():
        base = rows.get((model, REFERENCE))
        if precision == REFERENCE or not base:
            continue
        base_by_lang, got_by_lang = _by_language(base), _by_language(got)
        scopes: list[tuple[str, str, list[str]]] = [("language", lang, [lang]) for lang in got_by_lang]
        tiers: dict[str, list[str]] = defaultdict(list)
        for lang in got_by_lang:
            tiers[resource_tier(lang)].append(lang)
        scopes += [("tier", tier, langs) for tier, langs in sorted(tiers.items())]
        for scope, group, langs in scopes:
            metric = metric_of(langs[0]) if len({metric_of(lang) for lang in langs}) == 1 else "wer"
            b = [r for lang in langs for r in base_by_lang.get(lang, [])]
            q = [r for lang in langs for r in got_by_lang[lang]]
            delta = stats.paired_delta(b, q, metric, seed=len(table))
            ids = {r["id"] for r in q}
            base_rate = rate([r for r in b if r["id"] in ids], metric)
            table.append({"model": model, "precision": precision, "scope": scope, "group": group,
                          "languages": ",".join(langs), "metric": metric, "base_rate": base_rate,
                          "rate": rate(q, metric), "delta": delta.value, "delta_low": delta.low,
                          "delta_high": delta.high, "p": delta.p, "relative_delta_pct": 100 * delta.value / base_rate
                          if base_rate else float("nan"), "utterances": delta.n})
    return table


def _comparisons(lang_rows: list[dict], column: str) -> list[tuple[str, str, list[dict], list[dict]]]:
    """Speaker groups to compare within a language: the two values of a two-valued column, or each value against
    all others; groups under `MIN_GROUP` utterances and unknown values are left out."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in lang_rows:
        value = r.get(column)
        if value:
            groups[str(value)].append(r)
    groups = {k: v for k, v in sorted(groups.items()) if len(v) >= MIN_GROUP}
    if len(groups) < 2:
        return []
    names = list(groups)
    if len(names) == 2:
        return [(names[0], names[1], groups[names[0]], groups[names[1]])]
    return [(name, f"not {name}", groups[name], [r for other in names if other != name for r in groups[other]])
            for name in names]


def speaker_table(rows: dict[tuple[str, str], list[dict]]) -> list[dict]:
    """Gender and age gaps per language and model x precision (permutation test), and for quantized precisions
    the change of each gap against fp32 (difference-in-differences, bootstrap)."""
    table = []
    for (model, precision), got in rows.items():
        base = _by_language(rows.get((model, REFERENCE), []))
        for language, lang_rows in _by_language(got).items():
            metric = metric_of(language)
            for column in SPEAKER_COLUMNS:
                for first, second, g1, g2 in _comparisons(lang_rows, column):
                    gap = stats.group_gap(g1, g2, metric, seed=len(table))
                    entry = {"model": model, "precision": precision, "language": language, "column": column,
                             "group": first, "versus": second, "metric": metric,
                             "utterances": f"{len(g1)}/{len(g2)}",
                             "speakers": f"{len({r.get('speaker') for r in g1})}/{len({r.get('speaker') for r in g2})}",
                             "rate": rate(g1, metric), "rate_versus": rate(g2, metric),
                             "gap": gap.value, "gap_low": gap.low, "gap_high": gap.high, "p": gap.p}
                    if precision != REFERENCE and language in base:
                        ids1, ids2 = {r["id"] for r in g1}, {r["id"] for r in g2}
                        b1 = [r for r in base[language] if r["id"] in ids1]
                        b2 = [r for r in base[language] if r["id"] in ids2]
                        did = stats.gap_change((b1, b2), (g1, g2), metric, seed=len(table))
                        entry.update({"gap_change": did.value, "gap_change_low": did.low,
                                      "gap_change_high": did.high, "gap_change_p": did.p})
                    table.append(entry)
    return table


def model_size_table(rows: dict[tuple[str, str], list[dict]], runs: list[Run]) -> list[dict]:
    """Per precision and language, each pair of models on the utterances both scored: rate(model) - rate(other),
    paired bootstrap; parameters of both."""
    params = {r.model: run_info(r).get("parameters", 0) for r in runs if not r.skipped}
    models = sorted({m for m, _ in rows}, key=lambda m: params.get(m, 0))
    table = []
    for precision in sorted({p for _, p in rows}):
        for i, small in enumerate(models):
            for large in models[i + 1:]:
                a, b = rows.get((small, precision)), rows.get((large, precision))
                if not a or not b:
                    continue
                a_lang, b_lang = _by_language(a), _by_language(b)
                for language in sorted(set(a_lang) & set(b_lang)):
                    metric = metric_of(language)
                    delta = stats.paired_delta(b_lang[language], a_lang[language], metric, seed=len(table))
                    if delta.n == 0:
                        continue
                    ids = {r["id"] for r in a_lang[language]}
                    table.append({"precision": precision, "language": language, "smaller": small, "larger": large,
                                  "smaller_params_m": params.get(small, 0) / 1e6,
                                  "larger_params_m": params.get(large, 0) / 1e6, "metric": metric,
                                  "rate_smaller": rate(a_lang[language], metric),
                                  "rate_larger": rate([r for r in b_lang[language] if r["id"] in ids], metric),
                                  "delta": delta.value, "delta_low": delta.low, "delta_high": delta.high,
                                  "p": delta.p, "utterances": delta.n})
    return table


@dataclass
class BiasResult:
    runs: list[Run]
    variants: list[dict]
    languages: list[dict]
    quantization: list[dict]
    correlation: list[dict]
    speakers: list[dict]
    model_size: list[dict]
    problems: list[str]


def analyse(runs: list[Run], problems: list[str] | None = None) -> BiasResult:
    """All bias tables from the finished runs."""
    rows = {(r.model, r.precision): run_rows(r) for r in runs if not r.skipped}
    rows = {k: v for k, v in rows.items() if v}
    quantization = quantization_table(rows)
    languages = languages_table(rows)
    return BiasResult(runs, variants_table(runs, rows), languages, quantization,
                      resource_correlation(languages, quantization), speaker_table(rows),
                      model_size_table(rows, runs), problems or [])

