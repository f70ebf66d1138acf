"""Decode audio files to what Whisper takes: 16 kHz mono float32 in [-1, 1].

soundfile (libsndfile) reads wav/flac/ogg/mp3 in-process; anything it cannot read goes through the `ffmpeg`
command when installed.  Resampling uses soxr (high quality, fast).  Errors name the file and the reason, since a
bad file usually surfaces deep inside a long evaluation otherwise.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

SAMPLE_RATE = 16_000
MAX_SECONDS = 30.0  # Whisper's window: the longest clip `eval` and `train` take (`transcribe` segments longer audio)


class AudioError(ValueError):
    """An audio file that cannot be used; the message names the file."""


def _ffmpeg_decode(path: Path, sample_rate: int) -> np.ndarray:
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(f"{path}: libsndfile cannot read this format and ffmpeg is not installed")
    cmd = [ffmpeg, "-nostdin", "-v", "error", "-i", str(path), "-f", "f32le", "-ac", "1", "-ar", str(sample_rate), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0 or not proc.stdout:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise AudioError(f"{path}: unreadable audio ({reason[-1] if reason else 'ffmpeg produced no samples'})")
    return np.frombuffer(proc.stdout, dtype=np.float32).copy()


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a file as mono float32 at `sample_rate` Hz."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError):
        audio = _ffmpeg_decode(path, sample_rate)
    else:
        audio = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
        if rate != sample_rate:
            audio = soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32)
    if audio.size == 0:
        raise AudioError(f"{path}: audio has no samples")
    bad = int(np.count_nonzero(~np.isfinite(audio)))
    if bad:  # a float file can hold them; they would turn every feature of the window into NaN
        raise AudioError(f"{path}: {bad} of {audio.size} samples are NaN or infinite")
    return np.ascontiguousarray(audio, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds, from the header when possible (cheap), else by decoding."""
    path = Path(path)
    if not path.is_file():
        raise AudioError(f"{path}: audio file not found")
    try:
        info = sf.info(str(path))
        if info.frames > 0 and info.samplerate > 0:
            return info.frames / info.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError):
        pass
    return len(load_audio(path)) / SAMPLE_RATE


def save_wav(path: str | Path | BinaryIO, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """Write 16-bit PCM wav (what corpora ship; float wavs double the size for no accuracy gain)."""
    sf.write(path if hasattr(path, "write") else str(path), audio, sample_rate, format="WAV", subtype="PCM_16")
