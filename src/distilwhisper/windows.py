"""Where a recording is cut into windows of at most 30 s, and the segments one window's timestamp tokens give.

Windows are cut at pauses (frame energy; a stretch without speech is left out), so that batched decoding never
splits a word, or with VAD hold the stretches of speech Silero finds, joined; Whisper's sequential long-form
decoding instead moves a 30 s window on to where the last complete segment the model timed ended
(`timed_segments`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from distilwhisper import vad
from distilwhisper.audio import SAMPLE_RATE

WINDOW_SECONDS = 30.0
FRAME = SAMPLE_RATE * 30 // 1000  # 30 ms energy frames
MIN_PAUSE_FRAMES = 10  # 0.3 s of silence is a pause a window may be cut at
TIME_STEP = 0.02  # seconds per timestamp token


@dataclass(frozen=True)
class Window:
    """Audio decoded as one piece: one stretch of a recording, or (with VAD) stretches joined without what lies
    between them.  `pieces` are (start, end) sample ranges of the recording, in order; `onsets`, where given, the
    sample of each piece where the VAD heard its speech begin (a piece is padded before it)."""

    pieces: tuple[tuple[int, int], ...]
    onsets: tuple[int, ...] | None = None

    @property
    def start(self) -> int:
        return self.pieces[0][0]

    @property
    def end(self) -> int:
        return self.pieces[-1][1]

    @property
    def piece_starts(self) -> list[float]:
        """Seconds of the window's audio where each piece begins: where, in what the model heard, speech resumes
        after a pause (with VAD: after non-speech left out)."""
        starts, at = [], 0
        for a, b in self.pieces:
            starts.append(at / SAMPLE_RATE)
            at += b - a
        return starts

    def audio(self, samples: np.ndarray) -> np.ndarray:
        """The window's samples of the recording `samples`, its pieces joined."""
        if len(self.pieces) == 1:
            return samples[self.start:self.end]
        return np.concatenate([samples[a:b] for a, b in self.pieces])

    def interval(self, start: float, end: float) -> tuple[float, float]:
        """The recording's times (s) of [start, end] seconds of the window's audio.  An interval that runs over
        the join of two pieces is kept inside the piece holding more of it: what lay between them was not heard.
        With `onsets`, it starts no earlier than the piece's onset: Whisper's alignment tends to start a piece's
        first word at the piece's start, in the padding's non-speech (the padding after speech is kept: Silero ends
        speech early on trailing consonants; chosen on dev recordings, docs/results.md)."""
        bounds, at = [], 0
        for k, (a, b) in enumerate(self.pieces):
            bounds.append((at, at + b - a, a, at + (self.onsets[k] if self.onsets else a) - a))
            at += b - a
        s_at, e_at = start * SAMPLE_RATE, end * SAMPLE_RATE
        w0, w1, a, onset = max(bounds, key=lambda p: (min(e_at, p[1]) - max(s_at, p[0]), -p[0]))
        clamp = lambda x: (a + min(max(x, onset), w1) - w0) / SAMPLE_RATE  # noqa: E731
        return clamp(s_at), clamp(e_at)


def span(start: int, end: int) -> Window:
    """A window of one stretch of a recording."""
    return Window(((start, end),))


