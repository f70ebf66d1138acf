"""Common Voice release folder -> manifest.

Layout (DESIGN.md): `{train,dev,test,validated}.tsv` with a header (`client_id, path, sentence, up_votes,
down_votes, age, gender, accents|accent, variant, locale, segment`, + `sentence_id, sentence_domain` since 17.0),
audio in `clips/`.  Gender labels changed in 17.0 (`male_masculine`, ...); both spellings map to female/male/other.
"""

from __future__ import annotations

import csv
from pathlib import Path

from distilwhisper.data.manifest import Utterance
from distilwhisper.languages import is_known

SPLITS = ("train", "dev", "test")

# Common Voice locales whose Whisper code is not the part before the dash.
_LOCALE_TO_WHISPER = {"zh-CN": "zh", "zh-TW": "zh", "zh-HK": "yue", "yue": "yue", "nan-tw": "zh", "nn-NO": "nn",
                      "nb-NO": "no", "fy-NL": "fy", "sv-SE": "sv", "ga-IE": "ga", "pa-IN": "pa", "hy-AM": "hy",
                      "ne-NP": "ne", "es-ES": "es", "fil": "tl"}


def whisper_language(locale: str) -> str:
    """Whisper code for a Common Voice locale (`ca` -> `ca`, `sv-SE` -> `sv`, `zh-CN` -> `zh`)."""
    return _LOCALE_TO_WHISPER.get(locale, locale.split("-")[0].lower())


def normalize_gender(value: str) -> str:
    """`male`/`male_masculine` -> male, `female`/`female_feminine` -> female, other labels -> other, '' kept."""
    value = (value or "").strip().lower()
    if not value:
        return ""
    if value.startswith("female") or value.startswith("woman"):
        return "female"
    if value.startswith("male") or value.startswith("man"):
        return "male"
    return "other"


def _votes(row: dict) -> tuple[int, int]:
    """(up_votes, down_votes) of a row; missing or unreadable counts are 0."""
    def count(key: str) -> int:
        try:
            return int(row.get(key) or 0)
        except ValueError:
            return 0
    return count("up_votes"), count("down_votes")


def load_common_voice(folder: str | Path, splits: tuple[str, ...] = SPLITS, language: str | None = None,
                      max_train: int | None = None, by_votes: bool = True, max_eval: int | None = None
                      ) -> tuple[list[Utterance], list[str], list[str]]:
    """Read the split TSVs of one Common Voice language folder: (utterances, skipped-row messages, notes on what
    the caps dropped).

    The paper's training subsets (3k/10k/28k utterances per language) are the most up-voted clips: with
    `max_train`, the train split keeps its `max_train` rows of most up-votes, then fewest down-votes (file order
    with `by_votes=False`); dev and test stay whole unless `max_eval` caps them (file order).  The language comes
    from the `locale` column, else the folder name, unless given."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Common Voice folder not found")
    utterances: list[Utterance] = []
    skipped: list[str] = []
    notes: list[str] = []
    for split in splits:
        rows, bad = _read_split(folder, split, language)
        skipped += bad
        cap = max_train if split == "train" else max_eval
        if cap is not None and len(rows) > cap:
            if split == "train" and by_votes:
                rows = sorted(rows, key=lambda r: (-_votes(r[1])[0], _votes(r[1])[1]))  # stable: file order on ties
                why = "most up-voted, then fewest down-votes"
            else:
                why = "first in file order"
            notes.append(f"{split}: kept {cap} of {len(rows)} usable rows ({why}); dropped {len(rows) - cap}")
            rows = rows[:cap]
        utterances += [utt for utt, _ in rows]
    return utterances, skipped, notes


def _read_split(folder: Path, split: str, language: str | None) -> tuple[list[tuple[Utterance, dict]], list[str]]:
    """(utterance, TSV row) of every usable row of a split, and messages for the rows left out."""
    tsv = folder / f"{split}.tsv"
    if not tsv.is_file():
        raise FileNotFoundError(f"{tsv}: split file not found (a Common Voice folder has "
                                f"{', '.join(s + '.tsv' for s in SPLITS)})")
    rows, skipped = [], []
    with tsv.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        for needed in ("client_id", "path", "sentence"):
            if needed not in (reader.fieldnames or []):
                raise ValueError(f"{tsv}: header lacks column {needed!r} (found {reader.fieldnames})")
        for line, row in enumerate(reader, start=2):
            lang = language or whisper_language(row.get("locale") or folder.name)
            if not is_known(lang):
                raise ValueError(f"{tsv}:{line}: locale {row.get('locale') or folder.name!r} has no Whisper "
                                 "language; pass language=")
            audio = folder / "clips" / row["path"]
            if not audio.is_file():
                skipped.append(f"{tsv}:{line}: missing clip {audio}")
                continue
            extra = {k: row[k] for k in ("up_votes", "down_votes", "accents", "accent", "variant",
                                         "sentence_domain") if row.get(k)}
            rows.append((Utterance(
                id=f"cv-{lang}-{Path(row['path']).stem}", audio=str(audio), text=row["sentence"], language=lang,
                speaker=row["client_id"], gender=normalize_gender(row.get("gender", "")),
                age=(row.get("age") or "").strip(), split=split, domain="commonvoice", source="commonvoice",
                extra=extra), row))
    return rows, skipped
