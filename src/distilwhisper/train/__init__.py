"""Training: DistilWhisper experts and the baselines (CLSR-FT, FT, LoRA) on one accelerate loop.

config.py (what defines a run) · data.py (items, batches) · caches.py (teacher, encoder) · model.py (student,
teacher) · objective.py (the loss) · checkpoint.py (save/resume, best) · loop.py (the loop) · run.py (a run
folder: layout, counters, loading what it kept).

The loop is imported on first use: evaluation loads models from run folders (run.py), and the loop evaluates on
dev, so importing the package must not import the loop.
"""

from distilwhisper.train.config import METHODS, TrainConfig, load_config
from distilwhisper.train.run import TrainedRun, is_run_folder

__all__ = ["METHODS", "TrainConfig", "TrainResult", "TrainedRun", "is_run_folder", "load_config", "train"]


def __getattr__(name: str):
    if name in ("train", "TrainResult"):
        from distilwhisper.train import loop

        return getattr(loop, name)
    raise AttributeError(f"module 'distilwhisper.train' has no attribute {name!r}")
