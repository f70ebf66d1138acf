"""Word timestamps side by side: this toolkit against faster-whisper (`word_timestamps=True`) on the same bundled
whisper-base weights, on recordings whose clip boundaries are known (issue #36).

Recordings: real clips joined with seeded pauses of 0.5-2.0 s -- asterisk telephone prompts (en, es) and lines of
Fish Fillets NG's Czech dialogue from the demo's in-domain test (never the reserved confirmation lines).  Truth per
clip: where its speech starts and ends (frame energy inside the clip, the same rule for every system).  Each
system's words are given to the clip whose span holds the word's middle; a clip's error is |its first word's start
- speech start| and |its last word's end - speech end|.  Rows: distilwhisper windows cut at pauses (batched) and
sequential (Whisper's algorithm), fp32; faster-whisper's sequential `transcribe`, float32, no VAD; with `--experts
RUN`, distilwhisper with those experts too.  Prints the median and 90th-percentile absolute errors in seconds, the
clips a system gave no word, WER, and wall seconds.

    .venv/bin/python benchmarks/word_timing.py [--per-recording 8] [--recordings 3] [--experts RUN]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="en,es,cs", help="recordings per language (cs: real dialogue)")
    parser.add_argument("--per-recording", type=int, default=8, help="clips joined in one recording")
    parser.add_argument("--recordings", type=int, default=3, help="recordings per language")
    parser.add_argument("--experts", help="a DistilWhisper run folder: its experts get a row too")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from faster_whisper import WhisperModel

    torch.set_num_threads(args.threads)
    systems = {"distilwhisper batched (fp32)": (Transcriber(precision="fp32"), False),
               "distilwhisper sequential (fp32)": (Transcriber(precision="fp32"), True)}
    if args.experts:
        systems["distilwhisper batched, experts (fp32)"] = (Transcriber(experts=args.experts, precision="fp32"),
                                                             False)
    faster = WhisperModel(str(resolve_ct2_dir("bundled:base")), device="cpu", compute_type="float32",
                          cpu_threads=args.threads)
    made = []
    for language in comma_list(args.languages, "--languages"):
        clips = (real_speech_sets("cs", DemoConfig(), 0)[1] if language == "cs"  # the demo's in-domain test lines
                 else import_asterisk([language], f"bench-out/word-timing/{language}")[0])
        made += recordings(clips, args.per_recording, args.recordings, args.seed)
    rows = []
    runs = [(name, lambda a, lang, t=t, s=s: ours(t, a, lang, s)) for name, (t, s) in systems.items()]
    runs.append(("faster-whisper transcribe (float32)", lambda a, lang: theirs(faster, a, lang)))
    for name, run in runs:
        run(made[0][0][:5 * SAMPLE_RATE], made[0][1])  # warm-up
        starts, ends, missing, wall, wer_num, wer_den = [], [], 0, 0.0, 0, 0
        for audio, language, spans in made:
            begin = time.perf_counter()
            words, text = run(audio, language)
            wall += time.perf_counter() - begin
            s, e, m = errors(words, spans)
            starts, ends, missing = starts + s, ends + e, missing + m
            reference = normalize(" ".join(span[4] for span in spans), language)
            out = jiwer.process_words(reference, normalize(text, language) or "-")
            wer_num += out.substitutions + out.deletions + out.insertions
            wer_den += len(reference.split())
        rows.append([name, f"{np.median(starts):.3f}", f"{np.percentile(starts, 90):.3f}", f"{np.median(ends):.3f}",
                     f"{np.percentile(ends, 90):.3f}", str(missing), f"{100 * wer_num / wer_den:.2f}", f"{wall:.1f}"])
    clips = sum(len(spans) for _, _, spans in made)
    print(f"{len(made)} recordings, {clips} clips ({args.languages}), bundled:base, greedy, {cpu_name()}, "
          f"{args.threads} threads\n")
    print("\n".join(markdown_table(["system", "first-word start: median |error| s", "p90", "last-word end: median",
                                    "p90", "clips without a word", "WER %", "wall s"], rows)))


if __name__ == "__main__":
    main()
