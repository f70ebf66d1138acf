"""The `data` subcommands: argument parsing of the corpus importers, each calling its loader and writing a manifest
(`cli.py` builds the other commands' flags from their config dataclasses; these take a few plain flags)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distilwhisper.cli import comma_list
from distilwhisper.data.fillets import DEV_SHARE, ROOT, TEST_SHARE


def add_data_commands(sub) -> None:
    """`distilwhisper data ...`: corpus importers, offline corpora, statistics and validation."""
    data = sub.add_parser("data", help="build and check manifests").add_subparsers(dest="data_command", required=True)
    _add_corpus_importers(data)
    _add_offline_corpora(data)
    _add_pseudo_label(data)
    p = data.add_parser("stats", help="hours, utterances, speakers per language x split x domain x gender")
    p.add_argument("manifest")
    p.set_defaults(func=_cmd_data_stats)
    p = data.add_parser("validate", help="report every bad line of a manifest")
    p.add_argument("manifest")
    p.set_defaults(func=_cmd_data_validate)


def _write(utterances, out: Path, skipped: list[str]) -> int:
    from distilwhisper.data.manifest import write_manifest

    path = write_manifest(out / "manifest.jsonl" if out.suffix != ".jsonl" else out, utterances)
    for line in skipped[:20]:
        print(f"skipped: {line}", file=sys.stderr)
    if len(skipped) > 20:
        print(f"skipped: ... {len(skipped) - 20} more", file=sys.stderr)
    print(f"wrote {len(utterances)} utterances to {path}" + (f" ({len(skipped)} skipped)" if skipped else ""))
    return 0


def _cmd_data_commonvoice(args: argparse.Namespace) -> int:
    from distilwhisper.data.commonvoice import load_common_voice

    utts, skipped, notes = load_common_voice(args.folder, tuple(args.splits.split(",")), args.language,
                                             args.max_train, args.order == "votes", args.max_eval)
    for note in notes:
        print(note)
    return _write(utts, Path(args.out), skipped)


def _cmd_data_fleurs(args: argparse.Namespace) -> int:
    from distilwhisper.data.fleurs import load_fleurs

    utts, skipped = load_fleurs(args.folder, tuple(args.splits.split(",")), args.language)
    return _write(utts, Path(args.out), skipped)


def _cmd_data_folder(args: argparse.Namespace) -> int:
    from distilwhisper.data.folder import load_folder

    utts, skipped, counts = load_folder(args.folder, args.language, args.table, args.path_column, args.text_column,
                                        (args.dev, args.test), args.seed, args.unlabelled)
    print("rows per split: " + ", ".join(f"{split or 'none'} {n}" for split, n in sorted(counts.items())))
    return _write(utts, Path(args.out), skipped)


def _cmd_data_hf(args: argparse.Namespace) -> int:
    from distilwhisper.data.hf import load_hf_dataset

    out = Path(args.out)
    utts = load_hf_dataset(args.source, out if out.suffix != ".jsonl" else out.parent, args.language, args.split,
                           args.config, args.audio_column, args.text_column, args.limit)
    return _write(utts, out, [])


def _cmd_data_asterisk(args: argparse.Namespace) -> int:
    from distilwhisper.data.asterisk import import_asterisk

    utts, stats = import_asterisk(args.languages.split(","), args.out, args.max_per_language)
    for lang, st in stats.items():
        print(f"{lang}: {st.written} prompts, skipped {st.no_transcript} without transcript, "
              f"{st.not_speech} non-speech, {st.too_long} over 30 s")
    return _write(utts, Path(args.out), [])


def _cmd_data_fillets(args: argparse.Namespace) -> int:
    from distilwhisper.data.fillets import load_fillets

    utterances, skipped = [], []
    for language in comma_list(args.languages):
        utts, bad = load_fillets(language, args.root, args.seed, args.dev_levels, args.test_levels)
        utterances += utts
        skipped += bad
    return _write(utterances, Path(args.out), skipped)


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from distilwhisper.data.synth import synth_corpus

    path = synth_corpus(args.languages.split(","), args.per_language, args.out, args.seed,
                        tuple(args.conditions.split(",")), args.workers, test=args.test)
    print(f"wrote {path}")
    return _cmd_data_stats(argparse.Namespace(manifest=str(path)))


def _cmd_data_pseudo_label(args: argparse.Namespace) -> int:
    import torch

    from distilwhisper.data.pseudo_label import pseudo_label
    from distilwhisper.quantize import load_variant

    if args.threads:
        torch.set_num_threads(args.threads)
    teacher = load_variant(args.teacher, args.precision, threads=args.threads).decoder
    student = load_variant(args.student, args.precision, threads=args.threads).decoder
    path, counts, bad = pseudo_label(args.manifest, teacher, student, args.teacher, args.out, args.relabel,
                                     args.max_disagreement,
                                     args.batch_size)
    for line in bad[:20]:
        print(f"skipped: {line}", file=sys.stderr)
    print(f"wrote {path}: {counts.kept_human} rows with their own text, {counts.pseudo_labelled} pseudo-labelled; "
          f"dropped {counts.dropped_disagreement} (teacher-student WER above {args.max_disagreement}), "
          f"{counts.dropped_empty} (teacher wrote nothing), {counts.bad_lines} bad line(s)")
    return 0


def max_disagreement_limit(text: str) -> float | None:
    """--max-disagreement (and the pseudo-label benchmark's --filters): a WER (0.1 = 10 %) or `none`."""
    if text.lower() == "none":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a WER such as 0.1, or none; not {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"a WER cannot be negative ({text})")
    return value


def _add_pseudo_label(data) -> None:
    p = data.add_parser("pseudo-label", help="teacher transcripts for rows without text, filtered by agreement",
                        description="Transcribe the rows without text (all with --relabel) with a teacher and a "
                                    "student model; keep the teacher's text where the two agree (teacher-student "
                                    "WER at most --max-disagreement). Resumable: rerun the same command.")
    p.add_argument("manifest", help="a manifest whose rows without text are to be labelled (`data folder "
                                    "--unlabelled` writes one)")
    p.add_argument("--teacher", required=True, help="model reference or `train` run folder (any method)")
    p.add_argument("--student", default="bundled:base",
                   help="the model whose transcript the teacher's is checked against (default bundled:base)")
    p.add_argument("--out", required=True, help="the manifest to write (.jsonl)")
    p.add_argument("--relabel", action="store_true", help="label every row (the human text kept as human_text)")
    p.add_argument("--max-disagreement", default=0.1, type=max_disagreement_limit,
                   help="drop rows whose student transcript differs from the teacher's by more than this WER "
                        "(default 0.1, distil-whisper's threshold; none keeps all)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="fp32", help="fp32, bf16, ... (as eval's --precision)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.set_defaults(func=_cmd_data_pseudo_label)


def _cmd_data_stats(args: argparse.Namespace) -> int:
    from distilwhisper.data.stats import manifest_stats, stats_markdown

    rows, bad = manifest_stats(args.manifest)
    print(stats_markdown(rows))
    if bad:
        print(f"{bad} bad line(s) left out (see `distilwhisper data validate`)")
    return 0


def _cmd_data_validate(args: argparse.Namespace) -> int:
    from distilwhisper.data.manifest import read_manifest

    good, problems = read_manifest(args.manifest)
    for line, msg in problems:
        print(f"{args.manifest}:{line}: {msg}")
    print(f"{len(good)} good line(s), {len(problems)} bad")
    return 1 if problems else 0


def _add_corpus_importers(data) -> None:
    """`data commonvoice|fleurs|hf`: published corpora in their own layouts."""
    p = data.add_parser("commonvoice", help="Common Voice language folder -> manifest")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--splits", default="train,dev,test")
    p.add_argument("--language", help="Whisper code (default: from the locale column)")
    p.add_argument("--max-train", type=int, help="keep this many training rows (the paper: 3000, 10000 or 28000 "
                   "per language); dev and test stay whole")
    p.add_argument("--order", choices=("votes", "file"), default="votes",
                   help="which training rows --max-train keeps: most up-voted, then fewest down-votes (the paper), or "
                        "the first in file order (default votes)")
    p.add_argument("--max-eval", type=int, help="also cap dev and test (first rows in file order; default: whole)")
    p.set_defaults(func=_cmd_data_commonvoice)
    p = data.add_parser("fleurs", help="FLEURS language folder (e.g. ca_es/) -> manifest")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--splits", default="test")
    p.add_argument("--language", help="Whisper code (default: from the folder name)")
    p.set_defaults(func=_cmd_data_fleurs)
    p = data.add_parser("folder", help="your own recordings -> manifest: an audiofolder (metadata.csv/.jsonl), audio "
                        "with same-name .txt transcripts, or a CSV/TSV of paths and texts (--table)")
    p.add_argument("folder")
    p.add_argument("--language", required=True, help="Whisper code of the recordings")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--table", help="a CSV or TSV (relative to the folder) with a path and a text column")
    p.add_argument("--path-column", default="file_name", help="--table's column of audio paths (default file_name)")
    p.add_argument("--text-column", help="the text column (default: transcription, text or sentence)")
    p.add_argument("--dev", type=float, default=0.1, help="without a split column: share of speakers in dev")
    p.add_argument("--test", type=float, default=0.1, help="without a split column: share of speakers in test")
    p.add_argument("--seed", type=int, default=0, help="seed of the speaker split")
    p.add_argument("--unlabelled", action="store_true",
                   help="import audio without a transcript (empty text) for `data pseudo-label`, instead of skipping it")
    p.set_defaults(func=_cmd_data_folder)
    p = data.add_parser("hf", help="Hugging Face dataset (save_to_disk folder, or hub name online) -> manifest")
    p.add_argument("source")
    p.add_argument("--out", required=True, help="output folder (audio is written there when not on disk)")
    p.add_argument("--language", required=True)
    p.add_argument("--split", default="test")
    p.add_argument("--config")
    p.add_argument("--audio-column", default="audio")
    p.add_argument("--text-column")
    p.add_argument("--limit", type=int)
    p.set_defaults(func=_cmd_data_hf)


def _add_offline_corpora(data) -> None:
    """`data asterisk|fillets|synth`: speech that installs from Debian's packages, offline."""
    p = data.add_parser("asterisk", help="Debian asterisk-core-sounds prompts (real speech, offline) -> manifest")
    p.add_argument("--languages", default="en,es")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-per-language", type=int)
    p.set_defaults(func=_cmd_data_asterisk)
    p = data.add_parser("fillets", help="Fish Fillets NG acted dialogue (Debian fillets-ng-data-cs: real Czech "
                        "speech, offline) with the English line of each utterance -> manifest")
    p.add_argument("--languages", default="cs", help="voice languages (Debian fillets-ng-data-<lang>; default cs)")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--root", default=str(ROOT), help=f"the game's data folder (default: {ROOT})")
    p.add_argument("--seed", type=int, default=0, help="seed of the level (scene) split")
    p.add_argument("--dev-levels", type=float, default=DEV_SHARE,
                   help=f"share of levels whose main-voice lines are dev (default: {DEV_SHARE})")
    p.add_argument("--test-levels", type=float, default=TEST_SHARE,
                   help=f"share of levels whose main-voice lines are test (default: {TEST_SHARE}); minor characters "
                   "are always a test set of their own (domain held-out-characters)")
    p.set_defaults(func=_cmd_data_fillets)
    p = data.add_parser("synth", help="offline TTS corpus (Festival, espeak-ng) with speaker metadata and "
                        "in-domain / out-of-domain voices")
    p.add_argument("--languages", required=True, help="comma-separated Whisper codes, e.g. ca,cs")
    p.add_argument("--per-language", type=int, default=40, help="sentences per language (each read once; "
                   "50%% train, 10%% dev, 20%% in-domain test, 20%% out-of-domain test)")
    p.add_argument("--test", type=int,
                   help="fixed size of each test set instead of 20%% (dev: a tenth of the rest, at most --test)")
    p.add_argument("--out", required=True, help="output folder (rerun to finish an interrupted build)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--conditions", default="clean",
                   help="acoustic conditions assigned round-robin: clean, noise:SNR_DB, speed:FACTOR, "
                        "pitch:CENTS, reverb:0-100 (e.g. clean,noise:10)")
    p.add_argument("--workers", type=int, default=2, help="parallel synthesis processes")
    p.set_defaults(func=_cmd_data_synth)
