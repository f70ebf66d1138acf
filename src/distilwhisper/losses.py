"""Training losses of DistilWhisper (and the baselines).

    L = w_ce * (CE + L_gate) + w_kd * KD

- CE: next-token cross-entropy with label smoothing 0.1, on positions whose label is not -100;
- L_gate = |mean(g) - 0.5|: keeps the gates from routing everything to the experts (or nothing);
- KD: Jensen-Shannon divergence (or KL(teacher || student)) between teacher and student next-token distributions
  at temperature T, masked on padding (the reference implementation averaged over padding positions too).

KD works from live teacher logits or from a cache of the teacher's top-k log-probabilities: the cached teacher
distribution is the top-k renormalised, zero elsewhere, and both divergences are computed exactly for it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

IGNORE = -100


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, smoothing: float = 0.1) -> torch.Tensor:
    """Mean token cross-entropy with label smoothing over non-ignored positions."""
    return F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE,
                           label_smoothing=smoothing)


def gate_budget(gates: list[torch.Tensor], masks: list[torch.Tensor | None] | None = None,
                target: float = 0.5) -> torch.Tensor:
    """|mean gate value - target| over every routed token of every layer (padding excluded where masked); the paper's
    target is 0.5: half of the tokens' FFN computation may go through the experts."""
    if not gates:
        return torch.zeros(())
    total, count = 0.0, 0.0
    for i, g in enumerate(gates):
        mask = masks[i] if masks is not None else None
        if mask is not None:
            total = total + (g * mask).sum()
            count = count + mask.sum()
        else:
            total = total + g.sum()
            count = count + g.numel()
    return (total / count - target).abs()


def _masked_mean(per_position: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(per_position.dtype)
    return (per_position * mask).sum() / mask.sum().clamp(min=1.0)


def kd_loss_logits(student_logits: torch.Tensor, teacher_logits: torch.Tensor, mask: torch.Tensor,
                   kind: str = "js", temperature: float = 1.0) -> torch.Tensor:
    """Divergence between full teacher and student distributions, averaged over unmasked positions (x T^2)."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_q = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "kl":
        per_position = (log_q.exp() * (log_q - log_p)).sum(-1)
    elif kind == "js":
        log_m = torch.logsumexp(torch.stack([log_p, log_q]), dim=0) - math.log(2.0)
        per_position = 0.5 * ((log_p.exp() * (log_p - log_m)).sum(-1) + (log_q.exp() * (log_q - log_m)).sum(-1))
    else:
        raise ValueError(f"kd kind must be 'js' or 'kl', not {kind!r}")
    return _masked_mean(per_position, mask) * temperature ** 2


def kd_loss_topk(student_logits: torch.Tensor, teacher_logprobs: torch.Tensor, teacher_indices: torch.Tensor,
                 mask: torch.Tensor, kind: str = "js", temperature: float = 1.0) -> torch.Tensor:
    """Divergence against a cached teacher: its top-k log-probabilities (at temperature 1), renormalised.

    With q zero outside the top-k set K, JS splits exactly into the K part and the rest, where m = p/2:
    JS = 1/2 [sum_K p log(p/m) + (1 - sum_K p) log 2] + 1/2 sum_K q log(q/m)."""
    log_p = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_q = teacher_logprobs.float() / temperature
    log_q = log_q - torch.logsumexp(log_q, dim=-1, keepdim=True)
    log_p_k = log_p.gather(-1, teacher_indices.long())
    q_k = log_q.exp()
    if kind == "kl":
        per_position = (q_k * (log_q - log_p_k)).sum(-1)
    elif kind == "js":
        p_k = log_p_k.exp()
        log_m = torch.logaddexp(log_p_k, log_q) - math.log(2.0)
        rest = (1.0 - p_k.sum(-1)).clamp(min=0.0) * math.log(2.0)
        per_position = 0.5 * ((p_k * (log_p_k - log_m)).sum(-1) + rest + (q_k * (log_q - log_m)).sum(-1))
    else:
        raise ValueError(f"kd kind must be 'js' or 'kl', not {kind!r}")
    return _masked_mean(per_position, mask) * temperature ** 2


def total_loss(ce: torch.Tensor, gate: torch.Tensor, kd: torch.Tensor | None, w_ce: float = 0.25,
               w_kd: float = 0.5) -> torch.Tensor:
    """w_ce * (CE + L_gate) + w_kd * KD; without a teacher (CLSR-FT, FT, LoRA) just CE + L_gate."""
    if kd is None:
        return ce + gate
    return w_ce * (ce + gate) + w_kd * kd
