"""A folder of one's own recordings -> manifest (issue #38): the layouts practitioners hold their speech in.

- Hugging Face `audiofolder`: `metadata.csv` or `metadata.jsonl` beside the audio, a `file_name` column (relative to
  the folder) and a text column (`transcription`, `text` or `sentence`, or `--text-column`); optional `speaker`,
  `gender`, `age`, `split` columns (other columns are kept);
- audio files with a same-name `.txt` transcript beside each (`clip.wav` + `clip.txt`);
- a CSV or TSV file (`--table`) with path and text columns named by flags, paths relative to the table's folder.

Every bad row is reported as file:line (or file) with its reason -- missing or unreadable audio, empty text, longer
than Whisper's 30 s window -- and left out; the rest is imported.  Without a split column the rows are split by
speaker (a speaker's rows all in one split; a row without a speaker is a speaker of its own), seeded, and the
split is reported.
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

from distilwhisper.audio import MAX_SECONDS, AudioError, audio_duration
from distilwhisper.data.manifest import Utterance
from distilwhisper.languages import check as check_language

AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm")
TEXT_COLUMNS = ("transcription", "text", "sentence")
KNOWN = ("speaker", "gender", "age", "split")


@dataclass
class Row:
    """One row of a layout before its checks: where it came from (file:line), its audio, text and metadata."""

    where: str
    audio: Path
    text: str
    metadata: dict[str, str]


def load_folder(folder: str | Path, language: str, table: str | None = None, path_column: str = "file_name",
                text_column: str | None = None, split: tuple[float, float] = (0.1, 0.1), seed: int = 0,
                unlabelled: bool = False) -> tuple[list[Utterance], list[str], dict[str, int]]:
    """(utterances, skipped rows as 'file:line: reason', rows per split) of a folder in any of the layouts;
    `split`: the dev and test shares of speakers when the rows have no split column; `unlabelled`: audio without
    text is imported with empty text (for `data pseudo-label`) instead of skipped."""
    folder, language = Path(folder), check_language(language)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    rows = (_table(Path(table) if Path(table).is_absolute() else folder / table, path_column, text_column)
            if table else _metadata(folder, text_column) or _transcripts(folder))
    if not rows:
        raise ValueError(f"{folder}: no metadata.csv/metadata.jsonl, no audio with a same-name .txt transcript, and no "
                         "--table: nothing to import")
    utterances, skipped = [], []
    for row in rows:
        problem = _problem(row, unlabelled)
        if problem:
            skipped.append(f"{row.where}: {problem}")
            continue
        meta = row.metadata
        utterances.append(Utterance(
            id=f"{folder.name}-{row.audio.relative_to(folder).with_suffix('').as_posix().replace('/', '-')}"
            if row.audio.is_relative_to(folder) else row.audio.stem, audio=str(row.audio), text=row.text.strip(),
            language=language, speaker=meta.get("speaker", ""), gender=meta.get("gender", "").lower(),
            age=meta.get("age", ""), split=meta.get("split", ""), source="folder",
            extra={k: v for k, v in meta.items() if k not in KNOWN}))
    if utterances and not any(u.split for u in utterances):
        speaker_split(utterances, *split, seed=seed)
    counts: dict[str, int] = {}
    for u in utterances:
        counts[u.split] = counts.get(u.split, 0) + 1
    return utterances, skipped, counts


def speaker_split(utterances: list[Utterance], dev: float, test: float, seed: int) -> None:
    """Assign train/dev/test by speaker (seeded): no speaker in two splits; dev and test get at least one speaker
    each when there are three or more."""
    speakers = sorted({u.speaker or f"row:{u.id}" for u in utterances})
    random.Random(seed).shuffle(speakers)
    n_test = max(1, round(test * len(speakers))) if len(speakers) >= 3 else 0
    n_dev = max(1, round(dev * len(speakers))) if len(speakers) >= 3 else 0
    split_of = {s: "test" if i < n_test else "dev" if i < n_test + n_dev else "train" for i, s in enumerate(speakers)}
    for u in utterances:
        u.split = split_of[u.speaker or f"row:{u.id}"]


def _problem(row: Row, unlabelled: bool = False) -> str | None:
    """Why a row cannot be used, or None."""
    if not row.text.strip() and not unlabelled:
        return "empty text (import it with --unlabelled to pseudo-label it)"
    if not row.audio.is_file():
        return f"audio file not found: {row.audio}"
    try:
        seconds = audio_duration(row.audio)
    except AudioError as err:
        return f"unreadable audio ({str(err).split(': ', 1)[-1]})"
    if seconds > MAX_SECONDS:
        return f"{seconds:.1f} s is longer than Whisper's {MAX_SECONDS:.0f} s window (cut it first)"
    return None


def _text_column(columns: list[str], wanted: str | None, where: Path) -> str:
    if wanted:
        if wanted not in columns:
            raise ValueError(f"{where}: no column {wanted!r} (columns: {', '.join(columns)})")
        return wanted
    for name in TEXT_COLUMNS:
        if name in columns:
            return name
    raise ValueError(f"{where}: no text column ({', '.join(TEXT_COLUMNS)}; or name it with --text-column)")


def _metadata(folder: Path, text_column: str | None) -> list[Row] | None:
    """The rows of an audiofolder's metadata.csv or metadata.jsonl, or None when it has neither."""
    if (folder / "metadata.jsonl").is_file():
        path, records = folder / "metadata.jsonl", []
        for line, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if raw.strip():
                try:
                    records.append((line, json.loads(raw)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{path}:{line}: not JSON ({err.msg})") from None
    elif (folder / "metadata.csv").is_file():
        path = folder / "metadata.csv"
        with path.open(encoding="utf-8", newline="") as f:
            records = [(line, row) for line, row in enumerate(csv.DictReader(f), start=2)]
    else:
        return None
    if not records:
        return []
    columns = list(records[0][1])
    if "file_name" not in columns:
        raise ValueError(f"{path}: no file_name column (columns: {', '.join(columns)})")
    text = _text_column(columns, text_column, path)
    return [Row(f"{path}:{line}", folder / str(rec.get("file_name") or ""), str(rec.get(text) or ""),
                {k: str(v) for k, v in rec.items() if k not in ("file_name", text) and v not in (None, "")})
            for line, rec in records]


def _transcripts(folder: Path) -> list[Row]:
    """Audio files with a same-name .txt transcript (an audio file without one is reported)."""
    rows = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
        transcript = audio.with_suffix(".txt")
        text = transcript.read_text(encoding="utf-8") if transcript.is_file() else ""
        rows.append(Row(str(transcript if transcript.is_file() else audio), audio, text, {}))
    return rows


def _table(path: Path, path_column: str, text_column: str | None) -> list[Row]:
    """The rows of a CSV or TSV (by its suffix) with `path_column` and a text column, paths relative to it."""
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table not found")
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        records = list(enumerate(reader, start=2))
        columns = reader.fieldnames or []
    if path_column not in columns:
        raise ValueError(f"{path}: no column {path_column!r} (columns: {', '.join(columns)}; name it with "
                         "--path-column)")
    text = _text_column(columns, text_column, path)
    return [Row(f"{path}:{line}", path.parent / (rec.get(path_column) or ""), rec.get(text) or "",
                {k: v for k, v in rec.items() if k not in (path_column, text) and v})
            for line, rec in records]
