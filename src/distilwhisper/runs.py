"""A `train` run folder of any method: its layout, its counters, and loading what it kept.  Every command that takes
a model takes a run folder, so this module belongs to no command: training writes run folders, inference opens
them.  The only code that knows where a run keeps what:

    OUT/config.json        the TrainConfig
    OUT/best/              the best model by dev WER: experts (CLSR methods; each language's from its own best
                           dev step), a LoRA adapter, or the FT model
    OUT/checkpoint/        the resumable state (accelerate's optimizer/scheduler/RNG files, trainable weights,
                           state.json with the counters)
    OUT/dev/step-NNNNNNN/  dev evaluations
    OUT/metrics.jsonl      one row of loss terms per optimizer step
    OUT/tensorboard/
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from safetensors import safe_open
from torch import nn

from distilwhisper import clsr, methods
from distilwhisper.hub import load_model
from distilwhisper.io import atomic_write_json, file_sha256, read_json, recover_dir
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
        self.data = self.root / "data.json"  # what the run trained on (rows per language, pseudo-labelled rows)
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
    best_dev_wer: float | None = None  # dev WER of what best/ holds
    best_step: int | None = None  # step of the kept checkpoint (0 = the untrained start); with experts kept per
    #                               language, the last step that changed best/
    best_steps: dict[str, int] = field(default_factory=dict)  # language -> step its experts in best/ come from
    evaluated_step: int | None = None
    dev_expert_fraction: dict[str, float] = field(default_factory=dict)  # runs of earlier versions only: step ->
    #                                                                      share of dev tokens to experts (now
    #                                                                      derived from dev_routing)
    dev_counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # step -> language -> [word errors,
    #                                                                             reference words] on dev
    dev_routing: dict[str, dict[str, list[int]]] = field(default_factory=dict)  # step -> language -> [tokens
    #                                                                              routed to experts, tokens seen]

    def kept_steps(self, languages: list[str]) -> dict[str, int]:
        """Per language with experts, the evaluated step of its lowest dev WER (the earliest on ties): each
        language's experts and gate are its own parameters, trained only on its own batches, so each can be kept
        where it was best, as if trained alone.  A language without dev utterances follows the pooled dev WER."""
        steps = sorted(self.dev_counts, key=int)
        pooled = {s: self.dev_wer(s) for s in steps}
        by_pool = min(steps, key=lambda s: (pooled[s], int(s)))
        kept = {}
        for lang in languages:
            scored = [s for s in steps if self.dev_counts[s].get(lang, [0, 0])[1] > 0]
            kept[lang] = int(min(scored, key=lambda s: (_wer([self.dev_counts[s][lang]]), int(s)))
                             if scored else by_pool)
        return kept

    def dev_wer(self, step: int | str) -> float:
        """Pooled dev WER of the model as it was at the evaluated `step` (every language at that step)."""
        return _wer(list(self.dev_counts[str(step)].values()))

    def kept_dev_counts(self, step: int) -> dict[str, list[int]]:
        """Per language, [word errors, reference words] on dev of the system best/ holds after the evaluation at
        `step`: each language with kept experts counted at its kept step, the others (no experts: the shared
        model's fixed output) at `step`."""
        return {lang: self.dev_counts[str(self.best_steps.get(lang, step))][lang]
                for lang in self.dev_counts[str(step)]}

    def kept_dev_wer(self, step: int) -> float:
        """Pooled dev WER of the system best/ holds after the evaluation at `step` (`kept_dev_counts`)."""
        return _wer(list(self.kept_dev_counts(step).values()))

    def evaluations_since_best(self) -> int:
        """Dev evaluations after the one that last improved the kept model (`--patience` counts them)."""
        return sum(int(step) > (self.best_step or 0) for step in self.dev_counts)

    def out_of_patience(self, patience: int) -> bool:
        """`patience` (> 0) dev evaluations in a row without a better kept model: the run stops, and is finished."""
        return 0 < patience <= self.evaluations_since_best()

    def routed_share(self, step: int | None) -> float | None:
        """Share of dev tokens the hard gates sent to experts in the kept system (experts kept per language), or
        at `step` (runs of earlier versions, which kept one step)."""
        if self.best_steps and self.dev_routing:
            counts = [self.dev_routing.get(str(s), {}).get(lang, [0, 0]) for lang, s in self.best_steps.items()]
            seen = sum(c[1] for c in counts)
            return sum(c[0] for c in counts) / seen if seen else None
        return self.dev_expert_fraction.get(str(step))

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
    def open(cls, folder: str | Path, kept: bool = True) -> "TrainedRun":
        """The run in `folder`; `kept=False` also opens a copy of its settings and counters without the weights
        (config.json and checkpoint/state.json, as a benchmark's record keeps a finished run)."""
        layout = RunLayout(folder)
        recover_dir(layout.best)
        recover_dir(layout.checkpoint)
        if not layout.config.is_file() or (kept and not layout.best.is_dir()):
            raise ValueError(f"{folder}: not a finished training run (needs config.json and best/)")
        state = State.load(layout.state) if layout.state.is_file() else None
        saved = read_json(layout.config)  # settings an earlier version wrote and no longer has are left out
        return cls(layout, TrainConfig(**{f.name: saved[f.name] for f in fields(TrainConfig) if f.name in saved}),
                   state)

    def load(self):
        """(model, processor) of the kept model, ready to decode, as its method loads it (e.g. the student with
        its experts, with its LoRA adapters merged, or the fine-tuned model)."""
        return methods.get(self.config.method).load(self.config, self.layout.best)

    @property
    def finished(self) -> bool:
        """Trained to its last step, or stopped by --patience (a rerun would only reuse it)."""
        return self.state is not None and (self.state.step >= (self.config.max_steps or 0) > 0
                                           or self.state.out_of_patience(self.config.patience))

    @property
    def trainable_parameters(self) -> int:
        """Parameters the run updated, read from its checkpoint (`best/` of FT holds the whole model)."""
        with safe_open(str(self.layout.trainable), "pt") as f:
            return sum(math.prod(f.get_slice(key).get_shape()) for key in f.keys())

    @property
    def routed_share(self) -> float | None:
        """Share of dev tokens the hard gates sent to experts at the kept step (CLSR methods)."""
        return self.state.routed_share(self.state.best_step) if self.state else None


def _wer(counts: list[list[int]]) -> float:
    """Pooled WER in % of [errors, words] pairs (infinite without words: never the best)."""
    words = sum(c[1] for c in counts)
    return 100.0 * sum(c[0] for c in counts) / words if words else math.inf


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


def local_weights_fingerprint(*refs: str | None) -> str | None:
    """The identity by content of the local files that model references load (a `train` run folder: its config
    and what best/ kept; a model directory or file: all of it), so that results decoded with them are not reused
    after they were retrained or replaced in place.  None when no reference is a local path (a bundled or hub
    model is fixed by its name)."""
    digest, local = hashlib.sha256(), False
    for ref in refs:
        if ref is None or not Path(ref).expanduser().exists():
            continue
        path, local = Path(ref).expanduser(), True
        if is_run_folder(path):
            layout = RunLayout(path)
            files = [layout.config] + sorted(p for p in layout.best.rglob("*") if p.is_file())
        else:
            files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(f"{file.relative_to(path) if path.is_dir() else file.name}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()[:16] if local else None


def experts_folder(path: str | Path) -> Path:
    """The experts a path holds: a `train` run folder's kept `best/`, or the path itself."""
    return RunLayout(path).best if is_run_folder(path) else Path(path)


def attach_kept_experts(model: nn.Module, path: str | Path, languages: list[str] | None = None,
                        missing_ok: bool = False) -> None:
    """`clsr.attach_experts` from a run folder, its `best/` or any experts folder.  Runs trained between bc74f00
    and 96c5aa5 saved no tasks with their experts: a run's own settings say what its experts learnt (translation
    too with --keep-translate), where a bare folder would serve them transcription only."""
    folder = experts_folder(path)
    run = folder.parent if is_run_folder(folder.parent) else None
    clsr.attach_experts(model, folder, languages, missing_ok,
                        TrainedRun.open(run).config.expert_tasks if run else clsr.TRAINED_FOR)
