"""Long-form transcription side by side: this toolkit (torch and CTranslate2 backends) against faster-whisper on the
same bundled whisper-base weights, on real recordings of several minutes; and language detection per language.

Recordings: distinct asterisk telephone prompts (real speech, en and es) joined with pauses of 0.3-1.0 s (seeded)
until each reaches its length; the reference is the prompts' transcripts in order.  Rows, all greedy with the
language given and without temperature fallback, same threads:
  - distilwhisper fp32 (torch), ct2-float32, ct2-int8 and, on CPUs with bf16 units (AVX-512 BF16, AMX), bf16
    (torch; `transcribe`'s default there for windows cut at pauses): windows cut at pauses, decoded in batches
    (`Transcriber`), and with `sequential=True`: Whisper's algorithm with timestamp tokens, conditioned on the
    previous text;
  - faster-whisper `WhisperModel.transcribe` on the same CTranslate2 directory, float32 and int8: Whisper's
    sequential algorithm with timestamp tokens, conditioned on the previous text (its default), no VAD; and its
    `BatchedInferencePipeline` (Silero VAD chunks decoded in batches, float32);
  - the same prompts decoded one by one (batched, torch): the bound a long-form method should reach.
Prints WER of the whole transcript against the whole reference, its deleted and inserted words (beyond those of
the clips decoded one by one, they are words lost or repeated at window seams), wall seconds, the real-time factor
and the time relative to faster-whisper; then the share of clips (single prompts, the recordings' first 30 s, and single lines
of real Czech dialogue from Fish Fillets NG) whose language is detected right, per language, for distilwhisper and
faster-whisper.

    .venv/bin/python benchmarks/longform.py [--minutes 3,6] [--languages en,es] [--threads 2] [--split dev]
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import jiwer
import numpy as np
import torch

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.data.fillets import load_fillets
from distilwhisper.hub import resolve_ct2_dir
from distilwhisper.normalize import normalize
from distilwhisper.quantize import cpu_name, has_bf16_units
from distilwhisper.transcribe import Transcriber, resolve_precision
from common import comma_list, number


def recordings(clips: list, minutes: list[float], seed: int,
               after: list[float] = ()) -> list[tuple[np.ndarray, str, list]]:
    """(audio, reference, clips used) per length: distinct prompts in a seeded order, never reused; with `after`,
    made from the prompts that recordings of those lengths leave (the dev split: no prompt of the test one)."""
    rng = random.Random(seed)
    pool = clips[:]
    rng.shuffle(pool)
    made = []
    for length in [*after, *minutes]:
        parts, used, seconds = [], [], 0.0
        while seconds < 60 * length and pool:
            clip = pool.pop()
            audio = load_audio(clip.audio)
            pause = np.zeros(int(SAMPLE_RATE * rng.uniform(0.3, 1.0)), np.float32)
            parts += [audio, pause]
            used.append(clip)
            seconds += (len(audio) + len(pause)) / SAMPLE_RATE
        if seconds < 60 * length:
            raise SystemExit(f"not enough distinct prompts for {length} min ({seconds / 60:.1f} min made)")
        made.append((np.concatenate(parts), " ".join(c.text for c in used), used))
    return made[len(after):]


def edits(reference: str, hypothesis: str, language: str) -> tuple[int, int, int, int]:
    """(word errors, reference words, deletions, insertions) of normalised texts."""
    ref, hyp = normalize(reference, language), normalize(hypothesis, language)
    if not hyp.split():
        return len(ref.split()), len(ref.split()), len(ref.split()), 0
    out = jiwer.process_words(ref, hyp)
    return out.substitutions + out.deletions + out.insertions, len(ref.split()), out.deletions, out.insertions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", default="3,6", help="recording lengths per language")
    parser.add_argument("--split", choices=("test", "dev"), default="test", help="test: the reported recordings; "
                        "dev: recordings of the prompts the test ones (--test-minutes) leave, to choose settings on")
    parser.add_argument("--test-minutes", default="3,6", help="with --split dev: the test recordings' lengths")
    parser.add_argument("--languages", default="en,es", help="languages of the long recordings")
    parser.add_argument("--detect", default="en,es,fr,it,ru", help="languages of the detection test (prompts; "
                        "'' skips it)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench-out/longform")
    args = parser.parse_args()
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    torch.set_num_threads(args.threads)
    minutes = comma_list(args.minutes, "--minutes", number)
    after = comma_list(args.test_minutes, "--test-minutes", number) if args.split == "dev" else []
    languages = comma_list(args.languages, "--languages")
    precisions = ["fp32", "ct2-float32", "ct2-int8"] + (["bf16"] if has_bf16_units() else [])  # emulated bf16 is
    # 3-5x slower than fp32; CTranslate2 has no bf16 on CPU, so faster-whisper runs float32 and int8
    ours = {f"distilwhisper {p} ({'ct2' if p.startswith('ct2-') else 'torch'})":
            Transcriber("bundled:base", precision=p, threads=args.threads) for p in precisions}
    ct2_dir = str(resolve_ct2_dir("bundled:base"))
    faster = WhisperModel(ct2_dir, device="cpu", compute_type="float32", cpu_threads=args.threads)
    faster_int8 = WhisperModel(ct2_dir, device="cpu", compute_type="int8", cpu_threads=args.threads)
    pipeline = BatchedInferencePipeline(model=faster)  # its Silero VAD ships inside the package
    # first calls pay one-off set-up (kernels, allocations): one prompt each, not timed
    warm = load_audio(import_asterisk(languages[:1], Path(args.out) / "corpus")[0][0].audio)
    for transcriber in ours.values():
        transcriber(warm, languages[0], fallback=False)
    for model in (faster, faster_int8):
        list(model.transcribe(warm, language=languages[0], beam_size=1, vad_filter=False)[0])
    print(f"{args.split} recordings; bundled:base, greedy, language given, no fallback; {args.threads} threads; "
          f"CPU: {cpu_name()}; transcribe's default precision here: {resolve_precision('auto')} (windows cut at "
          f"pauses), {resolve_precision('auto', sequential=True)} (--sequential)\n")
    totals: dict[str, list[float]] = {}
    detections: dict[str, dict[str, list[int]]] = {}
    lines = ["| language | minutes | system | WER % | deleted / inserted words (one by one: " +
             "the bound) | wall s | RTF | time vs faster-whisper |", "|---|---|---|---|---|---|---|---|"]
    for language in languages:
        clips, _ = import_asterisk([language], Path(args.out) / "corpus")
        for audio, reference, used in recordings(clips, minutes, args.seed, after):
            duration = len(audio) / SAMPLE_RATE
            rows = {}
            for name, transcriber in ours.items():
                start = time.perf_counter()
                result = transcriber(audio, language, batch_size=args.batch_size, fallback=False)
                rows[name] = (result.text, time.perf_counter() - start)
            for name, transcriber in ours.items():
                start = time.perf_counter()
                result = transcriber(audio, language, fallback=False, sequential=True)
                rows[name.replace("distilwhisper", "distilwhisper sequential")] = (result.text,
                                                                                   time.perf_counter() - start)
            start = time.perf_counter()
            segments, _ = faster.transcribe(audio, language=language, beam_size=1, temperature=0.0,
                                            vad_filter=False)
            text = " ".join(s.text.strip() for s in segments)
            rows["faster-whisper (sequential)"] = (text, time.perf_counter() - start)
            start = time.perf_counter()
            segments, _ = faster_int8.transcribe(audio, language=language, beam_size=1, temperature=0.0,
                                                 vad_filter=False)
            text = " ".join(s.text.strip() for s in segments)
            rows["faster-whisper int8 (sequential)"] = (text, time.perf_counter() - start)
            start = time.perf_counter()
            segments, _ = pipeline.transcribe(audio, language=language, beam_size=1, temperature=0.0,
                                              batch_size=args.batch_size)
            text = " ".join(s.text.strip() for s in segments)
            rows["faster-whisper BatchedInferencePipeline"] = (text, time.perf_counter() - start)
            start = time.perf_counter()
            decoder = ours["distilwhisper fp32 (torch)"].decoder
            audios = [load_audio(c.audio) for c in used]
            texts = [t.text for i in range(0, len(audios), args.batch_size)
                     for t in decoder.transcribe(audios[i:i + args.batch_size], language)]
            rows["prompts one by one (torch)"] = (" ".join(texts), time.perf_counter() - start)
            base = rows["faster-whisper (sequential)"][1]
            for name, (text, seconds) in rows.items():
                errors, words, deleted, inserted = edits(reference, text, language)
                total = totals.setdefault(name, [0, 0, 0.0, 0.0, 0, 0])
                for k, value in enumerate((errors, words, seconds, duration, deleted, inserted)):
                    total[k] += value
                lines.append(f"| {language} | {duration / 60:.1f} | {name} | {100 * errors / words:.1f} | "
                             f"{deleted} / {inserted} | {seconds:.1f} | {seconds / duration:.3f} | "
                             f"{seconds / base:.2f}x |")
            print(lines[-1], flush=True)
            first = audio[:30 * SAMPLE_RATE]
            _, info = faster.transcribe(first, beam_size=1, temperature=0.0, vad_filter=False)
            for name, transcriber in ours.items():
                detections.setdefault(f"{name}, recording", {}).setdefault(language, []).append(
                    int(transcriber(first, None, batch_size=1, fallback=False).language == language))
            detections.setdefault("faster-whisper, recording", {}).setdefault(language, []).append(
                int(info.language == language))
    # single clips: the asterisk prompts of every language, and real acted Czech dialogue (Fish Fillets NG)
    detect = comma_list(args.detect, "--detect")
    singles = {lang: [load_audio(c.audio) for c in import_asterisk([lang], Path(args.out) / "corpus")[0][:64]]
               for lang in detect}
    if detect:
        singles["cs"] = [load_audio(u.audio) for u in load_fillets("cs")[0][:64]]
    for language, audios in singles.items():
        for name, transcriber in ours.items():
            detected = [max(p, key=p.get) for i in range(0, len(audios), args.batch_size)
                        for p in transcriber.decoder.language_probabilities(audios[i:i + args.batch_size])]
            detections.setdefault(f"{name}, single clips", {})[language] = [int(d == language) for d in detected]
        detections.setdefault("faster-whisper, single clips", {})[language] = [
            int(faster.detect_language(audio=a)[0] == language) for a in audios]
    languages = list(singles) or languages  # without single clips: the recordings' languages
    print("\n" + "\n".join(lines))
    print("\n| system | WER % (all recordings) | deleted / inserted | wall s | time vs faster-whisper |\n"
          "|---|---|---|---|---|")
    base = totals["faster-whisper (sequential)"][2]
    for name, (errors, words, seconds, _, deleted, inserted) in totals.items():
        print(f"| {name} | {100 * errors / words:.2f} | {deleted} / {inserted} | {seconds:.1f} | "
              f"{seconds / base:.2f}x |")
    int8 = totals["faster-whisper int8 (sequential)"][2]
    print(f"\nint8 on both engines: distilwhisper ct2-int8 windows cut at pauses take "
          f"{totals['distilwhisper ct2-int8 (ct2)'][2] / int8:.2f}x faster-whisper int8 sequential's time")
    print("\n| language detection | " + " | ".join(languages) + " |\n" + "|---" * (len(languages) + 1) + "|")
    for name, per_language in detections.items():
        print(f"| {name} | " + " | ".join(f"{100 * np.mean(per_language[lang]):.0f} % of {len(per_language[lang])}"
                                          if lang in per_language else "-" for lang in languages) + " |")


if __name__ == "__main__":
    main()
