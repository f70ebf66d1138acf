"""A training run folder: its layout, its counters, and loading what it kept.  The only code that knows where a
run keeps what:

    OUT/config.json        the TrainConfig
    OUT/best/              the best model by dev WER: experts (CLSR methods), a LoRA adapter, or the FT model
    OUT/checkpoint/        the resumable state (accelerate's optimizer/scheduler/RNG files, trainable weights,
                           state.json with the counters)
    OUT/dev/step-NNNNNNN/  dev evaluations
    OUT/metrics.jsonl      one row of loss terms per optimizer step
    OUT/tensorboard/
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from safetensors import safe_open

from distilwhisper import clsr
from distilwhisper.hub import load_model
from distilwhisper.io import atomic_write_json, read_json, recover_dir
from distilwhisper.train.config import TrainConfig


class RunLayout:
    """Paths inside a run folder."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.config = self.root / "config.json"
        self.best = self.root / "best"
        self.checkpoint = self.root / "checkpoint"
        self.state = self.checkpoint / "state.json"
        self.trainable = self.checkpoint / "trainable.safetensors"
        self.metrics = self.root / "metrics.jsonl"
        self.tensorboard = self.root / "tensorboard"

    def dev(self, step: int) -> Path:
        return self.root / "dev" / f"step-{step:07d}"


@dataclass
class State:
    """Counters of a run, saved with each checkpoint (`state.json`)."""

    method: str
    step: int = 0  # optimizer steps done
    epoch: int = 0
    epoch_batches: int = 0  # batches of `epoch` this process has trained on
    seconds: float = 0.0  # training wall time, summed over resumed runs
    best_dev_wer: float | None = None
    best_step: int | None = None  # step of the kept checkpoint (0 = the untrained start)
    evaluated_step: int | None = None
    dev_expert_fraction: dict[str, float] = field(default_factory=dict)  # step -> share of dev tokens to experts

    def save(self, path: Path) -> None:
        atomic_write_json(path, asdict(self))

    @classmethod
    def load(cls, path: Path) -> "State":
        values = read_json(path)
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})


@dataclass
class TrainedRun:
    """A finished (or interrupted) run: its settings, counters and kept model."""

    layout: RunLayout
    config: TrainConfig
    state: State | None

    @classmethod
    def open(cls, folder: str | Path) -> "TrainedRun":
        layout = RunLayout(folder)
        recover_dir(layout.best)
        recover_dir(layout.checkpoint)
        if not layout.config.is_file() or not layout.best.is_dir():
            raise ValueError(f"{folder}: not a finished training run (needs config.json and best/)")
        state = State.load(layout.state) if layout.state.is_file() else None
        saved = read_json(layout.config)  # settings an earlier version wrote and no longer has are left out
        return cls(layout, TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved}),
                   state)

    def load(self):
        """(model, processor) of the kept model, ready to decode: the student with its experts (CLSR methods),
        with its LoRA adapters merged (lora), or the fine-tuned model (ft)."""
        config, best = self.config, self.layout.best
        if config.method == "ft":
            return load_model(str(best))
        model, processor = load_model(config.student)
        if config.method == "lora":
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(best)).merge_and_unload()
        else:
            clsr.attach_experts(model, best, config.languages)
        return model.eval(), processor

    @property
    def finished(self) -> bool:
        """Trained to its last step (a rerun would only reuse it)."""
        return self.state is not None and self.state.step >= (self.config.max_steps or 0) > 0

    @property
    def trainable_parameters(self) -> int:
        """Parameters the run updated, read from its checkpoint (`best/` of FT holds the whole model)."""
        with safe_open(str(self.layout.trainable), "pt") as f:
            return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())

    @property
    def routed_share(self) -> float | None:
        """Share of dev tokens the hard gates sent to experts at the kept step (CLSR methods)."""
        return self.state.dev_expert_fraction.get(str(self.state.best_step)) if self.state else None


def is_run_folder(path: str | Path) -> bool:
    """A folder `train` wrote (finished or not): its config.json names a training method."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "method" in read_json(config)
    except ValueError:
        return False


def model_or_run(ref: str):
    """(model, processor) of a model reference or of what a `train` run folder kept (any method)."""
    return TrainedRun.open(ref).load() if is_run_folder(ref) else load_model(ref)


def experts_folder(path: str | Path) -> Path:
    """The experts a path holds: a `train` run folder's kept `best/`, or the path itself."""
    return RunLayout(path).best if is_run_folder(path) else Path(path)
