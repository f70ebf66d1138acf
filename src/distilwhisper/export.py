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
`--merge-experts LANG` asks for the opt-in approximation (`clsr.merge_experts`): each layer's gate replaced by its
share of LANG's tokens routed to the experts, measured by decoding LANG's lines of a calibration manifest (the run's
dev lines unless `--calibration` names one) with the exact experts -- a plain Whisper with FFNs of twice the width,
whose WER is to be measured beside the exact experts' (`benchmarks/export_fidelity.py`).  The shares and what they
were measured on are written beside the weights (`distilwhisper_merge.json`).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from distilwhisper import clsr, methods
from distilwhisper.audio import load_audio
from distilwhisper.data.manifest import validate_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import ONE_PASS, select
from distilwhisper.hub import EOT_TOKEN
from distilwhisper.io import atomic_dir, atomic_write_json
from distilwhisper.runs import TrainedRun, is_run_folder

FORMATS = ("hf", "ct2", "experts")
QUANTIZATIONS = ("float32", "float16", "int8")
CT2_FILES = ("tokenizer.json", "preprocessor_config.json")  # what faster-whisper reads beside model.bin
MERGE_INFO = "distilwhisper_merge.json"  # --merge-experts: the shares that replaced the gates, and their lines


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
        "help": "hf/ct2 of a run with experts: a plain Whisper holding this language's experts, each gate replaced by "
                "its share of the language's tokens routed to the experts (an approximation: measure its WER beside "
                "the experts')"})
    calibration: str | None = field(default=None, metadata={
        "help": "--merge-experts: the manifest whose lines of the language measure the gates' shares (split=dev lines "
                "if it has a split column; default: the run's dev manifest)"})
    calibration_lines: int = field(default=48, metadata={"help": "--merge-experts: at most this many lines"})
    languages: list[str] = field(default_factory=list, metadata={"help": "experts: only these languages"})

    def __post_init__(self) -> None:
        if isinstance(self.run, list):  # the positional flag
            self.run = self.run[0]
        if self.calibration_lines < 1:
            raise ValueError(f"--calibration-lines must be at least 1, not {self.calibration_lines}")
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
                merge = _merge(run, model, processor, config)
            hf = tmp if config.format == "hf" else tmp.parent / f".{tmp.name}.hf"
            model.save_pretrained(hf)
            processor.save_pretrained(hf)
            processor.feature_extractor.save_pretrained(hf)  # preprocessor_config.json, which older readers want
            if config.format == "ct2":
                _ct2(hf, tmp, config.quantization)
            if config.merge_experts:
                atomic_write_json(tmp / MERGE_INFO, merge)
    return out


def _merge(run: TrainedRun, model, processor, config: ExportConfig) -> dict:
    """Measure the gates' shares on the calibration lines with the exact experts, then merge; returns what the
    export records of it."""
    language = config.merge_experts
    clsr.set_language(model, language)  # refuses a language without experts before any decoding
    manifest = config.calibration or run.config.dev
    if not manifest:
        raise ValueError(f"--merge-experts: {run.layout.root} was trained without a dev manifest; name the lines "
                         "that measure the gates with --calibration MANIFEST")
    utterances = validate_manifest(manifest)
    utterances = select(utterances, language, "dev" if any(u.split for u in utterances) else None,
                        limit=config.calibration_lines, source=f"--calibration {manifest}")  # train's dev rule
    decoder = WhisperDecoder(model, processor)
    clsr.routing_counts(model)  # reset
    for i in range(0, len(utterances), 8):
        decoder.transcribe([load_audio(u.audio) for u in utterances[i:i + 8]], language, ONE_PASS)
    shares = clsr.routed_shares(model, language)
    clsr.merge_experts(model, language, shares)
    return {"language": language, "shares": [round(s, 6) for s in shares], "calibration": str(manifest),
            "calibration_lines": len(utterances), "method": "each gate replaced by its share of tokens routed to the "
            "experts on the calibration lines; FFN = share * expert + (1 - share) * shared"}


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
