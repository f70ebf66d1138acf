"""DistilWhisper: CLSR-FT's experts and gates, also distilled from a frozen teacher (`--teacher`: a model
reference or a `train` run folder of any method), `L = w_ce (CE + L_gate) + w_kd KD`."""

from __future__ import annotations

from distilwhisper.methods.clsr_ft import Experts


class DistilWhisper(Experts):
    name, title = "distilwhisper", "DistilWhisper"
    needs_teacher = True


METHOD = DistilWhisper()
