"""DistilWhisper against its baselines, each method at its own best learning rate chosen on dev (issue #14).

Every method -- DistilWhisper distilled from the specialist (the headline), DistilWhisper with the student as its
own teacher, CLSR-FT, FT and LoRA -- trains on the demo's data (its corpus builder and training settings) at each
point of a learning-rate grid (`--lr-factors` times the method's centre rate: `--lr` 1e-3, FT `--ft-lr` 1e-4, the
demo's rates when the grid was first recorded), until dev WER has not improved for `--patience` evaluations or the
step cap (`--steps`).  Dev is decoded as the tests are (`--trim`), the kept checkpoint of a run is its dev-best (per
language for experts), and the learning rate kept per method is the one with the lowest kept dev WER.  The
specialist teacher is FT at its chosen rate, so FT's grid trains first.  Only the chosen run of each method is
decoded on the test sets, once; the table compares every method with the base model and with the headline
DistilWhisper (paired bootstrap), and records per method the grid's dev WERs, the chosen rate, the steps trained and
kept, and the train minutes.

Run by hand, not in CI (hours on 2 CPU cores); it resumes like the demo (rerun the same command after an
interruption; finished runs are reused).  Every run of one process shares the frozen encoder's outputs.  The whole
grid is more than one session of a machine whose output folder is lost: what finished is recorded in the repository
(`--record`, default benchmarks/records/method_quality: each run's settings and dev counters, each method's test
decodes), so an invocation with a new --out trains only what the record lacks, and `--methods` can split the work:

    .venv/bin/python benchmarks/method_quality.py --out bench-out/mq --methods ft
    .venv/bin/python benchmarks/method_quality.py --out bench-out/mq   # all methods; the table of all
    .venv/bin/python benchmarks/method_quality.py --out bench-out/mq --from-record   # reprint, train nothing

Once every default is final, `--confirm` decodes the reserved confirmation lines (benchmarks/records/confirmation/:
real Czech of test scenes that no choice has read) once per final system and seed, and prints them beside the rest:

    .venv/bin/python benchmarks/method_quality.py --out bench-out/mq300 --steps 300 --eval-every 150 \
        --methods ft,distilwhisper-specialist --seeds 0,1,2 --record benchmarks/records/method_quality_300steps \
        --confirm
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from pathlib import Path

import numpy as np
import torch

from distilwhisper import stats
from distilwhisper.cli import add_config_flags, given_flags
from distilwhisper.data.fillets import SCENE
from distilwhisper.io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json, setting_changes
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table, num, p_phrase, pyplot, save_figure
from distilwhisper.results import rate, read_results, where
from distilwhisper.studies.comparison import changes_markdown, results_table, table_markdown
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.experiments import (SPECIALIST, TRANSLATE, Planned, System, claimed, evaluate_base,
                                               evaluate_run, title, train_system)
from distilwhisper.runs import RunLayout, TrainedRun
from distilwhisper.data.manifest import write_manifest
from distilwhisper.studies.demo_corpus import REAL_SPEECH, SETS, Corpus, build_corpus, reserved
from distilwhisper.train.caches import EncoderCache
from common import comma_list, number, whole

# (key, method, row name, teacher): FT first, it is the specialist teacher
METHODS = (("ft", "ft", title("ft"), None),
           ("distilwhisper-specialist", "distilwhisper", "DistilWhisper", SPECIALIST),
           ("distilwhisper", "distilwhisper", "DistilWhisper (self-teacher)", "student"),
           ("clsr-ft", "clsr-ft", title("clsr-ft"), None),
           ("lora", "lora", title("lora"), None))
SPECIALIST_KEY = "ft"  # the grid whose chosen run is the specialist teacher
BASE_KEY = "base"  # the record's folder of the base model's test decodes
DEFAULTS = dict(steps=1200, eval_every=100, patience=3)  # a cap, not a budget: runs stop on dev
# the grid's centre rates and the paper's recipe (--quick too): a record outlives the demo's defaults
PINNED = dict(lr=1e-3, ft_lr=1e-4, keep_translate=0.0)


RECORD = Path(__file__).resolve().parent / "records" / "method_quality"
CONFIRMATION = RECORD.parent / "confirmation"  # per language: the reserved lines' ids, fixed before any choice


@dataclasses.dataclass
class Choice:
    """One method's grid: the dev WER each learning rate reached, the run kept, and its row on the test sets."""

    key: str
    name: str
    plans: dict[float, Planned]  # learning rate -> its run
    runs: dict[float, TrainedRun]  # learning rate -> its finished run (from the record: settings and counters only)
    system: System | None = None  # the chosen run's row, once its test sets are decoded
    expert_mib: dict[str, float] = dataclasses.field(default_factory=dict)  # language -> expert file size
    seeds: dict[int, System] = dataclasses.field(default_factory=dict)  # training seed -> the chosen rate's test row
    confirmed: dict[int, System] = dataclasses.field(default_factory=dict)  # seed -> its confirmation-line decodes

    @property
    def lr(self) -> float:
        """The rate of the lowest kept dev WER (the smaller rate on ties)."""
        return min(self.runs, key=lambda lr: (self.runs[lr].state.best_dev_wer, lr))

    @property
    def run(self) -> TrainedRun:
        return self.runs[self.lr]


