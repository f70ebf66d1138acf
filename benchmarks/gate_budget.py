"""Does the gate budget matter?  The demo's DistilWhisper (specialist teacher, the demo's data, steps and settings)
trained under several gate budgets, compared on dev only (issue #14, item 5).

The budget term |mean gate - target| pulls the share of tokens sent through the experts towards `target` (paper:
0.5, weight 1 beside CE).  Each point of `--budgets` (target:weight; weight 0 drops the term) is one run; every
run keeps, per language, the experts of its best dev step, as the demo does.  Printed per budget: kept dev WER
(pooled and per language), the step each language's experts come from, the share of dev tokens the hard gates send
to the experts at the kept steps, and the mean soft gate of the last training steps.  The lowest dev WER is the
budget a demo should use; the test sets are not decoded here.

With `--out` set to a demo's folder of the same settings the demo's corpus, its FT specialist and its
DistilWhisper (the 0.5:1 point) are reused, so only the other budgets train (~8 min each on 2 cores).

    .venv/bin/python benchmarks/gate_budget.py --out demo-out [--budgets 0.5:1,0.75:1,0.5:0]
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from distilwhisper.cli import add_config_flags, given_flags
from distilwhisper.io import atomic_write_json, atomic_write_text, read_jsonl
from distilwhisper.report import markdown_table, num
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.experiments import SPECIALIST, Planned, claimed, title, train_system
from distilwhisper.studies.demo_corpus import build_corpus
from distilwhisper.runs import TrainedRun
from distilwhisper.train.caches import EncoderCache
from common import comma_list

PAPER = (0.5, 1.0)
LAST_STEPS = 20  # training steps whose mean soft gate is reported


def budget(item: str) -> tuple[float, float]:
    """'0.75:1' -> (target, weight)."""
    try:
        target, weight = (float(v) for v in item.split(":"))
    except ValueError:
        raise ValueError("is not target:weight (e.g. 0.75:1)") from None
    return target, weight


def run_key(budget: tuple[float, float]) -> str:
    """The paper's budget is the demo's own run (reused from a demo folder); others get their own folder."""
    target, weight = budget
    return "distilwhisper-specialist" if budget == PAPER else f"distilwhisper-specialist-gate-{target:g}-w{weight:g}"


def describe(budget: tuple[float, float]) -> str:
    target, weight = budget
    return "no budget term" if weight == 0 else f"target {target:g}, weight {weight:g}" + (
        " (paper)" if budget == PAPER else "")


def summary(run: TrainedRun) -> dict:
    """Kept dev WER (pooled, per language), kept steps, routed share, and the last steps' mean soft gate."""
    state = run.state
    per_language = {lang: 100.0 * errors / words
                    for lang, (errors, words) in state.kept_dev_counts(state.evaluated_step).items() if words}
    rows, _ = read_jsonl(run.layout.metrics)
    gates = [r["g_mean"] for r in rows[-LAST_STEPS:] if "g_mean" in r]
    return {"dev_wer": state.best_dev_wer, "dev_wer_per_language": per_language, "kept_steps": state.best_steps,
            "steps": state.step, "routed": run.routed_share,
            "soft_gate_last_steps": float(np.mean(gates)) if gates else None, "minutes": state.seconds / 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults
    parser.add_argument("--budgets", default="0.5:1,0.75:1,0.5:0",
                        help="gate budgets to train, target:weight each (weight 0: no budget term)")
    args = parser.parse_args()
    try:
        budgets = comma_list(args.budgets, "--budgets", budget)
    except ValueError as error:
        parser.error(str(error))
    given = given_flags(args, DemoConfig)
    config = DemoConfig.make(**{**given, "out": given.get("out") or "bench-out/gate-budget"})
    with claimed(config):
        text = run(config, budgets)
    print("\n" + text)


def run(config: DemoConfig, budgets: list[tuple[float, float]]) -> str:
    """Train (or reuse) the specialist and one DistilWhisper per budget; the dev table, also written to OUT."""
    out = Path(config.out)
    corpus = build_corpus(config, out)
    encodings = EncoderCache()
    train_system(Planned("ft", "ft", title("ft")), config, corpus.train, out, encodings)  # the specialist
    results = {}
    for budget in budgets:
        print(f"\nDistilWhisper, {describe(budget)}: {config.steps} steps", flush=True)
        planned = Planned(run_key(budget), "distilwhisper", title("distilwhisper"), SPECIALIST,
                          teacher_cache="distilwhisper-specialist", gate_target=budget[0], gate_weight=budget[1])
        results[describe(budget)] = summary(train_system(planned, config, corpus.train, out, encodings))
    languages = sorted({lang for r in results.values() for lang in r["dev_wer_per_language"]})
    chosen = min(results, key=lambda name: results[name]["dev_wer"])
    table = markdown_table(
        ["gate budget", "kept dev WER", *(f"dev {lang}" for lang in languages), "kept step per language",
         "dev tokens to experts (hard gates)", f"mean soft gate, last {LAST_STEPS} steps", "train (min)"],
        ([name + (" **chosen**" if name == chosen else ""), num(r["dev_wer"]),
          *(num(r["dev_wer_per_language"].get(lang)) for lang in languages),
          ", ".join(f"{lang} {step}" for lang, step in sorted(r["kept_steps"].items())),
          f"{100 * r['routed']:.0f} %" if r["routed"] is not None else "-", num(r["soft_gate_last_steps"], 2),
          num(r["minutes"])]
         for name, r in results.items()))
    header = (f"DistilWhisper (specialist teacher, keep-translate weight {config.keep_translate:g}), {config.steps} "
              f"steps of batch {config.batch_size}, dev every "
              f"{config.eval_every or config.steps // 2} steps; {','.join(config.languages)}; "
              f"{'bf16' if config.bf16 else 'fp32'} training; {platform.processor() or 'cpu'}, "
              f"{torch.get_num_threads()} threads.  Dev only: the lowest kept dev WER is chosen.")
    text = "\n".join([header, "", *table, ""])
    atomic_write_json(out / "gate_budget.json", {"results": results, "chosen": chosen})
    atomic_write_text(out / "gate_budget.md", text)
    return text


if __name__ == "__main__":
    main()
