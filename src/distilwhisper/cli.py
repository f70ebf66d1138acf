"""Command line: argument parsing only; each subcommand calls one public function."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

PRECISIONS = ("fp32", "fp16", "bf16", "int8-dynamic", "int8-weight", "int4-weight", "ct2-int8", "ct2-int8_float32",
              "ct2-float32")  # quantize.PRECISIONS, repeated so --help does not import torch
EPILOG = "Models: bundled:base (offline), a CTranslate2/faster-whisper dir, a local HF dir, or a hub id."


def _cmd_models(args: argparse.Namespace) -> int:
    from distilwhisper.hub import available_models, cache_dir

    print(f"cache: {cache_dir()}")
    for row in available_models():
        print(f"{row['ref']:<28} {row['status']:<36} converted={row['converted']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from distilwhisper.evaluate import evaluate, summary_markdown

    summary = evaluate(args.model, args.data, args.out, language=args.language, batch_size=args.batch_size,
                       beam_size=args.beam_size, limit=args.limit, trim=args.trim, threads=args.threads,
                       experts=args.experts, split=args.split, domain=args.domain, precision=args.precision)
    print(summary_markdown(summary))
    print(f"results: {Path(args.out) / 'results.jsonl'}; summary: {Path(args.out) / 'summary.md'}")
    return 0


def _cmd_bias(args: argparse.Namespace) -> int:
    from distilwhisper.bias import run_bias

    run_bias(args.models.split(","), args.precisions.split(","), args.data.split(","), args.out,
             batch_size=args.batch_size, per_language=args.per_language, trim=args.trim, threads=args.threads)
    print(f"report: {Path(args.out) / 'report.md'} (tables: {args.out}/*.csv, figures: {args.out}/*.png)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from distilwhisper.demo import DemoConfig, run_demo

    config = DemoConfig.make(
        quick=args.quick, languages=args.languages.split(",") if args.languages else None,
        control=args.control.split(",") if args.control else None, out=args.out, student=args.student,
        teacher=args.teacher, compare=args.compare or None, per_language=args.per_language,
        test_per_language=args.test_per_language, steps=args.steps,
        batch_size=args.batch_size, lr=args.lr, scope=args.scope, threads=args.threads)
    run_demo(config)
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from distilwhisper.train import load_config, train

    overrides = {k: getattr(args, k) for k in ("method", "student", "teacher", "train", "dev", "out", "max_steps",
                                                "epochs", "batch_size", "grad_accum", "lr", "scope", "teacher_cache",
                                                "top_k", "eval_every", "save_every", "eval_limit", "seed",
                                                "kd")}
    overrides["languages"] = args.languages.split(",") if args.languages else None
    overrides["bf16"] = True if args.bf16 else None
    overrides["trim"] = True if args.trim else None
    overrides["cache_encoder"] = True if args.cache_encoder else None
    result = train(load_config(args.config, overrides), resume=args.resume)
    print(json.dumps(result.state))
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import torch

    from distilwhisper.audio import load_audio
    from distilwhisper.clsr import attach_experts
    from distilwhisper.decoding import WhisperDecoder
    from distilwhisper.hub import load_model

    if args.experts and not args.language:
        raise ValueError("--experts needs --language: the experts of the language are part of the encoder")
    if args.threads:
        torch.set_num_threads(args.threads)
    model, processor = load_model(args.model)
    if args.experts:
        attach_experts(model, args.experts, [args.language] if args.language else None)
    decoder = WhisperDecoder(model, processor, trim=args.trim)
    for start in range(0, len(args.audio), args.batch_size):
        paths = args.audio[start:start + args.batch_size]
        for path, tr in zip(paths, decoder.transcribe([load_audio(p) for p in paths], args.language,
                                                      beam_size=args.beam_size)):
            print(f"{path}\t{tr.language}\t{tr.text}")
    return 0


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

    utts, skipped = load_common_voice(args.folder, tuple(args.splits.split(",")), args.language, args.max_per_split)
    return _write(utts, Path(args.out), skipped)


def _cmd_data_fleurs(args: argparse.Namespace) -> int:
    from distilwhisper.data.fleurs import load_fleurs

    utts, skipped = load_fleurs(args.folder, tuple(args.splits.split(",")), args.language)
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


def _cmd_data_synth(args: argparse.Namespace) -> int:
    from distilwhisper.data.synth import synth_corpus

    path = synth_corpus(args.languages.split(","), args.per_language, args.out, args.seed,
                        tuple(args.conditions.split(",")), args.workers, test=args.test)
    print(f"wrote {path}")
    return _cmd_data_stats(argparse.Namespace(manifest=str(path)))


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilwhisper", description="Measure and improve multilingual Whisper "
                                     "models per language (DistilWhisper).", epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("models", help="list models available offline")
    p.set_defaults(func=_cmd_models)

    p = sub.add_parser("eval", help="decode a manifest and score WER/CER per language and speaker group",
                       epilog=EPILOG)
    p.add_argument("--model", required=True, help="model reference (default offline: bundled:base)")
    p.add_argument("--data", required=True, help="manifest.jsonl")
    p.add_argument("--out", required=True, help="output folder; rerunning with the same folder resumes")
    p.add_argument("--language", help="evaluate only this language (default: every language in the manifest)")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together (default 8)")
    p.add_argument("--beam-size", type=int, default=1, help="1 = greedy (paper setting), >1 = beam search")
    p.add_argument("--split", help="evaluate only utterances of this split (e.g. test)")
    p.add_argument("--domain", help="evaluate only utterances of this domain (e.g. out-of-domain)")
    p.add_argument("--limit", type=int, help="evaluate the first N utterances only")
    p.add_argument("--trim", action="store_true",
                   help="encode only the frames holding audio (faster on short clips; see benchmarks/decode_speed.py"
                        " for its accuracy cost)")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: all cores)")
    p.add_argument("--experts", help="DistilWhisper experts folder (from `train`) to load onto --model")
    p.add_argument("--precision", default="fp32", choices=PRECISIONS,
                   help="weights/compute precision (see distilwhisper/quantize.py; default fp32); one this machine "
                        "cannot run stops with the reason")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("demo", help="the whole story offline: corpus, base model, DistilWhisper experts, baselines",
                       epilog="Default: about 28 min on 2 CPU cores; --quick: about 5 min; --compare adds CLSR-FT, "
                              "FT and LoRA trained with the same data and steps. Rerunning with the same --out "
                              "resumes every stage. " + EPILOG)
    p.add_argument("--languages", help="target languages with offline TTS voices (default ca,cs)")
    p.add_argument("--control", help="control languages, recorded asterisk prompts, never trained (default en,es)")
    p.add_argument("--out", default="demo-out", help="output folder (default demo-out)")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks every stage in about 5 minutes")
    p.add_argument("--compare", action="store_true",
                   help="also train CLSR-FT, FT and LoRA with the same data, steps and layers (--scope)")
    p.add_argument("--student", help="student model (default bundled:base; paper: openai/whisper-small)")
    p.add_argument("--teacher", help="teacher model (default bundled:base; paper: openai/whisper-large-v2)")
    p.add_argument("--per-language", type=int, help="synthesised sentences per target language (default 360)")
    p.add_argument("--test-per-language", type=int,
                   help="of which in each test set, in-domain and out-of-domain (default 24); dev gets a tenth "
                        "of the rest (at most as many), train the remainder")
    p.add_argument("--steps", type=int, help="optimizer steps per method (default 300)")
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--lr", type=float, help="learning rate of experts/LoRA (default 1e-3; FT uses a tenth)")
    p.add_argument("--scope", choices=("all", "encoder", "decoder"),
                   help="layers that train, for every method (default decoder: the frozen encoder is then run "
                        "once per clip; all = the paper's setting, several times slower per step)")
    p.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("bias", help="bias and quantization study: models x precisions x languages x speaker groups",
                       epilog="Every model x precision is evaluated into OUT/evals/ (resumable), then OUT/report.md, "
                              "OUT/*.csv and OUT/*.png are written. fp32 is always run: quantization effects are "
                              "measured against it. " + EPILOG)
    p.add_argument("--models", default="bundled:base",
                   help="comma-separated model references (offline: bundled:base,bundled:tiny.en)")
    p.add_argument("--precisions", default="fp32,int8-dynamic,int4-weight,ct2-int8",
                   help=f"comma-separated, from {', '.join(PRECISIONS)}; ones this machine cannot run are reported "
                        "as not run (default: fp32,int8-dynamic,int4-weight,ct2-int8)")
    p.add_argument("--data", required=True, help="comma-separated manifests (ids unique across them)")
    p.add_argument("--out", required=True, help="output folder; rerunning with it reuses finished evaluations")
    p.add_argument("--per-language", type=int, help="use at most N utterances per language")
    p.add_argument("--batch-size", type=int, default=8, help="utterances decoded together (default 8)")
    p.add_argument("--trim", action="store_true", help="padding-free encoder for the torch precisions")
    p.add_argument("--threads", type=int, help="torch/CTranslate2 threads (default: all cores)")
    p.set_defaults(func=_cmd_bias)

    p = sub.add_parser("train", help="train DistilWhisper experts, or a baseline (clsr-ft, ft, lora)",
                       epilog="Defaults are the paper's (lr 1e-4, batch 16, 10 epochs, w_ce 0.25, w_kd 0.5, JS). "
                              "Runs under `accelerate launch --num_processes N` too.")
    p.add_argument("--config", help="YAML file of settings (names as the flags, with underscores)")
    p.add_argument("--method", choices=("distilwhisper", "clsr-ft", "ft", "lora"))
    p.add_argument("--student", help="student model reference (paper: openai/whisper-small)")
    p.add_argument("--teacher", help="teacher model reference for distilwhisper (paper: openai/whisper-large-v2)")
    p.add_argument("--languages", help="comma-separated languages to train experts for")
    p.add_argument("--train", help="training manifest (only its split=train lines if it has a split column)")
    p.add_argument("--dev", help="dev manifest (only split=dev lines if it has a split column): WER at each "
                   "evaluation; the best checkpoint is kept")
    p.add_argument("--out", help="output folder (best/, checkpoint/, dev/, tensorboard/, metrics.jsonl)")
    p.add_argument("--max-steps", type=int, help="optimizer steps (overrides --epochs)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int, help="gradient accumulation steps")
    p.add_argument("--lr", type=float)
    p.add_argument("--scope", choices=("all", "encoder", "decoder"),
                   help="layers that train: where experts (distilwhisper, clsr-ft) or LoRA adapters go, which "
                        "layers ft updates (default and paper: all)")
    p.add_argument("--kd", choices=("js", "kl"), help="distillation divergence (paper: js)")
    p.add_argument("--teacher-cache", help="folder storing the teacher's top-k log-probs, reused across epochs/runs")
    p.add_argument("--top-k", type=int, help="teacher log-probs kept per position in the cache (default 64)")
    p.add_argument("--eval-every", type=int, help="steps between dev evaluations (default: each epoch)")
    p.add_argument("--save-every", type=int, help="steps between resumable checkpoints besides those at dev "
                   "evaluations (default: only at evaluations); --resume continues mid-epoch where it stopped")
    p.add_argument("--eval-limit", type=int, help="dev utterances used per evaluation")
    p.add_argument("--bf16", action="store_true", help="bf16 autocast (fast only on CPUs/GPUs with bf16 units)")
    p.add_argument("--trim", action="store_true", help="padding-free encoding: encode only the frames holding "
                   "audio (at least 15 s); one process only")
    p.add_argument("--cache-encoder", action="store_true",
                   help="encode each clip once and keep the output in memory (needs --scope decoder: the "
                        "encoder is then frozen); one process only")
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("transcribe", help="transcribe audio files, optionally with a language's experts")
    p.add_argument("audio", nargs="+")
    p.add_argument("--model", default="bundled:base")
    p.add_argument("--experts", help="experts folder to load onto --model")
    p.add_argument("--language", help="force a language (default: detected)")
    p.add_argument("--beam-size", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--trim", action="store_true", help="encode only the frames holding audio")
    p.add_argument("--threads", type=int)
    p.set_defaults(func=_cmd_transcribe)

    data = sub.add_parser("data", help="build and check manifests").add_subparsers(dest="data_command", required=True)
    p = data.add_parser("commonvoice", help="Common Voice language folder -> manifest")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--splits", default="train,dev,test")
    p.add_argument("--language", help="Whisper code (default: from the locale column)")
    p.add_argument("--max-per-split", type=int)
    p.set_defaults(func=_cmd_data_commonvoice)
    p = data.add_parser("fleurs", help="FLEURS language folder (e.g. ca_es/) -> manifest")
    p.add_argument("folder")
    p.add_argument("--out", required=True, help="output manifest (.jsonl) or folder")
    p.add_argument("--splits", default="test")
    p.add_argument("--language", help="Whisper code (default: from the folder name)")
    p.set_defaults(func=_cmd_data_fleurs)
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
    p = data.add_parser("asterisk", help="Debian asterisk-core-sounds prompts (real speech, offline) -> manifest")
    p.add_argument("--languages", default="en,es")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--max-per-language", type=int)
    p.set_defaults(func=_cmd_data_asterisk)
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
    p = data.add_parser("stats", help="hours, utterances, speakers per language x split x domain x gender")
    p.add_argument("manifest")
    p.set_defaults(func=_cmd_data_stats)
    p = data.add_parser("validate", help="report every bad line of a manifest")
    p.add_argument("manifest")
    p.set_defaults(func=_cmd_data_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"distilwhisper: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
