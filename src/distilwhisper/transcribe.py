"""Transcribe recordings of any length, with the experts of the detected language: the `transcribe` command and
`distilwhisper.transcribe()`.

A recording is cut into windows of at most 30 s at its pauses (frame energy; a window without speech is skipped),
and the windows are decoded in batches.  The language is detected from the first windows (softmax over Whisper's
language tokens) unless given; a model with experts for it uses them, any other language runs on the shared FFNs
(the base model), so one loaded model serves every language without reloading.  Like openai-whisper, a window whose
text compresses too well (a repetition loop, gzip ratio > 2.4) or whose average log-probability is below -1 is
decoded again at the next temperature (0.2 ... 1.0), and a window whose no-speech probability is above 0.6 with a
low log-probability is silence and gives no text.  `fallback=False` keeps plain greedy decoding (what `eval` does,
the paper's protocol).
"""

from __future__ import annotations

import zlib
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.clsr import served_tasks, trained_languages
from distilwhisper.decoding import TASKS, Decoder, DecodingOptions, Transcript, WhisperDecoder, resolve_options
from distilwhisper.quantize import PRECISIONS, auto_precision, load_variant

WINDOW_SECONDS = 30.0
FRAME = SAMPLE_RATE * 30 // 1000  # 30 ms energy frames
MIN_PAUSE_FRAMES = 10  # 0.3 s of silence is a pause a window may be cut at
DETECT_WINDOWS = 3  # windows whose language probabilities are averaged
TIME_STEP = 0.02  # seconds per timestamp token


@dataclass
class Segment:
    """One decoded window: times in seconds from the start of the recording."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    temperature: float
    compression_ratio: float


@dataclass
class Transcription:
    """A recording's segments, its (detected) language and which experts decoded it."""

    path: str
    language: str
    language_probability: float | None  # None when the language was given
    duration: float
    experts: str | None  # the experts' language, or None: decoded by the base model
    precision: str  # what the model computed in (`auto` resolved)
    segments: list[Segment] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def as_dict(self) -> dict:
        return {**asdict(self), "text": self.text}


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def speech_windows(audio: np.ndarray, max_seconds: float = WINDOW_SECONDS) -> list[tuple[int, int]]:
    """(start, end) sample ranges of at most `max_seconds` covering the speech, cut in the latest pause that fits
    (a hard cut where there is none); stretches without speech are left out."""
    n_frames = len(audio) // FRAME
    if n_frames == 0:
        return [(0, len(audio))] if len(audio) else []
    rms = np.sqrt(np.mean(audio[:n_frames * FRAME].reshape(n_frames, FRAME) ** 2, axis=1))
    speech = rms > max(10 ** (-50 / 20), 0.05 * float(np.percentile(rms, 95)))
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
        windows.append((max(start - 2, frame) * FRAME, stop))  # 60 ms of lead-in, never into the last window
        frame = end


def _latest_pause(speech: np.ndarray, start: int, end: int) -> int | None:
    """The middle of the latest run of at least MIN_PAUSE_FRAMES silent frames inside (start, end)."""
    run = 0
    for i in range(end - 1, start, -1):
        run = run + 1 if not speech[i] else 0
        if run >= MIN_PAUSE_FRAMES and i + run < end:
            return i + run // 2
    return None


def resolve_precision(precision: str, sequential: bool = False) -> str:
    """`auto`: bf16 where the CPU computes it (AVX-512 BF16, AMX) for windows cut at pauses, fp32 for sequential
    decoding and elsewhere: sequential bf16 drifts once the previous text it is given grows long (its timestamps,
    then its words).  Chosen per mode on `benchmarks/longform.py --split dev` as the fastest precision whose dev
    WER is not above fp32's (docs/results.md, "Long-form transcription")."""
    return ("fp32" if sequential else auto_precision()) if precision == "auto" else precision


