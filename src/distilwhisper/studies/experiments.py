"""The experiment engine the demo and the benchmarks share: plan training runs (`Planned`), train or resume or
reuse each (`train_system`, which refuses a folder trained under other settings), and evaluate the base model and
each kept run on a corpus's sets (`evaluate_base`, `evaluate_run`) into rows (`System`) that `comparison.py` turns
into tables.  Every stage resumes: each evaluation (`results.jsonl`) and each run (`checkpoint/`) is reused by a
rerun with the same output folder.  Its settings are a `DemoConfig` (demo.py): a benchmark is a demo at other
sizes, rates or runs.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from distilwhisper import clsr, methods
from distilwhisper.data.manifest import read_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import ONE_PASS, EvalConfig, evaluate, run_eval
from distilwhisper.io import exclusive, read_json, setting_changes
from distilwhisper.runs import RunLayout, TrainedRun
from distilwhisper.studies.demo_config import SPECIALIST, DemoConfig
from distilwhisper.studies.demo_corpus import Corpus
from distilwhisper.train import TrainConfig
from distilwhisper.train.caches import EncoderCache
from distilwhisper.train.loop import train
from distilwhisper.train.model import weights_fingerprint

TRANSLATE = "translate"  # the translate task on real speech: BLEU/chrF against the English lines


def title(method: str) -> str:
    """A method's name in tables (its registered title)."""
    return methods.get(method).title


@dataclass
class System:
    """One evaluated model: base (fp32 or int8) or a trained method."""

    name: str
    method: str  # "base" or a training method
    directory: Path
    trainable: int = 0
    loaded: int = 0
    train_seconds: float = 0.0
    routed: float | None = None  # share of dev tokens the hard gates sent to experts (CLSR methods)
    kept_step: int | None = None  # training step of the kept (best dev WER) checkpoint; 0 = the untrained start
    kept_steps: dict[str, int] = field(default_factory=dict)  # CLSR methods: language -> step of its kept experts


def evaluate_base(system: System, config: DemoConfig, corpus: Corpus, precision: str,
                  jobs: list[tuple[str, Path, Path]] | None = None) -> None:
    """The base model's evaluations: `jobs` (task, manifest, output folder), by default every set of the corpus."""
    for task, data, out in jobs or tasks(system, corpus):
        run_eval(EvalConfig(model=config.student, data=str(data), out=str(out), batch_size=config.batch_size,
                            trim=True, precision=precision, threads=config.threads, task=task))
    variant = system.directory / "variant.json"
    system.loaded = read_json(variant)["parameters"] if variant.exists() else 0


def evaluate_run(name: str, run: TrainedRun, directory: Path, out: Path, config: DemoConfig, corpus: Corpus,
                 jobs: list[tuple[str, Path, Path]] | None = None) -> System:
    """A finished run as a row: its counters, then its evaluations under `directory` (`jobs`: task, manifest,
    output folder; by default every set of the corpus), named by the run's folder relative to `out` (so a moved
    folder still resumes; evaluations refuse another name)."""
    model, processor = run.load()
    system = System(name, run.config.method, directory, train_seconds=run.state.seconds, routed=run.routed_share,
                    kept_step=run.state.best_step,
                    kept_steps=run.state.best_steps,  # empty unless experts are kept per language
                    trainable=run.trainable_parameters, loaded=sum(p.numel() for p in model.parameters()))
    decoder, weights = WhisperDecoder(model, processor, trim=True), weights_fingerprint(model)
    evaluated_as = f"{run.config.method}:{run.layout.root.relative_to(out)}"
    served = list(clsr.served_tasks(model)) if clsr.clsr_modules(model) else []  # experts: the tasks they decode
    for task, data, folder in jobs or tasks(system, corpus):
        evaluate(decoder, read_manifest(data)[0], folder,
                 EvalConfig(model=evaluated_as, data=str(data), out=str(folder), trim=True, task=task,
                            expert_tasks=served).identity(),
                 batch_size=config.batch_size, options=ONE_PASS.with_(task=task),
                 weights=weights)  # a run retrained in place: decoded again
    return system


