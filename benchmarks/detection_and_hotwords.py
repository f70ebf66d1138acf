"""Language detection with a candidate list, and hotwords, on real Czech speech (issue #36).

Lines of Fish Fillets NG's Czech dialogue that the demo already decodes (its dev lines, its in-domain test lines
and its held-out characters; never the reserved confirmation lines), bundled whisper-base, fp32.

Detection: each line is one window; its language as `transcribe` detects it among every language of the model,
among `--candidates` (default cs,sk,pl: Czech and its neighbours), and among cs,sk.  Reported: the share detected as
Czech, and what the others were detected as.  Detection with a DistilWhisper run runs on its shared FFNs, so it is
the base model's (`WhisperDecoder.language_probabilities`).

Hotwords, rule fixed before decoding: a scene's (Fish Fillets level's) glossary is the words of its lines, 4 letters
or longer, that no training line of the demo holds (names, terms and words the demo's training never saw), spelled
as the first line that holds them spells them; its lines are decoded with and without `--hotwords` set to that
glossary (the language given, greedy, the temperature fallback on, as `transcribe` decodes).  Reported: the share
of glossary-word occurrences in the references that the transcript misses (a word counts as written when the
normalised transcript holds it as many times), and the WER of all the lines, with and without.

    .venv/bin/python benchmarks/detection_and_hotwords.py [--candidates cs,sk,pl] [--threads 2]
"""

from __future__ import annotations

import argparse
import collections

import torch

from distilwhisper.audio import load_audio
from distilwhisper.data.manifest import Utterance
from distilwhisper.decoding import DecodingOptions, among
from distilwhisper.normalize import normalize
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets
from distilwhisper.transcribe import Transcriber
from common import comma_list, corpus_wer

LANGUAGE = "cs"
MIN_LETTERS = 4


def lines() -> tuple[list[Utterance], list[Utterance]]:
    """(the demo's Czech training lines, the lines measured here: dev, in-domain test, held-out characters)."""
    train_dev, test, held_out = real_speech_sets(LANGUAGE, DemoConfig(), 0)
    return [u for u in train_dev if u.split == "train"], [u for u in train_dev if u.split == "dev"] + test + held_out


def glossaries(train: list[Utterance], measured: list[Utterance]) -> dict[str, str]:
    """Per scene, its words unseen in training (the rule in the module docstring), as one hotwords string."""
    seen = {w for u in train for w in normalize(u.text, LANGUAGE).split()}
    words: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for u in measured:
        for token in u.text.split():
            norm = normalize(token, LANGUAGE)
            if len(norm) >= MIN_LETTERS and " " not in norm and norm not in seen:
                words[u.extra["level"]].setdefault(norm, token.strip(".,!?;:\"'()…-"))
    return {scene: " ".join(spelled.values()) for scene, spelled in words.items()}


def missed(reference: str, hypothesis: str, glossary: set[str]) -> tuple[int, int]:
    """(glossary-word occurrences of the reference the hypothesis lacks, occurrences in the reference)."""
    wanted = collections.Counter(w for w in normalize(reference, LANGUAGE).split() if w in glossary)
    written = collections.Counter(normalize(hypothesis, LANGUAGE).split())
    return sum(max(0, n - written[w]) for w, n in wanted.items()), sum(wanted.values())


def detection(transcriber: Transcriber, audios: list, candidate_sets: list[tuple[str, ...]]) -> list[list[str]]:
    probabilities = []
    for i in range(0, len(audios), 8):
        probabilities += transcriber.decoder.language_probabilities(audios[i:i + 8])
    return [[max(q, key=q.get) for q in (among(p, c) for c in candidate_sets)] for p in probabilities]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--candidates", default="cs,sk,pl", help="the candidate list of the second detection")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    train, measured = lines()
    audios = [load_audio(u.audio) for u in measured]
    transcriber = Transcriber(precision="fp32")
    print(f"{cpu_name()}, {args.threads} threads, bundled:base fp32; {len(measured)} real Czech lines "
          f"({sum(len(a) for a in audios) / 16000:.0f} s)\n", flush=True)

    candidate_sets = [(), tuple(comma_list(args.candidates, "--candidates")), ("cs", "sk")]
    detected = detection(transcriber, audios, candidate_sets)
    rows = []
    for k, candidates in enumerate(candidate_sets):
        got = collections.Counter(d[k] for d in detected)
        others = ", ".join(f"{lang} {n}" for lang, n in got.most_common() if lang != LANGUAGE) or "-"
        rows.append([",".join(candidates) or "every language (99)", f"{100 * got[LANGUAGE] / len(detected):.1f}",
                     others])
    print("## Detection\n")
    print("\n".join(markdown_table(["candidates", "detected as Czech %", "the others detected as (lines)"], rows)),
          flush=True)

    glossary_of = glossaries(train, measured)
    glossary = {w for g in glossary_of.values() for w in normalize(g, LANGUAGE).split()}
    by_scene = collections.defaultdict(list)
    for u, audio in zip(measured, audios):
        by_scene[u.extra["level"]].append((u, audio))
    table = []
    for name, hot in (("without --hotwords", False), ("--hotwords: the scene's glossary", True)):
        miss, total, pairs = 0, 0, []
        for scene, items in by_scene.items():
            options = DecodingOptions(hotwords=glossary_of.get(scene) if hot else None)
            for (u, _), transcript in zip(items, transcriber.decode([a for _, a in items], LANGUAGE, options)):
                m, n = missed(u.text, transcript.text, glossary)
                miss, total = miss + m, total + n
                pairs.append((u.text, transcript.text, LANGUAGE))
        table.append([name, f"{100 * miss / total:.1f}", str(total), f"{corpus_wer(pairs):.1f}"])
    print(f"\n## Hotwords ({len(glossary_of)} scenes, glossaries of "
          f"{min(len(g.split()) for g in glossary_of.values())}-{max(len(g.split()) for g in glossary_of.values())} "
          "words)\n")
    print("\n".join(markdown_table(["decoding", "glossary words missed %", "glossary-word occurrences", "WER %"],
                                   table)))


if __name__ == "__main__":
    main()
