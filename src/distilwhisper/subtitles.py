"""Transcription outputs users expect from Whisper tools: plain text, SubRip (`HH:MM:SS,mmm`), WebVTT
(`HH:MM:SS.mmm`), tab-separated milliseconds, and JSON with every segment's scores and the detected language.

Subtitles are one cue per segment, or, with word timestamps and a `Layout`, cues cut at words: lines of at most
`max_line_width` characters, at most `max_line_count` lines per cue (openai-whisper's `--max_line_width`,
`--max_line_count`), and with `highlight_words` one cue per word that underlines it (`--highlight_words`, as
karaoke-style editors expect).  A cue never spans two segments: segments end at pauses, where a reader expects the
screen to clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from distilwhisper.io import atomic_write_text
from distilwhisper.timing import Word
from distilwhisper.transcribe import Transcription

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


@dataclass(frozen=True)
class Layout:
    """How srt/vtt cues are cut from words; the default (nothing set) keeps one cue per segment."""

    max_line_width: int | None = None  # characters per line
    max_line_count: int | None = None  # lines per cue (needs a width)
    highlight_words: bool = False  # one cue per word, the word underlined

    @property
    def by_words(self) -> bool:
        return self.max_line_width is not None or self.highlight_words

    def check(self, word_timestamps: bool) -> None:
        """Refuse settings that cannot be honoured, before anything is decoded."""
        if self.max_line_width is not None and self.max_line_width < 1:
            raise ValueError(f"--max-line-width must be at least 1, not {self.max_line_width}")
        if self.max_line_count is not None:
            if self.max_line_count < 1:
                raise ValueError(f"--max-line-count must be at least 1, not {self.max_line_count}")
            if self.max_line_width is None:
                raise ValueError("--max-line-count counts lines cut by --max-line-width: give a width too")
        if self.by_words and not word_timestamps:
            raise ValueError("--max-line-width and --highlight-words cut subtitles at words: add --word-timestamps")


@dataclass
class Cue:
    start: float
    end: float
    lines: list[list[Word]]  # each line's words (Whisper's leading spaces kept)
    timed: bool = True  # the words carry their own times (False: a segment's whole text as one word)

    @property
    def words(self) -> list[Word]:
        return [w for line in self.lines for w in line]

    def text(self, underline: Word | None = None) -> str:
        def shown(w: Word) -> str:
            text = w.word.strip()
            return f"<u>{text}</u>" if w is underline else text
        return "\n".join(" ".join(shown(w) for w in line) for line in self.lines)


def _lines(words: list[Word], width: int | None) -> list[list[Word]]:
    """Words filled into lines of at most `width` characters (a longer word gets a line of its own)."""
    lines: list[list[Word]] = [[]]
    for word in words:
        text = word.word.strip()
        current = " ".join(w.word.strip() for w in lines[-1])
        if lines[-1] and width is not None and len(current) + 1 + len(text) > width:
            lines.append([])
        lines[-1].append(word)
    return [line for line in lines if line]


def cues(result: Transcription, layout: Layout) -> list[Cue]:
    """The recording's cues: a segment's words cut into cues of `max_line_count` lines (all its lines when unset);
    a segment without words keeps its own times and text as one line."""
    made = []
    for segment in (s for s in result.segments if s.text):
        if not (layout.by_words and segment.words):
            made.append(Cue(segment.start, segment.end, [[Word(segment.text, segment.start, segment.end, 1.0, [])]],
                             timed=False))
            continue
        lines = _lines(segment.words, layout.max_line_width)
        per_cue = layout.max_line_count or len(lines)
        for k in range(0, len(lines), per_cue):
            group = lines[k:k + per_cue]
            made.append(Cue(group[0][0].start, group[-1][-1].end, group))
    return made


def _timed_texts(result: Transcription, layout: Layout) -> list[tuple[float, float, str]]:
    """(start, end, text) of every cue; highlighted: each word's own cue, from its start to the next word's."""
    shown = []
    for cue in cues(result, layout):
        words = cue.words
        if not (layout.highlight_words and cue.timed):
            shown.append((cue.start, cue.end, cue.text()))
            continue
        for k, word in enumerate(words):
            end = words[k + 1].start if k + 1 < len(words) else cue.end
            shown.append((word.start, max(end, word.end), cue.text(underline=word)))
    return shown


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def render(result: Transcription, fmt: str, layout: Layout = Layout()) -> str:
    segments = [s for s in result.segments if s.text]
    if fmt == "txt":
        return "".join(f"{s.text}\n" for s in segments)
    if fmt == "srt":
        return "\n".join(f"{i}\n{_clock(start, ',')} --> {_clock(end, ',')}\n{text}\n"
                         for i, (start, end, text) in enumerate(_timed_texts(result, layout), 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_clock(start, '.')} --> {_clock(end, '.')}\n{text}\n"
                                         for start, end, text in _timed_texts(result, layout))
    if fmt == "tsv":
        return "start\tend\ttext\n" + "".join(f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text}\n"
                                             for s in segments)
    if fmt == "json":
        return json.dumps(result.as_dict(), ensure_ascii=False, indent=1)
    raise ValueError(f"output format must be among {', '.join(FORMATS)} or all, not {fmt!r}")


def formats(requested: list[str]) -> list[str]:
    """The formats asked for ("all" = every one), checked."""
    chosen = list(FORMATS) if "all" in requested else requested
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown:
        raise ValueError(f"--output-format: unknown {', '.join(unknown)} (choose from {', '.join(FORMATS)}, all)")
    return chosen


def write(result: Transcription, out_dir: str | Path, chosen: list[str], layout: Layout = Layout()) -> list[Path]:
    """One file per format, named after the recording (`talk.wav` -> `talk.srt`)."""
    stem = Path(result.path).stem
    return [atomic_write_text(Path(out_dir) / f"{stem}.{fmt}", render(result, fmt, layout)) for fmt in chosen]