class Transcriber:
    """A loaded model (with every language of an experts folder attached) that transcribes many recordings, at any
    precision of `quantize.py` (the CTranslate2 ones for plain models), or `auto` (`resolve_precision`): bf16
    where the CPU computes it, fp32 elsewhere. An `auto` transcriber whose windows run in bf16 loads a second,
    fp32 copy the first time it is asked for `sequential` decoding (where bf16 drifts), and keeps it."""

    def __init__(self, model: str = "bundled:base", experts: str | None = None, trim: bool = False,
                 precision: str = "auto", threads: int | None = None) -> None:
        self.requested = precision
        self.precision = resolve_precision(precision)
        self._load = partial(load_variant, model, trim=trim, experts=experts, threads=threads)
        self.decoder = self._load(self.precision).decoder
        self._decoders = {self.precision: self.decoder}
        plain = not isinstance(self.decoder, WhisperDecoder)
        self.experts = set() if plain else set(trained_languages(self.decoder.model))
        self.tasks = () if plain else served_tasks(self.decoder.model)  # the others decode on the shared FFNs

    def detect(self, windows: list[np.ndarray]) -> tuple[str, float]:
        """The most likely language of the first windows and its probability (averaged over them)."""
        probs = self.decoder.language_probabilities(windows[:DETECT_WINDOWS])
        mean = {lang: float(np.mean([p[lang] for p in probs])) for lang in probs[0]}
        best = max(mean, key=mean.get)
        return best, mean[best]

    def __call__(self, audio: np.ndarray | str | Path, language: str | None = None,
                 options: DecodingOptions | None = None, batch_size: int = 8, fallback: bool = True,
                 sequential: bool = False, condition_on_previous_text: bool = True, **changes) -> Transcription:
        """Transcribe one recording: windows cut at pauses and decoded in batches, or with `sequential` Whisper's
        own long-form algorithm (one 30 s window at a time, each starting where the last complete segment the model
        timed ended, optionally conditioned on the text so far).  How to decode: `options` with keyword `changes`
        (e.g. `task="translate"`, `beam_size=4`); `fallback=False` decodes each window once (eval's protocol)."""
        options = resolve_options(options, changes)
        if not fallback:
            options = options.with_(fallback_temperatures=())
        task = options.task
        if sequential and options.beam_size > 1:
            raise ValueError("sequential decoding is greedy with the temperature fallback, not beam search")
        path = str(audio) if isinstance(audio, (str, Path)) else "<array>"
        samples = load_audio(audio) if isinstance(audio, (str, Path)) else np.asarray(audio, dtype=np.float32)
        ranges = speech_windows(samples)
        windows = [samples[a:b] for a, b in ranges]
        probability = None
        if language in (None, "auto"):
            language, probability = self.detect(windows) if windows else ("en", None)
        precision = resolve_precision(self.requested, sequential)
        result = Transcription(path, language, probability, len(samples) / SAMPLE_RATE,
                               language if language in self.experts and task in self.tasks else None, precision)
        if sequential:
            result.segments = self._sequential(self._decoder(precision), samples, language, options,
                                               condition_on_previous_text)
            return result
        for i in range(0, len(windows), batch_size):
            decoded = self._decode(windows[i:i + batch_size], language, options)
            for (a, b), tr in zip(ranges[i:i + batch_size], decoded):
                silent = _silent(tr, options)
                result.segments.append(Segment(round(a / SAMPLE_RATE, 3), round(b / SAMPLE_RATE, 3),
                                               "" if silent else tr.text, tr.avg_logprob, tr.no_speech_prob,
                                               tr.temperature, compression_ratio(tr.text)))
        return result

    def _decode(self, windows: list[np.ndarray], language: str, options: DecodingOptions) -> list[Transcript]:
        """Decode, then decode again at the next temperature the windows that looped or failed."""
        results = self.decoder.transcribe(windows, language, options)
        for step, temperature in enumerate(options.fallback_temperatures):
            redo = [i for i, tr in enumerate(results) if _needs_fallback(tr, options)]
            if not redo:
                break
            again = self.decoder.transcribe([windows[i] for i in redo], language, options, beam_size=1,
                                            temperature=temperature, seed=step)
            for i, tr in zip(redo, again):
                results[i] = tr
        return results

    def _decoder(self, precision: str) -> Decoder:
        """The decoder at `precision`, loaded the first time it is asked for."""
        if precision not in self._decoders:
            self._decoders[precision] = self._load(precision).decoder
        return self._decoders[precision]

    def _sequential(self, decoder: Decoder, samples: np.ndarray, language: str, options: DecodingOptions,
                    condition: bool) -> list[Segment]:
        """Whisper's sequential long-form decoding with timestamp tokens."""
        window, segments, seek, context = int(WINDOW_SECONDS * SAMPLE_RATE), [], 0, []
        begin = decoder.timestamp_begin
        while seek < len(samples):
            chunk = samples[seek:seek + window]
            if len(chunk) < FRAME:  # a last sliver shorter than one frame holds no speech
                break
            tr = self._decode_window(decoder, chunk, language, options.with_(previous=context if condition else ()))
            offset = seek / SAMPLE_RATE
            if _silent(tr, options):
                seek += len(chunk)  # silence: no text, next window
                continue
            pieces, advance, consumed = timed_segments(tr.tokens, begin, len(chunk))
            ratio = compression_ratio(tr.text)  # the window's, as its log-probability
            for start, end, tokens in pieces:
                text = decoder.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                segments.append(Segment(round(offset + start, 3), round(offset + end, 3), text, tr.avg_logprob,
                                        tr.no_speech_prob, tr.temperature, ratio))
            # the context is the segments kept: a cut-off last segment is heard again in the next window, and as
            # context it would be text the model sees before hearing it; a sampled window is no context
            # (openai-whisper's rules)
            context = context + tr.tokens[:consumed] if tr.temperature <= 0.5 else []
            seek += max(advance, FRAME)
        return segments

    def _decode_window(self, decoder: Decoder, chunk: np.ndarray, language: str,
                       options: DecodingOptions) -> Transcript:
        """One window with timestamps, decoded again at rising temperatures while it loops or fails."""
        for step, temperature in enumerate((options.temperature, *options.fallback_temperatures)):
            tr = decoder.transcribe([chunk], language, options, temperature=temperature, seed=step,
                                    timestamps=True)[0]
            if not _needs_fallback(tr, options):
                break
        return tr


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


