"""DistilWhisper against its baselines, each method at its own best learning rate chosen on dev (issue #14).

Every method -- DistilWhisper distilled from the specialist (the headline), DistilWhisper with the student as its
own teacher, CLSR-FT, FT and LoRA -- trains on the demo's data (its corpus builder and training settings) at each
point of a learning-rate grid (`--lr-factors` times the method's demo rate: 1e-3, FT 1e-4), until dev WER has not
improved for `--patience` evaluations or the step cap (`--steps`).  Dev is decoded as the tests are (`--trim`), the
kept checkpoint of a run is its dev-best (per language for experts), and the learning rate kept per method is the
one with the lowest kept dev WER.  The specialist teacher is FT at its chosen rate, so FT's grid trains first.
Only the chosen run of each method is decoded on the test sets, once; the table compares every method with the base
model and with the headline DistilWhisper (paired bootstrap), and records per method the grid's dev WERs, the chosen
rate, the steps trained and kept, and the train minutes.

Run by hand, not in CI (hours on 2 CPU cores); it resumes like the demo (rerun the same command after an
interruption; finished runs are reused).  Every run of one process shares the frozen encoder's outputs.

    .venv/bin/python benchmarks/method_quality.py --out bench-out/mq
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from distilwhisper.cli import add_config_flags
from distilwhisper.io import atomic_write_json, atomic_write_text
from distilwhisper.report import markdown_table, num, p_phrase, pyplot, save_figure, signed
from distilwhisper.studies.demo import (NAMES, SPECIALIST, TRANSLATE, DemoConfig, Planned, System, claimed,
                                        evaluate_base, evaluate_run, results_table, table_markdown, train_system)
from distilwhisper.studies.demo_corpus import SETS, build_corpus
from distilwhisper.train import TrainedRun
from distilwhisper.train.caches import EncoderCache

# (key, method, row name, teacher): FT first, it is the specialist teacher
METHODS = (("ft", "ft", NAMES["ft"], None),
           ("distilwhisper-specialist", "distilwhisper", "DistilWhisper", SPECIALIST),
           ("distilwhisper", "distilwhisper", "DistilWhisper (self-teacher)", "student"),
           ("clsr-ft", "clsr-ft", NAMES["clsr-ft"], None),
           ("lora", "lora", NAMES["lora"], None))
DEFAULTS = dict(steps=1200, eval_every=100, patience=3)  # a cap, not a budget: runs stop on dev


@dataclasses.dataclass
class Choice:
    """One method's grid: the dev WER each learning rate reached, and the run kept."""

    key: str
    name: str
    runs: dict[float, TrainedRun]  # learning rate -> its finished run

    @property
    def lr(self) -> float:
        """The rate of the lowest kept dev WER (the smaller rate on ties)."""
        return min(self.runs, key=lambda lr: (self.runs[lr].state.best_dev_wer, lr))

    @property
    def run(self) -> TrainedRun:
        return self.runs[self.lr]


def train_grid(config: DemoConfig, factors: list[float], keys: list[str], out: Path, train_manifest: Path
               ) -> list[Choice]:
    """Every method at every grid point (FT first: its chosen run is the specialist teacher)."""
    encodings, choices, specialist = EncoderCache(), [], None
    for key, method, name, teacher in METHODS:
        if key not in keys:
            continue
        if teacher == SPECIALIST:
            if specialist is None:
                raise ValueError("the specialist-taught DistilWhisper needs FT's grid: add ft to --methods")
            teacher = str(specialist.run.layout.root)
        elif teacher == "student":
            teacher = config.student
        runs = {}
        for factor in factors:
            lr = config.method_lr(method) * factor
            planned = Planned(f"{key}/lr-{lr:g}", method, name, teacher, factor, teacher_cache=key)
            print(f"\n{name}, lr {lr:g}: up to {config.steps} steps, dev every {config.eval_every}, patience "
                  f"{config.patience}", flush=True)
            runs[lr] = train_system(planned, config, train_manifest, out, encodings)
        choices.append(Choice(key, name, runs))
        if key == "ft":
            specialist = choices[-1]
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


