"""CLSR-FT: language experts and gates (CLSR blocks, `clsr.py`) in the student's `--scope` layers, trained with
cross-entropy and the gate budget; every original weight stays frozen.  Keeps one experts file per language, each
from its own best dev step, beside the name of the base model they attach to."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from distilwhisper import clsr
from distilwhisper.hub import load_model
from distilwhisper.methods.base import Method, setting


@dataclass(kw_only=True)
class ExpertSettings:
    """The settings of methods with language experts (DistilWhisper, CLSR-FT): the paper's gate and expert
    regularisation, and the optional term that keeps the translate task."""

    gate_target: float = setting(0.5, "CLSR methods: the mean gate value the budget term pulls towards (paper: 0.5, "
                                      "half the tokens through the experts)")
    gate_weight: float = setting(1.0, "CLSR methods: weight of the gate-budget term beside CE (paper: 1); 0 drops "
                                      "it, the gates then learn from CE and distillation alone")
    keep_translate: float = setting(0.0, "CLSR methods: weight of a term that keeps Whisper's translate task: the "
                                         "training clips that have an English line (manifest column translation_en) "
                                         "also run with the translate prompt, and the experts' outputs on it are "
                                         "pulled towards the frozen shared FFNs' (the base model's) by --kd; 0: off "
                                         "(the paper trains on transcription only)")
    skip_probability: float = setting(0.2, "chance per layer and step of routing to the shared FFN")
    expert_dropout: float = setting(0.3, "dropout after an expert's fc2 in training")


class Experts(Method):
    name, title = "clsr-ft", "CLSR-FT"
    uses_experts = True

    def build(self, config) -> tuple[nn.Module, nn.Module, object]:
        model, processor = load_model(config.student)
        clsr.to_distilwhisper(model, config.languages, config.scope, config.expert_dropout, config.skip_probability)
        return model, model, processor

    def save(self, config, folder: Path, trained, decodable, processor, previous, languages, kept_steps) -> None:
        if languages is not None and previous is not None and previous.is_dir():
            for path in previous.glob("*.safetensors"):  # the other languages stay as kept at their own steps
                if path.stem not in languages:
                    shutil.copy2(path, folder / path.name)
        clsr.save_experts(decodable, folder, config.student, languages or config.languages,
                          {"method": config.method, "tasks": list(config.expert_tasks),
                           **({"kept_steps": kept_steps} if kept_steps else {})})

    def load(self, config, folder: Path) -> tuple[nn.Module, object]:
        model, processor = load_model(config.student)
        clsr.attach_experts(model, folder, config.languages, unsaved_tasks=config.expert_tasks)
        return model.eval(), processor


METHOD = Experts()