def _silent(tr: Transcript, options: DecodingOptions) -> bool:
    """A window the model thinks holds no speech, and decoded with little confidence: no text."""
    return tr.no_speech_prob > options.no_speech_threshold and tr.avg_logprob < options.logprob_threshold


def _needs_fallback(tr: Transcript, options: DecodingOptions) -> bool:
    if _silent(tr, options):
        return False  # silence: nothing to retry
    return (compression_ratio(tr.text) > options.compression_ratio_threshold
            or tr.avg_logprob < options.logprob_threshold)


def transcribe(audio: np.ndarray | str | Path, model: str = "bundled:base", experts: str | None = None,
               language: str | None = None, task: str = "transcribe", beam_size: int = 1, batch_size: int = 8,
               fallback: bool = True, trim: bool = False, precision: str = "auto") -> Transcription:
    """Transcribe one recording of any length (16 kHz samples or a file).  To transcribe many, build one
    `Transcriber` and call it per recording: the model is loaded once."""
    return Transcriber(model, experts, trim, precision)(audio, language, batch_size=batch_size, fallback=fallback,
                                                        task=task, beam_size=beam_size)


@dataclass
class TranscribeConfig:
    """`distilwhisper transcribe`: transcribe recordings of any length, with the experts of the detected
    language."""

    audio: list[str] = field(metadata={"help": "audio files (any length)", "positional": True})
    model: str = field(default="bundled:base", metadata={"help": "model reference, or a `train` run folder"})
    experts: str | None = field(default=None, metadata={"help": "experts (a `train` run folder or its best/): "
                                                                "the detected language's are used"})
    language: str | None = field(default=None, metadata={"help": "force a language (default: detected per file)"})
    task: str = field(default="transcribe", metadata={"help": "transcribe, or translate into English",
                                                      "choices": TASKS})
    output_format: list[str] = field(default_factory=list, metadata={
        "help": "files to write per recording: txt,srt,vtt,tsv,json or all (default: print only)"})
    output_dir: str = field(default=".", metadata={"help": "folder for the written files"})
    beam_size: int = field(default=1, metadata={"help": "1 = greedy, >1 = beam search"})
    batch_size: int = field(default=8, metadata={"min": 1, "help": "windows decoded together"})
    greedy_only: bool = field(default=False, metadata={"help": "no temperature fallback (eval's protocol)"})
    sequential: bool = field(default=False, metadata={
        "help": "Whisper's sequential long-form decoding with timestamp tokens (segment times from the model, each "
                "window conditioned on the text before it), instead of windows cut at pauses decoded in batches"})
    no_condition: bool = field(default=False, metadata={"help": "with --sequential: do not give each window the "
                                                                "text before it"})
    trim: bool = field(default=False, metadata={"help": "encode only the frames holding audio"})
    precision: str = field(default="auto", metadata={
        "help": "weights/compute precision; auto = bf16 on CPUs with bf16 units (AVX-512 BF16, AMX), fp32 elsewhere "
                "and with --sequential (where bf16 drifts on long recordings), as chosen on dev recordings "
                "(docs/results.md); ct2-* run the plain model on CTranslate2",
        "choices": ("auto", *PRECISIONS)})
    threads: int | None = field(default=None, metadata={"min": 1, "help": "torch threads (default: all cores)"})

    def options(self) -> DecodingOptions:
        """How each window is decoded."""
        return DecodingOptions(task=self.task, beam_size=self.beam_size,
                               **({"fallback_temperatures": ()} if self.greedy_only else {}))

    def __post_init__(self) -> None:
        if self.no_condition and not self.sequential:
            raise ValueError("--no-condition applies to --sequential decoding only (windows cut at pauses are "
                             "decoded without the text before them)")
        if self.sequential and self.beam_size > 1:
            raise ValueError(f"--sequential decodes greedily, with the temperature fallback (Whisper's algorithm); "
                             f"--beam-size {self.beam_size} applies to windows cut at pauses")
