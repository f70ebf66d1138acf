"""Transcribe audio files with a model (optionally with a language's experts): the `transcribe` command."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from distilwhisper.audio import load_audio
from distilwhisper.clsr import attach_experts
from distilwhisper.decoding import Transcript, WhisperDecoder
from distilwhisper.train.run import experts_folder, model_or_run


@dataclass
class TranscribeConfig:
    """`distilwhisper transcribe`: transcribe audio files, optionally with a language's experts."""

    audio: list[str] = field(metadata={"help": "audio files (each at most 30 s)", "positional": True})
    model: str = field(default="bundled:base", metadata={"help": "model reference"})
    experts: str | None = field(default=None, metadata={"help": "experts (a `train` run folder or its best/) to "
                                                                "load onto --model"})
    language: str | None = field(default=None, metadata={"help": "force a language (default: detected; needed "
                                                                  "with --experts)"})
    beam_size: int = field(default=1, metadata={"help": "1 = greedy, >1 = beam search"})
    batch_size: int = field(default=8, metadata={"help": "files decoded together"})
    trim: bool = field(default=False, metadata={"help": "encode only the frames holding audio"})
    threads: int | None = field(default=None, metadata={"help": "torch threads (default: all cores)"})


def transcribe_files(config: TranscribeConfig) -> Iterator[tuple[str, Transcript]]:
    """(path, transcript) per file, in order."""
    if config.experts and not config.language:
        raise ValueError("--experts needs --language: the experts of the language are part of the model")
    if config.threads:
        torch.set_num_threads(config.threads)
    model, processor = model_or_run(config.model)
    if config.experts:
        attach_experts(model, experts_folder(config.experts), [config.language])
    decoder = WhisperDecoder(model, processor, trim=config.trim)
    for start in range(0, len(config.audio), config.batch_size):
        paths = config.audio[start:start + config.batch_size]
        yield from zip(paths, decoder.transcribe([load_audio(p) for p in paths], config.language,
                                                 beam_size=config.beam_size))