def tasks(system: System, corpus: Corpus) -> list[tuple[str, Path, Path]]:
    """(task, manifest, output folder) of a system's evaluations: transcription of every set, and translation of
    the real speech into English."""
    tasks = [("transcribe", corpus.evaluation, system.directory)]
    if corpus.translation is not None:
        tasks.append((TRANSLATE, corpus.translation, system.directory / TRANSLATE))
    return tasks


@dataclass(frozen=True)
class Planned:
    """One training run of the demo: its folder name (under train/ and eval/), method, row name and teacher."""

    key: str  # its folder under train/ and eval/
    method: str
    name: str
    teacher: str | None = None  # a model reference, a run folder, or SPECIALIST (this demo's train/ft)
    lr_factor: float = 1.0  # times the method's learning rate (DemoConfig.method_lr): a point of an lr grid
    teacher_cache: str | None = None  # its folder under teacher-cache/ (default: `key`); runs of one teacher share it
    gate_target: float = 0.5  # the gate budget of a CLSR run (TrainConfig.gate_target, gate_weight): a benchmark's
    gate_weight: float = 1.0  # point; the demo keeps the paper's
    seed: int | None = None  # the training seed (default: the config's, which also draws the corpus)


def train_system(planned: Planned, config: DemoConfig, train_manifest: Path, out: Path,
                 encodings: EncoderCache | None = None) -> TrainedRun:
    """Train (or resume, or reuse) one run; a folder trained under other settings is refused, not reused.
    `encodings`: the frozen encoder's outputs shared by the runs of this demo (`--scope decoder`)."""
    run = out / "train" / planned.key
    method = planned.method
    teacher = str(out / "train" / "ft") if planned.teacher == SPECIALIST else planned.teacher
    settings = TrainConfig(
        method=method, student=config.student, languages=config.languages, train=str(train_manifest),
        dev=str(train_manifest), out=str(run), teacher=teacher,
        teacher_cache=str(out / "teacher-cache" / (planned.teacher_cache or planned.key)) if teacher else None,
        max_steps=config.steps, batch_size=config.batch_size, lr=config.method_lr(method) * planned.lr_factor,
        patience=config.patience, gate_target=planned.gate_target, gate_weight=planned.gate_weight,
        scope=config.scope, trim=True, cache_encoder=config.scope == "decoder", bf16=config.bf16,
        expert_dropout=config.expert_dropout, keep_translate=config.keep_translate if methods.get(method).uses_experts else 0.0,
        eval_every=config.eval_every or (config.steps if config.quick else max(config.steps // 2, 1)),
        save_every=max(config.steps // 6, 1), seed=config.seed if planned.seed is None else planned.seed)
    layout = RunLayout(run)
    if layout.config.is_file():
        # paths may differ in a moved demo folder; the specialist is this folder's own FT run
        moved = {"train", "dev", "out", "teacher_cache"} | ({"teacher"} if planned.teacher == SPECIALIST else set())
        saved, wanted = read_json(layout.config), asdict(settings)
        # a setting the run's version did not have yet is taken as its default
        changes = setting_changes(saved, {k: v for k, v in wanted.items() if k not in moved and k in saved})
        if changes:
            raise ValueError(f"{run} holds a run with other settings ({changes}); use another --out")
    if layout.best.is_dir() and layout.state.is_file():
        earlier = TrainedRun.open(run)
        if earlier.finished:
            return earlier  # finished before: reused as it is
    train(settings, resume=layout.state.exists(), encodings=encodings)
    return TrainedRun.open(run)


@contextmanager
def claimed(config: DemoConfig) -> Iterator[Path]:
    """The demo's output folder, held by this process (a second run on it stops at once instead of mixing files
    into the first's), with the configured torch threads: for the demo and the benchmarks built on its stages."""
    if config.threads:
        torch.set_num_threads(config.threads)
    with exclusive(config.out) as out:
        yield Path(out)
