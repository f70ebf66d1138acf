"""The loss of one batch: CE with label smoothing, plus the gate budget for CLSR methods, plus distillation from
the teacher for DistilWhisper (`L = w_ce * (CE + L_gate) + w_kd * KD`, losses.py), plus, with `keep_translate`,
`keep_translate * D(student || base)` on the translate task of the rows that have an English line."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from distilwhisper import clsr, losses
from distilwhisper.decoding import encode, trimmed_frames
from distilwhisper.train.caches import EncoderCache, TeacherCache
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.data import translate_rows, with_translate_rows
from distilwhisper.train.model import whisper_of

NOISE_MAX = 5.0  # gate-noise scale alpha = NOISE_MAX * min(step / total, 1)


@dataclass
class Objective:
    """Everything a step's loss needs: the (possibly DDP-wrapped) model, its unwrapped twin (CLSR state lives
    there), the teacher and the caches."""

    config: TrainConfig
    model: nn.Module
    unwrapped: nn.Module
    teacher: nn.Module | None = None
    teacher_cache: TeacherCache | None = None
    encoder_cache: EncoderCache | None = None
    teacher_shares_encoder: bool = False  # the teacher's encoder is the student's frozen one (model.same_encoder)

    def terms(self, batch: dict, step: int, total: int) -> dict[str, torch.Tensor]:
        """`loss` (to backpropagate) and the detached terms to log."""
        config = self.config
        translate = batch.get("translate") if config.keep_translate else None
        # the base model's forward comes before the student's: each forward resets the gates the budget term reads
        base = self._base_translate_logits(batch) if translate is not None else None
        clsr.set_language(self.unwrapped, batch["language"])
        clsr.set_noise_scale(self.unwrapped, NOISE_MAX * min(step / total, 1.0))
        forward = with_translate_rows(batch) if translate is not None else batch
        logits = self.logits(self.model, forward, self.encoder_cache)
        rows, length = batch["decoder_input_ids"].shape
        logits, translated = logits[:rows, :length], logits[rows:]
        labels, mask = batch["labels"], (batch["labels"] != losses.IGNORE).float()
        ce = losses.cross_entropy(logits, labels, config.label_smoothing)
        modules = clsr.clsr_modules(self.unwrapped)
        routed = [m for m in modules if m.last_gate is not None]
        gate_masks = [forward["decoder_mask"] if m.side == "decoder" else None for m in routed]
        gate = (config.gate_weight * losses.gate_budget([m.last_gate for m in routed], gate_masks, config.gate_target)
                if modules else torch.zeros(()))
        kd = self._kd(batch, logits, mask) if self.teacher is not None else None
        terms = {"loss": losses.total_loss(ce, gate, kd, config.w_ce, config.w_kd), "ce": ce.detach()}
        if translate is not None:
            kept_mask = (translate["labels"] != losses.IGNORE).float()
            keep = losses.kd_loss_logits(translated[:, :kept_mask.shape[1]], base, kept_mask, config.kd,
                                         config.temperature)
            terms["loss"] = terms["loss"] + config.keep_translate * keep
            terms["keep"] = keep.detach()
        if modules:
            terms["gate"] = gate.detach()
            terms["g_mean"] = torch.stack([m.last_gate.mean() for m in routed]).mean() if routed else torch.zeros(())
        if kd is not None:
            terms["kd"] = kd.detach()
        return terms

    def _base_translate_logits(self, batch: dict) -> torch.Tensor:
        """The base model's logits on the batch's translate-task rows: the student with every block on its frozen
        shared FFN, which is the original model exactly."""
        clsr.set_language(self.unwrapped, clsr.SHARED, shared_fallback=True)
        rows = {**translate_rows(batch), "frames": self.frames(batch)}  # encoded as in the student's forward
        with torch.no_grad():
            return self.logits(self.unwrapped, rows, self.encoder_cache)

    def logits(self, model: nn.Module, batch: dict, encoder_cache: EncoderCache | None) -> torch.Tensor:
        """Logits for the batch; with `trim` the encoder sees only the frames holding audio (padding-free); with an
        encoder cache the frozen encoder runs once per clip."""
        if not self.config.trim and encoder_cache is None:
            return model(input_features=batch["input_features"], decoder_input_ids=batch["decoder_input_ids"]).logits
        whisper = whisper_of(self.unwrapped if model is self.model else model)  # the encoder outside DDP
        frames = batch.get("frames") or self.frames(batch)
        if encoder_cache is not None:
            enc = encoder_cache.encode(whisper, batch, frames)
        else:
            enc = encode(whisper, batch["input_features"], frames)
        return model(encoder_outputs=(enc,), decoder_input_ids=batch["decoder_input_ids"]).logits

    def frames(self, batch: dict) -> int:
        """Mel frames the encoder sees for the batch (with `trim`: the longest clip's, bucketed)."""
        return trimmed_frames(batch["num_samples"]) if self.config.trim else batch["input_features"].shape[-1]

    def _kd(self, batch: dict, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        config, cache = self.config, self.teacher_cache
        cached = cache.get(batch["ids"], batch["decoder_input_ids"], batch["decoder_mask"]) if cache else None
        if cached is None:
            clsr.set_language(self.teacher, batch["language"], shared_fallback=True)  # a teacher with experts
            with torch.no_grad():  # a teacher with the student's frozen encoder reuses the cached encodings
                t_logits = self.logits(self.teacher, batch,
                                       self.encoder_cache if self.teacher_shares_encoder else None)
            if cache is None:
                return losses.kd_loss_logits(logits, t_logits, mask, config.kd, config.temperature)
            cache.put(batch["ids"], batch["decoder_input_ids"], batch["decoder_mask"], t_logits)
            cached = cache.get(batch["ids"], batch["decoder_input_ids"], batch["decoder_mask"])
        values, indices = cached
        return losses.kd_loss_topk(logits, values.to(logits.device), indices.to(logits.device), mask, config.kd,
                                   config.temperature)