class Record:
    """What this benchmark measured, kept in the repository: a grid is hours of 2-core training, more than one
    session of a machine whose output folder does not outlive it.  Per finished run its settings and counters
    (`KEY/lr-LR/config.json` and `checkpoint/state.json`: a run folder without weights); per method its chosen
    run's row and test decodes (`KEY/system.json`, `KEY/eval/`).  A later invocation, with any --out, reuses them
    and retrains only a run whose weights it needs (the specialist teacher, a chosen run whose test sets are not
    decoded yet); training is deterministic on one kind of CPU, not across kinds (`keep_run`)."""

    def __init__(self, root: Path, settings: dict, read_only: bool = False) -> None:
        """`read_only`: only reading what is recorded, so the training precision this machine would use does not
        have to match (an AVX2 machine reprints a bf16 record)."""
        self.root = root
        self.settings = settings  # as recorded (training precision included)
        path = root / "settings.json"
        if path.exists():
            recorded = self.settings = read_json(path)
            changes = setting_changes({**recorded, "bf16": settings["bf16"]} if read_only else recorded, settings)
            if changes:
                raise ValueError(f"{root} records runs of other settings ({changes}); pass another --record")
        elif read_only:
            raise ValueError(f"{root}: no record here (no settings.json)")
        else:
            atomic_write_json(path, settings)

    def _method(self, key: str, seed: int = 0) -> Path:
        """A method's folder at a training seed: KEY for seed 0 (the grid), KEY/seed-S for the others."""
        return self.root / key / (f"seed-{seed}" if seed else "")

    def _run_folder(self, key: str, lr: float, seed: int = 0) -> Path:
        return self._method(key, seed) / f"lr-{lr:g}"

    def run(self, key: str, lr: float, seed: int = 0) -> TrainedRun | None:
        """The finished run recorded for this method, rate and training seed, or None."""
        folder = self._run_folder(key, lr, seed)
        return TrainedRun.open(folder, kept=False) if (folder / "config.json").is_file() else None

    def keep_run(self, key: str, lr: float, run: TrainedRun, teacher: TrainedRun | None = None,
                 seed: int = 0) -> None:
        """Record a finished run, the machine it trained on and its teacher's kept dev WER (a retrained specialist
        is another teacher where it retrained on another kind of CPU, docs/results.md).  A retrained run that differs
        from its record is said so, and the record, which chose the rate and was tested, is kept."""
        earlier = self.run(key, lr, seed)
        if earlier is not None:
            if earlier.state.dev_counts != run.state.dev_counts:
                print(f"WARNING: {run.layout.root}, retrained on {cpu_name()}, differs from its record (trained on "
                      f"{self.about(key, lr, seed).get('machine')}): kept dev WER {num(run.state.best_dev_wer)}, recorded "
                      f"{num(earlier.state.best_dev_wer)}; the record is kept", flush=True)
            return
        folder = self._run_folder(key, lr, seed)
        layout = RunLayout(folder)
        atomic_write_bytes(layout.config, run.layout.config.read_bytes())
        atomic_write_bytes(layout.state, run.layout.state.read_bytes())
        atomic_write_json(folder / "about.json", {
            "machine": f"{cpu_name()}, {torch.get_num_threads()} threads, torch {torch.__version__}",
            "teacher_kept_dev_wer": teacher.state.best_dev_wer if teacher else None})

    def about(self, key: str, lr: float, seed: int = 0) -> dict:
        """Where a recorded run trained (`machine`) and its teacher's kept dev WER (`teacher_kept_dev_wer`)."""
        path = self._run_folder(key, lr, seed) / "about.json"
        return read_json(path) if path.is_file() else {}

    def system(self, key: str, seed: int = 0, lr: float | None = None) -> tuple[System, dict[str, float]] | None:
        """The recorded row of a method's run at a training seed (its decodes under eval/) and expert file sizes, or
        None; with `lr`, None too when the recorded decodes are another rate's (a grid that grew chose anew)."""
        path = self._method(key, seed) / "system.json"
        if not path.is_file():
            return None
        saved = read_json(path)
        if lr is not None and (saved.get("lr") is None or f"{saved['lr']:g}" != f"{lr:g}"):  # as run folders name it
            return None
        return System(**saved["system"], directory=self._method(key, seed) / "eval"), saved["expert_mib"]

    def confirmation(self, key: str, seed: int = 0) -> Path:
        """Where a method's (or the base model's) decodes of the reserved confirmation lines at a training seed are
        kept; its results.jsonl, written last, says they are complete."""
        return self._method(key, seed) / "confirmation"

    def keep_confirmation(self, key: str, seed: int, decoded: Path) -> None:
        for name in ("summary.json", "results.jsonl"):
            atomic_write_bytes(self.confirmation(key, seed) / name, (decoded / name).read_bytes())

    def keep_system(self, key: str, system: System, expert_mib: dict[str, float], lr: float | None = None,
                    seed: int = 0) -> None:
        """Record a method's row (`lr`: the rate of the run decoded): its test decodes (transcription and translate
        task), then its counters."""
        folder = self._method(key, seed)
        for name in ("results.jsonl", "summary.json", f"{TRANSLATE}/results.jsonl", f"{TRANSLATE}/summary.json"):
            if (system.directory / name).is_file():
                atomic_write_bytes(folder / "eval" / name, (system.directory / name).read_bytes())
        fields = {k: v for k, v in dataclasses.asdict(system).items() if k != "directory"}
        atomic_write_json(folder / "system.json", {"system": fields, "expert_mib": expert_mib, "lr": lr})


