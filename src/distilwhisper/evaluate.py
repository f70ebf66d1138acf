"""Decode a manifest, normalise, score, and summarise by language and by any metadata column.

Results are appended to `results.jsonl` and flushed after every batch, so an interrupted run loses at most one
batch and a rerun with the same `--out` resumes with the utterances not yet there.  The summary is recomputed from
`results.jsonl` alone, so it can be regrouped without decoding again.
"""

from __future__ import annotations

import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from tqdm import tqdm

from distilwhisper.audio import SAMPLE_RATE, AudioError, audio_duration, load_audio
from distilwhisper.data.manifest import Utterance, read_manifest
from distilwhisper.decoding import MAX_NEW_TOKENS, CT2Decoder, WhisperDecoder
from distilwhisper.languages import check as check_language, uses_characters
from distilwhisper.metrics import corpus_rate, error_counts
from distilwhisper.normalize import normalize
from distilwhisper.quantize import load_variant

# Metadata columns to break results down by; "a+b" groups on the pair of values
GROUP_COLUMNS = ("gender", "age", "domain", "domain+gender", "split", "source", "condition")
RESULT_METADATA = ("speaker", "gender", "age", "split", "domain", "source")


@dataclass
class EvalConfig:
    """What determines the transcripts; a resumed run must use the same."""

    model: str
    beam_size: int = 1
    max_new_tokens: int = MAX_NEW_TOKENS
    trim: bool = False
    precision: str = "fp32"
    experts: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def _done_ids(results: Path) -> set[str]:
    """Ids already scored; a torn last line (crash mid-write) is dropped from the file."""
    if not results.exists():
        return set()
    lines = results.read_text(encoding="utf-8").splitlines(keepends=True)
    good, ids = [], set()
    for line in lines:
        try:
            ids.add(json.loads(line)["id"])
            good.append(line)
        except (json.JSONDecodeError, KeyError):
            continue
    if len(good) != len(lines) or (lines and not lines[-1].endswith("\n")):
        results.write_text("".join(line if line.endswith("\n") else line + "\n" for line in good), encoding="utf-8")
    return ids


def _check_resume(out: Path, config: EvalConfig) -> None:
    path = out / "config.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != config.as_dict():
            raise ValueError(f"{out} holds results of another setting ({previous}); use a new --out or the same "
                             f"options ({config.as_dict()})")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config.as_dict(), indent=1))


def _batches(utterances: list[Utterance], durations: dict[str, float], size: int) -> Iterable[list[Utterance]]:
    """Language-homogeneous batches of similar length (less padding work, and one expert set per batch)."""
    by_language: dict[str, list[Utterance]] = defaultdict(list)
    for utt in utterances:
        by_language[utt.language].append(utt)
    for language in sorted(by_language):
        ordered = sorted(by_language[language], key=lambda u: durations.get(u.id, 0.0))
        for i in range(0, len(ordered), size):
            yield ordered[i:i + size]


def evaluate(model: str, data: str | Path, out: str | Path, language: str | None = None, batch_size: int = 8,
             beam_size: int = 1, limit: int | None = None, trim: bool = False, threads: int | None = None,
             decoder: WhisperDecoder | CT2Decoder | None = None, precision: str = "fp32", progress: bool = True,
             experts: str | None = None, split: str | None = None, domain: str | None = None) -> dict:
    """Evaluate `model` on a manifest into `out/`; returns the summary. Bad manifest lines are reported in
    `out/skipped.txt` and left out; audio that fails to decode mid-run is reported there too.  `language`,
    `split` and `domain` keep only the matching utterances.  `precision` is one of `quantize.PRECISIONS`; the
    loaded variant's weight size goes to `out/variant.json`."""
    out = Path(out)
    if language is not None:
        check_language(language)
    if threads:
        torch.set_num_threads(threads)
    utterances, problems = read_manifest(data)
    if language is not None:
        utterances = [u for u in utterances if u.language == language]
    if split is not None:
        utterances = [u for u in utterances if u.split == split]
    if domain is not None:
        utterances = [u for u in utterances if u.domain == domain]
    if not utterances:
        raise ValueError(f"{data}: no utterances left after filtering (language={language}, split={split}, "
                         f"domain={domain})")
    if limit is not None:
        utterances = utterances[:limit]
    config = EvalConfig(model=model, beam_size=beam_size, trim=trim, precision=precision,
                        experts=str(experts) if experts else None)
    _check_resume(out, config)
    skipped_path = out / "skipped.txt"
    with skipped_path.open("w", encoding="utf-8") as f:
        f.writelines(f"{data}:{line}: {msg}\n" for line, msg in problems)
    if problems:
        tqdm.write(f"{len(problems)} bad manifest line(s) left out; see {skipped_path}:")
        for line, msg in problems[:10]:
            tqdm.write(f"  {data}:{line}: {msg}")
    results_path = out / "results.jsonl"
    done = _done_ids(results_path)
    todo = [u for u in utterances if u.id not in done]
    if todo:
        if decoder is None:
            variant = load_variant(model, precision, trim=trim, experts=experts,
                                   languages=sorted({u.language for u in todo}), threads=threads)
            (out / "variant.json").write_text(json.dumps(variant.info(), indent=1))
            decoder = variant.decoder
        _decode_all(decoder, todo, results_path, skipped_path, batch_size, beam_size, progress)
    summary = summarize(results_path, out)
    summary["skipped_lines"] = len(problems)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    return summary


def _duration_or_zero(path: str) -> float:
    """Sort key only: a file that broke since validation sorts first and is reported when its batch loads it."""
    try:
        return audio_duration(path)
    except AudioError:
        return 0.0


