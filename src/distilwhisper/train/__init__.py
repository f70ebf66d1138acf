"""Training: DistilWhisper experts and the baselines on one accelerate loop (`distilwhisper.train.loop.train`).

config.py (what defines a run) · data.py (items, batches) · caches.py (teacher, encoder) · model.py (the teacher,
weights' identity) · objective.py (the loss) · checkpoint.py (save/resume, the kept model) · loop.py (the loop).
What a method trains, keeps and loads is its own module under `methods/`; the run folder that training writes and
every command opens is `runs.py`.
"""

from distilwhisper.train.config import TrainConfig, load_config

__all__ = ["TrainConfig", "load_config"]