def record_settings(config: DemoConfig) -> dict:
    """What decides a run's result: the demo's settings, less where it writes and with how many threads, with the
    training precision as resolved on this machine (bf16 and fp32 runs differ)."""
    skip = {"out", "threads", "quick", "compare", "teacher", "train_precision"}
    return {**{f.name: getattr(config, f.name) for f in dataclasses.fields(DemoConfig) if f.name not in skip},
            "bf16": config.bf16}


def _teacher(teacher: str | None, run_out: str) -> str | None:
    """A teacher as a run's demo folder names it: a run folder under it relative to it (`train/ft/lr-0.0001`), so
    runs of two --out folders compare; a model reference as it is."""
    demo = Path(run_out).parents[2]  # run_out = DEMO/train/KEY/lr-LR
    return str(Path(teacher).relative_to(demo)) if teacher and Path(teacher).is_relative_to(demo) else teacher


def expert_mib(run: TrainedRun) -> dict[str, float]:
    """What shipping one language costs: each language's expert file (CLSR methods), in MiB."""
    if not run.config.uses_experts:
        return {}
    return {p.stem: round(p.stat().st_size / 2**20, 1) for p in sorted(run.layout.best.glob("*.safetensors"))}


def confirmation_lines(config: DemoConfig, out: Path) -> Path:
    """The manifest of the reserved confirmation lines of the target languages with real speech, checked against
    the ids recorded when they were reserved: another corpus would confirm on other lines."""
    lines = []
    for language in (lang for lang in config.languages if lang in REAL_SPEECH):
        got, path = reserved(language, config), CONFIRMATION / f"{language}.json"
        if config.quick:  # a check of the stages: a few of the lines the quick corpus leaves out of its test
            got = got[:config.real_test_per_language]
        elif [u.id for u in got] != read_json(path)["ids"]:
            raise ValueError(f"{path}: the reserved {language} lines differ from the corpus's ({len(got)} lines now)")
        lines += got
    if not lines:
        raise ValueError(f"--confirm: no target language with real speech ({', '.join(REAL_SPEECH)})")
    return write_manifest(out / "corpus" / "confirmation.jsonl", lines)


