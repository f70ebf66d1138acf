"""Corpora as manifests: one JSON line per utterance, with the speaker metadata the bias analysis needs."""

from distilwhisper.data.manifest import ManifestError, Utterance, read_manifest, validate_manifest, write_manifest

__all__ = ["ManifestError", "Utterance", "read_manifest", "validate_manifest", "write_manifest"]