def _decode_all(decoder: WhisperDecoder | CT2Decoder, todo: list[Utterance], results_path: Path, skipped_path: Path,
                batch_size: int, beam_size: int, progress: bool) -> None:
    """Decode in length-sorted batches; audio is read per batch (durations come from file headers), so memory stays
    at one batch whatever the corpus size.  A clip that fails to decode is reported and skipped."""
    durations = {u.id: _duration_or_zero(u.audio) for u in todo}
    bar = tqdm(total=len(todo), unit="utt", desc="decoding", disable=not progress, smoothing=0.1)
    with results_path.open("a", encoding="utf-8") as results, skipped_path.open("a", encoding="utf-8") as skipped:
        for batch in _batches(todo, durations, batch_size):
            audios, kept = [], []
            for utt in batch:
                try:
                    audios.append(load_audio(utt.audio))
                    kept.append(utt)
                except AudioError as err:
                    skipped.write(f"{utt.id}: {err}\n")
                    tqdm.write(f"skipped {utt.id}: {err}")
            bar.update(len(batch) - len(kept))
            if not kept:
                continue
            start = time.perf_counter()
            transcripts = decoder.transcribe(audios, kept[0].language, beam_size=beam_size)
            per_utt = (time.perf_counter() - start) / len(kept)
            for utt, audio, tr in zip(kept, audios, transcripts):
                ref_norm, hyp_norm = normalize(utt.text, utt.language), normalize(tr.text, utt.language)
                counts = error_counts(ref_norm, hyp_norm)
                row = {"id": utt.id, "language": utt.language, "reference": utt.text, "hypothesis": tr.text,
                       "reference_norm": ref_norm, "hypothesis_norm": hyp_norm, **counts.__dict__,
                       "audio_seconds": round(len(audio) / SAMPLE_RATE, 3), "decode_seconds": round(per_utt, 4)}
                row.update({k: utt.metadata(k) for k in RESULT_METADATA})
                row.update(utt.extra)
                results.write(json.dumps(row, ensure_ascii=False) + "\n")
            results.flush()
            skipped.flush()
            bar.update(len(kept))
    bar.close()


def read_results(path: str | Path) -> list[dict]:
    """Rows of a results.jsonl (torn lines ignored)."""
    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def _rates(rows: list[dict]) -> dict:
    char_lang = all(uses_characters(r["language"]) for r in rows)
    return {
        "utterances": len(rows),
        "wer": corpus_rate([r["word_errors"] for r in rows], [r["words"] for r in rows]).as_dict(),
        "cer": corpus_rate([r["char_errors"] for r in rows], [r["chars"] for r in rows]).as_dict(),
        "primary": "cer" if char_lang else "wer",
        "audio_hours": sum(r.get("audio_seconds", 0.0) for r in rows) / 3600,
        "decode_seconds_per_utt": float(np.mean([r.get("decode_seconds", 0.0) for r in rows])),
    }


def summarize(results: str | Path, out: str | Path | None = None,
              group_columns: tuple[str, ...] = GROUP_COLUMNS) -> dict:
    """WER/CER (with 95 % bootstrap CIs) overall, per language, and per language x value of each column that
    takes more than one value within a language."""
    rows = read_results(results)
    by_language: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_language[r["language"]].append(r)
    summary: dict = {"overall": _rates(rows) if rows else {}, "languages": {}, "groups": {}}
    for lang, lang_rows in sorted(by_language.items()):
        summary["languages"][lang] = _rates(lang_rows)
    for column in group_columns:
        table: dict[str, dict[str, dict]] = {}
        for lang, lang_rows in sorted(by_language.items()):
            values: dict[str, list[dict]] = defaultdict(list)
            for r in lang_rows:
                values[" / ".join(str(r.get(c) or "unknown") for c in column.split("+"))].append(r)
            if len(values) > 1:  # a column with one value per language says nothing beyond the language table
                table[lang] = {v: _rates(vr) for v, vr in sorted(values.items())}
        if table:
            summary["groups"][column] = table
    if out is not None:
        Path(out, "summary.md").write_text(summary_markdown(summary), encoding="utf-8")
    return summary


def _fmt(rate: dict) -> str:
    if rate["value"] is None or math.isnan(rate["value"]):
        return "n/a"
    return f"{rate['value']:.1f} [{rate['ci_low']:.1f}, {rate['ci_high']:.1f}]"


def summary_markdown(summary: dict) -> str:
    """Readable tables: per language, then per metadata group."""
    lines = ["# Evaluation summary", "", "WER and CER in %, with 95 % bootstrap confidence intervals over utterances.",
             "", "| language | utts | hours | WER | CER | s/utt |", "|---|---|---|---|---|---|"]
    for lang, r in summary["languages"].items():
        lines.append(f"| {lang} | {r['utterances']} | {r['audio_hours']:.2f} | {_fmt(r['wer'])} | {_fmt(r['cer'])} "
                     f"| {r['decode_seconds_per_utt']:.2f} |")
    if summary["overall"]:
        r = summary["overall"]
        lines.append(f"| **all** | {r['utterances']} | {r['audio_hours']:.2f} | {_fmt(r['wer'])} | {_fmt(r['cer'])} "
                     f"| {r['decode_seconds_per_utt']:.2f} |")
    for column, table in summary["groups"].items():
        lines += ["", f"## By {column}", "", f"| language | {column} | utts | WER | CER |", "|---|---|---|---|---|"]
        for lang, values in table.items():
            for value, r in values.items():
                lines.append(f"| {lang} | {value} | {r['utterances']} | {_fmt(r['wer'])} | {_fmt(r['cer'])} |")
    return "\n".join(lines) + "\n"
