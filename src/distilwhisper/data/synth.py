"""Build an offline multilingual speech corpus with text-to-speech: `distilwhisper data synth`.

Per language: sentences from installed translations are shuffled with the seed and each used once; the first part
goes to the in-domain voices (split into train/dev/test, so splits never share a sentence), the rest to the
out-of-domain voices (test only).  By default the splits are shares of `per_language`; with `test` the two test sets
have a fixed size and a larger corpus only grows train (dev: a tenth of the rest, at most `test`), so evaluation
cost stays put.  Voices are assigned round-robin within a domain, so genders are balanced.
Finished wavs are kept: a rerun only synthesises what is missing.
"""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from distilwhisper.audio import MAX_SECONDS, SAMPLE_RATE
from distilwhisper.data.manifest import Utterance, write_manifest
from distilwhisper.data.sentences import load_sentences
from distilwhisper.data.tts import (IN_DOMAIN, OUT_OF_DOMAIN, TTSError, Voice, apply_condition, espeak_variants,
                                    installed_languages, synthesize, voices_for, write_atomic)
from distilwhisper.io import exclusive

# Shares of a language's sentences: in-domain train / dev / test, out-of-domain test
SHARES = (("train", IN_DOMAIN, 0.5), ("dev", IN_DOMAIN, 0.1), ("test", IN_DOMAIN, 0.2), ("test", OUT_OF_DOMAIN, 0.2))


@dataclass
class Job:
    utterance: Utterance
    voice: Voice
    condition: str
    seed: int


def split_counts(per_language: int, test: int | None = None) -> list[int]:
    """Sentences per entry of SHARES: the shares of `per_language`, or with `test` that many per test set and
    dev a tenth of the rest, at most `test` (dev only picks the checkpoint; each dev evaluation costs decoding)."""
    if test is None:
        counts = [int(round(share * per_language)) for *_, share in SHARES]
        counts[0] += per_language - sum(counts)
        return counts
    rest = per_language - 2 * test
    dev = min(int(round(SHARES[1][2] * rest)), test)
    if test < 1 or rest - dev < 1:
        raise ValueError(f"{per_language} sentences per language cannot hold two test sets of {test} and a "
                         "training set: raise per_language or lower test")
    return [rest - dev, dev, test, test]


def plan(language: str, per_language: int, seed: int, conditions: tuple[str, ...] = ("clean",),
         out_dir: Path = Path("."), test: int | None = None, more_voices: tuple[str, ...] = ()) -> list[Job]:
    """Which sentence each voice reads, deterministically for a seed.  `more_voices`: espeak-ng variants (e.g. f2,
    m3) that join the in-domain voices, so the training lines are read by more speakers; the sentences do not
    change, and the out-of-domain voices stay unheard in training."""
    installed = espeak_variants() if more_voices else {}
    unknown = [variant for variant in more_voices if variant not in installed]
    if unknown:
        raise TTSError(f"espeak-ng has no voice variant {', '.join(unknown)} (installed: "
                       f"{', '.join(sorted(installed)) or 'none; apt-get install espeak-ng'})")
    voices = voices_for(language) + [Voice("espeak-ng", f"{language}+{variant}", language, installed[variant],
                                           "adult", IN_DOMAIN) for variant in more_voices]
    if not voices:
        raise TTSError(f"no TTS voice installed for {language!r}; languages with voices: "
                       f"{', '.join(installed_languages()) or 'none (apt-get install espeak-ng festival)'}")
    for domain in (IN_DOMAIN, OUT_OF_DOMAIN):
        if not any(v.domain == domain for v in voices):
            raise TTSError(f"no {domain} voice for {language!r} (have: {', '.join(v.speaker for v in voices)})")
    sentences = load_sentences(language)
    if len(sentences) < per_language:
        raise ValueError(f"{language}: only {len(sentences)} usable sentences, asked for {per_language}")
    rng = random.Random(f"{seed}-{language}")
    chosen = rng.sample(sentences, per_language)
    counts = split_counts(per_language, test)
    jobs, start = [], 0
    for (split, domain, _), count in zip(SHARES, counts):
        pool = [v for v in voices if v.domain == domain]
        for k, text in enumerate(chosen[start:start + count]):
            index = start + k
            voice = pool[k % len(pool)]
            condition = conditions[index % len(conditions)]
            uid = f"synth-{language}-{index:05d}"
            extra = {"engine": voice.engine, "condition": condition}
            utt = Utterance(id=uid, audio=str(out_dir / "audio" / language / f"{uid}.wav"), text=text,
                            language=language, speaker=voice.speaker, gender=voice.gender, age=voice.age,
                            split=split, domain=domain, source="synth", extra=extra)
            jobs.append(Job(utt, voice, condition, seed * 100_003 + index))
        start += count
    return jobs


def _run(job: Job) -> str | None:
    path = Path(job.utterance.audio)
    if path.exists():
        return None
    audio = apply_condition(synthesize(job.voice, job.utterance.text), job.condition, job.seed)
    if len(audio) > MAX_SECONDS * SAMPLE_RATE:
        return f"{job.utterance.id}: {len(audio) / SAMPLE_RATE:.1f} s is over Whisper's 30 s window"
    write_atomic(path, audio)
    return None


def synth_corpus(languages: list[str], per_language: int, out_dir: str | Path, seed: int = 0,
                 conditions: tuple[str, ...] = ("clean",), workers: int = 2, progress: bool = True,
                 test: int | None = None, more_voices: tuple[str, ...] = ()) -> Path:
    """Synthesise (or finish synthesising) the corpus and write `out_dir/manifest.jsonl`; one process at a time per
    folder."""
    out_dir = Path(out_dir)
    with exclusive(out_dir):  # one build at a time per folder
        jobs = [job for lang in languages
                for job in plan(lang, per_language, seed, conditions, out_dir, test, more_voices)]
        for lang in languages:
            (out_dir / "audio" / lang).mkdir(parents=True, exist_ok=True)
        todo = [j for j in jobs if not Path(j.utterance.audio).exists()]
        problems: list[str] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:  # the work is in engine subprocesses
            bar = tqdm(total=len(todo), unit="utt", desc="synthesising", disable=not progress)
            for problem in pool.map(_run, todo):
                if problem:
                    problems.append(problem)
                    tqdm.write(f"skipped {problem}")
                bar.update(1)
            bar.close()
        kept = [j.utterance for j in jobs if Path(j.utterance.audio).exists()]
        return write_manifest(out_dir / "manifest.jsonl", kept)
