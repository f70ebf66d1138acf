"""CLSR-FT: language experts and gates (CLSR blocks, `clsr.py`) in the student's `--scope` layers, trained with
cross-entropy and the gate budget; every original weight stays frozen.  Keeps one experts file per language, each
from its own best dev step, beside the name of the base model they attach to."""

from __future__ import annotations

import shutil
from pathlib import Path

from torch import nn

from distilwhisper import clsr
from distilwhisper.hub import load_model
from distilwhisper.methods.base import Method


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
