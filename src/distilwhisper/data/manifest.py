"""The manifest: the one corpus format every command reads.

A JSONL file, one utterance per line:
`{"id", "audio", "text", "language", "speaker", "gender", "age", "split", "domain", "source"}`; other keys are kept
as extra metadata (and can be grouped on).  `audio` is absolute or relative to the manifest's folder.

Validation reports *every* bad line with its number and reason, so a user fixes a corpus in one pass instead of
discovering problems one crash at a time, hours into an evaluation.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Iterable

from distilwhisper.audio import MAX_SECONDS, AudioError, audio_duration
from distilwhisper.io import rewrite_jsonl
from distilwhisper.languages import is_known

REQUIRED = ("id", "audio", "text", "language")
GENDERS = ("female", "male", "other", "")
TRANSLATION_REFERENCE = "translation_en"  # the manifest column holding the English text of an utterance


@dataclass
class Utterance:
    """One line of a manifest."""

    id: str
    audio: str
    text: str
    language: str
    speaker: str = ""
    gender: str = ""
    age: str = ""
    split: str = ""
    domain: str = ""
    source: str = ""
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self, key: str) -> str:
        """Value of a standard or extra metadata column ('' when absent)."""
        if key in _FIELD_NAMES and key != "extra":
            return str(getattr(self, key))
        return str(self.extra.get(key, ""))

    def to_json(self) -> dict:
        row = {k: v for k, v in asdict(self).items() if k != "extra"}
        row.update(self.extra)
        return row


_FIELD_NAMES = {f.name for f in fields(Utterance)}
PSEUDO_LABEL = "pseudo_label"  # extra column of a row whose text a teacher wrote (`data pseudo-label`): the teacher


class ManifestError(ValueError):
    """A manifest with bad lines; `problems` holds (line number, message) for each."""

    def __init__(self, path: Path, problems: list[tuple[int, str]]):
        self.path = path
        self.problems = problems
        shown = "\n".join(f"  {path}:{line}: {msg}" for line, msg in problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        super().__init__(f"{path}: {len(problems)} bad line(s)\n{shown}{more}")


def _parse_line(raw: str, base: Path) -> Utterance:
    row = json.loads(raw)
    if not isinstance(row, dict):
        raise ValueError("line is not a JSON object")
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    known = {k: ("" if row[k] is None else str(row[k])) for k in _FIELD_NAMES - {"extra"} if k in row}
    extra = {k: str(v) for k, v in row.items() if k not in _FIELD_NAMES}
    utt = Utterance(**known, extra=extra)
    audio = Path(utt.audio).expanduser()
    utt.audio = str(audio if audio.is_absolute() else (base / audio))
    return utt


def read_manifest(path: str | Path, check_audio: bool = True, unlabelled_ok: bool = False
                  ) -> tuple[list[Utterance], list[tuple[int, str]]]:
    """Parse and check a manifest; returns the good utterances and the (line, reason) of each bad line.
    `unlabelled_ok`: a line without text is good (what `data pseudo-label` reads; training and evaluation need
    text)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: manifest not found")
    good: list[Utterance] = []
    problems: list[tuple[int, str]] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8") as f:
        for number, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                utt = _parse_line(raw, path.resolve().parent)  # absolute audio paths, whatever the cwd later
            except (json.JSONDecodeError, ValueError, TypeError) as err:
                problems.append((number, f"invalid line: {err}"))
                continue
            reason = _check(utt, check_audio, unlabelled_ok)
            if reason is None and utt.id in seen:
                reason = f"duplicate id {utt.id!r} (first on line {seen[utt.id]})"
            if reason:
                problems.append((number, f"{utt.id}: {reason}"))
                continue
            seen[utt.id] = number
            good.append(utt)
    return good, problems


def _check(utt: Utterance, check_audio: bool, unlabelled_ok: bool = False) -> str | None:
    if not utt.id:
        return "empty id"
    if not utt.text.strip() and not unlabelled_ok:
        return "empty text (no transcript: `distilwhisper data pseudo-label` writes one)"
    if not is_known(utt.language):
        return f"unknown language code {utt.language!r}"
    if utt.gender not in GENDERS:
        return f"gender {utt.gender!r} not one of {', '.join(g or repr(g) for g in GENDERS)}"
    if not check_audio:
        return None
    if not Path(utt.audio).is_file():
        return f"audio file not found: {utt.audio}"
    try:
        seconds = audio_duration(utt.audio)
    except AudioError as err:
        return str(err)  # names the file and why
    if seconds > MAX_SECONDS:
        return f"audio is {seconds:.1f} s long, longer than Whisper's {MAX_SECONDS:.0f} s window"
    return None


def validate_manifest(path: str | Path, check_audio: bool = True) -> list[Utterance]:
    """Read a manifest and raise `ManifestError` listing every bad line if there is any."""
    good, problems = read_manifest(path, check_audio)
    if problems:
        raise ManifestError(Path(path), problems)
    return good


def write_manifest(path: str | Path, utterances: Iterable[Utterance], relative: bool = True) -> Path:
    """Write atomically (temp file + rename); audio paths become relative to the manifest when under its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    rows = []
    for utt in utterances:
        row = utt.to_json()
        audio = Path(row["audio"]).resolve()
        row["audio"] = str(audio.relative_to(base) if relative and audio.is_relative_to(base) else audio)
        rows.append(row)
    rewrite_jsonl(path, rows)
    return path
