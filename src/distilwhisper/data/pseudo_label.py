"""Teacher transcripts for audio without text: `distilwhisper data pseudo-label` (issue #38).

distil-whisper trains on the teacher's transcripts of unlabelled audio and drops those it cannot trust; without a
human text to check against, the check here is agreement: a second, smaller model (the student's start, by default
the bundled whisper-base) transcribes the same audio, and a row whose teacher transcript differs from the student's
by more than `max_disagreement` WER is dropped (distil-whisper's threshold against human text is 10 %).  Each row
keeps the teacher's reference, its average log-probability and the disagreement, so a user can filter again later.

Decoding is greedy, one pass, with the row's language given (the protocol of `eval`).  Long jobs resume: every
decoded batch is appended to `<out>.partial.jsonl` and flushed; a rerun decodes only the rows it lacks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jiwer
from tqdm import tqdm

from distilwhisper.audio import load_audio
from distilwhisper.data.manifest import PSEUDO_LABEL, Utterance, read_manifest, write_manifest
from distilwhisper.decoding import Decoder, DecodingOptions
from distilwhisper.evaluate import ONE_PASS
from distilwhisper.io import append_jsonl, repair_jsonl
from distilwhisper.normalize import normalize

HUMAN_TEXT = "human_text"  # extra column (--relabel): the text the row had before
DISAGREEMENT = "teacher_student_wer"  # extra column: the agreement check's WER, kept so rows can be filtered again


@dataclass
class LabelCounts:
    """What a pseudo-labelling run did, row by row."""

    kept_human: int = 0  # rows whose own text was kept
    pseudo_labelled: int = 0  # rows given the teacher's text
    dropped_disagreement: int = 0  # teacher and student disagreed too much
    dropped_empty: int = 0  # the teacher wrote nothing
    bad_lines: int = 0  # manifest lines that could not be read (reported)


def disagreement(teacher: str, student: str, language: str) -> float:
    """WER of the student's transcript against the teacher's, both normalised (1.0 when the teacher wrote
    nothing)."""
    reference, hypothesis = normalize(teacher, language), normalize(student, language)
    if not reference.split():
        return 1.0
    return jiwer.wer(reference, hypothesis or "-")


def agrees(row: Utterance, max_disagreement: float | None) -> bool:
    """Whether a row passes the agreement filter: a human-transcribed row always, a pseudo-labelled one when its
    recorded teacher-student WER is at most `max_disagreement` (None: every one).  Reads the stored column, so a
    manifest written with a loose limit can be filtered to a stricter one without decoding again."""
    if max_disagreement is None or not row.extra.get(PSEUDO_LABEL):
        return True
    if row.extra.get(DISAGREEMENT) is None:
        raise ValueError(f"row {row.id!r}: pseudo-labelled but without its {DISAGREEMENT!r}: a row that "
                         "`data pseudo-label` did not write cannot be filtered by agreement (decode it again, or "
                         "filter with no limit)")
    return float(row.extra[DISAGREEMENT]) <= max_disagreement


def _decode(teacher: Decoder, student: Decoder, rows: list[Utterance], partial: Path, batch_size: int,
            options: DecodingOptions, progress: bool) -> dict[str, dict]:
    """Teacher and student transcripts of `rows`, resumed from and appended to `partial`."""
    done = {row["id"]: row for row in repair_jsonl(partial)}
    todo = [u for u in rows if u.id not in done]
    with partial.open("a", encoding="utf-8") as f, tqdm(total=len(rows), initial=len(rows) - len(todo),
                                                         unit="utt", desc="pseudo-labelling",
                                                         disable=not progress) as bar:
        for i in range(0, len(todo), batch_size):
            batch = todo[i:i + batch_size]
            audios = [load_audio(u.audio) for u in batch]
            languages = [u.language for u in batch]
            taught = teacher.transcribe(audios, languages, options)
            learnt = student.transcribe(audios, languages, options)
            new = [{"id": u.id, "teacher": t.text.strip(), "avg_logprob": round(t.avg_logprob, 4),
                    "student": s.text.strip()} for u, t, s in zip(batch, taught, learnt)]
            append_jsonl(f, new)
            done.update((row["id"], row) for row in new)
            bar.update(len(batch))
    return done


def pseudo_label(manifest: str | Path, teacher: Decoder, student: Decoder, teacher_name: str, out: str | Path,
                 relabel: bool = False, max_disagreement: float | None = 0.1, batch_size: int = 8,
                 options: DecodingOptions = ONE_PASS, progress: bool = True) -> tuple[Path, LabelCounts, list[str]]:
    """Write `out` (a manifest): `manifest`'s rows, those without text (all with `relabel`) given the teacher's
    transcript, less those whose teacher-student disagreement is above `max_disagreement` (None keeps all).
    `options`: how both decode (default: greedy, one pass, eval's protocol).  Returns (the manifest written,
    counts, the bad lines of `manifest` as 'file:line: reason')."""
    out = Path(out)
    utterances, problems = read_manifest(manifest, unlabelled_ok=True)
    counts = LabelCounts(bad_lines=len(problems))
    targets = [u for u in utterances if relabel or not u.text.strip()]
    if not targets:
        raise ValueError(f"{manifest}: every row has text; nothing to pseudo-label (--relabel labels them all)")
    out.parent.mkdir(parents=True, exist_ok=True)
    decoded = _decode(teacher, student, targets, out.with_suffix(".partial.jsonl"), batch_size,
                      options, progress)
    kept = []
    target_ids = {u.id for u in targets}
    for u in utterances:
        if u.id not in target_ids:
            counts.kept_human += 1
            kept.append(u)
            continue
        row = decoded[u.id]
        if not row["teacher"]:
            counts.dropped_empty += 1
            continue
        wer = disagreement(row["teacher"], row["student"], u.language)
        extra = {**u.extra, PSEUDO_LABEL: teacher_name, "teacher_avg_logprob": str(row["avg_logprob"]),
                 DISAGREEMENT: f"{wer:.4f}", **({HUMAN_TEXT: u.text} if u.text.strip() else {})}
        labelled = Utterance(**{**u.__dict__, "text": row["teacher"], "extra": extra})
        if not agrees(labelled, max_disagreement):
            counts.dropped_disagreement += 1
            continue
        kept.append(labelled)
        counts.pseudo_labelled += 1
    bad = [f"{manifest}:{line}: {msg}" for line, msg in problems]
    return write_manifest(out, kept), counts, bad
