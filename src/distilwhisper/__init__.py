"""distilwhisper: measure and improve small multilingual Whisper models per language (DistilWhisper, Ferraz et al.)."""

import logging

# transformers imports torchao when it is installed; torchao then logs every CUDA-only kernel library it cannot load
# and torch warns about its enum registrations.  Neither concerns CPU use, and they bury our progress output.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

from distilwhisper.evaluate import EvalConfig, run_eval  # noqa: E402
from distilwhisper.hub import load_model  # noqa: E402
from distilwhisper.runs import TrainedRun  # noqa: E402
from distilwhisper.train import TrainConfig  # noqa: E402
from distilwhisper.transcribe import Transcriber, transcribe  # noqa: E402

__version__ = "0.1.0"
# The package's modules `evaluate` and `train` keep their names: `distilwhisper.evaluate.evaluate` (the loop)
# and `distilwhisper.train.loop.train` (training) are reached through them.
__all__ = ["EvalConfig", "TrainConfig", "TrainedRun", "Transcriber", "load_model", "run_eval", "transcribe",
           "__version__"]
