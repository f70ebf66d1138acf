"""Voice-activity detection side by side: this toolkit's `--vad` (Silero, faster-whisper's ONNX model) and its
default windows cut at pauses, against faster-whisper with and without `vad_filter`, on the same bundled
whisper-base weights, on real speech with long stretches of non-speech inserted (issue #36).

Recordings: real clips (asterisk telephone prompts en/es, lines of Fish Fillets NG's Czech dialogue) joined with
pauses of 0.5-1.5 s, with two stretches of 20-60 s of non-speech inserted between clips: room tone (white noise at
-60 dBFS), pink or brown noise from sox at -30 to -20 dBFS, or tones (random notes with harmonics, as music is to a
VAD).  Each recording is also decoded without its inserts.  The dev recordings (asterisk prompts of one seeded half,
the demo's Czech dev lines) choose the VAD's threshold and minimum silence from a grid, and whether `--vad` should be
on by default; the test recordings (the other prompts, the demo's in-domain Czech test lines, never the reserved
confirmation lines) are decoded once with the chosen setting.

Per system: words written inside the non-speech (each system's word timestamps; a word belongs where its middle
lies), WER with the inserts, WER of the same recordings without them, the change with its 95 % interval
(recordings resampled, paired), and wall seconds.  All greedy (beam 1), the
language given, each tool's temperature fallback on (its default), fp32.

    .venv/bin/python benchmarks/vad.py [--per-recording 6] [--recordings 6] [--seed 1] [--threads 2]
    .venv/bin/python benchmarks/vad.py --dev-words --seed 1   # dev only: each word written inside non-speech
"""

from __future__ import annotations

import argparse
import random
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.data.asterisk import LANGUAGES as ASTERISK_LANGUAGES
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.decoding import DecodingOptions
from distilwhisper.hub import resolve_ct2_dir
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table
from distilwhisper.results import rate
from distilwhisper.stats import paired_delta
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets
from distilwhisper.transcribe import Transcriber
from distilwhisper.vad import MIN_SILENCE_MS as VAD_MIN_SILENCE_MS
from distilwhisper.vad import THRESHOLD as VAD_THRESHOLD
from common import comma_list, scored

KINDS = ("room tone", "noise", "tones")
THRESHOLDS = (0.35, 0.5, 0.65)
MIN_SILENCES_MS = (500, 2000)
MIN_CLIPS = 3  # a recording's two inserts go between clips
WER_SLACK = 0.5  # points of WER a VAD setting may lose to the best one and still be chosen for fewer inserted words
SPLIT_SEED = 0  # which half of the asterisk prompts is dev; --seed draws the recordings (clips, inserts) only


@dataclass
class Recording:
    language: str
    audio: np.ndarray  # with the non-speech inserted
    clean: np.ndarray  # the same clips and pauses, without the inserts
    reference: str
    inserts: list[tuple[float, float]]  # seconds of non-speech in `audio`
    kinds: list[str]  # each insert's kind (KINDS)


