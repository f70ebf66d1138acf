"""Transcribe recordings of any length, with the experts of the detected language: the `transcribe` command and
`distilwhisper.transcribe()`.

A recording is cut into windows of at most 30 s at its pauses (`windows.py`: frame energy; a window without speech
is skipped), and the windows are decoded in batches.  The language is detected from the first windows (softmax over Whisper's
language tokens) unless given; a model with experts for it uses them, any other language runs on the shared FFNs
(the base model), so one loaded model serves every language without reloading.  Like openai-whisper, a window whose
text compresses too well (a repetition loop, gzip ratio > 2.4) or whose average log-probability is below -1 is
decoded again at the next temperature (0.2 ... 1.0), and a window whose no-speech probability is above 0.6 with a
low log-probability is silence and gives no text.  `fallback=False` keeps plain greedy decoding (what `eval` does,
the paper's protocol).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path

import numpy as np

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.clsr import served_tasks, trained_languages
from distilwhisper.decoding import (TASKS, Decoder, DecodingOptions, Transcript, WhisperDecoder, among,
                                    resolve_options, text_tokens)
from distilwhisper.quantize import PRECISIONS, auto_precision, load_variant
from distilwhisper.timing import Word, truncate_after_pauses
from distilwhisper.vad import MIN_SILENCE_MS as VAD_MIN_SILENCE_MS
from distilwhisper.vad import THRESHOLD as VAD_THRESHOLD
from distilwhisper.windows import FRAME, WINDOW_SECONDS, Window, speech_windows, timed_segments, vad_windows

DETECT_WINDOWS = 3  # windows whose language probabilities are averaged
DETECT_MAX_WINDOWS = 9  # while the likeliest language has less than half the probability, more are read, up to these
TOP_CANDIDATES = 5  # languages a detection reports with their probabilities


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
    words: list[Word] = field(default_factory=list)  # with word timestamps: inside the segment, in order


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
    language_candidates: dict[str, float] = field(default_factory=dict)  # detected: the likeliest, with probability

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.segments if s.text)

    def as_dict(self) -> dict:
        return {**asdict(self), "text": self.text}


def compression_ratio(text: str) -> float:
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0




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

    def detect(self, windows: list[np.ndarray], candidates: tuple[str, ...] = ()
               ) -> tuple[str, float, dict[str, float]]:
        """The most likely language of the first windows (among `candidates` when given), its probability averaged
        over them, and the `TOP_CANDIDATES` likeliest with theirs.  When no language reaches half the probability,
        the detection reads more windows (up to `DETECT_MAX_WINDOWS`) before it decides."""
        probs = [among(p, candidates) for p in self.decoder.language_probabilities(windows[:DETECT_WINDOWS])]
        while True:
            mean = {lang: float(np.mean([p[lang] for p in probs])) for lang in probs[0]}
            best = max(mean, key=mean.get)
            more = windows[len(probs):DETECT_MAX_WINDOWS]
            if mean[best] >= 0.5 or not more:
                break
            probs += [among(p, candidates) for p in self.decoder.language_probabilities(more)]
        top = dict(sorted(mean.items(), key=lambda item: -item[1])[:TOP_CANDIDATES])
        return best, mean[best], top

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
        if sequential and options.beam_size > 1:
            raise ValueError("sequential decoding is greedy with the temperature fallback, not beam search")
        if sequential and options.vad:
            raise ValueError("--vad cuts the windows that are decoded in batches; --sequential decodes the recording "
                             "as it is (use one or the other)")
        job = self.prepare(audio, language, options, sequential)
        if sequential:
            job.result.segments = self._sequential(job.decoder, job.samples, job.result.language, options,
                                                   condition_on_previous_text, list(job.options.previous))
            return job.result
        for i in range(0, len(job.windows), batch_size):
            decoded = self.decode(job.windows[i:i + batch_size], job.result.language, job.options)
            job.result.segments += [window_segment(r, tr, options) for r, tr in zip(job.ranges[i:i + batch_size],
                                                                                     decoded)]
        return job.result

    def prepare(self, audio: np.ndarray | str | Path, language: str | None, options: DecodingOptions,
                sequential: bool = False) -> Prepared:
        """A recording read, cut into windows at its pauses, its language detected (unless given) and its result
        started; its options carry the initial prompt's tokens as the windows' previous text (a prompt that cannot
        fit is refused here, before any decoding)."""
        path = str(audio) if isinstance(audio, (str, Path)) else "<array>"
        samples = load_audio(audio) if isinstance(audio, (str, Path)) else np.asarray(audio, dtype=np.float32)
        ranges = (vad_windows(samples, options.vad_threshold, options.vad_min_silence_ms) if options.vad
                  else speech_windows(samples))
        windows = [w.audio(samples) for w in ranges]
        probability, candidates = None, {}
        if language in (None, "auto"):
            language, probability, candidates = (self.detect(windows, options.detect_languages) if windows
                                                 else ("en", None, {}))
        precision = resolve_precision(self.requested, sequential)
        experts = language if language in self.experts and options.task in self.tasks else None
        result = Transcription(path, language, probability, len(samples) / SAMPLE_RATE, experts, precision,
                               language_candidates=candidates)
        decoder = self._decoder(precision)
        initial = (text_tokens(decoder.processor.tokenizer, options.initial_prompt, "--initial-prompt",
                               decoder.max_positions) if options.initial_prompt else [])
        return Prepared(samples, ranges, windows, result, options.with_(previous=initial), decoder)

    def decode(self, windows: list[np.ndarray], language: str, options: DecodingOptions) -> list[Transcript]:
        """Decode windows of one language, then decode again at the next temperature those that looped or failed."""
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
                    condition: bool, initial: list[int]) -> list[Segment]:
        """Whisper's sequential long-form decoding with timestamp tokens; the `initial` prompt's tokens are the
        first window's context, and stay at the start of the context while later windows are conditioned on it."""
        window, segments, seek, context = int(WINDOW_SECONDS * SAMPLE_RATE), [], 0, list(initial)
        begin = decoder.timestamp_begin
        while seek < len(samples):
            chunk = samples[seek:seek + window]
            if len(chunk) < FRAME:  # a last sliver shorter than one frame holds no speech
                break
            previous = context if condition or seek == 0 else ()
            tr = self._decode_window(decoder, chunk, language, options.with_(previous=previous))
            offset = seek / SAMPLE_RATE
            if _silent(tr, options):
                seek += len(chunk)  # silence: no text, next window
                continue
            pieces, advance, consumed = timed_segments(tr.tokens, begin, len(chunk))
            ratio = compression_ratio(tr.text)  # the window's, as its log-probability
            heard = round(offset + len(chunk) / SAMPLE_RATE, 3)  # a time the model writes past it is kept at it
            for (start, end, tokens), words in zip(pieces, shared_out(tr.words or [], pieces)):
                text = decoder.processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
                start, end = min(round(offset + start, 3), heard), min(round(offset + end, 3), heard)
                segments.append(Segment(start, end, text, tr.avg_logprob, tr.no_speech_prob, tr.temperature, ratio,
                                        placed(words, lambda a, b: (offset + a, offset + b), start, end)))
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




