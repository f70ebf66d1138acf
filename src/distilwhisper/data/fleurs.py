"""FLEURS language folder -> manifest.

Layout (DESIGN.md): a folder per language such as `ca_es/` holding `{train,dev,test}.tsv` without header --
`id, file_name, raw_transcription, transcription, <ignored>, num_samples, gender` -- and `audio/<split>/*.wav`.
FLEURS has no speaker ids or ages; gender is MALE/FEMALE/OTHER.
"""

from __future__ import annotations

import csv
from pathlib import Path

from distilwhisper.data.manifest import Utterance
from distilwhisper.languages import is_known

SPLITS = ("train", "dev", "test")

# FLEURS folder prefixes whose Whisper code differs from the prefix.
_FLEURS_TO_WHISPER = {"cmn": "zh", "yue": "yue", "nb": "no", "fil": "tl", "jv": "jw"}


def whisper_language(folder_name: str) -> str:
    """`ca_es` -> `ca`, `cmn_hans_cn` -> `zh`."""
    prefix = folder_name.split("_")[0].lower()
    return _FLEURS_TO_WHISPER.get(prefix, prefix)


def load_fleurs(folder: str | Path, splits: tuple[str, ...] = ("test",), language: str | None = None
                ) -> tuple[list[Utterance], list[str]]:
    """Read split TSVs of one FLEURS language folder; returns utterances and skipped-row messages."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: FLEURS folder not found")
    lang = language or whisper_language(folder.name)
    if not is_known(lang):
        raise ValueError(f"{folder}: cannot tell the Whisper language from the folder name; pass language=")
    utterances: list[Utterance] = []
    skipped: list[str] = []
    for split in splits:
        tsv = folder / f"{split}.tsv"
        if not tsv.is_file():
            raise FileNotFoundError(f"{tsv}: split file not found")
        with tsv.open(encoding="utf-8", newline="") as f:
            for line, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) < 7:
                    raise ValueError(f"{tsv}:{line}: expected 7 tab-separated columns (id, file_name, "
                                     f"raw_transcription, transcription, ..., num_samples, gender), found {len(row)}")
                sentence_id, file_name, raw_text, _, _, _, gender = row[:7]
                audio = folder / "audio" / split / file_name
                if not audio.is_file():
                    skipped.append(f"{tsv}:{line}: missing audio {audio}")
                    continue
                utterances.append(Utterance(
                    id=f"fleurs-{lang}-{split}-{Path(file_name).stem}", audio=str(audio), text=raw_text,
                    language=lang, gender=gender.strip().lower() if gender.strip() else "", split=split,
                    domain="fleurs", source="fleurs", extra={"sentence_id": sentence_id}))
    return utterances, skipped
