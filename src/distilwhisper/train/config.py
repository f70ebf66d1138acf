"""What defines a training run: `TrainConfig` (saved as the run's `config.json`; command-line flags and YAML files
are generated from / checked against its fields).

Defaults are the paper's (DESIGN.md): AdamW lr 1e-4, beta2 0.98, no weight decay, linear schedule with 10 %
warm-up, batch 16, 10 epochs, best checkpoint by dev WER, CE with label smoothing 0.1, w_ce 0.25, w_kd 0.5, JS
divergence, gate skipping 0.2, expert dropout 0.3, LoRA r = alpha = 64 with dropout 0.05.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, fields
from pathlib import Path

from distilwhisper import methods
from distilwhisper.methods.base import setting
from distilwhisper.methods.clsr_ft import ExpertSettings
from distilwhisper.methods.distilwhisper import DistillSettings
from distilwhisper.methods.lora import LoraSettings
from distilwhisper.clsr import SCOPES, TRAINED_FOR
from distilwhisper.distributed import DEFAULT_TIMEOUT_MINUTES
from distilwhisper.languages import check as check_language


@dataclass
class SharedSettings:
    """The settings of every method: data, model, optimizer, schedule, evaluation, precision."""

    method: str = setting(MISSING, "distilwhisper: experts + gates with CE, gate budget and distillation; clsr-ft: "
                                   "the same without the teacher; ft: full fine-tuning; lora: LoRA adapters",
                          choices=methods.names)
    student: str = setting(MISSING, "student model reference (paper: openai/whisper-small)")
    languages: list[str] = setting(MISSING, "languages to train experts for (comma-separated)")
    train: str = setting(MISSING, "training manifest (only its split=train lines if it has a split column)")
    out: str = setting(MISSING, "output folder: best/, checkpoint/, dev/, tensorboard/, metrics.jsonl")
    dev: str | None = setting(None, "dev manifest (only split=dev lines if it has a split column): WER at each "
                                    "evaluation; the best checkpoint is kept")
    max_steps: int | None = setting(None, "optimizer steps (overrides --epochs)", min=1)
    epochs: float = setting(10.0, "passes over the training set")
    batch_size: int = setting(16, "utterances per batch and process (one language per batch; a launch of N processes "
                                  "trains on global batches of N x this)", min=1)
    grad_accum: int = setting(1, "gradient accumulation steps", min=1)
    lr: float = setting(1e-4, "peak learning rate (AdamW, linear schedule)")
    beta2: float = setting(0.98, "AdamW beta2")
    weight_decay: float = setting(0.0, "AdamW weight decay")
    warmup: float = setting(0.1, "share of the steps spent warming up")
    label_smoothing: float = setting(0.1, "label smoothing of the cross-entropy")
    w_ce: float = setting(0.25, "weight of CE + gate budget")
    scope: str = setting("all", "layers that train: where experts or LoRA adapters go, which layers ft updates "
                                "(paper: all)", choices=SCOPES)
    eval_every: int = setting(0, "steps between dev evaluations (0: at the end of each epoch)")
    save_every: int = setting(0, "steps between resumable checkpoints besides those at dev evaluations (0: only at "
                                 "evaluations)")
    eval_limit: int | None = setting(None, "dev utterances used per evaluation", min=1)
    patience: int = setting(0, "stop once this many dev evaluations in a row have not improved the kept model (0: "
                               "train to the last step, the cap --max-steps/--epochs sets either way)", min=0)
    bf16: bool = setting(False, "bf16 autocast (fast only on CPUs/GPUs with bf16 units)")
    trim: bool = setting(False, "padding-free encoding: encode only the frames holding audio (at least 15 s); one "
                                "process only")
    cache_encoder: bool = setting(False, "encode each clip once and keep the output in memory (needs --scope "
                                         "decoder: the encoder is then frozen); one process only")
    joined_lines: float = setting(0.0, "extra training items, as a share of the training lines, each 2-3 consecutive "
                                       "lines of one language joined with pauses of 0.3-1 s (under 28 s): long-form "
                                       "windows hold several sentences, and a model trained on single lines learns "
                                       "to stop after the first")
    seed: int = setting(0, "random seed")
    timeout_minutes: float = setting(DEFAULT_TIMEOUT_MINUTES, "under accelerate launch: how long a process waits for "
                                                              "the others (e.g. at a checkpoint)")



@dataclass
class TrainConfig(DistillSettings, ExpertSettings, LoraSettings, SharedSettings):
    """`distilwhisper train`: DistilWhisper experts, or a baseline (clsr-ft, ft, lora); runs under
    `accelerate launch --num_processes N` too.  One flat set of settings (the run's config.json): those every
    method shares, then each method's own, defined in its module (distillation, experts, LoRA)."""

    def check(self) -> "TrainConfig":
        """Validate (languages normalised); returns self."""
        method = methods.get(self.method)
        self.languages = [check_language(lang) for lang in self.languages]
        method.check(self)
        if self.scope not in SCOPES:
            raise ValueError(f"--scope must be one of {', '.join(SCOPES)}, not {self.scope!r}")
        if self.patience < 0:
            raise ValueError(f"--patience must be 0 or a number of dev evaluations, not {self.patience}")
        for name in ("eval_every", "save_every"):
            value = getattr(self, name)
            if value < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be 0 or a number of steps, not {value}")
        if self.cache_encoder and self.scope != "decoder":
            raise ValueError(f"--cache-encoder needs a frozen encoder: --scope decoder (got --scope {self.scope})")
        if not 0.0 <= self.gate_target <= 1.0:
            raise ValueError(f"--gate-target is a share of tokens in [0, 1], not {self.gate_target}")
        check_weight("--gate-weight", self.gate_weight)
        check_weight("--keep-translate", self.keep_translate)
        if not 0.0 <= self.joined_lines <= 1.0:
            raise ValueError(f"--joined-lines is a share of the training lines in [0, 1], not {self.joined_lines}")
        for name in ("expert_dropout", "lora_dropout"):
            check_dropout(f"--{name.replace('_', '-')}", getattr(self, name))
        check_lr("--lr", self.lr)
        return self

    @property
    def uses_experts(self) -> bool:
        """The method trains language experts beside a frozen shared model (kept per language, gated routing)."""
        return methods.get(self.method).uses_experts

    @property
    def expert_tasks(self) -> tuple[str, ...]:
        """The tasks the run's experts learn, and so serve when loaded: transcription, and translation when the
        keep-translate term trained them on it."""
        return (*TRAINED_FOR, "translate") if self.keep_translate else TRAINED_FOR


def check_dropout(flag: str, value: float) -> None:
    """A dropout probability in [0, 1): torch only fails on it at the first training step, minutes into a run."""
    if not 0 <= value < 1:
        raise ValueError(f"{flag} is a dropout probability in [0, 1), not {value}")


def check_lr(flag: str, value: float) -> None:
    """A negative learning rate climbs the loss, silently for the whole run (0 is allowed: it trains nothing, which
    the tests use to keep the untrained start)."""
    if not value >= 0:
        raise ValueError(f"{flag} must be 0 (no training) or a positive learning rate, not {value}")


def check_weight(flag: str, value: float) -> None:
    """A loss term's weight: 0 takes the term out, a negative weight would maximise it."""
    if not value >= 0:
        raise ValueError(f"{flag} is a loss weight, 0 (off) or positive, not {value}")


def read_yaml(path: str | Path) -> dict:
    """Settings of a YAML file (names as the flags, with underscores); unknown names are an error."""
    import yaml

    values = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(values, dict):
        raise ValueError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    unknown = set(values) - {f.name for f in fields(TrainConfig)}
    if unknown:
        raise ValueError(f"{path}: unknown setting(s) {', '.join(sorted(unknown))}")
    return values


def load_config(path: str | Path | None, overrides: dict) -> TrainConfig:
    """YAML defaults (if any) updated with the non-None values of `overrides`, checked."""
    values = read_yaml(path) if path else {}
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values).check()
