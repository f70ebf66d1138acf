"""DistilWhisper: CLSR-FT's experts and gates, also distilled from a frozen teacher (`--teacher`: a model
reference or a `train` run folder of any method), `L = w_ce (CE + L_gate) + w_kd KD`."""

from __future__ import annotations

from dataclasses import dataclass

from distilwhisper.methods.base import setting
from distilwhisper.methods.clsr_ft import Experts


@dataclass(kw_only=True)
class DistillSettings:
    """Distillation's settings: the teacher, the divergence and its weight, the teacher's cache."""

    teacher: str | None = setting(None, "teacher for distilwhisper: a model reference (paper: openai/whisper-large-v2) "
                                        "or a `train` run folder of any method (e.g. a fine-tuned specialist)")
    w_kd: float = setting(0.5, "weight of the distillation term")
    kd: str = setting("js", "distillation divergence (paper: js)", choices=("js", "kl"))
    temperature: float = setting(1.0, "distillation temperature")
    teacher_cache: str | None = setting(None, "folder storing the teacher's top-k log-probs, reused across epochs "
                                              "and runs")
    top_k: int = setting(64, "teacher log-probs kept per position in the cache", min=1)


class DistilWhisper(Experts):
    name, title = "distilwhisper", "DistilWhisper"
    needs_teacher = True


METHOD = DistilWhisper()
