"""Pseudo-labels on real Czech (issue #38): do teacher transcripts of untranscribed recordings help the experts?

A practitioner holds recordings of which only some are transcribed.  Here a seeded random half of the demo's real
Czech training lines loses its transcripts (`--seed`), and the demo's 300-step recipe runs on the rest:
  1. FT on the labelled lines alone: the specialist.  It pseudo-labels the hidden half (`distilwhisper data
     pseudo-label`'s function, agreement checked against the bundled base model) and teaches every DistilWhisper
     run below; the hidden transcripts never reach it.
  2. DistilWhisper (specialist-taught, the demo's rate, steps and dev-chosen checkpoint) on
       - `labelled`: the labelled half alone;
       - `pseudo<=F`: the labelled half and the pseudo-labels whose teacher-student disagreement is at most F, for
         each F of `--filters` (`none`: every pseudo-label); the F with the lowest kept dev WER is the method's
         setting (the dev lines are the demo's, human-transcribed, in every run);
       - `all labels`: every line with its own transcript (what transcribing the hidden half by hand would give).
  3. Each run decodes the real Czech test lines (held-out scenes, in-domain) and the held-out-character lines once;
     the table gives WER per run and the paired change against `labelled` (bootstrap over utterances and over whole
     scenes).  Pseudo-label quality (WER against the hidden human transcripts) is printed per filter.
Catalan (synthetic voices) trains in every run as in the demo and is not tested here: the question is real speech.

    .venv/bin/python benchmarks/pseudo_labels.py --out bench-out/pseudo [--seed 0] [--filters 0.1,0.3,none]

Resumes like the demo (rerun the same command): finished runs, pseudo-labels and decodes are reused.  On a machine
with cores to spare, `--runs labelled --train-only` and `--runs pseudo-none --train-only` (etc.) in parallel
processes train the runs at once; the same command without `--train-only` then prints the tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

from distilwhisper.data.commands import max_disagreement_limit
from distilwhisper.data.manifest import Utterance, read_manifest, write_manifest
from distilwhisper.data.pseudo_label import agrees, pseudo_label
from distilwhisper.quantize import cpu_name, load_variant
from distilwhisper.report import markdown_table
from distilwhisper.studies.comparison import language_markdown, language_table
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import HELD_OUT, IN_DOMAIN, Corpus, build_corpus
from distilwhisper.studies.experiments import Planned, System, evaluate_base, evaluate_run, train_system
from distilwhisper.train.caches import EncoderCache
from common import comma_list, corpus_wer

LANGUAGE = "cs"
QUALITY_LIMITS = (0.1, 0.2, 0.5, None)  # pseudo-label quality is printed at these limits, trained or not


def hidden_ids(train: list[Utterance], seed: int) -> set[str]:
    """The seeded random half of the real Czech training lines whose transcripts are hidden."""
    lines = sorted(u.id for u in train if u.language == LANGUAGE and u.split == "train")
    return set(random.Random(seed).sample(lines, len(lines) // 2))


def limit(text: str) -> float | None:
    """A --filters item, read as `data pseudo-label --max-disagreement` reads it (`none`: every pseudo-label)."""
    try:
        return max_disagreement_limit(text)
    except argparse.ArgumentTypeError as err:
        raise ValueError(str(err)) from None


def label_quality(rows: list[Utterance], truth: dict[str, str]) -> str:
    """Pseudo-labelled rows of a manifest, and their WER against the hidden human transcripts."""
    labelled = [u for u in rows if u.id in truth]
    return (f"{len(labelled)} lines, WER {corpus_wer((truth[u.id], u.text, u.language) for u in labelled):.1f}"
            if labelled else "0 lines")


def test_corpus(corpus: Corpus, out: Path) -> Corpus:
    """The real Czech test sets alone (in-domain held-out scenes, held-out characters): one decode per run."""
    rows = [u for u in read_manifest(corpus.evaluation)[0]
            if u.language == LANGUAGE and u.domain in (IN_DOMAIN, HELD_OUT) and u.source == "fillets"]
    return Corpus(corpus.train, write_manifest(out / "corpus" / "real-cs-test.jsonl", rows, relative=False), None)


def folder_name(key: str) -> str:
    """A run's key as a folder name ('pseudo<=0.1' -> 'pseudo-0.1', 'all labels' -> 'all-labels')."""
    return key.replace("<=", "-").replace(" ", "-")


def pseudo_key(max_disagreement: float | None) -> str:
    return f"pseudo<={'none' if max_disagreement is None else f'{max_disagreement:g}'}"


