"""Word timestamps side by side: this toolkit against faster-whisper (`word_timestamps=True`) on the same bundled
whisper-base weights, on recordings whose clip boundaries are known (issue #36).

Recordings: real clips joined with seeded pauses of 0.5-2.0 s -- asterisk telephone prompts (en, es) and lines of
Fish Fillets NG's Czech dialogue from the demo's in-domain test (never the reserved confirmation lines).  Truth per
clip: where its speech starts and ends (frame energy inside the clip, the same rule for every system).  Each
system's words are given to the clip whose span holds the word's middle; a clip's error is |its first word's start
- speech start| and |its last word's end - speech end|.  Rows: distilwhisper windows cut at pauses (batched) and
sequential (Whisper's algorithm), fp32; faster-whisper's sequential `transcribe`, float32, no VAD; with `--experts
RUN` (repeatable, NAME=RUN to name it), distilwhisper with those experts too, batched and sequential.  Prints per
system and language (and all together) the median and 90th-percentile absolute errors in seconds, the clips a system
gave no word, WER, and wall seconds.  `--split dev` joins the Czech dev lines instead (settings are chosen there; the
test lines are for the reported table).

    .venv/bin/python benchmarks/word_timing.py [--per-recording 8] [--recordings 3] [--experts [NAME=]RUN ...]
    .venv/bin/python benchmarks/word_timing.py --split dev --languages cs --recordings 6 --experts RUN
"""

from __future__ import annotations

import argparse
import random
import time

import jiwer
import numpy as np
import torch

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.hub import resolve_ct2_dir
from distilwhisper.normalize import normalize
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets
from distilwhisper.transcribe import Transcriber
from common import comma_list

FRAME = SAMPLE_RATE // 100  # 10 ms energy frames for the truth


