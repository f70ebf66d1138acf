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
from dataclasses import asdict
from pathlib import Path

from distilwhisper.io import atomic_write_json, atomic_write_text
from distilwhisper.report import markdown_table
from distilwhisper.studies.comparison import (figure, language_markdown, language_table, reported, results_table,
                                              sentence, table_markdown)
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import REAL_SPEECH, build_corpus
from distilwhisper.studies.experiments import (SPECIALIST, Planned, System, claimed, evaluate_base, evaluate_run,
                                               title, train_system)
from distilwhisper.train.caches import EncoderCache


def _stage(number: int, total: int, text: str) -> float:
    print(f"\n[{number}/{total}] {text}", flush=True)
    return time.perf_counter()


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
    headline = Planned(headline.key, headline.method, title("distilwhisper"), headline.teacher)
    ft = Planned("ft", "ft", title("ft"))
    if not config.compare:
        return ([ft] if teacher == SPECIALIST else []) + [headline], [headline]
    baselines = [Planned(m, m, title(m)) for m in ("clsr-ft", "lora")]
    others = [other] if other else []
    return [ft, headline, *others, *baselines], [headline, *others, baselines[0], ft, baselines[1]]


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
    lines += [sentence(entry, base, name) for entry in table[1:] for name in reported(table)]
    if versus:
        lines += ["", f"## The baselines against {versus[0]['system']}", "",
                  "Same data, steps and layers; paired bootstrap over the same utterances (a positive change: the "
                  "baseline makes more errors).", ""]
        lines += [sentence(entry, versus[0]["system"], name) for entry in versus[1:] for name in reported(versus)]
    lines += ["", "## Per language", "", "Real speech and synthetic speech are apart here (the in-domain set pools "
              "them); a change is against the base model on the same utterances.", "", *language_markdown(languages)]
    lines += ["", "## Time per stage", "", *markdown_table(
        ["stage", "minutes"], ([stage, f"{seconds / 60:.1f}"] for stage, seconds in
                               [*timings.items(), ("total (this run; stages reused from an earlier run count 0)",
                                                   sum(timings.values()))]))]
    lines += ["", "![WER per evaluation set](demo.png)", ""]
    return "\n".join(lines)


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
