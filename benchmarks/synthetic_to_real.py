"""Synthetic-to-real transfer (issue #13): do experts trained on synthetic speech help or hurt real speech?

For a target language with both real transcribed speech and offline TTS voices (Czech: Fish Fillets NG's acted
dialogue, and the Festival/espeak-ng voices), the demo's pipeline -- the FT specialist, then DistilWhisper's experts
distilled from it (or from `--teacher`) -- is trained under each condition (`--conditions`):

- `synthetic`: synthetic speech only; checkpoints (each language's kept step) chosen on synthetic dev lines;
- `synthetic-real-dev`: the same training speech, checkpoints chosen on real dev lines (does choosing *how long*
  to train on real speech make synthetic training transfer?);
- `real`: the real training scenes (the demo's Czech data);
- `both`: real and synthetic training speech, checkpoints chosen on both dev sets;
- `synthetic-sox`: the synthetic training sentences and voices under acoustic conditions (`SOX_CONDITIONS`, round
  robin: noise, speed, pitch, reverb; one in seven stays clean), checkpoints chosen on the clean synthetic dev lines
  as in `synthetic` (do varied acoustics make synthetic training transfer?);
- `synthetic-voices`: the synthetic training sentences read by more voices (`MORE_VOICES`, espeak-ng variants,
  beside the in-domain voices; the out-of-domain voices stay unheard), clean synthetic dev as in `synthetic`;
- `synthetic-base-teacher`: `synthetic`, but DistilWhisper distils from the student itself, the robust base model,
  instead of a specialist trained on the same synthetic speech (FT is that condition's, not trained again).

`--baselines clsr-ft,lora` trains those methods too under every condition (FT always trains: it is the specialist).

Every system is tested once, at the end, on the same sets: real speech from held-out scenes (`in-domain`), real
characters never heard in training (`held-out-characters`), the synthetic voices training used
(`synthetic-in-domain`) and other synthetic voices (`out-of-domain`), the control languages (their transcripts must
not change), and Whisper's translate task on the real lines (BLEU/chrF); each against the base model, paired
bootstrap over the same utterances.  The table goes to `OUT/synthetic_to_real.md` and is printed.

Run by hand, not in CI (about an hour on 2 CPU cores at the defaults); it resumes like the demo: rerun the same
command after an interruption.  The demo's flags set the sizes, e.g.

    .venv/bin/python benchmarks/synthetic_to_real.py --out bench-out/s2r
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from distilwhisper.cli import add_config_flags
from distilwhisper.data.manifest import Utterance, read_manifest, write_manifest
from distilwhisper.data.synth import synth_corpus
from distilwhisper.io import atomic_write_json, atomic_write_text
from distilwhisper.studies.comparison import changes_markdown, results_table, table_markdown
from distilwhisper.studies.demo import DemoConfig, planned_runs
from distilwhisper.studies.experiments import (Planned, System, claimed, evaluate_base, evaluate_run, title,
                                               train_system)
from distilwhisper.studies.demo_corpus import CONTROL, HELD_OUT, IN_DOMAIN, OUT_OF_DOMAIN, REAL_SPEECH, Corpus, \
    build_corpus
from distilwhisper.train.caches import EncoderCache
from common import comma_list

SYNTHETIC_IN = "synthetic-in-domain"  # the synthetic voices of the training speech, their test lines
SETS = (IN_DOMAIN, HELD_OUT, SYNTHETIC_IN, OUT_OF_DOMAIN, CONTROL)
SOX_CONDITIONS = ("clean", "noise:15", "speed:0.9", "speed:1.1", "pitch:-300", "pitch:300", "reverb:50")
MORE_VOICES = ("f2", "f3", "f5", "m2", "m3", "m5", "m6", "m7")  # espeak-ng variants (in-domain: f1, m1; out: f4, m4)
BASELINES = ("clsr-ft", "lora")  # trained under every condition with --baselines


@dataclasses.dataclass(frozen=True)
class Condition:
    """Where a condition's training and dev speech come from, and DistilWhisper's teacher in it."""

    train: str  # real, synthetic, both, or a RESYNTHESIZED speech
    dev: str  # real, synthetic or both
    self_taught: bool = False  # DistilWhisper distils from the student itself, not from the configured teacher


CONDITIONS = {
    "synthetic": Condition("synthetic", "synthetic"),
    "synthetic-real-dev": Condition("synthetic", "real"),
    "real": Condition("real", "real"),
    "both": Condition("both", "both"),
    "synthetic-sox": Condition("synthetic-sox", "synthetic"),
    "synthetic-voices": Condition("synthetic-voices", "synthetic"),
    "synthetic-base-teacher": Condition("synthetic", "synthetic", self_taught=True),
}


RESYNTHESIZED = {  # speech: how the synthetic training sentences are synthesised again (same sentences and seeds)
    "synthetic-sox": {"conditions": SOX_CONDITIONS},  # only the acoustics differ
    "synthetic-voices": {"more_voices": MORE_VOICES},  # more speakers read them
}


def resynthesized(config: DemoConfig, speech: str, folder: Path) -> list[Utterance]:
    """The training lines of the synthetic corpus synthesised again as RESYNTHESIZED[speech] says, renamed
    `<id>-<speech>` so that no id names two recordings."""
    manifest = synth_corpus(config.languages, config.per_language, folder, config.seed,
                            test=config.test_per_language, **RESYNTHESIZED[speech])
    return [dataclasses.replace(u, id=f"{u.id}-{speech.split('-')[-1]}") for u in read_manifest(manifest)[0]
            if u.split == "train"]


def condition_manifests(corpus: Corpus, synth_manifest: Path, languages: list[str], folder: Path,
                        extra: dict[str, list[Utterance]] | None = None) -> tuple[dict[str, Path], Path]:
    """(training manifest per condition, evaluation manifest): the demo's corpus split by where the speech comes
    from.  Real and synthetic lines of a language never share a sentence source, so the test sets stay unseen.
    Every condition whose speech is there gets its manifest; `extra`: RESYNTHESIZED speech -> its training lines."""
    trained = read_manifest(corpus.train)[0]
    synth = [u for u in read_manifest(synth_manifest)[0] if u.language in languages]
    speech = {"real": {split: [u for u in trained if u.language in languages and u.source != "synth"
                               and u.split == split] for split in ("train", "dev")},
              "synthetic": {split: [u for u in synth if u.split == split] for split in ("train", "dev")}}
    speech["both"] = {split: speech["real"][split] + speech["synthetic"][split] for split in ("train", "dev")}
    for name in RESYNTHESIZED:
        speech[name] = {"train": [u for u in (extra or {}).get(name, []) if u.language in languages]}
    for source in ("real", "synthetic"):
        if not speech[source]["train"] or not speech[source]["dev"]:
            raise ValueError(f"{corpus.train}: no {source} training or dev speech in {','.join(languages)}")
    manifests = {name: write_manifest(folder / f"train-{name}.jsonl",
                                      speech[CONDITIONS[name].train]["train"] + speech[CONDITIONS[name].dev]["dev"],
                                      relative=False)
                 for name in CONDITIONS if speech[CONDITIONS[name].train]["train"]}
    evaluation = read_manifest(corpus.evaluation)[0]  # the demo's sets, which hold no synthetic training voices
    heard_voices: list[Utterance] = [u for u in synth if u.split == "test" and u.domain == IN_DOMAIN]
    for utt in heard_voices:
        utt.domain = SYNTHETIC_IN
    return manifests, write_manifest(folder / "eval-transfer.jsonl", evaluation + heard_voices, relative=False)


def condition_plan(config: DemoConfig, condition: Condition, baselines: list[str]) -> list[Planned]:
    """The runs of a condition, a teacher before its students: FT (the specialist), DistilWhisper, baselines; a
    self-taught condition trains DistilWhisper only (its FT and baselines are those of the same speech)."""
    if condition.self_taught:
        return [Planned("distilwhisper", "distilwhisper", title("distilwhisper"), config.student)]
    headline = planned_runs(dataclasses.replace(config, compare=False))[1][0]
    return [Planned("ft", "ft", title("ft")), headline, *(Planned(m, m, title(m)) for m in baselines)]


def run(config: DemoConfig, conditions: list[str], baselines: list[str]) -> tuple[list[dict], list[dict]]:
    """(every system against the base model, every system against the same method trained under `synthetic`
    when that condition is run too: what a condition changes, paired on the same test lines)."""
    out = Path(config.out)
    corpus = build_corpus(config, out)
    wanted = {CONDITIONS[c].train for c in conditions} & set(RESYNTHESIZED)
    extra = {speech: resynthesized(config, speech, out / "corpus" / speech.replace("synthetic", "synth"))
             for speech in sorted(wanted)}
    manifests, evaluation = condition_manifests(corpus, out / "corpus" / "synth" / "manifest.jsonl",
                                                config.languages, out / "corpus", extra)
    tests = Corpus(corpus.train, evaluation, corpus.translation)
    base = System(f"{config.student} fp32", "base", out / "eval" / "base-fp32")
    evaluate_base(base, config, tests, "fp32")
    systems, by_method = [base], {}
    for condition in conditions:
        folder, encodings = out / condition, EncoderCache()
        for planned in condition_plan(config, CONDITIONS[condition], baselines):
            print(f"\n[{condition}] {planned.name}: train {config.steps} steps, then evaluate", flush=True)
            trained = train_system(planned, config, manifests[condition], folder, encodings)
            systems.append(evaluate_run(f"{planned.name} ({condition})", trained, folder / "eval" / planned.key,
                                        out, config, tests))
            by_method[condition, planned.method] = systems[-1]
    versus = [results_table([by_method["synthetic", method], system], SETS)[1]
              for (condition, method), system in by_method.items()
              if condition != "synthetic" and ("synthetic", method) in by_method]
    return results_table(systems, SETS), versus


def kept_markdown(table: list[dict]) -> list[str]:
    """Which dev step each trained system kept (per language for experts) and the share of dev tokens routed."""
    lines = []
    for entry in table[1:]:
        steps = entry["kept_steps"] or {"all": entry["kept_step"]}
        routed = entry["routed_to_experts"]
        lines.append(f"- {entry['system']}: kept step " + ", ".join(f"{k} {v}" for k, v in sorted(steps.items()))
                     + (f"; {100 * routed:.0f} % of dev tokens routed to experts" if routed is not None else ""))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults, not a copy of them
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help=f"training conditions, comma-separated (default: all: {', '.join(CONDITIONS)})")
    parser.add_argument("--baselines", default="",
                        help=f"methods trained beside FT and DistilWhisper under every condition (of: "
                             f"{', '.join(BASELINES)}; default none)")
    args = parser.parse_args()
    try:
        conditions = comma_list(args.conditions, "--conditions", known=CONDITIONS)
        baselines = comma_list(args.baselines, "--baselines", known=BASELINES)
    except ValueError as err:
        parser.error(str(err))
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}
    languages = [lang for lang in given["languages"] or list(REAL_SPEECH) if lang in REAL_SPEECH]
    if not languages:
        parser.error(f"--languages: none has real speech installed offline (those that do: {', '.join(REAL_SPEECH)})")
    config = DemoConfig.make(**{**given, "languages": languages, "quick": bool(given["quick"]),
                                "eval_every": given["eval_every"] or (None if given["quick"] else 50),
                                "out": given["out"] or "bench-out/synthetic-to-real",
                                # the synthetic conditions have no English lines; its tables were measured without
                                "keep_translate": given["keep_translate"] or 0.0})
    start = time.perf_counter()
    with claimed(config):
        table, versus = run(config, conditions, baselines)
    header = (f"Synthetic-to-real transfer, {','.join(config.languages)}: {config.steps} steps of batch "
              f"{config.batch_size} per run, lr {config.lr:g} (FT {config.method_lr('ft'):g}), dev every "
              f"{config.eval_every or config.steps} steps, scope {config.scope}, "
              f"{'bf16' if config.bf16 else 'fp32'} training, student {config.student}, DistilWhisper's teacher "
              f"{config.teacher}; {platform.processor() or 'cpu'}, {torch.get_num_threads()} threads; "
              f"{(time.perf_counter() - start) / 60:.0f} min for this run (finished stages of an earlier run are "
              "reused).")
    text = "\n".join([header, "", table_markdown(table, SETS), "", "Change against the base model:", "",
                      *changes_markdown(table[1:], SETS), "", *kept_markdown(table), "", *(
                          ["Change against the same method trained under `synthetic`:", "",
                           *changes_markdown(versus, SETS), ""] if versus else [])])
    atomic_write_json(Path(config.out, "synthetic_to_real.json"), {"table": table, "versus_synthetic": versus})
    atomic_write_text(Path(config.out, "synthetic_to_real.md"), text)
    print(text)


if __name__ == "__main__":
    main()
