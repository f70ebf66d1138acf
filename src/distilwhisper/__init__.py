"""distilwhisper: measure and improve small multilingual Whisper models per language (DistilWhisper, Ferraz et al.)."""

import logging

# transformers imports torchao when it is installed; torchao then logs every CUDA-only kernel library it cannot load
# and torch warns about its enum registrations.  Neither concerns CPU use, and they bury our progress output.
for _name in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_name).setLevel(logging.ERROR)

from distilwhisper.hub import load_model  # noqa: E402

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]
