"""Resumable checkpoints on accelerate (`save_state`/`load_state`: optimizer, scheduler, every RNG and the
gradient-accumulation counter) and the kept best model.

Only the weights that train are stored (`trainable.safetensors`; for CLSR that is the experts and gates, a few
percent of the model): accelerate's state hooks hand the model weights to this module instead of writing whole
models.  Every folder is written under a temp name and swapped in (`io.atomic_dir`), so a kill at any moment
leaves the previous checkpoint or `best/` complete.  Nothing here unpickles arbitrary objects: accelerate loads its
files with `weights_only=True`, weights are safetensors and counters JSON.
"""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from safetensors.torch import load_file, save_file

from distilwhisper import methods
from distilwhisper.io import atomic_dir, recover_dir, replace_dir
from distilwhisper.runs import RunLayout, State
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.model import trainable_state

TRAINABLE = "trainable.safetensors"


def register_weight_hooks(accelerator, config: TrainConfig) -> None:
    """Make `save_state`/`load_state` store and restore the trainable weights only."""
    def save_hook(models, weights, output_dir):
        if accelerator.is_main_process:
            save_file(trainable_state(accelerator.unwrap_model(models[0])), str(Path(output_dir) / TRAINABLE))
        weights.clear()

    def load_hook(models, input_dir):
        model = accelerator.unwrap_model(models[0])
        weights = load_file(str(Path(input_dir) / TRAINABLE))
        missing = set(trainable_state(model)) - set(weights)
        if missing:
            raise ValueError(f"--resume: {input_dir} lacks {len(missing)} trainable tensors of this model "
                             f"(e.g. {sorted(missing)[0]}); was it made with other languages or scope?")
        model.load_state_dict(weights, strict=False)
        models.clear()

    accelerator.register_save_state_pre_hook(save_hook)
    accelerator.register_load_state_pre_hook(load_hook)


def save_checkpoint(accelerator, layout: RunLayout, state: State) -> None:
    """Every process writes its part (its RNG states) into one temp folder; the main process swaps it in."""
    tmp = layout.checkpoint.with_name(".checkpoint.tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        state.save(tmp / "state.json")
        replace_dir(tmp, layout.checkpoint)
    accelerator.wait_for_everyone()


def load_checkpoint(accelerator, layout: RunLayout, config: TrainConfig) -> State:
    """Restore weights, optimizer, scheduler and RNG states; returns the counters."""
    recover_dir(layout.checkpoint)
    if (layout.checkpoint / "optim.pt").exists():
        raise ValueError(f"--resume: {layout.checkpoint} was written by an earlier version of distilwhisper (optim.pt); "
                         "its best/ still loads, but training cannot continue from it: start a new --out")
    state = State.load(layout.state)
    if state.method != config.method:
        raise ValueError(f"--resume: {layout.checkpoint} is a checkpoint of --method {state.method}, "
                         f"not {config.method}")
    # accelerate reads its files with weights_only=True, but skips RNG states it cannot read with a log line only,
    # which would let a resumed run drift from the uninterrupted one: they are read here first
    _read_state_file(layout.checkpoint / f"random_states_{accelerator.process_index}.pkl")
    try:
        accelerator.load_state(str(layout.checkpoint))
    except pickle.UnpicklingError:  # the optimizer's or the scheduler's file
        for path in sorted(layout.checkpoint.glob("*.bin")):
            _read_state_file(path)
        raise
    return state


def _read_state_file(path: Path) -> None:
    """Read a state file as accelerate does (tensors, numbers and allow-listed types only); a file that needs
    more, and so could run code, is refused, naming it."""
    from accelerate.utils.other import load

    try:
        load(path, map_location="cpu")
    except pickle.UnpicklingError as err:
        raise ValueError(f"--resume: {path} is not plain tensors and numbers; loading it could run code, so it is "
                         "refused") from err
    except (OSError, EOFError, RuntimeError) as err:
        raise ValueError(f"--resume: {path} cannot be read ({err}); the run cannot continue exactly") from err


def save_best(config: TrainConfig, layout: RunLayout, trained, decodable, processor,
              languages: list[str] | None = None, kept_steps: dict[str, int] | None = None) -> None:
    """The model to keep, in the form users load (its method's: experts, a LoRA adapter, the whole model...).
    With `languages`, only those languages' experts are replaced; the others stay as kept at their own steps."""
    with atomic_dir(layout.best) as tmp:
        methods.get(config.method).save(config, tmp, trained, decodable, processor,
                                        layout.best if layout.best.is_dir() else None, languages, kept_steps)