def labelled_half(unlabelled: Path, teacher: str, student: str, folder: Path, threads: int | None) -> list[Utterance]:
    """The hidden half pseudo-labelled by the specialist, every row kept with its disagreement with the base model
    (one decode serves every limit); resumed like `data pseudo-label`."""
    pseudo_path = folder / "pseudo.jsonl"
    if not pseudo_path.exists():
        path, _, _ = pseudo_label(unlabelled, load_variant(teacher, "fp32", threads=threads).decoder,
                                  load_variant(student, "fp32", threads=threads).decoder, teacher,
                                  folder / "pseudo.tmp.jsonl", max_disagreement=None)
        path.rename(pseudo_path)
    return read_manifest(pseudo_path)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("bench-out/pseudo"))
    parser.add_argument("--seed", type=int, default=0, help="which half is hidden, and the training seed")
    parser.add_argument("--filters", default="0.1,none",
                        help="teacher-student disagreement limits to train with, chosen on dev (default 0.1 = "
                             "distil-whisper's, and none)")
    parser.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    parser.add_argument("--runs", help="the DistilWhisper runs to train, decode and report (comma list of "
                                       "labelled, pseudo-F for each --filters F, all-labels; default: all)")
    parser.add_argument("--train-only", action="store_true",
                        help="train and decode --runs and print no table: runs of one seed train in parallel "
                             "processes, each with its own --runs; a later call without it prints")
    args = parser.parse_args()
    limits = comma_list(args.filters, "--filters", limit)
    keys = ["labelled", *map(pseudo_key, limits), "all labels"]
    if args.runs:
        chosen_runs = comma_list(args.runs, "--runs", known=[folder_name(k) for k in keys])
        keys = [k for k in keys if folder_name(k) in chosen_runs]
    start, out = time.perf_counter(), args.out
    config = DemoConfig.make(out=str(out), threads=args.threads)  # the demo's corpus and 300-step recipe
    corpus = build_corpus(config, out)
    tests = test_corpus(corpus, out)
    train = read_manifest(corpus.train)[0]
    hidden = hidden_ids(train, args.seed)
    truth = {u.id: u.text for u in train if u.id in hidden}
    folder = out / "corpus" / f"seed-{args.seed}"
    plans = {"labelled": write_manifest(folder / "labelled.jsonl", [u for u in train if u.id not in hidden],
                                        relative=False), "all labels": corpus.train}
    unlabelled = write_manifest(folder / "unlabelled.jsonl", [dataclasses.replace(u, text="") if u.id in hidden
                                                               else u for u in train], relative=False)
    encodings = EncoderCache()
    specialist = train_system(Planned(f"seed-{args.seed}/ft-labelled", "ft", "FT", seed=args.seed), config,
                              plans["labelled"], out, encodings)
    teacher = str(specialist.layout.root)
    if any(k.startswith("pseudo") for k in keys):
        pseudo = labelled_half(unlabelled, teacher, config.student, folder, args.threads)
        quality = [["none" if f is None else f"{f:g}", label_quality([u for u in pseudo if agrees(u, f)], truth)]
                   for f in sorted({*QUALITY_LIMITS, *limits}, key=lambda f: float("inf") if f is None else f)]
        print("\n".join(markdown_table(["disagreement limit", "pseudo-labels kept: lines, WER vs hidden "
                                        "transcripts"], quality)), flush=True)
        for f in limits:
            plans[pseudo_key(f)] = write_manifest(folder / f"{folder_name(pseudo_key(f))}.jsonl",
                                                  [u for u in pseudo if agrees(u, f)], relative=False)

    def distilled(key: str) -> tuple[System, str]:
        """DistilWhisper trained on the run's manifest and decoded on the tests: its row, and its kept dev WER
        (pooled, then per language at each language's kept step: real Czech apart from synthetic Catalan)."""
        run = train_system(Planned(f"seed-{args.seed}/{folder_name(key)}", "distilwhisper", "DistilWhisper",
                                   teacher=teacher, seed=args.seed), config, plans[key], out, encodings)
        system = evaluate_run(key, run, out / "eval" / f"seed-{args.seed}" / folder_name(key), out, config,
                              tests)
        steps, counts = run.state.best_steps, run.state.dev_counts
        kept = ", ".join(f"{lang} {100 * counts[str(step)][lang][0] / counts[str(step)][lang][1]:.1f} (step {step})"
                         for lang, step in sorted(steps.items()))
        return dataclasses.replace(system, name=f"DistilWhisper, {key}"), f"{run.state.best_dev_wer:.2f} ({kept})"

    runs = {key: distilled(key) for key in keys}
    if args.train_only:
        return
    dev = {key: dev_wer for key, (_, dev_wer) in runs.items()}
    chosen = min((k for k in dev if k.startswith("pseudo")), key=lambda k: float(dev[k].split()[0]), default=None)
    base = System(f"{config.student} fp32", "base", out / "eval" / "base-fp32")
    evaluate_base(base, config, tests, "fp32")
    order = [base, *(system for system, _ in runs.values())]
    lines = sum(u.language == LANGUAGE and u.split == "train" for u in train)
    print(f"\nPseudo-labels, real Czech: {len(hidden)} of {lines} training lines' "
          f"transcripts hidden (seed {args.seed}); specialist FT on the rest ({config.steps} steps, lr "
          f"{config.method_lr('ft'):g}), DistilWhisper {config.steps} steps lr {config.lr:g}, training seed "
          f"{args.seed}, {'bf16' if config.bf16 else 'fp32'}; {cpu_name()}; "
          f"{(time.perf_counter() - start) / 60:.0f} min (the runs already done are reused)\n")
    print("Kept dev WER (pooled cs + ca dev lines, the checkpoint and setting choice; per language): " + "; ".join(
        f"{key} {wer}" for key, wer in dev.items()) + (f"; pseudo-label setting chosen on dev: {chosen}."
                                                           if chosen else "."))
    print("\nAgainst the base model:\n")
    print("\n".join(language_markdown(language_table(order))))
    if "labelled" in runs:
        print("\nAgainst DistilWhisper on the labelled half alone:\n")
        print("\n".join(language_markdown(language_table(order[1:]))))


if __name__ == "__main__":
    main()