def speech_span(audio: np.ndarray) -> tuple[float, float]:
    """(start, end) seconds of a clip's speech: the first and last 10 ms frame above -50 dBFS and 5 % of the clip's
    95th-percentile frame energy."""
    frames = audio[:len(audio) // FRAME * FRAME].reshape(-1, FRAME)
    rms = np.sqrt((frames ** 2).mean(axis=1))
    voiced = np.flatnonzero(rms > max(10 ** (-50 / 20), 0.05 * float(np.percentile(rms, 95))))
    return (voiced[0] / 100, (voiced[-1] + 1) / 100) if len(voiced) else (0.0, len(audio) / SAMPLE_RATE)


def recordings(clips: list, per_recording: int, count: int, seed: int) -> list[tuple[np.ndarray, str, list]]:
    """(audio, language, [(clip start, speech start, speech end, clip end, text)]) per recording, seconds."""
    rng = random.Random(seed)
    pool = clips[:]
    rng.shuffle(pool)
    made = []
    for _ in range(count):
        parts, spans, t = [], [], 0.0
        chosen = [pool.pop() for _ in range(min(per_recording, len(pool)))]
        for clip in chosen:
            audio = load_audio(clip.audio)
            start, end = speech_span(audio)
            spans.append((t, t + start, t + end, t + len(audio) / SAMPLE_RATE, clip.text))
            pause = np.zeros(int(SAMPLE_RATE * rng.uniform(0.5, 2.0)), np.float32)
            parts += [audio, pause]
            t += (len(audio) + len(pause)) / SAMPLE_RATE
        made.append((np.concatenate(parts), chosen[0].language, spans))
    return made


def errors(words: list[tuple[float, float, str]], spans: list) -> tuple[list[float], list[float], int]:
    """(first-word start errors, last-word end errors, clips without a word) of one recording."""
    starts, ends, missing = [], [], 0
    for k, (clip_start, speech_start, speech_end, clip_end, _) in enumerate(spans):
        nxt = spans[k + 1][0] if k + 1 < len(spans) else np.inf
        mine = [w for w in words if clip_start <= (w[0] + w[1]) / 2 < nxt]
        if not mine:
            missing += 1
            continue
        starts.append(abs(mine[0][0] - speech_start))
        ends.append(abs(mine[-1][1] - speech_end))
    return starts, ends, missing


def ours(transcriber: Transcriber, audio: np.ndarray, language: str, sequential: bool):
    result = transcriber(audio, language, word_timestamps=True, fallback=False, sequential=sequential)
    return [(w.start, w.end, w.word) for s in result.segments for w in s.words], result.text


def theirs(model, audio: np.ndarray, language: str):
    segments, _ = model.transcribe(audio, language=language, beam_size=1, temperature=0.0, word_timestamps=True,
                                   vad_filter=False)
    segments = list(segments)
    return [(w.start, w.end, w.word) for s in segments for w in (s.words or [])], " ".join(s.text for s in segments)


def czech_lines(split: str) -> list:
    """The demo's in-domain Czech test lines, or its Czech dev lines (never the reserved confirmation lines)."""
    train_dev, test, _ = real_speech_sets("cs", DemoConfig(), 0)
    return test if split == "test" else [u for u in train_dev if u.split == "dev"]


def summary(name: str, language: str, results: list) -> list[str]:
    """One table row: (starts, ends, missing, wall, wer errors, wer words) of each recording, pooled."""
    starts = [e for r in results for e in r[0]]
    ends = [e for r in results for e in r[1]]
    errors_, words = sum(r[4] for r in results), sum(r[5] for r in results)
    return [name, language, f"{np.median(starts):.3f}", f"{np.percentile(starts, 90):.3f}", f"{np.median(ends):.3f}",
            f"{np.percentile(ends, 90):.3f}", str(sum(r[2] for r in results)), f"{100 * errors_ / words:.2f}",
            f"{sum(r[3] for r in results):.1f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="en,es,cs", help="recordings per language (cs: real dialogue)")
    parser.add_argument("--per-recording", type=int, default=8, help="clips joined in one recording")
    parser.add_argument("--recordings", type=int, default=3, help="recordings per language")
    parser.add_argument("--split", choices=("test", "dev"), default="test",
                        help="test: the reported recordings; dev: the Czech dev lines (--languages cs only)")
    parser.add_argument("--experts", action="append", default=[],
                        help="[NAME=]RUN: a DistilWhisper run folder whose experts get rows too (repeatable)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    languages = comma_list(args.languages, "--languages")
    if args.split == "dev" and languages != ["cs"]:
        parser.error("--split dev: only Czech has dev lines here (--languages cs)")
    from faster_whisper import WhisperModel

    torch.set_num_threads(args.threads)
    systems = {"distilwhisper batched (fp32)": (Transcriber(precision="fp32"), False),
               "distilwhisper sequential (fp32)": (Transcriber(precision="fp32"), True)}
    for k, spec in enumerate(args.experts):
        name, _, run = spec.rpartition("=")
        name = name or (f"experts {k + 1}" if len(args.experts) > 1 else "experts")
        transcriber = Transcriber(experts=run, precision="fp32")
        systems[f"distilwhisper batched, {name} (fp32)"] = (transcriber, False)
        systems[f"distilwhisper sequential, {name} (fp32)"] = (transcriber, True)
    faster = WhisperModel(str(resolve_ct2_dir("bundled:base")), device="cpu", compute_type="float32",
                          cpu_threads=args.threads)
    made = []
    for language in languages:
        clips = (czech_lines(args.split) if language == "cs"
                 else import_asterisk([language], f"bench-out/word-timing/{language}")[0])
        made += recordings(clips, args.per_recording, args.recordings, args.seed)
    rows = []
    runs = [(name, lambda a, lang, t=t, s=s: ours(t, a, lang, s)) for name, (t, s) in systems.items()]
    runs.append(("faster-whisper transcribe (float32)", lambda a, lang: theirs(faster, a, lang)))
    for name, run in runs:
        run(made[0][0][:5 * SAMPLE_RATE], made[0][1])  # warm-up
        per_language: dict[str, list] = {}
        for audio, language, spans in made:
            begin = time.perf_counter()
            words, text = run(audio, language)
            wall = time.perf_counter() - begin
            reference = normalize(" ".join(span[4] for span in spans), language)
            out = jiwer.process_words(reference, normalize(text, language) or "-")
            per_language.setdefault(language, []).append(
                (*errors(words, spans), wall, out.substitutions + out.deletions + out.insertions,
                 len(reference.split())))
        if len(per_language) > 1:
            rows += [summary(name, language, results) for language, results in per_language.items()]
        rows.append(summary(name, "all" if len(per_language) > 1 else languages[0],
                            [r for results in per_language.values() for r in results]))
    clips = sum(len(spans) for _, _, spans in made)
    print(f"{len(made)} recordings, {clips} clips ({args.languages}, {args.split}), bundled:base, greedy, "
          f"{cpu_name()}, {args.threads} threads\n")
    print("\n".join(markdown_table(["system", "language", "first-word start: median |error| s", "p90",
                                    "last-word end: median", "p90", "clips without a word", "WER %", "wall s"], rows)))


if __name__ == "__main__":
    main()