def confirmed_base(config: DemoConfig, out: Path, corpus: Corpus | None, record: Record,
                   lines: Path | None) -> System:
    """The base model's decodes of the confirmation lines: recorded, or decoded once now."""
    folder = record.confirmation(BASE_KEY)
    if not (folder / "results.jsonl").is_file():
        if corpus is None or lines is None:
            raise ValueError(f"{record.root}: no record of the base model's confirmation decodes: run without "
                             "--from-record")
        decoded = out / "confirmation" / BASE_KEY
        evaluate_base(System(f"{config.student} fp32", "base", decoded), config, corpus, "fp32",
                      jobs=[("transcribe", lines, decoded)])
        record.keep_confirmation(BASE_KEY, 0, decoded)
    return System(f"{config.student} fp32", "base", folder)


def measure(config: DemoConfig, factors: list[float], keys: list[str], out: Path, corpus: Corpus | None,
            record: Record, seeds: list[int], lines: Path | None = None, confirm: bool = False) -> list[Choice]:
    """Every method at every grid point (FT first: its chosen run is the specialist teacher), then the test sets
    of its chosen run; at every other training seed of `seeds`, the chosen rate only (the rate is chosen once, on
    seed 0's grid), with its test sets; with `confirm`, then the reserved confirmation lines (`lines`) by the chosen
    run at every seed; what the record holds is reused.  Without a corpus (`--from-record`) nothing is trained or
    decoded: what the record lacks is an error."""
    encodings, choices, specialist = EncoderCache(), [], None

    def trained(choice: Choice, lr: float, seed: int = 0) -> TrainedRun:
        """A run with its weights: this --out's, or trained again when only recorded (on another kind of CPU it
        may differ from its record: `Record.keep_run` says so).  At another seed the specialist teacher is FT at
        that seed too: each seed repeats the whole recipe."""
        if corpus is None:
            raise ValueError(f"{record.root}: no record of {choice.key} at lr {lr:g}, training seed {seed}: run "
                             "without --from-record to train and decode it")
        planned, teacher = choice.plans[lr], None
        if seed:
            planned = dataclasses.replace(planned, key=f"{choice.key}/seed-{seed}/lr-{lr:g}", seed=seed,
                                          teacher_cache=f"{choice.key}/seed-{seed}")
        if planned.teacher == SPECIALIST:  # FT at its chosen rate, with its weights
            teacher = trained(specialist, specialist.lr, seed)
            planned = dataclasses.replace(planned, teacher=str(teacher.layout.root))
        run = train_system(planned, config, corpus.train, out, encodings)
        record.keep_run(choice.key, lr, run, teacher, seed)
        return run

    def tested(choice: Choice, seed: int) -> tuple[System, dict[str, float]]:
        """The chosen run's test row at `seed`: recorded for the chosen rate, or decoded once now."""
        if record.system(choice.key, seed, choice.lr) is None:
            if record.system(choice.key, seed) is not None:
                print(f"{record.root}: {choice.key}'s recorded test decodes (seed {seed}) are of another rate; the "
                      f"grid now chooses {choice.lr:g}, decoded now", flush=True)
            run = trained(choice, choice.lr, seed)
            # per rate: a grid that grew may choose another rate, whose decodes must not resume the earlier one's
            folder = out / "eval" / choice.key / (f"seed-{seed}" if seed else "") / f"lr-{choice.lr:g}"
            record.keep_system(choice.key, evaluate_run(choice.name, run, folder, out, config, corpus),
                               expert_mib(run), choice.lr, seed)
        return record.system(choice.key, seed, choice.lr)

    def confirmed(choice: Choice, seed: int) -> System:
        """The chosen run's decodes of the confirmation lines at `seed`: recorded, or decoded once now (the run
        trained again where its weights are not in this --out)."""
        folder = record.confirmation(choice.key, seed)
        if not (folder / "results.jsonl").is_file():
            run = trained(choice, choice.lr, seed)
            decoded = out / "confirmation" / choice.key / (f"seed-{seed}" if seed else "")
            evaluate_run(choice.name, run, decoded, out, config, corpus, jobs=[("transcribe", lines, decoded)])
            record.keep_confirmation(choice.key, seed, decoded)
        return System(choice.name, choice.key, folder)

    for key, method, name, teacher in METHODS:
        if key not in keys:
            continue
        if teacher == SPECIALIST:
            if specialist is None:
                raise ValueError("the specialist-taught DistilWhisper needs FT's grid: add ft to --methods")
        elif teacher == "student":
            teacher = config.student
        lrs = [config.method_lr(method) * factor for factor in factors]
        choice = Choice(key, name, {lr: Planned(f"{key}/lr-{lr:g}", method, name, teacher, factor, teacher_cache=key)
                                    for lr, factor in zip(lrs, factors)}, {})
        wanted = f"train/ft/lr-{specialist.lr:g}" if teacher == SPECIALIST else teacher
        for lr in lrs:
            recorded = record.run(key, lr)
            if recorded is not None and recorded.finished:
                taught = _teacher(recorded.config.teacher, recorded.config.out)
                if taught != wanted:
                    raise ValueError(f"{record.root / key}: recorded runs taught by {taught}, now {wanted}: remove "
                                     "that folder to retrain them")
                choice.runs[lr] = recorded
                continue
            print(f"\n{name}, lr {lr:g}: up to {config.steps} steps, dev every {config.eval_every}, patience "
                  f"{config.patience}", flush=True)
            choice.runs[lr] = trained(choice, lr)
        choice.system, choice.expert_mib = tested(choice, 0)
        for seed in seeds:
            if seed:
                print(f"\n{name}, lr {choice.lr:g} (chosen), training seed {seed}", flush=True)
                choice.seeds[seed] = tested(choice, seed)[0]
        if confirm:
            for seed in seeds:
                print(f"\n{name}, lr {choice.lr:g} (chosen), training seed {seed}: the confirmation lines", flush=True)
                choice.confirmed[seed] = confirmed(choice, seed)
        choices.append(choice)
        if key == SPECIALIST_KEY:
            specialist = choice
    return choices


