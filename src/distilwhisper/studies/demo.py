"""`distilwhisper demo`: the paper's story end to end on the embedded default, offline.

1. corpus (`demo_corpus.py`): real Czech dialogue (train on some scenes, test on others and on unheard
   characters, and the translate task against each line's English text), synthetic speech where nothing real
   installs (Catalan) and for out-of-domain voices, recorded prompts for the control languages;
2. the base model in fp32 and int8 on every evaluation set;
3. DistilWhisper experts for the target languages, distilled from the teacher: the student itself, any model or
   `train` run, or (`--teacher specialist`) the FT baseline trained first on the same data, a teacher that knows
   the target languages better than the student; with `compare` also the baselines (CLSR-FT, FT, LoRA) and
   DistilWhisper from the other teacher (self or specialist), with the same data, steps and batch size;
4. every trained system on the same sets; languages a system has no experts for run on its shared FFNs;
5. one table, `report.md` with the changes against the base model (paired bootstrap over utterances) and a figure.

Every stage resumes: the corpus, each evaluation (`results.jsonl`) and each training run (`checkpoint/`) are
reused by a rerun with the same `--out`.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from distilwhisper import clsr, stats
from distilwhisper.data.manifest import read_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import EvalConfig, evaluate, run_eval
from distilwhisper.io import atomic_write_json, atomic_write_text, exclusive, read_json, setting_changes
from distilwhisper.quantize import has_bf16_units
from distilwhisper.report import markdown_table, num, p_phrase, pyplot, row_interval, save_figure
from distilwhisper.results import rate, read_results, translation_score, where
from distilwhisper.studies.demo_corpus import REAL_SPEECH, SETS, Corpus, build_corpus
from distilwhisper.train import TrainConfig, TrainedRun, train
from distilwhisper.train.caches import EncoderCache
from distilwhisper.train.config import CLSR_METHODS, check_dropout, check_lr, check_weight
from distilwhisper.train.model import weights_fingerprint
from distilwhisper.train.run import RunLayout

TRANSLATE = "translate"  # the translate task on real speech: BLEU/chrF against the English lines
NAMES = {"distilwhisper": "DistilWhisper", "clsr-ft": "CLSR-FT", "ft": "FT", "lora": "LoRA"}
SPECIALIST = "specialist"  # --teacher value: this demo's FT baseline, trained first on the same data


QUICK = dict(per_language=10, test_per_language=2, control_per_language=3, real_test_per_language=3,
             held_out_per_language=2, dev_per_language=2, steps=3, batch_size=4)


@dataclass
class DemoConfig:
    """`distilwhisper demo`: the whole story offline: corpus, base model, DistilWhisper experts, baselines.
    Rerunning with the same --out resumes every stage; --quick runs every stage on tiny sizes."""

    languages: list[str] = field(default_factory=lambda: ["ca", "cs"],
                                 metadata={"help": "target languages with offline TTS voices"})
    control: list[str] = field(default_factory=lambda: ["en", "es"], metadata={
        "help": "control languages: recorded asterisk prompts, never trained on"})
    out: str = field(default="demo-out", metadata={"help": "output folder"})
    student: str = field(default="bundled:base", metadata={"help": "student model (paper: openai/whisper-small)"})
    teacher: str = field(default=SPECIALIST, metadata={
        "help": f"DistilWhisper's teacher (paper: openai/whisper-large-v2): '{SPECIALIST}' = the FT baseline of this "
                f"demo, trained first (it knows the target languages better than the student; the default, chosen "
                f"on dev: kept dev WER 60.6 against 62.2 with the student as its own teacher), a model reference "
                f"(the student's own name: self-teacher) or a `train` run folder"})
    compare: bool = field(default=False, metadata={"help": "also train CLSR-FT, FT, LoRA and DistilWhisper from the "
                                                           "other teacher (the student itself or the specialist) with "
                                                           "the same data, steps and layers (--scope)"})
    quick: bool = field(default=False, metadata={"help": "tiny sizes that check every stage in minutes: " + ", ".join(
        f"{k.replace('_', '-')} {v}" for k, v in QUICK.items())})
    per_language: int = field(default=360, metadata={"min": 1, "help": "synthesised sentences per target language"})
    test_per_language: int = field(default=24, metadata={
        "help": "of which in each test set, in-domain and out-of-domain; dev gets a tenth of the rest (at most as "
                "many), train the remainder"})
    control_per_language: int = field(default=16, metadata={"help": "recorded prompts per control language"})
    real_test_per_language: int = field(default=96, metadata={
        "help": "real-speech lines (held-out scenes) in the in-domain and translate tests of a language with real "
                "speech (cs)"})
    held_out_per_language: int = field(default=48, metadata={
        "help": "real-speech lines of characters never heard in training, per language with real speech"})
    dev_per_language: int = field(default=48, metadata={"help": "real-speech dev lines per language with real "
                                                                "speech (checkpoint choice)"})
    steps: int = field(default=300, metadata={"help": "optimizer steps per method"})
    patience: int = field(default=0, metadata={
        "min": 0, "help": "stop a run once this many dev evaluations in a row have not improved it (0: train every "
                          "step; benchmarks/method_quality.py stops on it)"})
    eval_every: int | None = field(default=None, metadata={
        "min": 1, "help": "dev evaluations (checkpoint candidates) every N steps (default: half-way and at the end; "
                          "--quick: at the end)"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "utterances per batch, training and decoding"})
    lr: float = field(default=1e-3, metadata={
        "help": "learning rate of experts, gates and LoRA (DistilWhisper's, chosen on dev at 300 steps from 3e-4, "
                "1e-3, 3e-3: benchmarks/records/method_quality_300steps)"})
    ft_lr: float = field(default=3e-4, metadata={
        "help": "learning rate of FT, which is also the specialist teacher (chosen on dev at 300 steps from 3e-5, "
                "1e-4, 3e-4; each method's rate is its own)"})
    expert_dropout: float = field(default=0.3, metadata={
        "help": "dropout after each expert in training (CLSR methods; the paper's 0.3)"})
    keep_translate: float = field(default=0.0, metadata={
        "help": "CLSR methods: weight of the term that trains the experts to keep the base model's translate-task "
                "outputs on the real Czech training lines, so that they also decode that task (train "
                "--keep-translate); 0: the paper's recipe, and experts that learn transcription only leave the "
                "translate task to the shared FFNs (the base model). Chosen on dev from 0, 0.1, 0.3, 1, 3: the "
                "lowest dev WER among the weights whose served dev chrF is not below the base model's "
                "(benchmarks/records/keep_translate)"})
    scope: str = field(default="decoder", metadata={
        "help": "layers that train, for every method (decoder: the frozen encoder then runs once per clip; all = "
                "the paper's setting, several times slower per step)", "choices": ("all", "encoder", "decoder")})
    threads: int | None = field(default=None, metadata={"min": 1, "help": "torch threads (default: all cores)"})
    train_precision: str = field(default="auto", metadata={
        "help": "training arithmetic: bf16 autocast or fp32; auto = bf16 where the hardware has bf16 units (GPUs, "
                "CPUs with AVX-512 BF16 or AMX; benchmarks/clsr_speed.py measures it), fp32 elsewhere (emulated "
                "bf16 is 3-5x slower); evaluation is fp32 always", "choices": ("auto", "bf16", "fp32")})
    seed: int = field(default=0, metadata={"help": "random seed of the corpus and of training"})

    def __post_init__(self) -> None:
        check_dropout("--expert-dropout", self.expert_dropout)  # before minutes of corpus and evaluation
        check_weight("--keep-translate", self.keep_translate)
        check_lr("--lr", self.lr)
        check_lr("--ft-lr", self.ft_lr)

    @classmethod
    def make(cls, quick: bool = False, **overrides) -> "DemoConfig":
        """The default sizes (or `QUICK`'s), with the non-None `overrides`."""
        values = {**(QUICK if quick else {}), **{k: v for k, v in overrides.items() if v is not None}}
        return cls(quick=quick, **values)

    @property
    def bf16(self) -> bool:
        """Train under bf16 autocast (`train_precision`, resolved on this machine)."""
        return self.train_precision == "bf16" or (self.train_precision == "auto" and has_bf16_units(
            "cuda" if torch.cuda.is_available() else "cpu"))

    def method_lr(self, method: str) -> float:
        return self.ft_lr if method == "ft" else self.lr


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


def _stage(number: int, total: int, text: str) -> float:
    print(f"\n[{number}/{total}] {text}", flush=True)
    return time.perf_counter()


def evaluate_base(system: System, config: DemoConfig, corpus: Corpus, precision: str) -> None:
    for task, data, out in _tasks(system, corpus):
        run_eval(EvalConfig(model=config.student, data=str(data), out=str(out), batch_size=config.batch_size,
                            trim=True, precision=precision, threads=config.threads, task=task))
    variant = system.directory / "variant.json"
    system.loaded = read_json(variant)["parameters"] if variant.exists() else 0


def evaluate_run(name: str, run: TrainedRun, directory: Path, out: Path, config: DemoConfig, corpus: Corpus
                 ) -> System:
    """A finished run as a row: its counters, then its evaluations under `directory`, named by the run's folder
    relative to `out` (so a moved folder still resumes; evaluations refuse another name)."""
    model, processor = run.load()
    system = System(name, run.config.method, directory, train_seconds=run.state.seconds, routed=run.routed_share,
                    kept_step=run.state.best_step,
                    kept_steps=run.state.best_steps,  # empty unless experts are kept per language
                    trainable=run.trainable_parameters, loaded=sum(p.numel() for p in model.parameters()))
    decoder, weights = WhisperDecoder(model, processor, trim=True), weights_fingerprint(model)
    evaluated_as = f"{run.config.method}:{run.layout.root.relative_to(out)}"
    served = list(clsr.served_tasks(model)) if clsr.clsr_modules(model) else []  # experts: the tasks they decode
    for task, data, folder in _tasks(system, corpus):
        evaluate(decoder, read_manifest(data)[0], folder,
                 EvalConfig(model=evaluated_as, data=str(data), out=str(folder), trim=True, task=task,
                            expert_tasks=served).identity(),
                 batch_size=config.batch_size, task=task, weights=weights)  # a run retrained in place: decoded again
    return system


def _tasks(system: System, corpus: Corpus) -> list[tuple[str, Path, Path]]:
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


def planned_runs(config: DemoConfig) -> tuple[list[Planned], list[Planned]]:
    """(runs in training order, runs in table order): a specialist teacher trains before the students it teaches;
    the table shows the headline DistilWhisper first.  The specialist is the FT baseline itself; it is evaluated
    (a row) with `compare` only."""
    teacher = config.teacher
    self_taught = Planned("distilwhisper", "distilwhisper", "DistilWhisper (self-teacher)", config.student)
    specialist_taught = Planned("distilwhisper-specialist", "distilwhisper", "DistilWhisper (specialist teacher)",
                                SPECIALIST)
    if teacher == SPECIALIST:
        headline, other = specialist_taught, self_taught
    elif teacher == config.student:
        headline, other = self_taught, specialist_taught
    else:
        headline, other = Planned("distilwhisper", "distilwhisper", "DistilWhisper", teacher), None
    headline = Planned(headline.key, headline.method, NAMES["distilwhisper"], headline.teacher)
    ft = Planned("ft", "ft", NAMES["ft"])
    if not config.compare:
        return ([ft] if teacher == SPECIALIST else []) + [headline], [headline]
    baselines = [Planned(m, m, NAMES[m]) for m in ("clsr-ft", "lora")]
    others = [other] if other else []
    return [ft, headline, *others, *baselines], [headline, *others, baselines[0], ft, baselines[1]]


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
        expert_dropout=config.expert_dropout, keep_translate=config.keep_translate if method in CLSR_METHODS else 0.0,
        eval_every=config.eval_every or (config.steps if config.quick else max(config.steps // 2, 1)),
        save_every=max(config.steps // 6, 1), seed=config.seed)
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


def _system_rows(system: System) -> list[dict]:
    return read_results(system.directory / "results.jsonl")


def _translation_rows(system: System) -> list[dict]:
    return read_results(system.directory / TRANSLATE / "results.jsonl")


def results_table(systems: list[System], sets: tuple[str, ...] = SETS) -> list[dict]:
    """Per system and set (a `domain` of the evaluation manifest): WER/CER pooled over the set's languages, and
    BLEU/chrF of the translate task; change against the first system (paired bootstrap); speed."""
    base_rows, base_translated = _system_rows(systems[0]), _translation_rows(systems[0])
    table = []
    for system in systems:
        rows = _system_rows(system)
        entry = {"system": system.name, "trainable_m": system.trainable / 1e6, "loaded_m": system.loaded / 1e6,
                 "routed_to_experts": system.routed, "kept_step": system.kept_step,
                 "kept_steps": system.kept_steps,
                 "train_minutes": system.train_seconds / 60,
                 "s_per_utt": sum(r["decode_seconds"] for r in rows) / max(len(rows), 1)}
        for name in sets:
            got, base = where(rows, domain=name), where(base_rows, domain=name)
            delta = stats.paired_delta(base, got, "wer", seed=len(table))
            entry.update({f"{name}_wer": rate(got, "wer"), f"{name}_cer": rate(got, "cer"),
                          f"{name}_delta": delta.value, f"{name}_delta_low": delta.low,
                          f"{name}_delta_high": delta.high, f"{name}_p": delta.p, f"{name}_n": len(got)})
        translated = _translation_rows(system)
        delta = stats.paired_translation_delta(base_translated, translated, "bleu", seed=len(table))
        entry.update({f"{TRANSLATE}_bleu": translation_score(translated, "bleu"),
                      f"{TRANSLATE}_chrf": translation_score(translated, "chrf"), f"{TRANSLATE}_delta": delta.value,
                      f"{TRANSLATE}_delta_low": delta.low, f"{TRANSLATE}_delta_high": delta.high,
                      f"{TRANSLATE}_p": delta.p, f"{TRANSLATE}_n": len(translated)})
        table.append(entry)
    return table


def language_table(systems: list[System]) -> list[dict]:
    """WER/CER per system, set and language."""
    table = []
    for system in systems:
        rows = _system_rows(system)
        for name in SETS:
            for language in sorted({r["language"] for r in rows if r.get("domain") == name}):
                got = where(rows, domain=name, language=language)
                table.append({"system": system.name, "set": name, "language": language, "utterances": len(got),
                              "wer": rate(got, "wer"), "cer": rate(got, "cer")})
    return table


def table_markdown(table: list[dict], sets: tuple[str, ...] = SETS) -> str:
    def row(e: dict) -> list[str]:
        trained = e["trainable_m"] > 0
        return [e["system"], *(f"{num(e[f'{s}_wer'])} / {num(e[f'{s}_cer'])}" for s in sets),
                *([f"{num(e[f'{TRANSLATE}_bleu'])} / {num(e[f'{TRANSLATE}_chrf'])}"] if translate else []),
                num(e["trainable_m"]) if trained else "-", num(e["loaded_m"]),
                num(e["train_minutes"]) if trained else "-", num(e["s_per_utt"], 2)]

    sets = [s for s in sets if table[0][f"{s}_n"]]
    translate = bool(table[0][f"{TRANSLATE}_n"])
    return "\n".join(markdown_table(["system", *(f"{s} WER / CER" for s in sets),
                                     *(["translate BLEU / chrF"] if translate else []),
                                     "trainable (M)", "loaded (M)", "train (min)", "s/utt"], map(row, table)))


def changes_markdown(entries: list[dict], sets: tuple[str, ...] = SETS) -> list[str]:
    """Each entry's change against its table's first system, per set with utterances: WER points (positive: more
    errors; translate: BLEU points, positive: better) [95 % CI], p of the paired bootstrap."""
    names = [s for s in (*sets, TRANSLATE) if any(e[f"{s}_n"] for e in entries)]
    return markdown_table(["system", *(f"{s} BLEU" if s == TRANSLATE else s for s in names)], (
        [e["system"], *(f"{row_interval(e, f'{s}_delta', True)}, {p_phrase(e[f'{s}_p'])}" if e[f"{s}_n"] else "-"
                        for s in names)] for e in entries))


def _sentence(entry: dict, base: str, name: str) -> str:
    value, low, high, p = (entry[f"{name}_delta"], entry[f"{name}_delta_low"], entry[f"{name}_delta_high"],
                           entry[f"{name}_p"])
    if value != value:
        return f"- {entry['system']}, {name}: no utterances."
    if p < 0.05:
        verdict = "lower than" if value < 0 else "higher than"
        verdict = f"significantly {verdict} {base} ({p_phrase(p)})"
    else:
        verdict = f"not significantly different from {base} ({p_phrase(p)})"
    metric, score = ("BLEU", entry[f"{name}_bleu"]) if name == TRANSLATE else ("WER", entry[f"{name}_wer"])
    return (f"- {entry['system']}, {name}: {metric} {num(score)}, change {value:+.1f} points "
            f"[{low:+.1f}, {high:+.1f}] against {base}: {verdict}.")


def _reported(table: list[dict]) -> list[str]:
    """The sets this run has utterances in, and the translate task when it ran."""
    return [name for name in (*SETS, TRANSLATE) if table[0][f"{name}_n"]]


def figure(table: list[dict], path: Path) -> None:
    """Grouped bars: WER of every system on each evaluation set."""
    sets = [s for s in SETS if table[0][f"{s}_n"]]
    fig, ax = pyplot().subplots(figsize=(7.5, 4))
    width = 0.8 / len(table)
    for k, entry in enumerate(table):
        ax.bar([i + k * width for i in range(len(sets))], [entry[f"{s}_wer"] for s in sets], width,
               label=entry["system"])
    ax.set_xticks([i + width * (len(table) - 1) / 2 for i in range(len(sets))], sets)
    save_figure(fig, ax, path, "WER per evaluation set", "", "WER %")


def _kept(entry: dict, steps: int) -> str:
    """Which checkpoint a trained system is, in words (the best dev WER among step 0 and the evaluated steps; for
    experts, per language)."""
    kept = entry.get("kept_steps") or {}
    if entry["kept_step"] == 0 or (kept and not any(kept.values())):
        return (f"{entry['system']}: no evaluated step beat the untrained start on dev, so the kept model is the "
                "starting model (for CLSR methods: the base model's outputs).")
    if kept:
        text = (f"{entry['system']}: each language's experts kept at its own best dev WER: "
                + ", ".join(f"{lang} from step {step}" for lang, step in sorted(kept.items())) + f" of {steps}")
    else:
        text = f"{entry['system']}: kept step {entry['kept_step']} of {steps} (best dev WER)"
    if entry.get("routed_to_experts") is not None:
        text += (f"; there the hard gates sent {100 * entry['routed_to_experts']:.0f} % of the dev tokens to the "
                 "experts (0 % would make it the base model)")
    return text + "."


def _teacher_words(config: DemoConfig) -> str:
    if config.teacher == SPECIALIST:
        return "the specialist (this demo's FT baseline, trained first on the same data)"
    return f"{config.teacher} (the student itself)" if config.teacher == config.student else config.teacher


def report_markdown(config: DemoConfig, table: list[dict], languages: list[dict], timings: dict[str, float],
                    versus: list[dict]) -> str:
    base = table[0]["system"]
    real = [lang for lang in config.languages if lang in REAL_SPEECH]
    synthetic = [lang for lang in config.languages if lang not in REAL_SPEECH]
    speech = []
    if real:
        speech.append(f"{', '.join(real)}: real human speech (Fish Fillets NG's acted dialogue): training on its "
                      "training scenes, the in-domain test on held-out scenes, the held-out-characters test on "
                      "voices never heard in training, the translate task (speech to English, BLEU/chrF) on the "
                      "in-domain lines; its out-of-domain test is synthetic voices")
    if synthetic:
        speech.append(f"{', '.join(synthetic)}: synthetic speech only (no transcribed human speech installs "
                      "offline): in-domain voices for training and the in-domain test, other voices for the "
                      "out-of-domain test")
    lines = ["# DistilWhisper demo", "",
             f"Target languages {', '.join(config.languages)} ({'; '.join(speech)}); control languages "
             f"{', '.join(config.control)} (recorded telephone prompts, never trained on). Student "
             f"{config.student}, teacher {_teacher_words(config)}; {config.steps} steps of batch {config.batch_size}, "
             f"lr {config.lr:g} (FT: {config.method_lr('ft'):g}), expert dropout {config.expert_dropout:g}, "
             f"keep-translate weight {config.keep_translate:g} (the experts decode "
             f"{'both tasks' if config.keep_translate else 'transcription; translation runs on the shared FFNs'}), "
             "experts (and the baselines) train the "
             f"{'encoder and decoder' if config.scope == 'all' else config.scope} layers "
             f"({'bf16 autocast' if config.bf16 else 'fp32'}), greedy fp32 decoding, padding-free encoder.", "",
             table_markdown(table), "",
             "WER/CER in % pooled over the set's languages; BLEU/chrF of the translate task (sacrebleu); "
             "trainable = parameters updated by training; loaded = parameters in memory to serve every language "
             "(the base model plus all experts); s/utt = decoding time per utterance in this run.", ""]
    lines += [_kept(e, config.steps) for e in table if e.get("kept_step") is not None]
    lines += ["", "## Changes against the base model", "",
             "Paired bootstrap over the same utterances (95 % intervals).", ""]
    lines += [_sentence(entry, base, name) for entry in table[1:] for name in _reported(table)]
    if versus:
        lines += ["", f"## The baselines against {versus[0]['system']}", "",
                  "Same data, steps and layers; paired bootstrap over the same utterances (a positive change: the "
                  "baseline makes more errors).", ""]
        lines += [_sentence(entry, versus[0]["system"], name) for entry in versus[1:] for name in _reported(versus)]
    lines += ["", "## Per language", "", *markdown_table(
        ["system", "set", "language", "utts", "WER", "CER"],
        ([r["system"], r["set"], r["language"], r["utterances"], num(r["wer"]), num(r["cer"])] for r in languages))]
    lines += ["", "## Time per stage", "", *markdown_table(
        ["stage", "minutes"], ([stage, f"{seconds / 60:.1f}"] for stage, seconds in
                               [*timings.items(), ("total (this run; stages reused from an earlier run count 0)",
                                                   sum(timings.values()))]))]
    lines += ["", "![WER per evaluation set](demo.png)", ""]
    return "\n".join(lines)


@contextmanager
def claimed(config: DemoConfig) -> Iterator[Path]:
    """The demo's output folder, held by this process (a second run on it stops at once instead of mixing files
    into the first's), with the configured torch threads: for the demo and the benchmarks built on its stages."""
    if config.threads:
        torch.set_num_threads(config.threads)
    with exclusive(config.out) as out:
        yield Path(out)


def run_demo(config: DemoConfig) -> list[dict]:
    """Run every stage (resuming finished ones); prints the table and writes `out/report.md`; returns the table."""
    with claimed(config) as out:
        return _run_stages(config, out)


def _run_stages(config: DemoConfig, out: Path) -> list[dict]:
    trained, shown = planned_runs(config)
    total = 3 + len(trained)
    timings: dict[str, float] = {}
    real = [lang for lang in config.languages if lang in REAL_SPEECH]
    start = _stage(1, total, f"corpus: synthetic {','.join(config.languages)}, real {','.join(real) or '-'}, "
                             f"recorded {','.join(config.control)}")
    corpus = build_corpus(config, out)  # refuses a folder of another corpus before anything is written
    atomic_write_json(out / "demo.json", asdict(config))
    timings["corpus"] = time.perf_counter() - start

    start = _stage(2, total, f"base model {config.student}: fp32 and int8 on every set")
    systems = [System(f"{config.student} fp32", "base", out / "eval" / "base-fp32"),
               System(f"{config.student} int8", "base", out / "eval" / "base-int8")]
    for system, precision in zip(systems, ("fp32", "int8-dynamic")):
        evaluate_base(system, config, corpus, precision)
    timings["base evaluation"] = time.perf_counter() - start

    evaluated, encodings = {}, EncoderCache()  # every run trains on the same clips with the same frozen encoder
    for k, planned in enumerate(trained):
        rowed = planned in shown
        start = _stage(3 + k, total, f"{planned.name if rowed else 'specialist teacher (FT)'}: train "
                                     f"{config.steps} steps{', then evaluate' if rowed else ''}")
        run = train_system(planned, config, corpus.train, out, encodings)
        if rowed:
            evaluated[planned] = evaluate_run(planned.name, run, out / "eval" / planned.key, out, config, corpus)
        timings[f"{planned.name}{' (train + evaluate)' if rowed else ' (specialist teacher: train)'}"] = \
            time.perf_counter() - start
    systems += [evaluated[planned] for planned in shown]

    start = _stage(total, total, "report")
    table = results_table(systems)
    trained = [s for s in systems if s.method != "base"]
    versus = results_table(trained) if len(trained) > 1 else []
    languages = language_table(systems)
    figure(table, out / "demo.png")
    atomic_write_json(out / "results.json", {"table": table, "versus_distilwhisper": versus,
                                             "languages": languages})
    timings["report"] = time.perf_counter() - start
    atomic_write_text(out / "report.md", report_markdown(config, table, languages, timings, versus))
    print("\n" + table_markdown(table))
    print(f"\nreport: {out / 'report.md'}")
    return table
