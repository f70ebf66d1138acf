"""Word timestamps (issue #36): the alignment path, words and their times on a tiny model (batched and sequential,
with experts), the refusal where they cannot be given, and word times on real recorded speech."""

from __future__ import annotations

import numpy as np
import pytest

from distilwhisper import clsr
from distilwhisper.cli import main
from distilwhisper.timing import (Word, dtw, merge_punctuation, split_words, trim_pauses, truncate_after_pauses,
                                  truncate_at_sentence_ends)
from distilwhisper.transcribe import SAMPLE_RATE, Transcriber
from conftest import tone


def test_the_alignment_path_is_monotonic_and_spans_the_matrix():
    rng = np.random.default_rng(0)
    cost = rng.random((7, 40))
    tokens, frames = dtw(cost)
    assert (tokens[0], frames[0]) == (0, 0) and (tokens[-1], frames[-1]) == (6, 39)
    steps = np.stack([np.diff(tokens), np.diff(frames)], axis=1)
    assert ((steps >= 0) & (steps <= 1)).all() and (steps.sum(axis=1) >= 1).all()
    valley = np.ones((4, 8))
    for i, j in enumerate((0, 2, 4, 6)):  # token i is cheapest from frame 2i on
        valley[i, j:j + 2] = 0.0
    tokens, frames = dtw(valley)
    entered = [int(frames[list(tokens).index(i)]) for i in range(4)]
    assert entered == [0, 2, 4, 6]


def test_words_split_at_spaces_and_punctuation_joins_its_word(tiny):
    tokenizer = tiny[1].tokenizer
    tokens = tokenizer.encode(" „Dobrý den, Pepíčku!", add_special_tokens=False)
    words, word_tokens = split_words(tokenizer, tokens, "cs")
    assert "".join(words) == " „Dobrý den, Pepíčku!" and sum(map(len, word_tokens)) == len(tokens)
    timed = [Word(w, i, i + 1, 0.5, t) for i, (w, t) in enumerate(zip(words, word_tokens))]
    merged = [w.word for w in merge_punctuation(timed)]
    assert merged == [" „Dobrý", " den,", " Pepíčku!"]
    characters = split_words(tokenizer, tokenizer.encode("日本語", add_special_tokens=False), "ja")[0]
    assert "".join(characters) == "日本語" and len(characters) >= 2  # no spaces: split at every whole token


def test_a_sentence_end_does_not_take_the_pause_after_it():
    words = [Word(" a", 0.0, 0.3, 1, [1]), Word(".", 0.3, 3.0, 1, [2]), Word(" b", 3.0, 3.3, 1, [3]),
             Word(" c", 3.3, 3.6, 1, [4])]
    cut = truncate_at_sentence_ends(words)
    assert cut[1].end == pytest.approx(0.3 + 2 * 0.3) and cut[2].start == 3.0


def test_the_first_word_after_a_pause_does_not_take_what_preceded_the_speech():
    """Two VAD pieces joined (the second from 2.0 s of the window's audio): each piece's first word, when longer
    than twice the median word (here 0.6 s), is cut to that from its end; other words, a short first word and a
    word before the join are left as found."""
    words = [Word(" a", 0.0, 1.5, 1, [1]), Word(" b", 1.5, 1.8, 1, [2]), Word(" c", 1.8, 2.1, 1, [3]),
             Word(" d", 2.1, 4.0, 1, [4]), Word(" e", 4.0, 4.3, 1, [5]), Word(" f", 4.3, 4.6, 1, [6])]
    cut = truncate_after_pauses(words, [0.0, 2.0])
    assert [(round(w.start, 2), w.end) for w in cut] == [(0.9, 1.5), (1.5, 1.8), (1.8, 2.1), (3.4, 4.0),
                                                          (4.0, 4.3), (4.3, 4.6)]
    assert words[0].start == 0.0  # the caller's words are not changed
    short = [Word(" a", 0.0, 0.3, 1, [1]), Word(" b", 0.3, 0.6, 1, [2])]
    assert truncate_after_pauses(short, [0.0]) == short and truncate_after_pauses([], [0.0]) == []


def test_a_window_knows_where_its_pieces_begin_in_its_audio():
    from distilwhisper.windows import Window

    assert Window(((16000, 48000), (160000, 176000), (200000, 208000))).piece_starts == [0.0, 2.0, 3.0]