def grid_markdown(choices: list[Choice]) -> list[str]:
    """Per method: kept dev WER at each rate, the chosen rate, steps trained and kept, train minutes."""
    def row(choice: Choice) -> list[str]:
        state = choice.run.state
        kept = state.best_steps or {"all": state.best_step}
        return [choice.name, ", ".join(f"{lr:g}: {num(run.state.best_dev_wer)}" for lr, run in choice.runs.items()),
                f"{choice.lr:g}", str(state.step), ", ".join(f"{k} {v}" for k, v in sorted(kept.items())),
                num(state.seconds / 60)]

    return markdown_table(["method", "kept dev WER per lr", "chosen lr", "steps trained", "kept step",
                           "train (min)"], map(row, choices))


def dev_curves_markdown(choices: list[Choice], record: Record) -> list[str]:
    """Every run's pooled dev WER at each evaluated step: how far from converged each method and rate stopped;
    where it trained, and its teacher's kept dev WER."""
    def about(key: str, lr: float) -> str:
        about = record.about(key, lr)
        teacher = about.get("teacher_kept_dev_wer")
        return f" ({about.get('machine', 'machine not recorded')}{f'; teacher dev {num(teacher)}' if teacher else ''})"

    return [f"- {c.name}, lr {lr:g}{' (chosen)' if lr == c.lr else ''}{about(c.key, lr)}: " + ", ".join(
        f"{step} {num(run.state.dev_wer(step))}" for step in sorted(run.state.dev_counts, key=int))
        for c in choices for lr, run in c.runs.items()]


