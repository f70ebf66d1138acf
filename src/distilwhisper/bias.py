"""The bias study: evaluate models x precisions on one set of utterances, then measure

- model-related bias: error rate per language against Whisper's training hours for it (resource level), and per
  model size;
- speaker-related bias: error-rate gaps between gender groups and between age groups within a language;
- what quantization does to each: the change of error rate per language and per resource tier against the same
  model's fp32 (paired over utterances), whether that change grows as training hours shrink, and whether it widens
  a speaker gap (difference-in-differences).

Each (model, precision) evaluation lives in `out/evals/<model>/<precision>/` and resumes like any `eval` run; the
analysis is recomputed from their `results.jsonl` files, so a rerun only decodes what is missing.  Every test is
on the language's primary metric (WER, or CER for languages written without spaces); see `stats.py`.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from distilwhisper import stats
from distilwhisper.data.manifest import Utterance, read_manifest, write_manifest
from distilwhisper.evaluate import evaluate, read_results
from distilwhisper.metrics import corpus_rate
from distilwhisper.languages import log_hours, resource_tier, training_hours, uses_characters
from distilwhisper.quantize import UnsupportedPrecision, check_supported

REFERENCE = "fp32"
SPEAKER_COLUMNS = ("gender", "age")
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


def slug(model: str) -> str:
    """A folder name for a model reference."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip("/")).strip("-") or "model"


def combine_manifests(paths: list[str], out: Path, per_language: int | None = None) -> tuple[Path, list[str]]:
    """One manifest of every usable utterance of `paths` (absolute audio paths), at most `per_language` per
    language; returns it and the bad lines left out ('file:line: problem')."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        utts, bad = read_manifest(path)
        problems += [f"{path}:{line}: {msg}" for line, msg in bad]
        for u in utts:
            if u.id in seen:
                raise ValueError(f"{path}: utterance id {u.id!r} is also in {seen[u.id]}; ids must be unique across "
                                 "--data manifests")
            seen[u.id] = path
            utterances.append(u)
    if per_language is not None:
        kept: dict[str, int] = defaultdict(int)
        chosen = []
        for u in utterances:
            if kept[u.language] < per_language:
                kept[u.language] += 1
                chosen.append(u)
        utterances = chosen
    if not utterances:
        raise ValueError(f"no usable utterance in {', '.join(paths)}")
    out.mkdir(parents=True, exist_ok=True)
    return write_manifest(out / "manifest.jsonl", utterances, relative=False), problems


def _model_languages(model: str, languages: list[str]) -> tuple[list[str], str | None]:
    """The languages of `languages` a model can transcribe (English-only models: en), and why others are left out."""
    from transformers import GenerationConfig

    from distilwhisper.hub import resolve_hf_dir

    generation = GenerationConfig.from_pretrained(resolve_hf_dir(model))
    if getattr(generation, "lang_to_id", None):
        return languages, None
    others = [lang for lang in languages if lang != "en"]
    return [lang for lang in languages if lang == "en"], (f"English-only model: {', '.join(others)} not evaluated"
                                                          if others else None)


def run_evaluations(models: list[str], precisions: list[str], manifest: Path, out: Path, batch_size: int = 8,
                    trim: bool = False, threads: int | None = None, progress: bool = True) -> list[Run]:
    """Evaluate every model x precision (resuming finished work); unsupported ones are recorded with the reason."""
    languages = sorted({u.language for u in read_manifest(manifest, check_audio=False)[0]})
    runs: list[Run] = []
    for model in models:
        model_languages, note = _model_languages(model, languages)
        for precision in precisions:
            run = Run(model, precision, out / "evals" / slug(model) / precision, languages=model_languages)
            runs.append(run)
            try:
                check_supported(precision, model)
            except UnsupportedPrecision as err:
                run.skipped = str(err)
                print(f"skipped {model} {precision}: {err}")
                continue
            if not model_languages:
                run.skipped = note
                continue
            print(f"== {model} {precision}" + (f" ({note})" if note else ""))
            for language in model_languages if len(model_languages) < len(languages) else [None]:
                target = run.directory if language is None else run.directory / language
                evaluate(model, manifest, target, language=language, batch_size=batch_size, trim=trim,
                         threads=threads, precision=precision, progress=progress)
    (out / "runs.json").write_text(json.dumps([r.as_dict() for r in runs], indent=1))
    return runs


def run_rows(run: Run) -> list[dict]:
    """Every scored utterance of a run (its own results, or one folder per language for a language subset)."""
    rows: list[dict] = []
    for path in sorted(run.directory.rglob("results.jsonl")):
        rows += read_results(path)
    return rows


def run_info(run: Run) -> dict:
    """Weight size and parameters recorded when the variant was loaded."""
    for path in sorted(run.directory.rglob("variant.json")):
        return json.loads(path.read_text())
    return {}


# ----- analysis -----------------------------------------------------------------------------------------------
def metric_of(language: str) -> str:
    return "cer" if uses_characters(language) else "wer"


def _by_language(rows: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        out[r["language"]].append(r)
    return dict(sorted(out.items()))


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
                          "rtf": decode / audio if audio else float("nan"), "wer": stats.rate(got, "wer"),
                          "cer": stats.rate(got, "cer")})
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
            wer = corpus_rate([r["word_errors"] for r in lang_rows], [r["words"] for r in lang_rows])
            cer = corpus_rate([r["char_errors"] for r in lang_rows], [r["chars"] for r in lang_rows])
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
            base_rate = stats.rate([r for r in b if r["id"] in ids], metric)
            table.append({"model": model, "precision": precision, "scope": scope, "group": group,
                          "languages": ",".join(langs), "metric": metric, "base_rate": base_rate,
                          "rate": stats.rate(q, metric), "delta": delta.value, "delta_low": delta.low,
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
                             "rate": stats.rate(g1, metric), "rate_versus": stats.rate(g2, metric),
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
                                  "rate_smaller": stats.rate(a_lang[language], metric),
                                  "rate_larger": stats.rate([r for r in b_lang[language] if r["id"] in ids], metric),
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


def run_bias(models: list[str], precisions: list[str], data: list[str], out: str | Path, batch_size: int = 8,
             per_language: int | None = None, trim: bool = False, threads: int | None = None,
             progress: bool = True) -> BiasResult:
    """Evaluate, analyse and write the report (`out/report.md`, CSVs, PNG figures); resumable."""
    from distilwhisper.report import write_bias_report

    out = Path(out)
    if REFERENCE not in precisions:
        precisions = [REFERENCE, *precisions]  # every quantization effect is measured against fp32
    manifest, problems = combine_manifests(data, out, per_language)
    for problem in problems[:10]:
        print(f"left out: {problem}")
    runs = run_evaluations(models, precisions, manifest, out, batch_size, trim, threads, progress)
    result = analyse(runs, problems)
    write_bias_report(result, out)
    return result
