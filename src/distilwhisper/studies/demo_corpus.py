"""The demo's speech: what each target language trains and is tested on, and the control languages.

- A target language with transcribed human speech installable offline (Czech: Fish Fillets NG's acted dialogue,
  `data/fillets.py`) trains on it (its train split, dev from its dev split) and is tested on held-out scenes
  (`in-domain`), on characters never heard in training (`held-out-characters`), on synthetic voices
  (`out-of-domain`), and in Whisper's translate task against each line's English text.
- A target language without such speech (Catalan) trains and is tested on synthetic speech: in-domain voices for
  train/dev/test, other voices for the out-of-domain test.
- Control languages (recorded asterisk prompts) are never trained on.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.data.fillets import MINOR_DOMAIN, load_fillets
from distilwhisper.data.manifest import Utterance, read_manifest, write_manifest
from distilwhisper.data.synth import synth_corpus
from distilwhisper.io import atomic_write_json, read_json, setting_changes

REAL_SPEECH = {"cs": load_fillets}  # target languages with transcribed human speech that installs offline
IN_DOMAIN, OUT_OF_DOMAIN, HELD_OUT, CONTROL = "in-domain", "out-of-domain", MINOR_DOMAIN, "control"
SETS = (IN_DOMAIN, OUT_OF_DOMAIN, HELD_OUT, CONTROL)
# the settings that decide which utterances the manifests hold (recorded in corpus/corpus.json)
CORPUS_SETTINGS = ("languages", "control", "per_language", "test_per_language", "control_per_language",
                   "real_test_per_language", "held_out_per_language", "dev_per_language", "seed")


@dataclass
class Corpus:
    """Manifests of the demo: training (train/dev splits), evaluation (one `domain` per set) and the translate
    task (real speech with English references; None when no target language has real speech)."""

    train: Path
    evaluation: Path
    translation: Path | None


def _first(utterances: list[Utterance], n: int, seed: int) -> list[Utterance]:
    """A seeded random `n` of the utterances (all when fewer), in a stable order."""
    chosen = sorted(utterances, key=lambda u: u.id)
    random.Random(seed).shuffle(chosen)
    return chosen[:n]


def real_speech_sets(language: str, config, seed: int) -> tuple[list[Utterance], list[Utterance], list[Utterance]]:
    """(train + dev, in-domain test, held-out-character test) utterances of a language's real speech."""
    utterances, _ = REAL_SPEECH[language](language, seed=seed)
    main = [u for u in utterances if u.domain != HELD_OUT]
    train = [u for u in main if u.split == "train"]
    dev = _first([u for u in main if u.split == "dev"], config.dev_per_language, seed)
    test = _first([u for u in main if u.split == "test"], config.real_test_per_language, seed)
    held_out = _first([u for u in utterances if u.domain == HELD_OUT], config.held_out_per_language, seed)
    for utt in test:
        utt.domain = IN_DOMAIN
    return train + dev, test, held_out


def reserved(language: str, config, seed: int = 0) -> list[Utterance]:
    """The confirmation set of a language with real speech: its main voices' lines from test scenes that the demo
    leaves out of its in-domain test (the test scenes' lines after the first `real_test_per_language` of the
    seeded order).  No choice reads them: they are decoded once, by the final systems, for the confirmation of a
    headline (`benchmarks/records/confirmation/`)."""
    utterances, _ = REAL_SPEECH[language](language, seed=seed)
    test = [u for u in utterances if u.domain != HELD_OUT and u.split == "test"]
    lines = _first(test, len(test), seed)[config.real_test_per_language:]
    for utt in lines:  # the in-domain test's kind of line, named as it is
        utt.domain = IN_DOMAIN
    return lines


def build_corpus(config, out: Path) -> Corpus:
    """Write the demo's manifests under `out/corpus` (reusing what a previous run synthesised).  A folder whose
    corpus was built under other settings is refused: its trained runs and results belong to that corpus, and the
    manifests keep their paths, so a rerun would reuse them as if they were trained on this one."""
    folder, settings = out / "corpus", {name: getattr(config, name) for name in CORPUS_SETTINGS}
    record = folder / "corpus.json"
    changes = setting_changes(read_json(record), settings) if record.exists() else ""
    if changes:
        raise ValueError(f"{out} holds a demo built from another corpus ({changes}): its trained runs and results "
                         "belong to that one; use another --out")
    # the recordings first: cheap, so a control language without them fails before minutes of synthesis
    control, _ = import_asterisk(config.control, out / "corpus" / "control", config.control_per_language)
    for utt in control:
        utt.domain = CONTROL
    synth = read_manifest(synth_corpus(config.languages, config.per_language, out / "corpus" / "synth", config.seed,
                                       test=config.test_per_language))[0]
    real = [lang for lang in config.languages if lang in REAL_SPEECH]
    train = [u for u in synth if u.split in ("train", "dev") and u.language not in real]
    tests = [u for u in synth if u.split == "test" and (u.language not in real or u.domain == OUT_OF_DOMAIN)]
    translation: list[Utterance] = []
    for language in real:
        lang_train, lang_test, held_out = real_speech_sets(language, config, config.seed)
        train += lang_train
        tests += lang_test + held_out
        translation += lang_test
    atomic_write_json(record, settings)  # once it was built
    return Corpus(write_manifest(folder / "train.jsonl", train, relative=False),
                  write_manifest(folder / "eval.jsonl", tests + control),
                  write_manifest(folder / "translate.jsonl", translation, relative=False) if translation else None)

