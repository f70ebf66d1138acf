"""LoRA (peft): low-rank adapters on `fc1`/`fc2` of the student's `--scope` layers (paper: r = alpha = 64, dropout
0.05).  Keeps the adapter and the name of the base model; loads them merged into a plain Whisper model."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from distilwhisper.hub import load_model
from distilwhisper.methods.base import Method, setting

SIDES = {"all": "(en|de)coder", "encoder": "encoder", "decoder": "decoder"}
BASE_MODEL = "base_model.txt"


@dataclass(kw_only=True)
class LoraSettings:
    """LoRA's own settings (the paper's baseline: r = alpha = 64, dropout 0.05)."""

    lora_r: int = setting(64, "LoRA rank", min=1)
    lora_alpha: int = setting(64, "LoRA alpha")
    lora_dropout: float = setting(0.05, "LoRA dropout")


class LoRA(Method):
    name, title = "lora", "LoRA"

    def build(self, config) -> tuple[nn.Module, nn.Module, object]:
        from peft import LoraConfig, get_peft_model

        model, processor = load_model(config.student)
        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=rf".*\.{SIDES[config.scope]}\.layers\.\d+\.fc[12]")
        wrapped = get_peft_model(model, lora)
        return wrapped, wrapped.get_base_model(), processor

    def save(self, config, folder: Path, trained, decodable, processor, previous, languages, kept_steps) -> None:
        trained.save_pretrained(folder)
        (folder / BASE_MODEL).write_text(config.student + "\n")

    def load(self, config, folder: Path) -> tuple[nn.Module, object]:
        from peft import PeftModel

        model, processor = load_model(config.student)
        return PeftModel.from_pretrained(model, str(folder)).merge_and_unload().eval(), processor


METHOD = LoRA()
