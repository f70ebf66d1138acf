"""FT: full fine-tuning of the student's `--scope` layers (a tied output projection trains with the decoder's token
embedding).  Keeps the whole model, in the transformers layout."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from distilwhisper.hub import load_model
from distilwhisper.methods.base import Method

PREFIXES = {"all": ("",), "encoder": ("model.encoder.",), "decoder": ("model.decoder.", "proj_out.")}


class FullFineTuning(Method):
    name, title = "ft", "FT"

    def build(self, config) -> tuple[nn.Module, nn.Module, object]:
        model, processor = load_model(config.student)
        for name, p in model.named_parameters():  # a tied proj_out is the decoder's token embedding, listed once
            p.requires_grad_(name.startswith(PREFIXES[config.scope]))
        return model, model, processor

    def save(self, config, folder: Path, trained, decodable, processor, previous, languages, kept_steps) -> None:
        decodable.save_pretrained(folder)
        processor.save_pretrained(folder)

    def load(self, config, folder: Path) -> tuple[nn.Module, object]:
        return load_model(str(folder))


METHOD = FullFineTuning()
