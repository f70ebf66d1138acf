"""Where a recording holds speech, by Silero VAD (the ONNX model faster-whisper ships, run by onnxruntime).

Silero is a recurrent model: run over a whole recording its state carries what it heard.  After tens of seconds of
loud noise that state kept a following Czech line below the speech threshold (its frames peaked at 0.25; the same
line with a fresh state reached 0.97), so the model is run on blocks of `BLOCK_SECONDS` with a fresh state each:
a stretch of noise can then hide at most the first block after it, and the speech/pause decision below bridges
a block edge inside speech (a dip shorter than the minimum silence does not end a stretch).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from distilwhisper.audio import SAMPLE_RATE

# chosen on dev recordings with inserted non-speech (benchmarks/vad.py; faster-whisper's are 0.5 and 2000 ms)
THRESHOLD = 0.5  # speech probability above which a frame starts speech
MIN_SILENCE_MS = 500  # frames under the lower threshold for this long end a stretch
FRAME_SAMPLES = 512  # Silero's frame at 16 kHz
BLOCK_SECONDS = 10.0  # the model's state is fresh at the start of each block (see the module's docstring)
HYSTERESIS = 0.15  # a stretch ends below threshold - HYSTERESIS, so a frame near the threshold does not flicker
PAD_MS = 400  # kept around each stretch: Silero is late on soft onsets and early on trailing consonants
MIN_SPEECH_MS = 250  # a stretch shorter than this (a click, a cough) is not speech


@lru_cache(maxsize=1)
def _model():
    try:
        from faster_whisper.vad import get_vad_model
    except ImportError as e:  # faster-whisper ships the model file and its runner
        raise RuntimeError("--vad needs faster-whisper's Silero model: pip install faster-whisper") from e
    return get_vad_model()


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """Silero's speech probability of each FRAME_SAMPLES frame of `audio` (the last frame zero-padded), the model's
    state fresh at every BLOCK_SECONDS."""
    padded = np.pad(np.asarray(audio, np.float32), (0, -len(audio) % FRAME_SAMPLES))
    if not len(padded):
        return np.zeros(0, np.float32)
    block = int(BLOCK_SECONDS * SAMPLE_RATE) // FRAME_SAMPLES * FRAME_SAMPLES
    return np.concatenate([np.asarray(_model()(padded[i:i + block]), np.float32).ravel()
                           for i in range(0, len(padded), block)])


def heard_stretches(audio: np.ndarray, threshold: float = THRESHOLD,
                    min_silence_ms: int = MIN_SILENCE_MS) -> list[tuple[int, int]]:
    """(start, end) sample ranges where Silero hears speech, unpadded: a stretch starts at a frame at or above
    `threshold`, ends where `min_silence_ms` of frames under threshold - HYSTERESIS begins, and is dropped when
    shorter than MIN_SPEECH_MS."""
    probs = speech_probabilities(audio)
    quiet_frames = max(1, int(min_silence_ms * SAMPLE_RATE / 1000 / FRAME_SAMPLES))
    low = max(threshold - HYSTERESIS, 0.01)
    raw, start, quiet_since = [], None, None
    for i, p in enumerate(probs):
        if start is None:
            if p >= threshold:
                start, quiet_since = i, None
            continue
        if p >= threshold:
            quiet_since = None
        elif p < low and quiet_since is None:
            quiet_since = i
        if quiet_since is not None and i - quiet_since + 1 >= quiet_frames:
            raw.append((start, quiet_since))
            start, quiet_since = None, None
    if start is not None:
        raw.append((start, quiet_since if quiet_since is not None else len(probs)))
    min_frames = MIN_SPEECH_MS * SAMPLE_RATE / 1000 / FRAME_SAMPLES
    return [(a * FRAME_SAMPLES, min(b * FRAME_SAMPLES, len(audio))) for a, b in raw if b - a >= min_frames]


def padded(spans: list[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """`spans` widened by PAD_MS on each side, inside [0, length], never overlapping (a gap narrower than two pads
    is split in its middle)."""
    pad, out = int(PAD_MS * SAMPLE_RATE / 1000), []
    for k, (a, b) in enumerate(spans):
        before = a - spans[k - 1][1] if k else None
        after = spans[k + 1][0] - b if k + 1 < len(spans) else None
        start = a - (pad if before is None or before >= 2 * pad else before // 2)
        end = b + (pad if after is None or after >= 2 * pad else after - after // 2)
        out.append((max(start, 0), min(end, length)))
    return out