def test_words_leave_the_pauses_at_their_edges_and_keep_short_gaps():
    voiced = np.array([1] * 10 + [0] * 20 + [1] * 10 + [0] * 3 + [1] * 5 + [0] * 30, dtype=bool)  # 10 ms frames
    words = [Word(" a", 0.0, 0.29, 1.0, [1]), Word(" b", 0.10, 0.40, 1.0, [2]), Word(" c", 0.30, 0.70, 1.0, [3]),
             Word(" d", 0.72, 0.75, 1.0, [4])]
    a, b, c, d = [(round(w.start, 2), round(w.end, 2)) for w in trim_pauses(words, voiced, 0.01, 10)]
    assert a == (0.0, 0.1)  # its end ran through a 0.2 s pause: back to the sound
    assert b == (0.3, 0.4)  # it started in that pause: on to the sound
    assert c == (0.3, 0.48)  # a 30 ms gap inside it is no pause; the 0.22 s after its sound is
    assert d == (0.72, 0.75)  # no sound in it: left as found


@pytest.fixture
def tiny_with_experts(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    experts = clsr.to_distilwhisper(model.__class__.from_pretrained(tmp_path / "tiny"), ["ca"], "decoder")
    clsr.save_experts(experts, tmp_path / "experts", str(tmp_path / "tiny"), ["ca"])
    return str(tmp_path / "tiny"), str(tmp_path / "experts")


@pytest.mark.parametrize("sequential", [False, True])
def test_words_lie_inside_their_segments_and_the_audio_with_and_without_experts(tiny_with_experts, sequential):
    model, experts = tiny_with_experts
    audio = np.concatenate([tone(12.0), np.zeros(SAMPLE_RATE, np.float32), tone(20.0, freq=300.0)])
    for transcriber in (Transcriber(model, precision="fp32"), Transcriber(model, experts, precision="fp32")):
        result = transcriber(audio, "ca", word_timestamps=True, fallback=False, sequential=sequential,
                             max_new_tokens=12)
        words = [w for s in result.segments for w in s.words]
        assert words, "the tiny model writes some tokens"
        for segment in result.segments:
            for word in segment.words:
                assert segment.start <= word.start <= word.end <= min(segment.end, len(audio) / SAMPLE_RATE)
                assert 0.0 <= word.probability <= 1.0 and word.tokens
        starts = [w.start for w in words]
        assert starts == sorted(starts)
        assert "".join(w.word for s in result.segments for w in s.words).strip()  # the words carry the text


def test_word_timestamps_on_ctranslate2_are_refused_before_loading(tmp_path, capsys):
    assert main(["transcribe", str(tmp_path / "a.wav"), "--word-timestamps", "--precision", "ct2-int8"]) == 2
    assert "--word-timestamps needs the torch decoder's cross-attention" in capsys.readouterr().err


@pytest.mark.slow
def test_word_times_follow_real_speech(bundled, speech):
    """Recorded prompts joined with 1 s pauses: each clip's first word starts near its onset, its last word ends
    near its offset (the benchmark measures this against faster-whisper; here a generous bound)."""
    from distilwhisper.audio import load_audio
    from distilwhisper.decoding import WhisperDecoder

    english = [u for u in speech if u.language == "en"][:3]
    clips = [load_audio(u.audio) for u in english]
    gap = np.zeros(SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for clip in clips for part in (clip, gap)])
    onsets = np.cumsum([0] + [len(c) / SAMPLE_RATE + 1 for c in clips])[:-1]
    transcript = WhisperDecoder(*bundled).transcribe([audio], "en", word_timestamps=True)[0]
    words = transcript.words
    assert words and all(0 <= w.start <= w.end <= len(audio) / SAMPLE_RATE for w in words)
    first_starts = [min((w.start for w in words if w.start >= onset - 0.5), default=np.inf) for onset in onsets]
    assert max(abs(s - o) for s, o in zip(first_starts, onsets)) < 0.6, (first_starts, onsets)


def test_vad_windows_join_the_speech_and_leave_out_long_silence(speech):
    """Recorded prompts with 20 s of silence between them: the prompts' stretches are joined into one window (the
    model hears them together), every piece lies on a prompt (a cut never falls inside speech), none in the
    silence, and every prompt is heard."""
    from distilwhisper.audio import load_audio
    from distilwhisper.windows import vad_windows

    clips = [load_audio(u.audio) for u in speech[:3]]
    silence = np.zeros(20 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for clip in clips for part in (clip, silence)])
    spans, t = [], 0
    for clip in clips:
        spans.append((t, t + len(clip)))
        t += len(clip) + len(silence)
    windows = vad_windows(audio)
    assert len(windows) == 1 and len(windows[0].pieces) == 3
    assert len(windows[0].audio(audio)) == sum(b - a for a, b in windows[0].pieces) <= 30 * SAMPLE_RATE
    pad = int(0.5 * SAMPLE_RATE)  # the VAD's own padding around speech
    for a, b in windows[0].pieces:
        assert any(start - pad <= a and b <= end + pad for start, end in spans), (a / SAMPLE_RATE, b / SAMPLE_RATE)
    for start, end in spans:
        assert any(a < end and b > start for a, b in windows[0].pieces)