def dev_curves_figure(choices: list[Choice], path: Path) -> None:
    """Dev WER against training step, one colour per method: its chosen rate solid, the other rates dashed."""
    fig, ax = pyplot().subplots(figsize=(7, 4.5))
    for k, choice in enumerate(choices):
        for lr, run in choice.runs.items():
            steps = sorted(run.state.dev_counts, key=int)
            chosen = lr == choice.lr
            ax.plot([int(s) for s in steps], [run.state.dev_wer(s) for s in steps], color=f"C{k}",
                    ls="-" if chosen else "--", alpha=1.0 if chosen else 0.4, marker="o" if chosen else None,
                    ms=3, label=f"{choice.name}, lr {lr:g}" if chosen else None)
    save_figure(fig, ax, path, "Dev WER during training (solid: the chosen learning rate)", "optimizer step",
                "dev WER % (pooled)")


def tradeoff_figure(table: list[dict], path: Path) -> None:
    """The paper's question in one picture: target-language gain (in-domain WER change, down is better) against
    the change on the control languages nobody trained on; point area = trainable parameters."""
    fig, ax = pyplot().subplots(figsize=(6, 4.5))
    for entry in table[1:]:
        ax.scatter(entry["control_delta"], entry["in-domain_delta"], s=20 + 8 * entry["trainable_m"], alpha=0.6,
                   label=f"{entry['system']} ({num(entry['trainable_m'])} M trainable)")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    save_figure(fig, ax, path, "Target-language gain against control-language change",
                "control WER change (points vs base)", "in-domain WER change (points vs base)")


def _speech(rows: list[dict]) -> str:
    """Whether a set's lines are people or TTS voices (with the engines): the two are never pooled in a claim."""
    engines = sorted({r.get("engine") or "?" for r in rows if r["source"] == "synth"})
    if not engines:
        return "real"
    return f"synthetic ({', '.join(engines)})" if all(r["source"] == "synth" for r in rows) else "mixed"


def seeds_markdown(base: System, choices: list[Choice], seeds: list[int]) -> list[str]:
    """Per method at its chosen rate, per set and language (real and synthetic speech apart): WER at each training
    seed, their mean and sd, each seed's change against the base model, and the mean change with the interval of
    the bootstrap over seeds and scenes (`stats.seeds_delta`).  A change holds across seeds where every seed's change
    has its sign and that interval excludes 0; a set no seed changed (languages without experts) says so."""
    base_rows = read_results(base.directory / "results.jsonl")
    order = {name: i for i, name in enumerate(SETS)}
    parts = sorted({(r["domain"], r["language"]) for r in base_rows}, key=lambda p: (order.get(p[0], len(order)), p))
    table = []
    for choice in choices:
        systems = {0: choice.system, **choice.seeds}
        if sorted(systems) != seeds:
            continue
        decoded = [read_results(systems[seed].directory / "results.jsonl") for seed in seeds]
        for domain, language in parts:
            before = where(base_rows, domain=domain, language=language)
            got = [where(rows, domain=domain, language=language) for rows in decoded]
            wers = [rate(g, "wer") for g in got]
            each = [stats.paired_delta(before, g, "wer").value for g in got]
            mean = stats.seeds_delta(before, got, "wer", cluster=SCENE)
            holds = mean.significant and all(math.copysign(1, d) == math.copysign(1, mean.value) for d in each)
            table.append([choice.name, domain, language, _speech(before), " / ".join(num(w) for w in wers),
                          f"{num(float(np.mean(wers)))} ± "
                          f"{num(float(np.std(wers, ddof=1))) if len(wers) > 1 else '-'}",
                          " / ".join(f"{d:+.1f}" for d in each),
                          f"{mean.value:+.1f} [{mean.low:+.1f}, {mean.high:+.1f}], {p_phrase(mean.p)}",
                          "unchanged" if not any(each) else "yes" if holds else "no"])
    return markdown_table(["method", "set", "language", "speech", f"WER at seeds {','.join(map(str, seeds))}", "mean ± sd",
                           "change vs base per seed", "mean change [seeds x scenes 95 % CI]", "holds across seeds"],
                          table)


