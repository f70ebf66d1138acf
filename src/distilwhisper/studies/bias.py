"""The bias study (`distilwhisper bias`): evaluate models x precisions on one set of utterances, analyse
(`bias_tables.py`) and write the report (`bias_report.py`).

Each (model, precision) evaluation lives in `out/evals/<model>/<precision>/` and resumes like any `eval` run; the
analysis is recomputed from their `results.jsonl` files, so a rerun only decodes what is missing.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from distilwhisper.data.manifest import Utterance, read_manifest, write_manifest
from distilwhisper.evaluate import EvalConfig, run_eval
from distilwhisper.hub import resolve_hf_dir
from distilwhisper.distributed import exclusive_on_main, on_main, process_state
from distilwhisper.io import atomic_write_json
from distilwhisper.quantize import PRECISIONS, UnsupportedPrecision, check_supported
from distilwhisper.runs import TrainedRun, is_run_folder
from distilwhisper.studies.bias_report import write_bias_report
from distilwhisper.studies.bias_tables import REFERENCE, BiasResult, Run, analyse


@dataclass
class BiasConfig:
    """`distilwhisper bias`: bias and quantization study, models x precisions x languages x speaker groups.
    Every model x precision is evaluated into OUT/evals/ (resumable), then OUT/report.md, OUT/*.csv and OUT/*.png
    are written.  fp32 is always run: quantization effects are measured against it."""

    data: list[str] = field(metadata={"help": "manifests (comma-separated; ids unique across them)"})
    out: str = field(metadata={"help": "output folder; rerunning with it reuses finished evaluations"})
    models: list[str] = field(default_factory=lambda: ["bundled:base"], metadata={
        "help": "model references (offline: bundled:base,bundled:tiny.en)"})
    precisions: list[str] = field(default_factory=lambda: ["fp32", "int8-dynamic", "int4-weight", "ct2-int8"],
                                  metadata={"help": f"from {', '.join(PRECISIONS)}; ones this machine cannot run "
                                                    "are reported as not run"})
    per_language: int | None = field(default=None, metadata={"min": 1, "help": "use at most N utterances per language"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "utterances decoded together"})
    trim: bool = field(default=False, metadata={"help": "padding-free encoder for the torch precisions"})
    threads: int | None = field(default=None, metadata={"min": 1, "help": "torch/CTranslate2 threads (default: "
                                                                          "all cores)"})


def slug(model: str) -> str:
    """A folder name for a model reference."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip("/")).strip("-") or "model"


def combine_manifests(paths: list[str], out: Path, per_language: int | None = None) -> tuple[Path, list[str]]:
    """One manifest of every usable utterance of `paths` (absolute audio paths), at most `per_language` per
    language; returns it and the bad lines left out ('file:line: problem')."""
    utterances: list[Utterance] = []
    problems: list[str] = []
    seen: dict[str, str] = {}
    for path in paths:
        utts, bad = read_manifest(path)
        problems += [f"{path}:{line}: {msg}" for line, msg in bad]
        for u in utts:
            if u.id in seen:
                raise ValueError(f"{path}: utterance id {u.id!r} is also in {seen[u.id]}; ids must be unique across "
                                 "--data manifests")
            seen[u.id] = path
            utterances.append(u)
    if per_language is not None:
        kept: dict[str, int] = defaultdict(int)
        chosen = []
        for u in utterances:
            if kept[u.language] < per_language:
                kept[u.language] += 1
                chosen.append(u)
        utterances = chosen
    if not utterances:
        raise ValueError(f"no usable utterance in {', '.join(paths)}")
    out.mkdir(parents=True, exist_ok=True)
    return write_manifest(out / "manifest.jsonl", utterances, relative=False), problems


def _model_languages(model: str, languages: list[str]) -> tuple[list[str], str | None]:
    """The languages of `languages` a model (or the student of a `train` run folder) can transcribe (English-only
    models: en), and why others are left out."""
    from transformers import GenerationConfig

    if is_run_folder(model):
        model = TrainedRun.open(model).config.student

    generation = GenerationConfig.from_pretrained(resolve_hf_dir(model))
    if getattr(generation, "lang_to_id", None):
        return languages, None
    others = [lang for lang in languages if lang != "en"]
    return [lang for lang in languages if lang == "en"], (f"English-only model: {', '.join(others)} not evaluated"
                                                          if others else None)


def run_evaluations(models: list[str], precisions: list[str], manifest: Path, out: Path, batch_size: int = 8,
                    trim: bool = False, threads: int | None = None, progress: bool = True) -> list[Run]:
    """Evaluate every model x precision (resuming finished work); unsupported ones are recorded with the reason.
    Under a launch with several processes each evaluation is shared out (see `evaluate`)."""
    languages = sorted({u.language for u in read_manifest(manifest, check_audio=False)[0]})
    runs: list[Run] = []
    for model in models:
        model_languages, note = _model_languages(model, languages)
        for precision in precisions:
            run = Run(model, precision, out / "evals" / slug(model) / precision, languages=model_languages)
            runs.append(run)
            try:
                check_supported(precision, model)
            except UnsupportedPrecision as err:
                run.skipped = str(err)
                print(f"skipped {model} {precision}: {err}")
                continue
            if not model_languages:
                run.skipped = note
                continue
            print(f"== {model} {precision}" + (f" ({note})" if note else ""))
            for language in model_languages if len(model_languages) < len(languages) else [None]:
                target = run.directory if language is None else run.directory / language
                run_eval(EvalConfig(model=model, data=str(manifest), out=str(target), language=language,
                                    batch_size=batch_size, trim=trim, threads=threads, precision=precision),
                         progress=progress)
    on_main(lambda: atomic_write_json(out / "runs.json", [r.as_dict() for r in runs]), process_state())
    return runs


def run_bias(config: BiasConfig, progress: bool = True) -> BiasResult:
    """Evaluate, analyse and write the report (`out/report.md`, CSVs, PNG figures); resumable; one run at a time
    per folder.  Under `accelerate launch` every evaluation is shared out over the processes; the main process
    writes the manifest, the report and the tables."""
    state = process_state()
    with exclusive_on_main(config.out, state):
        return _run(config, Path(config.out), progress, state)


def _run(config: BiasConfig, out: Path, progress: bool, state) -> BiasResult:
    precisions = config.precisions
    if REFERENCE not in precisions:
        precisions = [REFERENCE, *precisions]  # every quantization effect is measured against fp32
    manifest, problems = on_main(lambda: combine_manifests(config.data, out, config.per_language), state)
    for problem in problems[:10]:
        print(f"left out: {problem}")
    runs = run_evaluations(config.models, precisions, manifest, out, config.batch_size, config.trim,
                           config.threads, progress)

    def report() -> BiasResult:
        result = analyse(runs, problems)
        write_bias_report(result, out)
        return result

    return on_main(report, state)