def test_a_joined_window_maps_its_times_back_to_the_recording():
    from distilwhisper.windows import Window

    window = Window(((16000, 48000), (160000, 176000)))  # 2 s from 1 s, then 1 s from 10 s
    assert window.interval(0.0, 1.5) == (1.0, 2.5) and window.interval(2.0, 2.5) == (10.0, 10.5)
    assert window.interval(2.5, 9.0) == (10.5, 11.0)  # past the audio's end: at its end
    assert window.interval(1.2, 2.2) == (2.2, 3.0)  # over the join, mostly in the first piece: kept there
    assert window.interval(1.9, 2.8) == (10.0, 10.8)  # mostly in the second
    audio = np.arange(200000, dtype=np.float32)
    assert np.array_equal(window.audio(audio), np.concatenate([audio[16000:48000], audio[160000:176000]]))


def test_a_word_starts_no_earlier_than_the_speech_the_vad_heard():
    """A piece padded before the speech Silero heard: Whisper's alignment tends to start the first word at the
    piece's start, in non-speech; the word is moved to the onset, while a word end in the trailing padding is kept
    (Silero ends speech early on trailing consonants)."""
    from distilwhisper.windows import Window

    window = Window(((16000, 48000), (160000, 176000)), onsets=(22400, 166400))  # heard from 1.4 s and 10.4 s
    assert window.interval(0.0, 0.3) == (1.4, 1.4)  # wholly in the padding: at the onset
    assert window.interval(0.1, 0.8) == (1.4, 1.8)
    assert window.interval(0.5, 1.98) == (1.5, 2.98)  # after the onset: untouched, up to the piece's end
    assert window.interval(2.0, 2.6) == (10.4, 10.6)  # the second piece's own onset
    assert Window(((16000, 48000),)).interval(0.1, 0.8) == (1.1, 1.8)  # no onsets (windows cut at pauses): as is


def test_vad_pieces_are_padded_before_the_onset_they_carry(speech):
    """Each VAD piece carries where Silero heard its speech begin: inside the piece, after its padding (a prompt
    after 5 s of silence starts its piece before the heard onset, never after)."""
    from distilwhisper import vad
    from distilwhisper.audio import load_audio
    from distilwhisper.windows import vad_windows

    audio = np.concatenate([np.zeros(5 * SAMPLE_RATE, np.float32), load_audio(speech[0].audio)])
    [window] = vad_windows(audio)
    heard = vad.heard_stretches(audio)
    assert window.onsets is not None and len(window.onsets) == len(window.pieces) == len(heard)
    for (a, b), onset, (h0, _) in zip(window.pieces, window.onsets, heard):
        assert a < onset == h0 < b
    assert window.onsets[0] - window.pieces[0][0] == int(vad.PAD_MS * SAMPLE_RATE / 1000)


def test_vad_words_lie_on_the_speech_of_a_joined_window(tiny_with_experts, speech):
    """Two prompts 20 s apart decoded as one joined window: every word is timed on a prompt's piece, none in the
    silence between them (the tiny model's one word over the whole window stays inside one piece)."""
    from distilwhisper.audio import load_audio

    model, _ = tiny_with_experts
    clips = [load_audio(u.audio) for u in speech[2:4]]
    audio = np.concatenate([clips[0], np.zeros(20 * SAMPLE_RATE, np.float32), clips[1]])
    result = Transcriber(model, precision="fp32")(audio, "ca", vad=True, word_timestamps=True, fallback=False,
                                                  max_new_tokens=12)
    words = [w for s in result.segments for w in s.words]
    assert len(result.segments) == 1 and words
    gap = (len(clips[0]) / SAMPLE_RATE + 0.5, len(clips[0]) / SAMPLE_RATE + 19.5)  # the silence less the padding
    assert not [w for w in words if gap[0] < (w.start + w.end) / 2 < gap[1]]


