"""Natural sentences per language from installed translations (Debian's `gnome-user-docs`, CC-BY-SA-3.0).

The GNOME help pages are human translations of the same English originals, in 40+ languages: a clean, licensed,
offline source of everyday sentences for text-to-speech.  Filtering keeps what a TTS engine reads well and a
WER can judge: 5-20 words, no digits, URLs, markup or symbols, and no sentences left untranslated (detected
against the English originals in the `C` folder, by sentence and by share of English-only words).  Paragraphs
holding commands, keys, file names or links whose text is filled in at render time are skipped whole.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from functools import lru_cache
from pathlib import Path

HELP_ROOT = Path("/usr/share/help")
# Whisper code -> GNOME help folder, where they differ
_HELP_DIRS = {"zh": "zh_CN", "sr": "sr"}
MIN_WORDS, MAX_WORDS = 5, 20
_TEXT_TAGS = {"p", "title", "desc", "item"}
# Inline elements whose content a listener cannot hear as a sentence (commands, keys, files) or that leave a gap
# when empty (a link whose text is filled in at render time)
_SKIP_INLINE = {"code", "cmd", "file", "sys", "input", "output", "var", "key", "keyseq", "media", "app"}
_BAD = re.compile(r"[0-9@#/\\<>_=+*&%$|~^{}\[\]()\"“”«»…:;]|https?|www\.|\.\.")
_SPLIT = re.compile(r"(?<=[.!?。])\s+")


def help_dir(language: str) -> Path:
    return HELP_ROOT / _HELP_DIRS.get(language, language)


def available_languages() -> list[str]:
    """Languages with translated GNOME help installed."""
    if not HELP_ROOT.is_dir():
        return []
    inverse = {v: k for k, v in _HELP_DIRS.items()}
    return sorted(inverse.get(d.name, d.name) for d in HELP_ROOT.iterdir() if d.name != "C" and d.is_dir())


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _page_texts(path: Path) -> list[str]:
    """Flattened text of the paragraph-like elements of one Mallard page (inline markup kept as its text)."""
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return []
    texts = []
    for elem in root.iter():
        if _local(elem.tag) not in _TEXT_TAGS or any(_local(c.tag) in _TEXT_TAGS for c in elem):
            continue
        inline = list(elem.iter())[1:]
        if any(_local(c.tag) in _SKIP_INLINE or (_local(c.tag) == "link" and not "".join(c.itertext()).strip())
               for c in inline):
            continue
        texts.append(" ".join("".join(elem.itertext()).split()))
    return texts


def _raw_sentences(folder: Path) -> list[str]:
    out = []
    for page in sorted(folder.rglob("*.page")):
        for text in _page_texts(page):
            out.extend(s.strip() for s in _SPLIT.split(text) if s.strip())
    return out


@lru_cache(maxsize=1)
def _english() -> tuple[frozenset[str], frozenset[str]]:
    sentences = _raw_sentences(HELP_ROOT / "C")
    words = {w for s in sentences for w in re.findall(r"[a-z]+", s.lower())}
    return frozenset(s.lower() for s in sentences), frozenset(words)


def keep(sentence: str, language: str) -> bool:
    """The filter: length, no digits/markup/symbols, ends like a sentence, not left in English."""
    words = sentence.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or _BAD.search(sentence):
        return False
    if sentence[-1] not in ".!?。" or (sentence[0].isalpha() and not sentence[0].isupper() and language != "zh"):
        return False
    if any(len(w) > 1 and w.isupper() for w in re.findall(r"[^\W\d_]+", sentence)):
        return False  # acronyms: engines spell them in different ways, which the reference cannot match
    if language != "en":
        english_sentences, english_words = _english()
        if sentence.lower() in english_sentences:
            return False
        latin = [w for w in re.findall(r"[^\W\d_]+", sentence.lower())]
        if latin and sum(w in english_words for w in latin) / len(latin) > 0.6:
            return False
    return True


def load_sentences(language: str) -> list[str]:
    """Filtered, deduplicated sentences for a language, in a stable order (sorted)."""
    folder = help_dir(language)
    if not folder.is_dir():
        raise FileNotFoundError(f"no translated GNOME help for {language!r} under {HELP_ROOT} (install the Debian "
                                f"package gnome-user-docs); available: {', '.join(available_languages()) or 'none'}")
    return sorted({s for s in _raw_sentences(folder) if keep(s, language)})
