"""Subtitles cut at words (issue #36): line width and count, highlighted words, cues inside their segments, the
refusals; and the CLI writing them from a tiny model's word timestamps."""

from __future__ import annotations

import re

import pytest
import soundfile as sf

from distilwhisper import subtitles
from distilwhisper.cli import main
from distilwhisper.subtitles import Layout
from distilwhisper.timing import Word
from distilwhisper.transcribe import SAMPLE_RATE, Segment, Transcription
from conftest import tone

TEXT = "Krokodýl Kuba si koupil novou červenou čepici a šel s ní na procházku"


def _result() -> Transcription:
    """Two segments: the first with word times (0.4 s per word from 1.0 s), the second without words."""
    words = [Word(f" {w}", 1.0 + 0.4 * k, 1.3 + 0.4 * k, 0.9, [k]) for k, w in enumerate(TEXT.split())]
    first = Segment(1.0, words[-1].end + 0.2, " " + TEXT, -0.2, 0.01, 0.0, 1.1, words)
    second = Segment(10.0, 12.0, "Konec.", -0.1, 0.01, 0.0, 1.0)
    return Transcription("talk.wav", "cs", 0.9, 12.5, None, "fp32", [first, second])


def _cues(srt: str) -> list[tuple[str, str, list[str]]]:
    """(start, end, lines) of every SubRip cue."""
    made = []
    for block in srt.strip().split("\n\n"):
        lines = block.split("\n")
        start, end = lines[1].split(" --> ")
        made.append((start, end, lines[2:]))
    return made


def test_segments_stay_whole_cues_without_a_layout():
    cues = _cues(subtitles.render(_result(), "srt"))
    assert [c[2] for c in cues] == [[TEXT], ["Konec."]]  # stripped of Whisper's leading space


@pytest.mark.parametrize("width,count", [(20, None), (20, 2), (12, 1), (42, 3)])
def test_lines_respect_the_width_and_cues_the_line_count(width, count):
    result = _result()
    cues = _cues(subtitles.render(result, "srt", Layout(width, count)))
    shown = [line for _, _, lines in cues for line in lines]
    assert " ".join(shown) == TEXT + " Konec."  # every word once, in order
    assert all(len(line) <= width or " " not in line for line in shown[:-1])
    assert all(len(lines) <= (count or 99) for _, _, lines in cues)
    if count is None:  # the whole segment in one cue, on several lines
        assert len(cues) == 2 and len(cues[0][2]) == len(subtitles._lines(result.segments[0].words, width))
    first = result.segments[0]
    for start, end, _ in cues[:-1]:
        assert "00:00:01,000" <= start < end <= f"00:00:{first.end:06.3f}".replace(".", ",")


def test_each_cue_starts_at_its_first_word_and_ends_at_its_last():
    words = _result().segments[0].words
    cues = subtitles.cues(_result(), Layout(12, 1))
    assert [c.start for c in cues[:-1]] == [c.words[0].start for c in cues[:-1]]
    assert [c.end for c in cues[:-1]] == [c.words[-1].end for c in cues[:-1]]
    assert [w for c in cues[:-1] for w in c.words] == words


def test_highlighted_words_each_get_a_cue_with_the_word_underlined():
    vtt = subtitles.render(_result(), "vtt", Layout(highlight_words=True))
    blocks = vtt.split("\n\n")[1:]
    underlined = [re.findall(r"<u>(.*?)</u>", b) for b in blocks if "<u>" in b]
    assert [u[0] for u in underlined] == TEXT.split()  # one cue per word, that word underlined
    assert all(len(u) == 1 for u in underlined)
    assert blocks[-1].strip().endswith("Konec.")  # the segment without words stays one plain cue
    times = [b.split("\n")[0] for b in blocks]
    assert times[0].startswith("00:00:01.000 --> 00:00:01.400")  # until the next word starts


@pytest.mark.parametrize("layout,words,message", [
    (Layout(max_line_width=0), True, "at least 1"),
    (Layout(max_line_count=2), True, "give a width too"),
    (Layout(max_line_width=30), False, "add --word-timestamps"),
    (Layout(highlight_words=True), False, "add --word-timestamps"),
])
def test_impossible_layouts_are_refused(layout, words, message):
    with pytest.raises(ValueError, match=message):
        layout.check(words)


def test_cli_cuts_subtitles_at_words_of_a_real_decode(tiny, tmp_path, capsys):
    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    sf.write(str(tmp_path / "talk.wav"), tone(8.0), SAMPLE_RATE)
    out = tmp_path / "out"
    args = ["transcribe", "--model", str(tmp_path / "tiny"), "--language", "en", "--greedy-only", "--precision",
            "fp32", "--no-vad", "--output-format", "srt,json", "--output-dir", str(out),
            str(tmp_path / "talk.wav")]  # a tone: windows by energy
    assert main(args + ["--max-line-width", "16"]) == 2  # no word timestamps: refused before loading
    assert "add --word-timestamps" in capsys.readouterr().err
    assert main(args + ["--word-timestamps", "--max-line-width", "16", "--max-line-count", "1"]) == 0
    import json

    words = [w for s in json.loads((out / "talk.json").read_text())["segments"] for w in s["words"]]
    cues = _cues((out / "talk.srt").read_text())
    assert words and " ".join(line for _, _, lines in cues for line in lines).split() == \
        " ".join(w["word"].strip() for w in words).split()
    assert all(len(lines) == 1 and (len(lines[0]) <= 16 or " " not in lines[0]) for _, _, lines in cues)