def test_vad_hears_a_short_line_after_long_loud_noise(speech):
    """Silero run over a whole recording kept short prompts after 40 s of brown noise under its threshold (peak
    probabilities 0.00-0.25 on these clips); with its state fresh every block they are found, and the noise is not."""
    from scipy.signal import lfilter

    from distilwhisper import vad
    from distilwhisper.audio import load_audio

    brown = lfilter([1.0], [1.0, -0.999], np.random.default_rng(0).standard_normal(40 * SAMPLE_RATE))
    brown = (brown / np.sqrt(np.mean(brown ** 2)) * 10 ** (-25 / 20)).astype(np.float32)  # -25 dBFS
    shortest = sorted((load_audio(u.audio) for u in speech), key=len)[:2]
    for clip in shortest:
        stretches = vad.heard_stretches(np.concatenate([brown, clip]))
        assert stretches and all(a >= len(brown) - SAMPLE_RATE for a, _ in stretches), stretches


def test_vad_is_for_windows_cut_at_pauses(tiny_with_experts, capsys):
    model, _ = tiny_with_experts
    with pytest.raises(ValueError, match="--vad cuts the windows"):
        Transcriber(model, precision="fp32")(tone(2.0), "ca", vad=True, sequential=True)
    assert main(["transcribe", "x.wav", "--vad", "--sequential"]) == 2
    assert "--vad cuts the windows" in capsys.readouterr().err


def test_noise_gives_windows_by_energy_and_none_by_vad(tiny_with_experts):
    model, _ = tiny_with_experts
    noise = (0.1 * np.random.default_rng(0).standard_normal(10 * SAMPLE_RATE)).astype(np.float32)
    transcriber = Transcriber(model, precision="fp32")
    assert transcriber(noise, "ca", fallback=False, max_new_tokens=4).segments  # energy: the noise is "speech"
    assert transcriber(noise, "ca", vad=True, fallback=False).segments == []  # Silero: nothing to decode


def test_transcribe_uses_vad_by_default_and_no_vad_cuts_by_energy(tiny_with_experts, speech, tmp_path, capsys):
    """The command's default (chosen on dev recordings) joins prompts 20 s apart into one window; --no-vad cuts a
    window per prompt at the pauses; --sequential alone decodes without VAD (no conflict), --sequential --vad is
    refused."""
    import json

    import soundfile as sf

    from distilwhisper.audio import load_audio

    model, _ = tiny_with_experts
    silence = np.zeros(20 * SAMPLE_RATE, np.float32)
    audio = np.concatenate([part for u in speech[:3] for part in (load_audio(u.audio), silence)])
    sf.write(str(tmp_path / "talk.wav"), audio, SAMPLE_RATE)
    common = ["transcribe", "--model", model, "--language", "ca", "--greedy-only", "--output-format", "json"]
    segments = {}
    for name, flags in (("default", []), ("no-vad", ["--no-vad"]), ("sequential", ["--sequential"])):
        assert main([*common, *flags, "--output-dir", str(tmp_path / name), str(tmp_path / "talk.wav")]) == 0
        segments[name] = json.loads((tmp_path / name / "talk.json").read_text())["segments"]
    assert len(segments["default"]) == 1 and len(segments["no-vad"]) == 3
    assert segments["default"][0]["end"] > 40  # the joined window reaches the third prompt
    capsys.readouterr()
    assert main([*common, "--sequential", "--vad", str(tmp_path / "talk.wav")]) == 2
    assert "--vad cuts the windows" in capsys.readouterr().err


def test_vad_settings_reach_the_vad_and_bad_ones_are_refused(speech, capsys):
    """A stricter threshold finds no more speech than a lenient one, and a long minimum silence joins stretches
    that a short one keeps apart; out-of-range values are refused by name."""
    from distilwhisper.audio import load_audio
    from distilwhisper.decoding import DecodingOptions
    from distilwhisper.windows import vad_windows

    gap = np.zeros(SAMPLE_RATE, np.float32)  # 1 s pauses
    audio = np.concatenate([part for u in speech[:3] for part in (load_audio(u.audio), gap)])
    speech_of = lambda windows: sum(len(w.audio(audio)) for w in windows)  # noqa: E731
    assert speech_of(vad_windows(audio, threshold=0.9)) <= speech_of(vad_windows(audio, threshold=0.2))
    pieces = lambda windows: sum(len(w.pieces) for w in windows)  # noqa: E731
    assert pieces(vad_windows(audio, min_silence_ms=3000)) < pieces(vad_windows(audio, min_silence_ms=300))
    with pytest.raises(ValueError, match="--vad-threshold is a probability"):
        DecodingOptions(vad_threshold=1.5)
    assert main(["transcribe", "x.wav", "--vad", "--vad-min-silence-ms", "-5"]) == 2
    assert "--vad-min-silence-ms" in capsys.readouterr().err