def versus_markdown(versus: list[dict]) -> list[str]:
    """Every method against the headline DistilWhisper per set: change [95 % CI], p (positive: more errors)."""
    names = [s for s in (*SETS, TRANSLATE) if versus[0][f"{s}_n"]]
    return markdown_table(["system", *names], (
        [e["system"], *(f"{signed(e[f'{s}_delta'])} [{signed(e[f'{s}_delta_low'])}, "
                        f"{signed(e[f'{s}_delta_high'])}], {p_phrase(e[f'{s}_p'])}" for s in names)]
        for e in versus[1:]))


def dev_curves_markdown(choices: list[Choice]) -> list[str]:
    """Every run's pooled dev WER at each evaluated step: how far from converged each method and rate stopped."""
    return [f"- {c.name}, lr {lr:g}{' (chosen)' if lr == c.lr else ''}: " + ", ".join(
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


def expert_sizes(choices: list[Choice]) -> list[str]:
    """What shipping one language costs: the size of each language's expert file (CLSR methods)."""
    rows = [[c.name, p.stem, f"{p.stat().st_size / 2**20:.1f}"] for c in choices
            for p in sorted(c.run.layout.best.glob("*.safetensors")) if c.run.config.uses_experts]
    return markdown_table(["method", "language", "expert file (MiB)"], rows) if rows else []


def run(config: DemoConfig, factors: list[float], keys: list[str]) -> str:
    out = Path(config.out)
    corpus = build_corpus(config, out)
    choices = train_grid(config, factors, keys, out, corpus.train)
    systems = [System(f"{config.student} fp32", "base", out / "eval" / "base-fp32")]
    evaluate_base(systems[0], config, corpus, "fp32")
    headline_first = sorted(choices, key=lambda c: c.key != "distilwhisper-specialist")
    for choice in headline_first:  # the test sets, once per method: its chosen run only
        systems.append(evaluate_run(choice.name, choice.run, out / "eval" / choice.key, out, config, corpus))
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
    return "\n".join([table_markdown(table), "", f"Against {versus[0]['system']}:", "", *versus_markdown(versus),
                      "", "Learning rates (kept dev WER of each; the lowest is chosen):", "",
                      *grid_markdown(choices), "", "Dev WER at each evaluated step (pooled over languages):", "",
                      *dev_curves_markdown(choices), "", *expert_sizes(choices), "",
                      "![gain against control change](gain_vs_control.png)", "",
                      "![dev curves](dev_curves.png)", ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults, not a copy of them
    parser.add_argument("--lr-factors", default="0.3,1,3",
                        help="learning-rate grid, as factors of each method's demo rate (default: 0.3,1,3)")
    parser.add_argument("--methods", default=",".join(key for key, *_ in METHODS),
                        help="methods to train (default: all; the specialist-taught DistilWhisper needs ft)")
    args = parser.parse_args()
    factors = [float(f) for f in args.lr_factors.split(",")]
    keys = args.methods.split(",")
    unknown = sorted(set(keys) - {key for key, *_ in METHODS})
    if unknown:
        parser.error(f"--methods: unknown {', '.join(unknown)}")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)
             if getattr(args, f.name) is not None}
    quick = bool(given.get("quick"))
    config = DemoConfig.make(**{**({} if quick else DEFAULTS), **given, "quick": quick,
                                "out": given.get("out") or "bench-out/method-quality"})
    if not (config.eval_every and config.patience):
        parser.error("runs that stop on dev need --eval-every and --patience (0 is never)")
    start = time.perf_counter()
    with claimed(config):
        text = run(config, factors, keys)
    header = (f"{config.per_language} sentences per target language ({','.join(config.languages)}), control "
              f"{','.join(config.control)}; per method up to {config.steps} steps of batch {config.batch_size}, dev "
              f"every {config.eval_every} steps, patience {config.patience}; lr grid {args.lr_factors} x the demo "
              f"rate ({config.lr:g}, FT {config.method_lr('ft'):g}); scope {config.scope}, "
              f"{'bf16' if config.bf16 else 'fp32'} training, student {config.student}; "
              f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads; "
              f"{(time.perf_counter() - start) / 60:.0f} min for this run (finished runs of an earlier one are "
              "reused).")
    atomic_write_text(Path(config.out, "method_quality.md"), f"{header}\n\n{text}")
    print(f"{header}\n\n{text}")


if __name__ == "__main__":
    main()