@dataclass
class Prepared:
    """A recording ready for its windows to be decoded (`Transcriber.prepare`), in batches of its own or, in the
    server, beside other recordings' windows of the same language."""

    samples: np.ndarray
    ranges: list[Window]  # where each window's audio lies in the recording
    windows: list[np.ndarray]
    result: Transcription  # language, probabilities and experts filled in; segments to come
    options: DecodingOptions  # with the initial prompt's tokens as the windows' previous text
    decoder: Decoder


def window_segment(window: Window, tr: Transcript, options: DecodingOptions) -> Segment:
    """The segment of a batched window: from its first sample to its last (with VAD, joined stretches: the segment
    spans what lies between them, its words do not), its text (none for silence) and its words, each moved to the
    recording's time of the piece it was heard in."""
    silent = _silent(tr, options)
    start, end = round(window.start / SAMPLE_RATE, 3), round(window.end / SAMPLE_RATE, 3)
    words = tr.words or []
    if window.onsets:  # VAD pieces: each begins after non-speech, its first word may have started in it
        words = truncate_after_pauses(words, window.piece_starts)
    return Segment(start, end, "" if silent else tr.text, tr.avg_logprob, tr.no_speech_prob, tr.temperature,
                   compression_ratio(tr.text), [] if silent else placed(words, window.interval, start, end))


def placed(words: list[Word], when: Callable[[float, float], tuple[float, float]], start: float,
           end: float) -> list[Word]:
    """A window's words moved to the recording's time (`when`: a word's start and end in the window's audio to the
    recording's) and kept inside their segment [start, end] (a window's words never pass its audio's end:
    `find_words` clips them)."""
    def clip(t: float) -> float:
        return round(min(max(t, start), end), 3)

    return [Word(w.word, *map(clip, when(w.start, w.end)), w.probability, w.tokens) for w in words]


