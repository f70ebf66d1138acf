"""Debian's `asterisk-core-sounds-*` prompts -> manifest: real recorded human speech that installs offline.

Each language package holds one professional speaker's telephone prompts (8 kHz) under
`/usr/share/asterisk/sounds/<voice>/`, with transcripts `name: text` in
`/usr/share/doc/asterisk-core-sounds-<lang>/core-sounds-<lang>.txt(.gz)`.  Prompts whose transcript is a
description in brackets (tones, silence) or missing are skipped and counted.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass
from pathlib import Path

from distilwhisper.audio import MAX_SECONDS, SAMPLE_RATE, load_audio, save_wav
from distilwhisper.data.manifest import Utterance

SOUNDS = Path("/usr/share/asterisk/sounds")
DOCS = Path("/usr/share/doc")

LANGUAGES = ("en", "es", "fr", "it", "ru")  # Debian's asterisk-core-sounds-<lang>(-wav) packages
# A voice's folder is named <lang>_<REGION>_<f|m>_<Name> (Debian 1.6.1: en_US_f_Allison, es_MX_f_Allison,
# fr_CA_f_June, it_IT_m_Carlo, ru_RU_f_IvrvoiceRU); <lang>/ links to the one installed.  Speaker and gender are read
# from that name, so a release with other voices is described as it is.
VOICE_NAME = re.compile(r"[a-z]{2}_[A-Z]{2}_([fm])_\w+")
GENDERS = {"f": "female", "m": "male"}


@dataclass
class ImportStats:
    """What an import did, per language."""

    written: int = 0
    no_transcript: int = 0
    not_speech: int = 0
    too_long: int = 0


def _transcripts(language: str) -> dict[str, str]:
    doc = DOCS / f"asterisk-core-sounds-{language}"
    for candidate in (doc / f"core-sounds-{language}.txt.gz", doc / f"core-sounds-{language}.txt"):
        if candidate.is_file():
            opener = gzip.open if candidate.suffix == ".gz" else open
            with opener(candidate, "rt", encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
            break
    else:
        raise FileNotFoundError(f"no transcripts for {language!r}: install the Debian package "
                                f"asterisk-core-sounds-{language} (apt-get install asterisk-core-sounds-{language})")
    out = {}
    for line in lines:
        if line.startswith(";") or ":" not in line:
            continue
        name, text = line.split(":", 1)
        out[name.strip()] = text.strip()
    return out


def _voice(language: str) -> tuple[Path, str, str]:
    """(folder of the installed voice's wavs, its name, its gender or "" when the name does not say)."""
    folder = (SOUNDS / language).resolve()
    if not (folder.is_dir() and any(folder.glob("*.wav"))):
        raise FileNotFoundError(f"no wav prompts for {language!r}: install asterisk-core-sounds-{language}-wav")
    match = VOICE_NAME.fullmatch(folder.name)
    return folder, folder.name, GENDERS[match.group(1)] if match else ""


def import_asterisk(languages: list[str], out_dir: str | Path, max_per_language: int | None = None
                    ) -> tuple[list[Utterance], dict[str, ImportStats]]:
    """Resample prompts to 16 kHz wav under `out_dir/audio/<lang>/` and return their utterances (sorted by name,
    so a limit picks the same prompts every time).  Existing wavs are reused."""
    unknown = [lang for lang in languages if lang not in LANGUAGES]
    if unknown:
        raise ValueError(f"no asterisk prompts for {', '.join(unknown)}; available: {', '.join(LANGUAGES)}")
    out_dir = Path(out_dir)
    utterances: list[Utterance] = []
    stats: dict[str, ImportStats] = {}
    for lang in languages:
        texts = _transcripts(lang)
        voice_dir, voice, gender = _voice(lang)
        st = stats.setdefault(lang, ImportStats())
        target = out_dir / "audio" / lang
        target.mkdir(parents=True, exist_ok=True)
        for wav in sorted(voice_dir.glob("*.wav")):
            text = texts.get(wav.stem)
            if not text:
                st.no_transcript += 1
                continue
            if re.fullmatch(r"\s*[\[(<].*[\])>]\s*", text):
                st.not_speech += 1
                continue
            dst = target / f"{wav.stem}.wav"
            if not dst.exists():
                audio = load_audio(wav)
                if len(audio) > MAX_SECONDS * SAMPLE_RATE:
                    st.too_long += 1
                    continue
                save_wav(dst, audio)
            utterances.append(Utterance(id=f"asterisk-{lang}-{wav.stem}", audio=str(dst), text=text, language=lang,
                                        speaker=f"asterisk-{voice}", gender=gender, age="adult", split="test",
                                        domain="telephone-prompts", source="asterisk"))
            st.written += 1
            if max_per_language is not None and st.written >= max_per_language:
                break
    return utterances, stats
