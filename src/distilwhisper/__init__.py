"""distilwhisper: measure and improve small multilingual Whisper models per language (DistilWhisper, Ferraz et al.)."""

from distilwhisper.hub import load_model

__version__ = "0.1.0"
__all__ = ["load_model", "__version__"]
