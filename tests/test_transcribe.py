"""Long-form transcription: windows cut at pauses cover the speech, segments are ordered, the detected language
picks the experts, every output format is written, a bad file is skipped; the real model on a long real
recording."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from distilwhisper import subtitles
from distilwhisper.cli import main
from distilwhisper.results import error_counts
from distilwhisper.normalize import normalize
from distilwhisper.transcribe import SAMPLE_RATE, Transcriber, resolve_precision, speech_windows, timed_segments
from conftest import tone


def _recording(parts: list[tuple[str, float]]) -> np.ndarray:
    """('tone' | 'pause', seconds) pieces one after the other."""
    return np.concatenate([tone(sec) if kind == "tone" else np.zeros(int(sec * SAMPLE_RATE), np.float32)
                           for kind, sec in parts])


def test_timed_segments_follow_the_timestamp_grammar():
    """Whisper's window output `<|t0|> text <|t1|><|t1|> text <|t2|>...`: segments between pairs of times; the next
    window starts at the last complete segment's end, or after the whole window when the output ends on a lone
    time (or holds no complete segment)."""
    b, window = 50364, 30 * SAMPLE_RATE
    assert timed_segments([b, 1, 2, b + 50, b + 50, 3, b + 120], b, window) == (
        [(0.0, 1.0, [1, 2]), (1.0, 2.4, [3])], window, 7)  # ends on a lone time: everything heard
    assert timed_segments([b, 1, b + 50, b + 60, 2, 3], b, window) == (
        [(0.0, 1.0, [1])], SAMPLE_RATE, 3)  # the last segment is cut off: start again at its start, 1.0 s, and
    # only the kept segment's tokens are context for the next window
    assert timed_segments([b + 10, 7, 8], b, window) == ([(0.2, 30.0, [7, 8])], window, 3)  # no closing time
    assert timed_segments([], b, window) == ([], window, 0)


def test_timestamp_decoding_obeys_the_grammar_on_any_model(tiny):
    """Even a random model's output under the timestamp rules: it opens with a time of at most 1 s, times never go
    back, and after a closing time comes an opening one or the end."""
    from distilwhisper.decoding import WhisperDecoder

    model, processor = tiny
    decoder = WhisperDecoder(model, processor)
    for seed in range(3):
        audio = np.random.default_rng(seed).normal(0, 0.1, SAMPLE_RATE * 3).astype(np.float32)
        tokens = decoder.transcribe([audio], "ca", timestamps=True, temperature=1.0, seed=seed,
                                    max_new_tokens=60)[0].tokens
        begin = decoder.timestamp_begin
        times = [t for t in tokens if t >= begin]
        assert tokens and begin <= tokens[0] <= begin + 50
        assert times == sorted(times)
        for i in range(2, len(tokens)):
            if tokens[i - 1] >= begin and tokens[i - 2] < begin:  # a closing time
                assert tokens[i] >= begin  # then an opening time (the end is not in `tokens`)


def test_windows_are_cut_in_pauses_and_cover_the_speech():
    audio = _recording([("pause", 1.0), ("tone", 12), ("pause", 0.8), ("tone", 12), ("pause", 0.8), ("tone", 12),
                        ("pause", 5.0), ("tone", 8)])
    windows = [(w.start, w.end) for w in speech_windows(audio)]
    assert all(len(w.pieces) == 1 for w in speech_windows(audio))  # cut at pauses: one stretch each
    assert all(b - a <= 30 * SAMPLE_RATE for a, b in windows)
    assert all(b1 <= a2 for (_, b1), (a2, _) in zip(windows, windows[1:]))  # ordered, no overlap
    for start, end in [(1.0, 13.0), (13.8, 25.8), (26.6, 38.6), (43.6, 51.6)]:  # every tone is inside a window
        assert any(a <= start * SAMPLE_RATE + 500 and end * SAMPLE_RATE - 500 <= b for a, b in windows), (start, end)
    for a, b in windows:  # cuts fall in pauses, never inside a tone
        for edge in (a, b):
            assert np.abs(audio[max(edge - 80, 0):edge + 80]).max() < 0.05 or edge in (0, len(audio))
    assert speech_windows(np.zeros(SAMPLE_RATE * 5, np.float32)) == []
    long = speech_windows(tone(70))  # no pause at all: hard cuts at 30 s
    assert [round((w.end - w.start) / SAMPLE_RATE) for w in long] == [30, 30, 10]


def test_segments_cover_the_recording_and_the_language_picks_the_experts(tiny, tmp_path):
    from distilwhisper import clsr

    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    experts = clsr.to_distilwhisper(model.__class__.from_pretrained(tmp_path / "tiny"), ["ca"], "decoder")
    clsr.save_experts(experts, tmp_path / "experts", str(tmp_path / "tiny"), ["ca"])
    audio = _recording([("tone", 20), ("pause", 1.0), ("tone", 20), ("pause", 1.0), ("tone", 25)])
    plain = Transcriber(str(tmp_path / "tiny"))
    with_experts = Transcriber(str(tmp_path / "tiny"), str(tmp_path / "experts"))
    result = with_experts(audio, language="ca", batch_size=2, fallback=False)
    assert result.experts == "ca" and result.language_probability is None
    starts = [s.start for s in result.segments]
    assert len(starts) == 3 and starts == sorted(starts) and result.segments[-1].end == pytest.approx(67.0, abs=0.1)
    other = with_experts(audio, language="es", fallback=False)  # no experts: the shared FFNs, i.e. the plain model
    assert other.experts is None
    assert [s.text for s in other.segments] == [s.text for s in plain(audio, language="es", fallback=False).segments]
    detected = plain(audio, fallback=False)
    assert detected.language and 0 < detected.language_probability <= 1
    for fmt in subtitles.FORMATS:
        assert subtitles.render(result, fmt) is not None
    srt = subtitles.render(result, "srt")
    assert "00:00:20,9" in srt or "00:00:21,0" in srt or not result.text  # second window's start, HH:MM:SS,mmm
    assert json.loads(subtitles.render(result, "json"))["experts"] == "ca"


def test_cli_writes_every_format_and_skips_an_unreadable_file(tiny, tmp_path, capsys):
    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    good = tmp_path / "talk.wav"
    sf.write(str(good), _recording([("tone", 35), ("pause", 1.0), ("tone", 5)]), SAMPLE_RATE)
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"not audio")
    out = tmp_path / "out"
    code = main(["transcribe", "--model", str(tmp_path / "tiny"), "--language", "en", "--output-format", "all",
                 "--output-dir", str(out), "--greedy-only", "--no-vad", str(bad), str(good)])  # tones: by energy
    captured = capsys.readouterr()
    assert code == 1 and "skipped" in captured.err and str(bad) in captured.err
    assert f"{good}\ten\t" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["talk.json", "talk.srt", "talk.tsv", "talk.txt", "talk.vtt"]
    segments = json.loads((out / "talk.json").read_text())["segments"]
    # 35 s without a pause: a hard cut at 30 s; the rest (5 s, a pause, 5 s) fits one window
    assert [(s["start"], s["end"]) for s in segments] == [(0.0, 30.0), (30.0, 41.0)]
    assert (out / "talk.vtt").read_text().startswith("WEBVTT")
    assert main(["transcribe", "--model", str(tmp_path / "tiny"), "--output-format", "doc", str(good)]) == 2


def test_cli_long_recording_detects_the_language_and_uses_its_experts(tiny, tmp_path, capsys):
    """The issue's command on a tiny model: a 5.6-minute recording, `--experts` of a run's best/ and every output
    format; the detected language's experts decode it (their changed weights change the text), segment times rise
    and cover every stretch of sound; `--sequential` on the same recording moves through all of it too."""
    import torch

    from distilwhisper import clsr

    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    parts = [("tone", 20.0 + 3 * (i % 4)) if i % 2 == 0 else ("pause", 1.0 + (i % 3)) for i in range(27)]
    audio = _recording(parts)
    assert len(audio) / SAMPLE_RATE > 300
    sf.write(str(tmp_path / "long.wav"), audio, SAMPLE_RATE)
    language = Transcriber(str(tmp_path / "tiny")).detect([audio[:30 * SAMPLE_RATE]])[0]
    with_experts = clsr.to_distilwhisper(model.__class__.from_pretrained(tmp_path / "tiny"), [language, "ca"
                                         if language != "ca" else "es"], "decoder")
    torch.manual_seed(0)
    with torch.no_grad():  # experts that differ from the shared FFNs, as trained ones do
        for name, param in with_experts.named_parameters():
            if f"experts.{language}." in name:
                param.add_(torch.randn_like(param) * param.std())
    best = tmp_path / "runs" / "dw" / "best"
    clsr.save_experts(with_experts, best, str(tmp_path / "tiny"), clsr.trained_languages(with_experts))
    out = tmp_path / "out"
    argv = ["transcribe", "--model", str(tmp_path / "tiny"), "--experts", str(best), "--output-format", "all",
            "--output-dir", str(out), "--greedy-only", "--no-vad", str(tmp_path / "long.wav")]  # tones: by energy
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"long.{fmt}" for fmt in sorted(subtitles.FORMATS)]
    info = json.loads((out / "long.json").read_text())
    assert info["language"] == language and info["experts"] == language and 0 < info["language_probability"] <= 1
    segments = info["segments"]
    starts = [s["start"] for s in segments]
    assert starts == sorted(starts) and all(s["start"] < s["end"] for s in segments)
    assert all(a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    second = 0.0
    for kind, seconds in parts:  # every tone lies inside one segment
        if kind == "tone":
            assert any(s["start"] <= second + 0.1 and second + seconds - 0.1 <= s["end"] for s in segments), second
        second += seconds
    plain = Transcriber(str(tmp_path / "tiny"))(audio, language, fallback=False)
    assert [s.text for s in plain.segments] != [s["text"] for s in segments]  # the experts decoded it
    capsys.readouterr()
    assert main([*argv[:-1], "--sequential", "--output-dir", str(tmp_path / "seq"), argv[-1]]) == 0
    timed = json.loads((tmp_path / "seq" / "long.json").read_text())["segments"]
    assert [s["start"] for s in timed] == sorted(s["start"] for s in timed)
    assert all(0 <= s["start"] <= s["end"] <= len(audio) / SAMPLE_RATE + 30 for s in timed)


def test_temperature_fallback_retries_loops_and_keeps_silence_silent():
    """A window that loops (gzip ratio > 2.4) or has a low log-probability is decoded again at the next
    temperature; a window the model calls no-speech gives no text and is not retried."""
    from distilwhisper.decoding import DecodingOptions, Transcript, resolve_options

    class Stub:
        calls: list[float] = []

        def transcribe(self, audios, language, options=None, **changes):
            temperature = resolve_options(options, changes).temperature
            Stub.calls.append(temperature)
            out = []
            for audio in audios:
                if audio[0] == 1:  # silence
                    out.append(Transcript([], "thank you", language, -2.0, no_speech_prob=0.9, temperature=temperature))
                elif temperature < 0.4:  # loops until 0.4
                    out.append(Transcript([], "la " * 60, language, -0.2, 0.0, temperature))
                else:
                    out.append(Transcript([], "a real sentence", language, -0.3, 0.0, temperature))
            return out

    transcriber = object.__new__(Transcriber)
    transcriber.decoder, transcriber.experts = Stub(), set()
    windows = [np.zeros(10, np.float32), np.ones(10, np.float32)]
    looped, silent = transcriber.decode(windows, "en", DecodingOptions())
    assert (looped.text, looped.temperature) == ("a real sentence", 0.4) and Stub.calls == [0.0, 0.2, 0.4]
    assert silent.temperature == 0.0  # never retried
    Stub.calls = []
    assert transcriber.decode(windows, "en", DecodingOptions(fallback_temperatures=()))[0].text.startswith("la la")
    assert Stub.calls == [0.0]


@pytest.mark.slow
def test_real_long_recording(bundled, tmp_path):
    """The bundled model on 16 different English prompts joined with half-second pauses (74 s): English detected,
    segments ordered, and the whole transcript as good as the prompts decoded one by one (measured: 3.7 % against
    4.9 % WER)."""
    from distilwhisper.audio import load_audio
    from distilwhisper.data.asterisk import import_asterisk

    clips, _ = import_asterisk(["en"], tmp_path, 16)
    audios = [load_audio(u.audio) for u in clips]
    audio = np.concatenate([np.concatenate([a, np.zeros(SAMPLE_RATE // 2, np.float32)]) for a in audios])
    transcriber = Transcriber("bundled:base")
    result = transcriber(audio)
    assert result.language == "en" and result.language_probability > 0.9 and result.experts is None
    assert len(result.segments) >= 3 and [s.start for s in result.segments] == sorted(s.start for s in result.segments)
    reference = normalize(" ".join(u.text for u in clips), "en")
    whole = error_counts(reference, normalize(result.text, "en"))
    one_by_one = error_counts(reference, normalize(" ".join(t.text for t in transcriber.decoder.transcribe(
        audios, "en")), "en"))
    assert whole.word_errors <= one_by_one.word_errors + 0.02 * whole.words  # no words lost at the seams
    # the plain model on the CTranslate2 backend: the same windows, detection and fallback machinery
    on_engine = Transcriber("bundled:base", precision="ct2-float32")
    ct2 = on_engine(audio)
    assert ct2.language == "en" and ct2.language_probability > 0.9
    assert [(s.start, s.end) for s in ct2.segments] == [(s.start, s.end) for s in result.segments]
    on_ct2 = error_counts(reference, normalize(ct2.text, "en"))
    assert on_ct2.word_errors <= whole.word_errors + 0.02 * whole.words
    assert all(-5 < s.avg_logprob < 0 and 0 <= s.no_speech_prob < 0.5 for s in ct2.segments)
    # Whisper's sequential algorithm: times from the model, windows moved to the last complete segment
    sequential = transcriber(audio, "en", sequential=True)
    starts = [s.start for s in sequential.segments]
    assert len(sequential.segments) > len(result.segments) and starts == sorted(starts)
    assert all(0 <= s.start <= s.end <= result.duration + 0.5 for s in sequential.segments)
    timed = error_counts(reference, normalize(sequential.text, "en"))
    assert timed.word_errors <= whole.word_errors + 0.05 * whole.words  # measured: 6.2 % against 3.7 %
    # and on CTranslate2 (its own timestamp rules): segments as ordered, the text as close
    engine = on_engine(audio, "en", sequential=True)
    assert [s.start for s in engine.segments] == sorted(s.start for s in engine.segments)
    assert all(0 <= s.start <= s.end <= result.duration + 0.5 for s in engine.segments)
    engine_errors = error_counts(reference, normalize(engine.text, "en"))
    assert abs(engine_errors.word_errors - timed.word_errors) <= 0.03 * whole.words, (engine.text, sequential.text)


@pytest.mark.parametrize("flags, precision", [({"avx2", "avx512_bf16"}, "bf16"), ({"avx2", "amx_bf16"}, "bf16"),
                                              ({"avx2", "avx512f"}, "fp32")])
def test_the_default_precision_follows_the_cpu_flags(tiny, tmp_path, monkeypatch, flags, precision):
    """`transcribe` runs in bf16 only where the CPU computes it (emulated bf16 is several times slower than fp32),
    and each transcription says what it ran at; --sequential stays fp32 unless told."""
    import torch

    from distilwhisper import quantize

    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    monkeypatch.setattr(quantize, "_cpu_flags", lambda: flags)
    transcriber = Transcriber(str(tmp_path / "tiny"))
    assert transcriber.decoder.model.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    result = transcriber(_recording([("tone", 3)]), "en", fallback=False)
    assert json.loads(subtitles.render(result, "json"))["precision"] == precision
    assert Transcriber(str(tmp_path / "tiny"), precision="fp32").decoder.model.dtype == torch.float32
    # sequential decoding stays fp32 unless told (bf16 drifted there, docs/results.md), on the same transcriber too
    assert resolve_precision("auto", sequential=True) == "fp32"
    assert resolve_precision("bf16", sequential=True) == "bf16"
    sequential = transcriber(_recording([("tone", 3)]), "en", fallback=False, sequential=True)
    assert json.loads(subtitles.render(sequential, "json"))["precision"] == "fp32"
    assert transcriber._decoder("fp32").model.dtype == torch.float32
    assert transcriber.decoder.model.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[precision]
    assert len(transcriber._decoders) == (2 if precision == "bf16" else 1)  # loaded once, on demand


def test_longform_dev_recordings_share_no_prompt_with_the_test_ones(tmp_path, monkeypatch):
    """benchmarks/longform.py --split dev chooses settings on recordings made of the prompts the reported (test)
    recordings leave, so the test recordings stay as they were and no prompt is in both."""
    import importlib.util
    from pathlib import Path
    from types import SimpleNamespace

    from conftest import write_wav

    benchmarks = Path(__file__).parent.parent / "benchmarks"
    monkeypatch.syspath_prepend(str(benchmarks))  # the script's own imports (benchmarks/common.py), as when run
    spec = importlib.util.spec_from_file_location("longform", benchmarks / "longform.py")
    longform = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(longform)
    clips = [SimpleNamespace(audio=str(write_wav(tmp_path / f"{i}.wav", 3.0)), text=f"prompt {i}") for i in range(60)]
    test = longform.recordings(clips, [0.5, 1.0], seed=0)
    dev = longform.recordings(clips, [0.5, 1.0], seed=0, after=[0.5, 1.0])
    assert [r[1] for r in longform.recordings(clips, [0.5, 1.0], seed=0)] == [r[1] for r in test]  # seeded
    used = [{c.audio for c in r[2]} for r in (*test, *dev)]
    assert all(len(r[0]) >= 60 * m * SAMPLE_RATE for r, m in zip((*test, *dev), (0.5, 1.0, 0.5, 1.0)))
    assert not (used[0] | used[1]) & (used[2] | used[3]) and not used[0] & used[1]
    with pytest.raises(SystemExit, match="not enough distinct prompts"):
        longform.recordings(clips, [3.0], seed=0, after=[0.5, 1.0])
