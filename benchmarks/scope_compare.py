"""Which layers learn (issue #35, item 7): the same methods trained with `--scope decoder` and `--scope all`,
compared from two records of `benchmarks/method_quality.py` (trains and decodes nothing).

Per method and scope: the learning-rate grid's kept dev WERs (the scope's rate is chosen there), the chosen run's
kept dev WER per language and pooled, seconds per training step (the grid's fastest run's training seconds over its
steps, the dev decodes not counted), the steps it trained and their minutes, and per test set and language (real and synthetic speech apart) the WER of each
scope with the paired change all - decoder and its scene-clustered 95 % interval (`stats.paired_delta`, scenes of
Fish Fillets; a line without a scene is a cluster of its own).  Compare only records of the same corpus, seed and
machine; the steps may differ (a budget of equal minutes gives the slower scope fewer steps).

    .venv/bin/python benchmarks/scope_compare.py \\
        --decoder benchmarks/records/method_quality_300steps --all benchmarks/records/method_quality_300steps_all
    .venv/bin/python benchmarks/scope_compare.py \\
        --decoder benchmarks/records/method_quality_300steps --all benchmarks/records/method_quality_150steps_all
"""

from __future__ import annotations

import argparse
from pathlib import Path

from distilwhisper import stats
from distilwhisper.data.fillets import SCENE
from distilwhisper.io import read_json
from distilwhisper.report import markdown_table, num, p_phrase
from distilwhisper.results import rate, read_results, where
from distilwhisper.studies.demo_corpus import SETS
from common import comma_list

SCOPES = ("decoder", "all")


def grid(record: Path, method: str) -> dict[float, dict]:
    """The method's learning-rate grid at seed 0: rate -> its run's state (kept dev WER, seconds, steps)."""
    runs = {float(p.parents[1].name.removeprefix("lr-")): read_json(p)
            for p in record.glob(f"{method}/lr-*/checkpoint/state.json")}
    if not runs:
        raise ValueError(f"{record}: no run of {method}")
    return dict(sorted(runs.items()))


def chosen_rate(runs: dict[float, dict]) -> float:
    """The rate method_quality.py chooses: the lowest kept dev WER (the smaller rate on ties)."""
    return min(runs, key=lambda lr: (runs[lr]["best_dev_wer"], lr))


def seconds_per_step(runs: dict[float, dict]) -> float:
    """The grid's fastest run's training seconds per step: speed does not depend on the rate, and a run that shared
    the CPU with other work for a while is slower than the scope is."""
    return min(state["seconds"] / state["step"] for state in runs.values())


def dev_wers(state: dict) -> dict[str, float]:
    """The kept checkpoint's dev WER per language and pooled (per-language kept steps for experts)."""
    kept = state.get("best_steps") or {}
    counts = {lang: state["dev_counts"][str(kept.get(lang, state["best_step"]))][lang]
              for lang in state["dev_counts"]["0"]}
    out = {lang: 100.0 * e / n for lang, (e, n) in counts.items()}
    out["pooled"] = 100.0 * sum(e for e, _ in counts.values()) / sum(n for _, n in counts.values())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", type=Path, required=True, help="record of the --scope decoder runs")
    parser.add_argument("--all", type=Path, required=True, help="record of the --scope all runs")
    parser.add_argument("--methods", default="ft,distilwhisper-specialist")
    args = parser.parse_args()
    records = dict(zip(SCOPES, (args.decoder, args.all)))
    for scope, record in records.items():
        if read_json(record / "settings.json")["scope"] != scope:
            parser.error(f"{record}/settings.json: not a --scope {scope} record")
    methods = comma_list(args.methods, "--methods")
    base = read_results(args.decoder / "base" / "eval" / "results.jsonl")
    order = {name: i for i, name in enumerate(SETS)}
    parts = sorted({(r["domain"], r["language"]) for r in base}, key=lambda p: (order.get(p[0], len(order)), p))
    dev_rows, test_rows = [], []
    for method in methods:
        decoded = {}
        for scope, record in records.items():
            try:
                runs = grid(record, method)
            except ValueError as e:
                parser.error(str(e))
            lr, speed = chosen_rate(runs), seconds_per_step(runs)
            dev_rows.append([method, scope, ", ".join(f"{r:g}: {num(s['best_dev_wer'])}" for r, s in runs.items()),
                             f"{lr:g}", " / ".join(f"{lang} {num(w)}" for lang, w in dev_wers(runs[lr]).items()),
                             f"{speed:.2f}", str(runs[lr]["step"]), f"{speed * runs[lr]['step'] / 60:.1f}"])
            decoded[scope] = read_results(record / method / "eval" / "results.jsonl")
        for domain, language in parts:
            before = where(decoded["decoder"], domain=domain, language=language)
            after = where(decoded["all"], domain=domain, language=language)
            speech = "synthetic" if all(r["source"] == "synth" for r in before) else "recorded"
            change = stats.paired_delta(before, after, "wer", cluster=SCENE)
            test_rows.append([method, domain, language, speech, num(rate(where(base, domain=domain,
                                                                                 language=language), "wer")),
                              num(rate(before, "wer")), num(rate(after, "wer")),
                              f"{change.value:+.1f} [{change.low:+.1f}, {change.high:+.1f}], {p_phrase(change.p)}"])
    print("Dev (the kept checkpoint of each run; the scope is chosen here):\n")
    columns = ["method", "scope", "kept dev WER per lr", "chosen lr", "its kept dev WER", "s / step (fastest run)",
               "steps trained", "train (min) at that speed"]
    print("\n".join(markdown_table(columns, dev_rows)))
    print("\nTest (decoded once per run):\n")
    print("\n".join(markdown_table(["method", "set", "language", "speech", "base WER", "decoder WER", "all WER",
                                    "all - decoder [scenes 95 % CI]"], test_rows)))


if __name__ == "__main__":
    main()