def shared_out(words: list[Word], pieces: list[tuple[float, float, list[int]]]) -> list[list[Word]]:
    """A window's words, in order, shared out to its timed segments by their text tokens (a word goes with the
    segment of its first token; the words of a cut-off last segment, decoded again in the next window, go nowhere)."""
    shares, i = [], 0
    for _, _, tokens in pieces:
        taken, count = [], 0
        while i < len(words) and count < len(tokens):
            taken.append(words[i])
            count += len(words[i].tokens)
            i += 1
        shares.append(taken)
    return shares


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
    detect_languages: list[str] = field(default_factory=list, metadata={
        "help": "detect the language among these only, e.g. cs,sk,pl (default: every language of the model); the "
                "JSON output lists the likeliest with their probabilities"})
    initial_prompt: str | None = field(default=None, metadata={
        "help": "text given as what came before the recording (names, terms, a style to follow): every window's "
                "context, or with --sequential the first window's"})
    hotwords: str | None = field(default=None, metadata={
        "help": "words or phrases given before every window's context (faster-whisper's hotwords), e.g. names"})
    vad: bool | None = field(default=None, metadata={
        "negatable": True,
        "help": "decode only the speech Silero VAD finds (faster-whisper's model), its stretches joined into "
                "windows: silence, music and noise give no text (default: on, as chosen on dev recordings, except "
                "with --sequential; --no-vad: windows cut at pauses by energy)"})
    vad_threshold: float = field(default=VAD_THRESHOLD, metadata={
        "help": "with --vad: Silero's speech probability above which a frame is speech"})
    vad_min_silence_ms: int = field(default=VAD_MIN_SILENCE_MS, metadata={
        "help": "with --vad: a pause this long (ms) ends a stretch of speech"})
    word_timestamps: bool = field(default=False, metadata={
        "help": "the start and end of every word (cross-attention of the alignment heads; torch precisions): in "
                "the JSON output, each segment's words with their probabilities"})
    task: str = field(default="transcribe", metadata={"help": "transcribe, or translate into English",
                                                      "choices": TASKS})
    output_format: list[str] = field(default_factory=list, metadata={
        "help": "files to write per recording: txt,srt,vtt,tsv,json or all (default: print only)"})
    output_dir: str = field(default=".", metadata={"help": "folder for the written files"})
    max_line_width: int | None = field(default=None, metadata={
        "help": "srt/vtt: cut cues at words into lines of at most this many characters (needs --word-timestamps)"})
    max_line_count: int | None = field(default=None, metadata={
        "help": "srt/vtt: at most this many lines per cue (with --max-line-width)"})
    highlight_words: bool = field(default=False, metadata={
        "help": "srt/vtt: one cue per word, the word underlined (needs --word-timestamps)"})
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

    @property
    def uses_vad(self) -> bool:
        """--vad unless said otherwise, but not under --sequential (which decodes the recording as it is)."""
        return self.vad if self.vad is not None else not self.sequential

    def options(self) -> DecodingOptions:
        """How each window is decoded."""
        return DecodingOptions(task=self.task, beam_size=self.beam_size, initial_prompt=self.initial_prompt,
                               word_timestamps=self.word_timestamps, vad=self.uses_vad,
                               vad_threshold=self.vad_threshold, vad_min_silence_ms=self.vad_min_silence_ms,
                               hotwords=self.hotwords, detect_languages=tuple(self.detect_languages),
                               **({"fallback_temperatures": ()} if self.greedy_only else {}))

    def __post_init__(self) -> None:
        if self.no_condition and not self.sequential:
            raise ValueError("--no-condition applies to --sequential decoding only (windows cut at pauses are "
                             "decoded without the text before them)")
        if self.sequential and self.beam_size > 1:
            raise ValueError(f"--sequential decodes greedily, with the temperature fallback (Whisper's algorithm); "
                             f"--beam-size {self.beam_size} applies to windows cut at pauses")
        self.options()  # its checks (e.g. an unknown language among --detect-languages) before any model loads
        if self.vad and self.sequential:
            raise ValueError("--vad cuts the windows that are decoded in batches; --sequential decodes the recording "
                             "as it is (use one or the other)")
        if self.word_timestamps and self.precision.startswith("ct2-"):
            raise ValueError(f"--word-timestamps needs the torch decoder's cross-attention; --precision "
                             f"{self.precision} runs on CTranslate2, which cannot give them")