def expert_sizes(choices: list[Choice]) -> list[str]:
    """What shipping one language costs: the size of each language's expert file (CLSR methods)."""
    rows = [[c.name, lang, f"{mib:.1f}"] for c in choices for lang, mib in c.expert_mib.items()]
    return markdown_table(["method", "language", "expert file (MiB)"], rows) if rows else []


def run(config: DemoConfig, factors: list[float], keys: list[str], record: Record, seeds: list[int],
        from_record: bool = False, confirm: bool = False) -> str:
    """The tables; `from_record`: from the record alone (the base model's decodes too), nothing built or decoded;
    `confirm`: with the confirmation lines' table."""
    out = Path(config.out)
    if from_record:
        if record.system(BASE_KEY) is None:
            raise ValueError(f"{record.root}: no record of the base model's test decodes: run without --from-record")
        corpus, base = None, record.system(BASE_KEY)[0]
    else:
        corpus = build_corpus(config, out)
        base = System(f"{config.student} fp32", "base", out / "eval" / "base-fp32")
        evaluate_base(base, config, corpus, "fp32")
        if record.system(BASE_KEY) is None:  # the base model's test decodes too: every change is recomputable
            record.keep_system(BASE_KEY, base, {})
    lines = confirmation_lines(config, out) if confirm and not from_record else None
    base_confirmed = confirmed_base(config, out, corpus, record, lines) if confirm else None
    choices = measure(config, factors, keys, out, corpus, record, seeds, lines, confirm)
    headline_first = sorted(choices, key=lambda c: c.key != "distilwhisper-specialist")
    systems = [base, *(c.system for c in headline_first)]
    table = results_table(systems)
    versus = results_table(systems[1:])
    atomic_write_json(out / "method_quality.json", {
        "table": table, "versus_distilwhisper": versus,
        "grid": {c.key: {"lrs": {f"{lr:g}": run.state.best_dev_wer for lr, run in c.runs.items()},
                         "chosen_lr": c.lr, "steps": c.run.state.step, "kept_step": c.run.state.best_step,
                         "kept_steps": c.run.state.best_steps, "dev_counts": c.run.state.dev_counts}
                 for c in choices}})
    tradeoff_figure(table, out / "gain_vs_control.png")
    dev_curves_figure(choices, out / "dev_curves.png")
    against = [f"Against {versus[0]['system']}:", "", *changes_markdown(versus[1:]), ""] if versus[1:] else []
    if len(seeds) > 1:
        against += [f"Across training seeds {','.join(map(str, seeds))} (each method at its chosen rate; the corpus "
                    "is seed 0's; the rows above are seed 0):", "", *seeds_markdown(base, choices, seeds), ""]
    if confirm:
        as_decoded = [dataclasses.replace(c, system=c.confirmed[0], seeds={s: c.confirmed[s] for s in seeds if s})
                      for c in headline_first]
        against += [f"The reserved confirmation lines ({CONFIRMATION.name}/: real Czech of test scenes that no "
                    "choice read), decoded once by the base model and each chosen run at every seed:", "",
                    *seeds_markdown(base_confirmed, as_decoded, seeds), ""]
    return "\n".join([table_markdown(table), "", f"Against {table[0]['system']}:", "", *changes_markdown(table[1:]),
                      "", *against,
                      "Learning rates (kept dev WER of each; the lowest is chosen):", "", *grid_markdown(choices), "",
                      "Dev WER at each evaluated step (pooled over languages):", "",
                      *dev_curves_markdown(choices, record), "", *expert_sizes(choices), "",
                      "![gain against control change](gain_vs_control.png)", "",
                      "![dev curves](dev_curves.png)", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults, not a copy of them
    parser.add_argument("--lr-factors", default="0.3,1,3",
                        help="learning-rate grid, as factors of each method's centre rate (--lr; FT: --ft-lr; "
                             "default: 0.3,1,3)")
    parser.add_argument("--methods", default=",".join(key for key, *_ in METHODS),
                        help="methods to train (default: all; the specialist-taught DistilWhisper needs ft)")
    parser.add_argument("--seeds", default="0",
                        help="training seeds: seed 0 trains the grid and chooses each method's rate; every other "
                             "seed trains that rate again, with its test decodes (the corpus stays seed 0's); "
                             "default 0")
    parser.add_argument("--from-record", action="store_true",
                        help="print the tables from the record alone, training and decoding nothing (seconds, any "
                             "CPU); what the record lacks is an error")
    parser.add_argument("--confirm", action="store_true",
                        help="also decode the reserved confirmation lines (benchmarks/records/confirmation/) once with "
                             "the base model and each chosen run at every seed of --seeds, after every default is "
                             "final; recorded beside the test decodes and reused (runs whose weights are not in "
                             "--out are trained again)")
    parser.add_argument("--record", type=Path, help="where finished runs and test decodes are kept for later "
                        f"invocations (default: {RECORD.relative_to(RECORD.parents[2])} in the repository; "
                        "--quick: OUT/record)")
    args = parser.parse_args()
    factors = comma_list(args.lr_factors, "--lr-factors", number)
    keys = comma_list(args.methods, "--methods")
    seeds = sorted({0, *comma_list(args.seeds, "--seeds", whole)})
    unknown = sorted(set(keys) - {key for key, *_ in METHODS})
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}")
    given = given_flags(args, DemoConfig)
    quick = bool(given.get("quick"))
    config = DemoConfig.make(**{**PINNED, **({} if quick else DEFAULTS), **given, "quick": quick,
                                "out": given.get("out") or "bench-out/method-quality"})
    if not (config.eval_every and config.patience):
        parser.error("runs that stop on dev need --eval-every and --patience (0 is never)")
    start = time.perf_counter()
    with claimed(config):
        record = Record(args.record or (Path(config.out, "record") if quick else RECORD), record_settings(config),
                        read_only=args.from_record)
        text = run(config, factors, keys, record, seeds, args.from_record, args.confirm)
    header = (f"{config.per_language} sentences per target language ({','.join(config.languages)}), control "
              f"{','.join(config.control)}; per method up to {config.steps} steps of batch {config.batch_size}, dev "
              f"every {config.eval_every} steps, patience {config.patience}; lr grid {args.lr_factors} x the centre "
              f"rate ({config.lr:g}, FT {config.method_lr('ft'):g}); scope {config.scope}, "
              f"{'bf16' if record.settings['bf16'] else 'fp32'} training, student {config.student}; " + (
                  "printed from the record (where each run trained: its dev curve below)." if args.from_record else
                  f"{cpu_name()}, {torch.get_num_threads()} threads; {(time.perf_counter() - start) / 60:.0f} min for "
                  "this run (finished runs of an earlier one are reused)."))
    atomic_write_text(Path(config.out, "method_quality.md"), f"{header}\n\n{text}")
    print(f"{header}\n\n{text}")


if __name__ == "__main__":
    main()
