"""The frozen teacher of a run, and the identity of weights (the student is its method's: `methods/`)."""

from __future__ import annotations

import hashlib

import torch
from torch import nn

from distilwhisper.runs import model_or_run
from distilwhisper.train.config import TrainConfig


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