def speech_windows(audio: np.ndarray, max_seconds: float = WINDOW_SECONDS) -> list[Window]:
    """Windows (one stretch each) of at most `max_seconds` covering the speech, cut in the latest pause that fits
    (a hard cut where there is none); stretches without speech are left out."""
    n_frames = len(audio) // FRAME
    if n_frames == 0:
        return [span(0, len(audio))] if len(audio) else []
    speech = voiced_frames(audio)
    limit = int(max_seconds * SAMPLE_RATE) // FRAME
    windows, frame = [], 0
    while True:
        voiced = np.flatnonzero(speech[frame:])
        if not len(voiced):
            return windows
        start = frame + int(voiced[0])
        end = min(start + limit, n_frames)
        if end < n_frames:
            end = _latest_pause(speech, start, end) or end
        last_voiced = start + int(np.flatnonzero(speech[start:end])[-1])
        stop = len(audio) if end == n_frames else min(last_voiced + MIN_PAUSE_FRAMES // 2 + 1, end) * FRAME
        windows.append(span(max(start - 2, frame) * FRAME, stop))  # 60 ms of lead-in, never into the last window
        frame = end


def voiced_frames(audio: np.ndarray) -> np.ndarray:
    """Per FRAME of `audio`, whether it holds sound: above -50 dBFS and 5 % of the audio's 95th-percentile frame
    energy (relative, so that a quiet recording is not all silence)."""
    n_frames = len(audio) // FRAME
    if n_frames == 0:
        return np.zeros(0, dtype=bool)
    rms = np.sqrt(np.mean(audio[:n_frames * FRAME].reshape(n_frames, FRAME) ** 2, axis=1))
    return rms > max(10 ** (-50 / 20), 0.05 * float(np.percentile(rms, 95)))


def vad_windows(audio: np.ndarray, threshold: float = vad.THRESHOLD, min_silence_ms: int = vad.MIN_SILENCE_MS,
                max_seconds: float = WINDOW_SECONDS) -> list[Window]:
    """Windows of the speech Silero VAD finds (`vad.heard_stretches`, padded), joined: consecutive stretches go
    into one window while their audio together fits `max_seconds`, so the model hears a line with its neighbours, as
    it would without the non-speech between them (silence, music, noise), which is never decoded.  A stretch longer
    than a window is cut at its pauses as `speech_windows` cuts a recording."""
    limit = int(max_seconds * SAMPLE_RATE)
    pieces = []  # (padded piece, where its speech was heard to begin)
    heard = vad.heard_stretches(audio, threshold, min_silence_ms)
    for (a, b), (onset, _) in zip(vad.padded(heard, len(audio)), heard):
        cut = ([(a, b)] if b - a <= limit
               else [(a + w.start, a + w.end) for w in speech_windows(audio[a:b], max_seconds)])
        pieces += [((x, y), min(max(x, onset), y)) for x, y in cut]
    windows, current = [], []
    for piece in pieces:
        if current and sum(y - x for (x, y), _ in current) + piece[0][1] - piece[0][0] > limit:
            windows.append(_joined(current))
            current = []
        current.append(piece)
    return windows + ([_joined(current)] if current else [])


def _joined(pieces: list[tuple[tuple[int, int], int]]) -> Window:
    """One window of (piece, onset) pairs."""
    return Window(tuple(piece for piece, _ in pieces), tuple(onset for _, onset in pieces))


def _latest_pause(speech: np.ndarray, start: int, end: int) -> int | None:
    """The middle of the latest run of at least MIN_PAUSE_FRAMES silent frames inside (start, end)."""
    run = 0
    for i in range(end - 1, start, -1):
        run = run + 1 if not speech[i] else 0
        if run >= MIN_PAUSE_FRAMES and i + run < end:
            return i + run // 2
    return None


def timed_segments(tokens: list[int], begin: int, window_samples: int) -> tuple[list[tuple[float, float, list[int]]],
                                                                                  int, int]:
    """Segments (start s, end s, text tokens) of one window's tokens under the timestamp grammar, how many
    samples the next window moves on (to the last complete segment's end, or the whole window when the output
    ends with a lone time -- the model heard everything up to the end -- or holds no complete segment), and how many
    tokens those segments take (the rest is decoded again in the next window)."""
    is_time = [t >= begin for t in tokens]
    seconds = [(t - begin) * TIME_STEP for t in tokens]
    closes = [i for i in range(1, len(tokens)) if is_time[i - 1] and is_time[i]]  # between two times: a boundary
    lone_end = len(tokens) >= 2 and is_time[-1] and not is_time[-2]
    if not closes:  # one segment at most: from its opening time (or 0) to its closing time (or the window's end)
        text = [t for t, time_ in zip(tokens, is_time) if not time_]
        start = seconds[0] if is_time[0:1] == [True] else 0.0
        end = seconds[-1] if len(tokens) > 1 and is_time[-1] else window_samples / SAMPLE_RATE
        return ([(start, end, text)] if text else []), window_samples, len(tokens)
    cuts = closes + ([len(tokens)] if lone_end else [])
    pieces, last = [], 0
    for cut in cuts:
        piece = tokens[last:cut]
        text = [t for t in piece if t < begin]
        if text and is_time[last] and is_time[cut - 1]:
            pieces.append((seconds[last], seconds[cut - 1], text))
        last = cut
    advance = window_samples if lone_end else int(round(seconds[last - 1] * SAMPLE_RATE))
    return pieces, advance, last