def sox_noise(seconds: float, colour: str, gain_db: float) -> np.ndarray:
    """`seconds` of sox's white/pink/brown noise at 16 kHz, scaled to `gain_db` dBFS RMS."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "noise.wav"
        subprocess.run(["sox", "-n", "-r", str(SAMPLE_RATE), "-c", "1", "-b", "16", str(path), "synth",
                        f"{seconds:.2f}", f"{colour}noise"], check=True, capture_output=True)
        noise = load_audio(path)
    return (noise / max(float(np.sqrt(np.mean(noise ** 2))), 1e-9) * 10 ** (gain_db / 20)).astype(np.float32)


def tones(seconds: float, rng: random.Random) -> np.ndarray:
    """Random notes of 0.2-0.6 s (three harmonics, a decaying envelope) at about -20 dBFS: music-like sound."""
    parts, total = [], 0
    while total < seconds * SAMPLE_RATE:
        n = int(SAMPLE_RATE * rng.uniform(0.2, 0.6))
        t = np.arange(n) / SAMPLE_RATE
        f = 220.0 * 2 ** (rng.randrange(24) / 12)
        note = sum(np.sin(2 * np.pi * f * k * t) / k for k in (1, 2, 3)) * np.exp(-3 * t)
        parts.append(0.1 * note)
        total += n
    return np.concatenate(parts)[:int(seconds * SAMPLE_RATE)].astype(np.float32)


def non_speech(kind: str, seconds: float, rng: random.Random) -> np.ndarray:
    if kind == "room tone":
        return sox_noise(seconds, "white", -60.0)
    if kind == "noise":
        return sox_noise(seconds, rng.choice(("pink", "brown")), rng.uniform(-30.0, -20.0))
    return tones(seconds, rng)


def recordings(clips: list, language: str, per_recording: int, count: int, rng: random.Random) -> list[Recording]:
    """`count` recordings of `per_recording` distinct clips each, two inserts apiece (kinds in turn)."""
    pool = clips[:]
    rng.shuffle(pool)
    made = []
    for r in range(count):
        if len(pool) < MIN_CLIPS:
            raise ValueError(f"{language}: its {len(clips)} clips of this split fill {r} recordings, not {count} "
                             f"(each needs at least {MIN_CLIPS}): ask fewer --recordings or --per-recording")
        chosen = [pool.pop() for _ in range(min(per_recording, len(pool)))]
        at = set(rng.sample(range(1, len(chosen)), 2))  # inserted before these clips
        parts, clean, inserts, kinds, t = [], [], [], [], 0.0
        for k, clip in enumerate(chosen):
            if k in at:
                kinds.append(KINDS[(2 * r + len(inserts)) % len(KINDS)])
                stretch = non_speech(kinds[-1], rng.uniform(20, 60), rng)
                inserts.append((t, t + len(stretch) / SAMPLE_RATE))
                parts.append(stretch)
                t += len(stretch) / SAMPLE_RATE
            audio = load_audio(clip.audio)
            pause = np.zeros(int(SAMPLE_RATE * rng.uniform(0.5, 1.5)), np.float32)
            parts += [audio, pause]
            clean += [audio, pause]
            t += (len(audio) + len(pause)) / SAMPLE_RATE
        made.append(Recording(language, np.concatenate(parts), np.concatenate(clean),
                              " ".join(c.text for c in chosen), inserts, kinds))
    return made


def splits(languages: list[str], per_recording: int, count: int, seed: int) -> dict[str, list[Recording]]:
    """{"dev": ..., "test": ...} recordings of every language."""
    rng = random.Random(seed)
    made: dict[str, list[Recording]] = {"dev": [], "test": []}
    for language in languages:
        if language == "cs":
            train_dev, test, _ = real_speech_sets("cs", DemoConfig(), 0)
            pools = {"dev": [u for u in train_dev if u.split == "dev"], "test": test}
        else:
            prompts = import_asterisk([language], f"bench-out/vad/{language}")[0]
            random.Random(SPLIT_SEED).shuffle(prompts)  # the halves stay put: dev prompts never become test ones
            pools = {"dev": prompts[::2], "test": prompts[1::2]}
        for split, pool in pools.items():
            made[split] += recordings(pool, language, per_recording, count, rng)
    return made


def ours(transcriber: Transcriber, options: DecodingOptions):
    def run(audio: np.ndarray, language: str) -> tuple[list[tuple[float, float]], str]:
        result = transcriber(audio, language, options)
        return [(w.start, w.end) for s in result.segments for w in s.words], result.text
    return run


def theirs(model, vad_filter: bool):
    def run(audio: np.ndarray, language: str) -> tuple[list[tuple[float, float]], str]:
        segments, _ = model.transcribe(audio, language=language, beam_size=1, word_timestamps=True,
                                       vad_filter=vad_filter)
        segments = list(segments)
        return [(w.start, w.end) for s in segments for w in (s.words or [])], " ".join(s.text for s in segments)
    return run


def measure(run, made: list[Recording]) -> dict:
    """Inserted words, WER with and without the inserts (and the change's interval, recordings resampled), wall
    seconds of one system on recordings."""
    inserted, noisy, clean, wall = 0, [], [], 0.0
    for k, rec in enumerate(made):
        begin = time.perf_counter()
        words, text = run(rec.audio, rec.language)
        wall += time.perf_counter() - begin
        inserted += sum(any(a <= (s + e) / 2 < b for a, b in rec.inserts) for s, e in words)
        noisy.append({"id": str(k), **scored(rec.reference, text, rec.language)})
        clean.append({"id": str(k), **scored(rec.reference, run(rec.clean, rec.language)[1], rec.language)})
    return {"inserted": inserted, "wer": rate(noisy, "wer"), "clean_wer": rate(clean, "wer"),
            "change": paired_delta(clean, noisy, "wer"), "wall": wall}


def words_in_non_speech(transcriber: Transcriber, options: DecodingOptions, made: list[Recording]) -> list[list[str]]:
    """Each word written inside an insert, with where it lies and how sure its segment was: the diagnosis behind a
    change of the VAD's handling, read on dev recordings only."""
    rows = []
    for k, rec in enumerate(made):
        for seg in transcriber(rec.audio, rec.language, options).segments:
            for w in seg.words:
                rows += [[rec.language, str(k), kind, f"{a:.2f}-{b:.2f}", f"{w.start:.2f}-{w.end:.2f}", w.word.strip(),
                          f"{w.probability:.2f}", f"{seg.start:.2f}-{seg.end:.2f}", f"{seg.no_speech_prob:.2f}",
                          f"{seg.avg_logprob:.2f}", seg.text.strip()[:60]]
                         for (a, b), kind in zip(rec.inserts, rec.kinds) if a <= (w.start + w.end) / 2 < b]
    return rows


WORD_HEADER = ["language", "recording", "insert", "insert s", "word s", "word", "p(word)", "segment s",
               "no-speech p", "avg logprob", "segment text"]


def row(name: str, m: dict) -> list[str]:
    change = m["change"]
    return [name, str(m["inserted"]), f"{m['wer']:.2f}", f"{m['clean_wer']:.2f}",
            f"{change.value:+.2f} [{change.low:+.2f}, {change.high:+.2f}]", f"{m['wall']:.1f}"]


HEADER = ["system", "words in non-speech", "WER %", "WER without inserts %",
          "change [95 % CI, recordings resampled]", "wall s"]


def choose(grid: dict[tuple[float, int], dict[str, float]]) -> tuple[float, int]:
    """The dev setting with the fewest words in non-speech among those within WER_SLACK of the best WER (ties:
    the lower WER)."""
    best = min(m["wer"] for m in grid.values())
    eligible = [(m["inserted"], m["wer"], key) for key, m in grid.items() if m["wer"] <= best + WER_SLACK]
    return min(eligible)[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="en,es,cs", help="recordings per language (cs: real dialogue)")
    parser.add_argument("--per-recording", type=int, default=6, help="clips per recording")
    parser.add_argument("--recordings", type=int, default=6,
                        help="recordings per language and split (Czech dev's lines fill at most 8 of 6 clips)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0,
                        help="draws the recordings: which clips, their order, the inserts (the dev and test "
                             "halves of the clips stay put)")
    parser.add_argument("--dev-words", action="store_true",
                        help="decode the dev recordings with --vad at its defaults, list every word written inside "
                             "non-speech (its insert, times, probability, its segment's no-speech probability), count "
                             "faster-whisper's (vad_filter=True) on the same recordings, and stop: no grid, no test "
                             "set")
    args = parser.parse_args()
    if args.per_recording < MIN_CLIPS:
        parser.error(f"--per-recording: at least {MIN_CLIPS} clips (a recording's two inserts go between clips)")
    if args.recordings < 1:
        parser.error("--recordings: at least 1 per language and split")
    torch.set_num_threads(args.threads)
    try:
        languages = comma_list(args.languages, "--languages", known=("cs", *ASTERISK_LANGUAGES))
        made = splits(languages, args.per_recording, args.recordings, args.seed)
    except ValueError as error:  # a language without recordings, or too few clips for the recordings asked for
        parser.error(str(error))
    from faster_whisper import WhisperModel

    transcriber = Transcriber(precision="fp32")
    words = DecodingOptions(word_timestamps=True)
    transcriber(made["dev"][0].clean[:5 * SAMPLE_RATE], made["dev"][0].language, words)  # warm-up
    faster = WhisperModel(str(resolve_ct2_dir("bundled:base")), device="cpu", compute_type="float32",
                          cpu_threads=args.threads)
    if args.dev_words:
        rows = words_in_non_speech(transcriber, words.with_(vad=True), made["dev"])
        print(f"{len(rows)} words inside non-speech, dev, --vad (threshold {VAD_THRESHOLD:g}, {VAD_MIN_SILENCE_MS} "
              f"ms), seed {args.seed}; faster-whisper with vad_filter=True on the same recordings: "
              f"{measure(theirs(faster, True), made['dev'])['inserted']}\n")
        print("\n".join(markdown_table(WORD_HEADER, rows)))
        return
    audio_s = {split: sum(len(r.audio) for r in recs) / SAMPLE_RATE for split, recs in made.items()}
    print(f"{cpu_name()}, {args.threads} threads, bundled:base fp32; dev {len(made['dev'])} recordings "
          f"({audio_s['dev']:.0f} s), test {len(made['test'])} ({audio_s['test']:.0f} s), {args.languages}\n",
          flush=True)

    off = measure(ours(transcriber, words), made["dev"])
    grid = {(t, m): measure(ours(transcriber, words.with_(vad=True, vad_threshold=t, vad_min_silence_ms=m)),
                            made["dev"])
            for t in THRESHOLDS for m in MIN_SILENCES_MS}
    chosen = choose(grid)
    print("## dev: the VAD's settings\n")
    rows = [row("windows at pauses (no VAD)", off)]
    rows += [row(f"--vad threshold {t:g}, min silence {m} ms" + (" (chosen)" if (t, m) == chosen else ""), res)
             for (t, m), res in grid.items()]
    print("\n".join(markdown_table(HEADER, rows)), flush=True)
    on = grid[chosen]
    default_on = on["inserted"] < off["inserted"] and on["clean_wer"] <= off["clean_wer"] + WER_SLACK
    print(f"\nchosen: threshold {chosen[0]:g}, min silence {chosen[1]} ms (defaults now {VAD_THRESHOLD:g}, "
          f"{VAD_MIN_SILENCE_MS} ms); --vad by default: {'yes' if default_on else 'no'} (fewer words in non-speech "
          f"and WER without inserts within {WER_SLACK} of no VAD's)\n", flush=True)

    systems = {"distilwhisper, windows at pauses (no VAD)": ours(transcriber, words),
               f"distilwhisper --vad (threshold {chosen[0]:g}, {chosen[1]} ms)":
                   ours(transcriber, words.with_(vad=True, vad_threshold=chosen[0], vad_min_silence_ms=chosen[1])),
               "faster-whisper, no VAD": theirs(faster, False),
               "faster-whisper, vad_filter=True (its defaults)": theirs(faster, True)}
    print("## test\n")
    print("\n".join(markdown_table(HEADER, [row(name, measure(run, made["test"])) for name, run in systems.items()])))


if __name__ == "__main__":
    main()
