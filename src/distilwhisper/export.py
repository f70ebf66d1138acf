"""`distilwhisper export`: a trained run out to the tools people already run (issue #38).

- `hf`: a transformers folder (weights as safetensors, config, generation config with the alignment heads, processor
  and tokenizer files) that `WhisperForConditionalGeneration.from_pretrained` and `pipeline("automatic-speech-
  recognition")` load;
- `ct2`: a CTranslate2 folder made by CTranslate2's own converter from that, with the tokenizer and preprocessor
  files faster-whisper reads, at `--quantization` float32, float16 or int8;
- `experts`: a DistilWhisper/CLSR-FT run's experts (all languages, or `--languages`) with the files `distilwhisper`
  needs to attach them to their base model.

FT runs export as they are, LoRA runs with their adapters merged.  A run with language experts cannot become an
`hf` or `ct2` model exactly -- neither format has per-token gates -- so it is refused with that reason, unless
`--merge-experts LANG` asks for the opt-in approximation: that language's experts with the gate forced open
(`clsr.merge_experts`), a plain Whisper whose WER is to be measured beside the exact experts'.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from distilwhisper import clsr, methods
from distilwhisper.hub import EOT_TOKEN
from distilwhisper.io import atomic_dir, atomic_write_json
from distilwhisper.runs import TrainedRun, is_run_folder

FORMATS = ("hf", "ct2", "experts")
QUANTIZATIONS = ("float32", "float16", "int8")
CT2_FILES = ("tokenizer.json", "preprocessor_config.json")  # what faster-whisper reads beside model.bin


@dataclass
class ExportConfig:
    """`distilwhisper export`: a `train` run out as a transformers folder, a CTranslate2 folder for faster-whisper,
    or (runs with experts) an experts folder."""

    run: str = field(metadata={"help": "a `train` run folder", "positional": True})
    format: str = field(default="hf", metadata={"help": "hf: transformers; ct2: CTranslate2 / faster-whisper; "
                                                        "experts: the experts folder of a DistilWhisper/CLSR-FT run",
                                                "choices": FORMATS})
    out: str = field(default="exported", metadata={"help": "output folder (replaced when it exists)"})
    quantization: str = field(default="float32", metadata={"help": "ct2: the weights' type", "choices": QUANTIZATIONS})
    merge_experts: str | None = field(default=None, metadata={
        "help": "hf/ct2 of a run with experts: this language's experts with the gate forced open, a plain Whisper (an "
                "approximation: measure its WER beside the experts')"})
    languages: list[str] = field(default_factory=list, metadata={"help": "experts: only these languages"})

    def __post_init__(self) -> None:
        if isinstance(self.run, list):  # the positional flag
            self.run = self.run[0]
        if self.format not in FORMATS:
            raise ValueError(f"--format must be one of {', '.join(FORMATS)}, not {self.format!r}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(f"--quantization must be one of {', '.join(QUANTIZATIONS)}, not {self.quantization!r}")


def export(config: ExportConfig) -> Path:
    """Write the export into `config.out` (atomically: a failed export leaves no half folder); returns it."""
    if not is_run_folder(config.run):
        raise ValueError(f"{config.run}: not a `train` run folder (no config.json naming a method)")
    run = TrainedRun.open(config.run)
    experts = methods.get(run.config.method).uses_experts
    if config.format == "experts" and not experts:
        raise ValueError(f"--format experts: {config.run} is a {run.config.method} run, which has no experts; export "
                         "it as hf or ct2")
    if config.format != "experts" and experts and not config.merge_experts:
        raise ValueError(f"--format {config.format}: a {run.config.method} run routes each token to a language's "
                         "experts or the shared FFN by a learnt gate, which neither transformers nor CTranslate2 can "
                         "express; export --format experts (distilwhisper loads it), or --merge-experts LANG for a "
                         "plain Whisper with that language's experts and the gate forced open (an approximation)")
    if config.merge_experts and not experts:
        raise ValueError(f"--merge-experts: {config.run} is a {run.config.method} run, which has no experts")
    out = Path(config.out)
    with atomic_dir(out) as tmp:
        if config.format == "experts":
            _experts(run, tmp, config.languages)
        else:
            model, processor = run.load()
            if processor.tokenizer.pad_token is None:  # converted before hub.whisper_tokenizer named one
                processor.tokenizer.pad_token = EOT_TOKEN
            if config.merge_experts:
                clsr.merge_experts(model, config.merge_experts)
            hf = tmp if config.format == "hf" else tmp.parent / f".{tmp.name}.hf"
            model.save_pretrained(hf)
            processor.save_pretrained(hf)
            processor.feature_extractor.save_pretrained(hf)  # preprocessor_config.json, which older readers want
            if config.format == "ct2":
                _ct2(hf, tmp, config.quantization)
    return out


def _ct2(hf: Path, out: Path, quantization: str) -> None:
    """CTranslate2's converter over the transformers folder, then the files faster-whisper reads beside it."""
    from ctranslate2.converters import TransformersConverter

    try:
        TransformersConverter(str(hf), copy_files=list(CT2_FILES)).convert(str(out), quantization=quantization,
                                                                           force=True)
    finally:
        shutil.rmtree(hf, ignore_errors=True)


def _experts(run: TrainedRun, out: Path, languages: list[str]) -> None:
    """The kept experts (all languages, or `languages`) and their config, as `best/` holds them."""
    best = run.layout.best
    saved = clsr.read_experts_config(best)["languages"]
    missing = sorted(set(languages) - set(saved))
    if missing:
        raise ValueError(f"--languages: {run.layout.root} has no experts for {', '.join(missing)} (it has "
                         f"{', '.join(saved)})")
    for lang in languages or saved:
        shutil.copy2(best / f"{lang}.safetensors", out / f"{lang}.safetensors")
    info = clsr.read_experts_config(best)
    info["languages"] = sorted(languages or saved)
    if "tasks" not in info:  # runs of bc74f00..96c5aa5: what their settings trained
        info["tasks"] = list(run.config.expert_tasks)
    atomic_write_json(out / clsr.EXPERTS_CONFIG, info)
