"""Command line: argument parsing only; each subcommand calls one public function.

The flags of `eval`, `bias`, `train`, `demo` and `transcribe` are generated from their config dataclasses
(`EvalConfig`, `BiasConfig`, `TrainConfig`, `DemoConfig`, `TranscribeConfig`): a field `batch_size` is the flag
`--batch-size`, its metadata holds the help text, lists are comma-separated, booleans are switches.  Only the
flags a user gives override the dataclass defaults (and, for `train --config`, the YAML file's values).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import typing
from pathlib import Path

EPILOG = "Models: bundled:base (offline), a CTranslate2/faster-whisper dir, a local HF dir, a hub id, or a " \
         "`train` run folder."


# ----- flags from config dataclasses --------------------------------------------------------------------------
def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def comma_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def add_config_flags(parser: argparse.ArgumentParser, cls) -> None:
    """One flag per field of `cls`; every default is None so that only given flags override."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        inner = [a for a in typing.get_args(kind) if a is not type(None)]
        base = inner[0] if inner and type(None) in typing.get_args(kind) else kind
        help_text = f.metadata.get("help", "")
        default = (f.default if f.default is not dataclasses.MISSING
                   else f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
        choices = f.metadata.get("choices")
        choices = choices() if callable(choices) else choices  # e.g. the methods registered when the parser is made
        if choices:
            help_text += f" (one of: {', '.join(choices)})"
        if default not in (None, False):
            help_text += f" (default: {','.join(default) if isinstance(default, list) else default})"
        if f.metadata.get("positional"):
            parser.add_argument(f.name, nargs="+", help=help_text)
        elif base is bool:  # a switch; one that can be on by default also has its --no- form
            action = argparse.BooleanOptionalAction if f.metadata.get("negatable") else "store_true"
            parser.add_argument(_flag(f.name), dest=f.name, action=action, default=None, help=help_text)
        else:
            convert = comma_list if typing.get_origin(base) is list else base
            parser.add_argument(_flag(f.name), dest=f.name, type=convert, default=None, help=help_text,
                                choices=choices, metavar=f.name.upper() if choices else None)


def given_flags(args: argparse.Namespace, cls) -> dict:
    """The settings of `cls` given on the command line (flags left out parse as None)."""
    return {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if getattr(args, f.name, None) is not None}


def config_from(args: argparse.Namespace, cls, base: dict | None = None):
    """`cls` from `base` (e.g. a YAML file's values) updated with the flags given; a missing required setting is
    named as its flag."""
    values = dict(base or {})
    values.update(given_flags(args, cls))
    missing = [_flag(f.name) for f in dataclasses.fields(cls) if f.name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    for f in dataclasses.fields(cls):  # counts that must be positive say so, instead of failing deep inside
        low = f.metadata.get("min")
        if low is not None and values.get(f.name) is not None and values[f.name] < low:
            raise ValueError(f"{_flag(f.name)} must be at least {low}, not {values[f.name]}")
    return cls(**values)


# ----- commands -------------------------------------------------------------------------------------------------
def _cmd_models(args: argparse.Namespace) -> int:
    from distilwhisper.hub import available_models, cache_dir

    print(f"cache: {cache_dir()}")
    for row in available_models():
        print(f"{row['ref']:<28} {row['status']:<36} converted={row['converted']}")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    from distilwhisper.evaluate import EvalConfig, run_eval
    from distilwhisper.results import summary_markdown

    config = config_from(args, EvalConfig)
    print(summary_markdown(run_eval(config)))
    print(f"results: {Path(config.out) / 'results.jsonl'}; summary: {Path(config.out) / 'summary.md'}")
    return 0


def _cmd_bias(args: argparse.Namespace) -> int:
    from distilwhisper.studies.bias import BiasConfig, run_bias

    config = config_from(args, BiasConfig)
    run_bias(config)
    print(f"report: {Path(config.out) / 'report.md'} (tables: {config.out}/*.csv, figures: {config.out}/*.png)")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from distilwhisper.studies.demo import DemoConfig, run_demo

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}
    run_demo(DemoConfig.make(**{**given, "quick": bool(given["quick"])}))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from distilwhisper.train import TrainConfig
    from distilwhisper.train.loop import train
    from distilwhisper.train.config import read_yaml

    config = config_from(args, TrainConfig, read_yaml(args.config) if args.config else None)
    result = train(config, resume=args.resume)
    print(json.dumps(dataclasses.asdict(result.state)))
    return 0


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import torch
    from tqdm import tqdm

    from distilwhisper import subtitles
    from distilwhisper.audio import AudioError
    from distilwhisper.transcribe import TranscribeConfig, Transcriber, resolve_precision

    config = config_from(args, TranscribeConfig)
    chosen = subtitles.formats(config.output_format)
    layout = subtitles.Layout(config.max_line_width, config.max_line_count, config.highlight_words)
    layout.check(config.word_timestamps)
    if config.threads:
        torch.set_num_threads(config.threads)
    transcriber = Transcriber(config.model, config.experts, config.trim,
                              resolve_precision(config.precision, config.sequential), config.threads)
    failed = 0
    for path in tqdm(config.audio, unit="file", desc="transcribing", disable=len(config.audio) < 2):
        try:
            result = transcriber(path, config.language, config.options(), config.batch_size,
                                 sequential=config.sequential, condition_on_previous_text=not config.no_condition)
        except AudioError as err:  # reported; the other files go on
            tqdm.write(f"skipped {path}: {err}", file=sys.stderr)
            failed += 1
            continue
        subtitles.write(result, config.output_dir, chosen, layout)
        print(f"{path}\t{result.language}\t{result.text}", flush=True)
    return 1 if failed else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from distilwhisper.export import ExportConfig, export

    print(export(config_from(args, ExportConfig)))
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from distilwhisper.serve import ServeConfig, run_server

    run_server(config_from(args, ServeConfig))
    return 0


def _command(sub, name: str, cls, func, **kw) -> argparse.ArgumentParser:
    """A subcommand whose help is the first paragraph of `cls`'s docstring and whose flags are its fields."""
    doc = " ".join((cls.__doc__ or "").split("\n\n")[0].split())
    summary, _, details = doc.partition(": ")
    parser = sub.add_parser(name, help=details.split(". ")[0] or summary, description=details or summary, **kw)
    add_config_flags(parser, cls)
    parser.set_defaults(func=func)
    return parser


def build_parser() -> argparse.ArgumentParser:
    from distilwhisper.evaluate import EvalConfig
    from distilwhisper.studies.bias import BiasConfig
    from distilwhisper.studies.demo import DemoConfig
    from distilwhisper.train import TrainConfig
    from distilwhisper.export import ExportConfig
    from distilwhisper.serve import ServeConfig
    from distilwhisper.transcribe import TranscribeConfig

    parser = argparse.ArgumentParser(prog="distilwhisper", description="Measure and improve multilingual Whisper "
                                     "models per language (DistilWhisper).", epilog=EPILOG)
    parser.add_argument("--allow-pickle", action="store_true",
                        help="allow model folders or hub repositories that hold only pickled weights "
                             "(pytorch_model.bin); loading a pickle can run code, so only for files you trust")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("models", help="list models available offline").set_defaults(func=_cmd_models)
    _command(sub, "eval", EvalConfig, _cmd_eval, epilog=EPILOG)
    _command(sub, "demo", DemoConfig, _cmd_demo, epilog=EPILOG)
    _command(sub, "bias", BiasConfig, _cmd_bias, epilog=EPILOG)
    p = _command(sub, "train", TrainConfig, _cmd_train, epilog=EPILOG)
    p.add_argument("--config", help="YAML file of settings (names as the flags, with underscores); flags given "
                   "override it")
    p.add_argument("--resume", action="store_true", help="continue from --out/checkpoint (mid-epoch too); "
                   "a folder without a checkpoint yet starts from the beginning")
    _command(sub, "transcribe", TranscribeConfig, _cmd_transcribe, epilog=EPILOG)
    _command(sub, "serve", ServeConfig, _cmd_serve, epilog=EPILOG)
    _command(sub, "export", ExportConfig, _cmd_export)
    from distilwhisper.data.commands import add_data_commands

    add_data_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.allow_pickle:
        from distilwhisper.hub import ALLOW_PICKLE

        os.environ[ALLOW_PICKLE] = "1"
    try:
        return args.func(args)
    except (OSError, ValueError, RuntimeError) as err:  # FolderInUseError is a RuntimeError; OSError: e.g. full disk
        print(f"distilwhisper: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
