"""The models of a run: the trainable student for each method, and the frozen teacher."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from distilwhisper import clsr
from distilwhisper.hub import load_model
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.run import model_or_run

LORA_SIDES = {"all": "(en|de)coder", "encoder": "encoder", "decoder": "decoder"}
FT_PREFIXES = {"all": ("",), "encoder": ("model.encoder.",), "decoder": ("model.decoder.", "proj_out.")}


def build_student(config: TrainConfig) -> tuple[nn.Module, nn.Module, object]:
    """(the model that trains, the Whisper model that decodes for dev WER, processor) for the run's method."""
    model, processor = load_model(config.student)
    if config.uses_experts:
        clsr.to_distilwhisper(model, config.languages, config.scope, config.expert_dropout, config.skip_probability)
        return model, model, processor
    if config.method == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                          target_modules=rf".*\.{LORA_SIDES[config.scope]}\.layers\.\d+\.fc[12]")
        wrapped = get_peft_model(model, lora)
        return wrapped, wrapped.get_base_model(), processor
    for name, p in model.named_parameters():  # a tied proj_out is the decoder's token embedding, listed once
        p.requires_grad_(name.startswith(FT_PREFIXES[config.scope]))
    return model, model, processor


def whisper_of(model: nn.Module) -> nn.Module:
    """The Whisper model inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def load_teacher(config: TrainConfig, student: nn.Module, device) -> nn.Module:
    """The frozen teacher: a model reference, or what a `train` run kept (a fine-tuned model, base + merged LoRA,
    or a student with its experts, routed by the batch's language)."""
    teacher, _ = model_or_run(config.teacher)
    check_teacher(student, teacher)
    return teacher.requires_grad_(False).eval().to(device)


def same_encoder(teacher: nn.Module, student: nn.Module) -> bool:
    """Whether the teacher's encoder has exactly the student's encoder weights (the student itself, or a specialist
    fine-tuned from it with the encoder frozen): then the student's cached encodings serve the teacher too."""
    mine, theirs = whisper_of(student).model.encoder.state_dict(), whisper_of(teacher).model.encoder.state_dict()
    return mine.keys() == theirs.keys() and all(torch.equal(mine[k].cpu(), theirs[k].cpu()) for k in mine)


def weights_fingerprint(model: nn.Module) -> str:
    """A teacher's identity by content (every weight), not by its name or path: a cache of its outputs is reused
    only for the same weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def check_teacher(student: nn.Module, teacher: nn.Module) -> None:
    s, t = student.config, teacher.config
    if s.vocab_size != t.vocab_size:
        raise ValueError(f"teacher vocabulary ({t.vocab_size} tokens) differs from the student's ({s.vocab_size}):"
                         " distillation needs the same tokenizer")
    if s.num_mel_bins != t.num_mel_bins:
        raise ValueError(f"teacher takes {t.num_mel_bins} mel bins, the student {s.num_mel_bins} (large-v3 vs "
                         "earlier Whisper): they cannot share input features")


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous() for n, p in model.named_parameters() if p.requires_grad}
