"""Can the experts keep Whisper's translate task?  The demo's DistilWhisper (specialist teacher, the demo's data,
steps and settings) trained with several weights of the keep-translate term (`train --keep-translate`), compared
on dev only (issues #13 and #14: the experts should keep Whisper's other task).

Experts trained on transcription take the tokens their gates route whatever the task, so the translate task
drifts when they decode it (the demo at 13251b3: BLEU 1.4 -> 0.5; the converged comparison: 1.4 -> 0.7).  Two
answers, both measured here:
- the keep-translate term runs the real Czech training clips a second time with the translate prompt and their
  English lines, and pulls the experts' outputs there towards the frozen base model's (JS divergence), without any
  translation target of its own; experts trained with it decode both tasks;
- experts trained without it (weight 0, the paper's recipe) decode transcription only and leave the translate task
  to the shared FFNs, i.e. the base model (`clsr.served_tasks`).
Each weight of `--weights` is one run (the demo's default weight: the demo's own run).  Printed per weight: kept dev
WER (pooled and per language), Czech dev translate BLEU and chrF (the 48 dev lines, decoded as the test is: greedy,
padding-free) of the experts themselves and as served (what `eval`/`transcribe`/the demo decode), the base
model's on the same lines, the kept steps, and training minutes.

The rule, fixed before the runs: among the weights whose dev chrF is not below the base model's, the lowest kept
dev WER; if none is, the highest dev chrF (chrF, not BLEU: on 48 short lines whisper-base's BLEU is near zero and
moves with a few n-gram matches).  Since experts serve only the tasks they were trained for, the rule reads the
served chrF.  The test sets are not decoded here.

With `--out` set to a demo's folder of the same settings the demo's corpus, its FT specialist and its
DistilWhisper (at its default weight) are reused, so only the other weights train (~12 min each on 2 cores).

    .venv/bin/python benchmarks/keep_translate.py --out demo-out [--weights 0,0.1,0.3,1,3]
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
from pathlib import Path

import torch

from distilwhisper import clsr
from distilwhisper.cli import add_config_flags, given_flags
from distilwhisper.data.manifest import TRANSLATION_REFERENCE, read_manifest, write_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import ONE_PASS, EvalConfig, evaluate, run_eval
from distilwhisper.io import atomic_write_json, atomic_write_text
from distilwhisper.report import markdown_table, num
from distilwhisper.results import read_results, translation_score
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.experiments import SPECIALIST, Planned, claimed, title, train_system
from distilwhisper.studies.demo_corpus import build_corpus
from distilwhisper.runs import TrainedRun
from distilwhisper.train.caches import EncoderCache
from distilwhisper.train.model import weights_fingerprint
from common import comma_list, number

FOLDER = "keep-translate"  # under --out: the dev translate manifest and decodes


def loss_weight(item: str) -> float:
    weight = number(item)
    if not weight >= 0:
        raise ValueError("is not a loss weight (0 or positive)")
    return weight


def run_key(weight: float, demo_weight: float) -> str:
    """The demo's own weight is the demo's own run (reused from a demo folder); others get their own folder."""
    return ("distilwhisper-specialist" if weight == demo_weight
            else f"distilwhisper-specialist-keep-translate-{weight:g}")


def dev_translation_manifest(train_manifest: Path, out: Path) -> Path:
    """The dev lines that have an English line, as a manifest of their own."""
    dev = [u for u in read_manifest(train_manifest)[0] if u.split == "dev" and u.metadata(TRANSLATION_REFERENCE)]
    if not dev:
        raise ValueError(f"{train_manifest}: no dev line has an English line ({TRANSLATION_REFERENCE})")
    return write_manifest(out / FOLDER / "dev-translate.jsonl", dev, relative=False)


def translation_scores(folder: Path) -> dict:
    rows = read_results(folder / "results.jsonl")
    return {"bleu": translation_score(rows, "bleu"), "chrf": translation_score(rows, "chrf"), "n": len(rows)}


def dev_translation(model, processor, run: TrainedRun, manifest: Path, folder: Path, config: DemoConfig,
                    out: Path, weights: str) -> dict:
    """BLEU/chrF of a run's kept model on the dev translate lines (resumable, redone for other weights), its
    experts decoding the tasks `clsr.served_tasks` gives."""
    decoder = WhisperDecoder(model, processor, trim=True)
    evaluated_as = f"{run.config.method}:{run.layout.root.relative_to(out)}"
    evaluate(decoder, read_manifest(manifest)[0], folder,
             EvalConfig(model=evaluated_as, data=str(manifest), out=str(folder), trim=True, task="translate",
                        expert_tasks=list(clsr.served_tasks(model))).identity(),
             batch_size=config.batch_size, options=ONE_PASS.with_(task="translate"),
             weights=weights)
    return translation_scores(folder)


def dev_translations(run: TrainedRun, manifest: Path, folder: Path, config: DemoConfig, out: Path) -> dict:
    """{"experts": the experts decoding the translate task, "served": as the run's experts are served (the same
    decode when they were trained for translation, otherwise the shared FFNs')}."""
    model, processor = run.load()
    served, weights = clsr.served_tasks(model), weights_fingerprint(model)
    clsr.serve_tasks(model, clsr.TASKS)
    experts = dev_translation(model, processor, run, manifest, folder, config, out, weights)
    if "translate" in served:
        return {"experts": experts, "served": experts}
    clsr.serve_tasks(model, served)
    return {"experts": experts,
            "served": dev_translation(model, processor, run, manifest, folder / "served", config, out, weights)}


def summary(run: TrainedRun) -> dict:
    state = run.state
    per_language = {lang: 100.0 * errors / words
                    for lang, (errors, words) in state.kept_dev_counts(state.evaluated_step).items() if words}
    return {"dev_wer": state.best_dev_wer, "dev_wer_per_language": per_language, "kept_steps": state.best_steps,
            "routed": run.routed_share, "minutes": state.seconds / 60}


def choose(results: dict[str, dict], base_chrf: float) -> str:
    """The rule of the module docstring."""
    keeping = [name for name, r in results.items() if r["translate"]["served"]["chrf"] >= base_chrf]
    if keeping:
        return min(keeping, key=lambda name: results[name]["dev_wer"])
    return max(results, key=lambda name: results[name]["translate"]["served"]["chrf"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults
    parser.add_argument("--weights", default="0,0.1,0.3,1,3",
                        help="keep-translate weights to train (the demo's default weight: its own run)")
    args = parser.parse_args()
    try:
        weights = comma_list(args.weights, "--weights", loss_weight)
    except ValueError as error:
        parser.error(str(error))
    given = {k: v for k, v in given_flags(args, DemoConfig).items() if k != "keep_translate"}  # --weights sets it
    config = DemoConfig.make(**{**given, "out": given.get("out") or "bench-out/keep-translate"})
    with claimed(config):
        text = run(config, weights)
    print("\n" + text)


def run(config: DemoConfig, weights: list[float]) -> str:
    """Train (or reuse) the specialist and one DistilWhisper per weight; the dev table, also written to OUT."""
    out = Path(config.out)
    corpus = build_corpus(config, out)
    manifest = dev_translation_manifest(corpus.train, out)
    run_eval(EvalConfig(model=config.student, data=str(manifest), out=str(out / FOLDER / "base"),
                        batch_size=config.batch_size, trim=True, threads=config.threads, task="translate"))
    base = translation_scores(out / FOLDER / "base")
    encodings = EncoderCache()
    train_system(Planned("ft", "ft", title("ft")), config, corpus.train, out, encodings)  # the specialist
    results = {}
    for weight in weights:
        print(f"\nDistilWhisper, keep-translate weight {weight:g}: {config.steps} steps", flush=True)
        key = run_key(weight, config.keep_translate)
        planned = Planned(key, "distilwhisper", title("distilwhisper"), SPECIALIST,
                          teacher_cache="distilwhisper-specialist")
        trained = train_system(planned, dataclasses.replace(config, keep_translate=weight), corpus.train, out,
                               encodings)
        results[f"{weight:g}"] = {**summary(trained), "translate": dev_translations(
            trained, manifest, out / FOLDER / key, config, out)}
    chosen = choose(results, base["chrf"])
    languages = sorted({lang for r in results.values() for lang in r["dev_wer_per_language"]})
    table = markdown_table(
        ["keep-translate weight", "kept dev WER", *(f"dev {lang}" for lang in languages),
         "dev translate BLEU / chrF: experts", "served", "kept step per language", "dev tokens to experts",
         "train (min)"],
        [["base model", "-", *("-" for _ in languages), "-", f"{num(base['bleu'])} / {num(base['chrf'])}", "-", "-",
          "-"]]
        + [[name + (" **chosen**" if name == chosen else ""), num(r["dev_wer"]),
            *(num(r["dev_wer_per_language"].get(lang)) for lang in languages),
            *(f"{num(r['translate'][k]['bleu'])} / {num(r['translate'][k]['chrf'])}" for k in ("experts", "served")),
            ", ".join(f"{lang} {step}" for lang, step in sorted(r["kept_steps"].items())),
            f"{100 * r['routed']:.0f} %" if r["routed"] is not None else "-", num(r["minutes"])]
           for name, r in results.items()])
    header = (f"DistilWhisper (specialist teacher), {config.steps} steps of batch {config.batch_size}; "
              f"{','.join(config.languages)}; dev translate: {base['n']} Czech dev lines; "
              f"{'bf16' if config.bf16 else 'fp32'} training; {platform.processor() or 'cpu'}, "
              f"{torch.get_num_threads()} threads.  Served: experts decode the tasks they were trained for "
              "(translate only with the term), the shared FFNs the others.  Dev only: among the weights whose served "
              "dev chrF is not below the base model's, the lowest kept dev WER is chosen.")
    text = "\n".join([header, "", *table, ""])
    atomic_write_json(out / FOLDER / "keep_translate.json", {"base": base, "results": results, "chosen": chosen})
    atomic_write_text(out / FOLDER / "keep_translate.md", text)
    return text


if __name__ == "__main__":
    main()
