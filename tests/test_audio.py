"""Audio decoding: formats, resampling, channels, and errors that name the file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from distilwhisper.audio import AudioError, audio_duration, load_audio
from conftest import tone


@pytest.mark.parametrize("ext,fmt", [("wav", "WAV"), ("flac", "FLAC"), ("ogg", "OGG"), ("mp3", "MP3")])
def test_formats_decode_to_16k_mono(tmp_path, ext, fmt):
    path = tmp_path / f"a.{ext}"
    stereo = np.stack([tone(1.0, 44100), tone(1.0, 44100)], axis=1)
    sf.write(str(path), stereo, 44100, format=fmt)
    audio = load_audio(path)
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) - 16000) < 1200  # mp3 adds encoder padding
    assert 0.15 < np.abs(audio).max() < 0.4
    assert abs(audio_duration(path) - 1.0) < 0.08


def test_resampling_keeps_pitch(tmp_path):
    path = tmp_path / "a.wav"
    sf.write(str(path), tone(1.0, 8000, freq=500.0), 8000)
    audio = load_audio(path)
    spectrum = np.abs(np.fft.rfft(audio))
    assert abs(np.argmax(spectrum) * 16000 / len(audio) - 500.0) < 5


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(AudioError, match="not found"):
        load_audio(tmp_path / "nope.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunk")
    with pytest.raises(AudioError, match="corrupt.wav"):
        load_audio(corrupt)
