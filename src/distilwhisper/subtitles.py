"""Transcription outputs users expect from Whisper tools: plain text, SubRip (`HH:MM:SS,mmm`), WebVTT
(`HH:MM:SS.mmm`), tab-separated milliseconds, and JSON with every segment's scores and the detected language."""

from __future__ import annotations

import json
from pathlib import Path

from distilwhisper.io import atomic_write_text
from distilwhisper.transcribe import Transcription

FORMATS = ("txt", "srt", "vtt", "tsv", "json")


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


def render(result: Transcription, fmt: str) -> str:
    segments = [s for s in result.segments if s.text]
    if fmt == "txt":
        return "".join(f"{s.text}\n" for s in segments)
    if fmt == "srt":
        return "\n".join(f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text}\n"
                         for i, s in enumerate(segments, 1))
    if fmt == "vtt":
        return "WEBVTT\n\n" + "\n".join(f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text}\n"
                                         for s in segments)
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


def write(result: Transcription, out_dir: str | Path, chosen: list[str]) -> list[Path]:
    """One file per format, named after the recording (`talk.wav` -> `talk.srt`)."""
    stem = Path(result.path).stem
    return [atomic_write_text(Path(out_dir) / f"{stem}.{fmt}", render(result, fmt)) for fmt in chosen]
