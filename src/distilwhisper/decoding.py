"""Fast batched decoding for `transformers` Whisper models (plain or with language experts).

Why not `model.generate`: for Whisper it goes through long-form bookkeeping and a generic logits-processor stack on
every step, and users call it one clip at a time.  This decoder does only what short-form transcription needs:
- one encoder pass per batch, optionally over just the frames that hold audio (`trim`: a 4 s clip is 87 % padding
  in Whisper's fixed 30 s window; cf. whisper.cpp's `audio_ctx`), bucketed to a multiple of `TRIM_BUCKET` frames
  and never under `TRIM_MIN_FRAMES`: on windows of a few seconds whisper-base falls into repetition loops, and the
  floor is the shortest window that kept its WER (docs/results.md, "Decoding speed");
- whatever precision the model was given (`quantize.py`): decoding is memory-bound here (each step reads all decoder
  and output-projection weights; the 51865x512 projection alone is 106 MB in fp32), so int8 decoder weights are
  the decoder's lever;
- a key/value cache for self- and cross-attention; finished sequences leave the batch (their cache rows are dropped)
  so late steps cost only the unfinished ones;
- the same token rules as `generate` (suppress list every step, begin-suppress on the first generated token), so
  fp32 greedy output is token-identical to `generate`;
- greedy or beam search (sum of log-probabilities, length-normalised, OpenAI's rule), assembled from the logit
  filters and searches of `search.py`.

How to decode is one frozen `DecodingOptions`, passed whole from a command to the search; each backend (this torch
decoder, CTranslate2's in `ct2.py`) implements the `Decoder` protocol, so evaluation and long-form transcription
take either.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, replace
from functools import partial
from typing import Protocol

import numpy as np
import torch
from torch import nn
from transformers import EncoderDecoderCache, DynamicCache, WhisperForConditionalGeneration, WhisperProcessor

from distilwhisper import clsr
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.languages import check as check_language
from distilwhisper.search import LogitFilter, SuppressAtBegin, SuppressTokens, TimestampRules, beam_search, sample
from distilwhisper.timing import Word, find_words, trim_pauses
from distilwhisper.vad import MIN_SILENCE_MS as VAD_MIN_SILENCE_MS
from distilwhisper.vad import THRESHOLD as VAD_THRESHOLD
from distilwhisper.windows import FRAME, MIN_PAUSE_FRAMES, voiced_frames

MAX_NEW_TOKENS = 225  # the paper's evaluation limit
TASKS = clsr.TASKS  # Whisper's two tasks; translate = speech to English text
HOP = 160  # samples per mel frame at 16 kHz
TRIM_BUCKET = 100  # mel frames (1 s): trimmed lengths are rounded up to this, bounding distinct shapes
TRIM_MARGIN = 50  # mel frames of silence kept after the audio, so the model sees the end of speech
TRIM_MIN_FRAMES = 1500  # 15 s: the shortest encoder window that kept whisper-base out of repetition loops
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper's, after a first greedy pass


@dataclass(frozen=True)
class DecodingOptions:
    """How to decode, as one object: what `eval`, `transcribe` and training's dev evaluations ask a `Decoder` for.
    The first group applies to each decoding pass; the second to long-form transcription, which decodes a window
    again at the next `fallback_temperatures` while its text loops (gzip `compression_ratio_threshold`) or its
    average log-probability is below `logprob_threshold`, and drops a window whose no-speech probability is above
    `no_speech_threshold` with such a log-probability (openai-whisper's rules and values)."""

    task: str = "transcribe"  # or translate: speech to English text
    beam_size: int = 1  # 1: greedy (or sampled, with a temperature); more: beam search
    temperature: float = 0.0  # above 0, sampled (seeded by `seed`) instead of the likeliest token
    seed: int = 0
    max_new_tokens: int = MAX_NEW_TOKENS
    timestamps: bool = False  # the model writes segment times (greedy or sampled only)
    word_timestamps: bool = False  # each word's times from the alignment heads' cross-attention (`timing.py`)
    previous: tuple[int, ...] = ()  # text tokens before the clip, given after <|startofprev|> as context
    hotwords: str | None = None  # text given before every clip's previous text: names and terms to spell right
    detect_languages: tuple[str, ...] = ()  # a detection chooses among these (empty: every language of the model)
    initial_prompt: str | None = None  # long-form: the text before the first window (every window cut at pauses)
    vad: bool = False  # long-form: windows are the speech Silero VAD finds, not the stretches between pauses
    vad_threshold: float = VAD_THRESHOLD  # Silero's speech probability above which a frame is speech
    vad_min_silence_ms: int = VAD_MIN_SILENCE_MS  # a pause this long ends a stretch of speech
    fallback_temperatures: tuple[float, ...] = FALLBACK_TEMPERATURES  # () = one pass (eval's protocol)
    compression_ratio_threshold: float = 2.4
    logprob_threshold: float = -1.0
    no_speech_threshold: float = 0.6

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if self.timestamps and self.beam_size > 1 and self.temperature == 0:
            raise ValueError("timestamp decoding is greedy or sampled, not beam search")
        object.__setattr__(self, "previous", tuple(self.previous or ()))
        try:
            object.__setattr__(self, "detect_languages", tuple(check_language(c) for c in self.detect_languages))
        except ValueError as err:
            raise ValueError(f"--detect-languages: {err}") from None
        object.__setattr__(self, "fallback_temperatures", tuple(self.fallback_temperatures))
        if not 0.0 < self.vad_threshold < 1.0:
            raise ValueError(f"--vad-threshold is a probability between 0 and 1, not {self.vad_threshold}")
        if self.vad_min_silence_ms < 0:
            raise ValueError(f"--vad-min-silence-ms cannot be negative ({self.vad_min_silence_ms})")

    def with_(self, **changes) -> "DecodingOptions":
        """A copy with `changes` (checked like any options)."""
        return replace(self, **changes) if changes else self


def resolve_options(options: DecodingOptions | None, changes: dict) -> DecodingOptions:
    """`options` (the defaults if None) with keyword `changes`, so that `transcribe(audios, "cs", beam_size=4)`
    and `transcribe(audios, "cs", options)` mean the same."""
    return (options or DecodingOptions()).with_(**changes)


@dataclass
class Transcript:
    """One decoded utterance."""

    tokens: list[int]
    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float = float("nan")  # probability of <|nospeech|> right after <|startoftranscript|>
    temperature: float = 0.0
    words: list[Word] | None = None  # with `word_timestamps`: seconds from the clip's start


class Decoder(Protocol):
    """A loaded model that decodes batches of clips (each <= 30 s): the torch `WhisperDecoder` or CTranslate2's
    `ct2.CT2Decoder`."""

    processor: object  # its tokenizer decodes the tokens of a `Transcript`
    timestamp_begin: int  # the token of <|0.00|>
    max_positions: int  # the decoder's positions: prompt, context and new tokens together

    def language_probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        """Per clip, the probability of each language."""

    def transcribe(self, audios: list[np.ndarray], languages: list[str | None] | str | None,
                   options: DecodingOptions | None = None, **changes) -> list[Transcript]:
        """Decode with the language given per clip (None: detected first) under `options` with `changes`."""


def prompt_tokens(generation_config, language: str | None, task: str = "transcribe",
                  timestamps: bool = False) -> list[int]:
    """`<|startoftranscript|><|xx|><|transcribe|><|notimestamps|>` (just SOT and notimestamps for English-only
    models): the prompt decoding forces and training labels carry; with `timestamps`, without <|notimestamps|>, so
    the model writes segment times."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, not {task!r}")
    tokens = [int(generation_config.decoder_start_token_id)]
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    if lang_to_id:
        if language is None:
            raise ValueError("multilingual decoding needs a language (or call detect_language first)")
        token = f"<|{check_language(language)}|>"
        if token not in lang_to_id:
            raise ValueError(f"model has no language token {token}")
        tokens += [lang_to_id[token], generation_config.task_to_id[task]]
    elif language not in (None, "en") or task != "transcribe":
        raise ValueError(f"this model is English-only; cannot {task} language {language!r}")
    if getattr(generation_config, "no_timestamps_token_id", None) is not None and not timestamps:
        tokens.append(int(generation_config.no_timestamps_token_id))
    return tokens


def among(probabilities: dict[str, float], candidates: tuple[str, ...]) -> dict[str, float]:
    """The probabilities of `candidates` alone, renormalised to sum to 1 (all of them when there are none): a small
    language is often detected as its neighbour, and a user who knows which few it can be says so."""
    if not candidates:
        return probabilities
    unknown = [c for c in candidates if c not in probabilities]
    if unknown:
        raise ValueError(f"--detect-languages: the model has no language token for {', '.join(unknown)}")
    total = sum(probabilities[c] for c in candidates)
    return {c: probabilities[c] / total if total > 0 else 1.0 / len(candidates) for c in candidates}


def context_limit(max_positions: int) -> int:
    """Tokens of context a window may be given: half the decoder's positions, less <|startofprev|> (openai-whisper
    and faster-whisper keep as much)."""
    return max_positions // 2 - 1


def text_tokens(tokenizer, text: str, flag: str, max_positions: int) -> list[int]:
    """A prompt text's tokens (with the leading space a word has mid-sentence); one longer than the context a
    window can be given is refused, naming the flag, rather than cut where the model would see half a word."""
    tokens = tokenizer.encode(" " + text.strip(), add_special_tokens=False)
    limit = context_limit(max_positions)
    if len(tokens) > limit:
        raise ValueError(f"{flag} is {len(tokens)} tokens long; a window's context holds at most {limit}")
    return tokens


def context_tokens(tokenizer, options: DecodingOptions, start_of_previous: int, max_positions: int) -> list[int]:
    """What comes before the prompt: `<|startofprev|>`, the hotwords, then the last tokens of the text before the
    window, together at most `context_limit` tokens (the previous text gives way to the hotwords), as Whisper's
    long-form decoding and faster-whisper's hotwords put them."""
    hot = text_tokens(tokenizer, options.hotwords, "--hotwords", max_positions) if options.hotwords else []
    room = context_limit(max_positions) - len(hot)
    previous = list(options.previous)[-room:] if room > 0 and options.previous else []
    return [start_of_previous, *hot, *previous] if hot or previous else []


def trimmed_frames(num_samples: list[int], total: int = 3000) -> int:
    """Mel frames to encode for a batch of clips: the longest plus a margin, rounded up to a bucket, at least
    `TRIM_MIN_FRAMES`, at most the full window."""
    longest = max(math.ceil(n / HOP) for n in num_samples) + TRIM_MARGIN
    return min(total, max(TRIM_MIN_FRAMES, TRIM_BUCKET * math.ceil(longest / TRIM_BUCKET)))


def encode(model: WhisperForConditionalGeneration, feats: torch.Tensor, frames: int) -> torch.Tensor:
    """Encoder forward over the first `frames` mel frames (the stock encoder insists on all 3000); the layers are
    the model's own modules, so it works for training (with gradients) and with CLSR blocks."""
    encoder = model.model.encoder
    x = feats[..., :frames].to(encoder.conv1.weight.dtype)
    x = nn.functional.gelu(encoder.conv1(x))
    x = nn.functional.gelu(encoder.conv2(x)).permute(0, 2, 1)
    x = x + encoder.embed_positions.weight[: x.shape[1]]
    for layer in encoder.layers:
        x = layer(x, None)
    return encoder.layer_norm(x)


class WhisperDecoder:
    """Batched greedy / beam decoding with a KV cache for one loaded Whisper model."""

    def __init__(self, model: WhisperForConditionalGeneration, processor: WhisperProcessor,
                 trim: bool = False, encodings: dict | None = None) -> None:
        """`encodings`: a memo of encoder outputs by (frames, features) for an encoder that stays frozen while the
        same clips are decoded again and again (training's dev evaluations with `--cache-encoder`); the caller owns
        it and empties it when the encoder changes."""
        self.model = model.eval()
        self.encodings = encodings
        self.device = next(model.parameters()).device  # inputs follow the model (CPU, or a launch's GPU)
        self.processor = processor
        self.trim = trim
        gen = model.generation_config
        self.sot = int(gen.decoder_start_token_id)
        self.eot = int(gen.eos_token_id if isinstance(gen.eos_token_id, int) else gen.eos_token_id[0])
        self.lang_to_id = dict(getattr(gen, "lang_to_id", None) or {})
        self.suppress = self._mask(gen.suppress_tokens)
        self.begin_suppress = self._mask(gen.begin_suppress_tokens)
        self.max_positions = model.config.max_target_positions
        tokenizer = processor.tokenizer
        no_speech = tokenizer.convert_tokens_to_ids("<|nospeech|>")
        self.no_speech = None if no_speech in (None, tokenizer.unk_token_id, self.eot) else int(no_speech)
        self.no_timestamps = int(gen.no_timestamps_token_id)
        self.timestamp_begin = self.no_timestamps + 1  # <|0.00|>; one token per 0.02 s after it
        self.start_of_previous = int(tokenizer.convert_tokens_to_ids("<|startofprev|>"))

    def _mask(self, tokens: list[int] | None) -> torch.Tensor:
        """A boolean mask over the vocabulary of `tokens` (those inside it)."""
        vocab = self.model.config.vocab_size
        mask = torch.zeros(vocab, dtype=torch.bool)
        mask[[t for t in (tokens or []) if t < vocab]] = True
        return mask.to(self.device)

    # ----- inputs -----------------------------------------------------------------------------------------
    def features(self, audios: list[np.ndarray]) -> tuple[torch.Tensor, int]:
        """Log-mel features padded to 30 s (normalised exactly as `WhisperFeatureExtractor` does) and the frame
        count to encode: all 3000, or with `trim` the longest clip plus a margin, rounded up to a bucket."""
        fe = self.processor.feature_extractor
        feats = fe(audios, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features.to(self.device)
        return feats, trimmed_frames([len(a) for a in audios], feats.shape[-1]) if self.trim else feats.shape[-1]

    def prompt(self, language: str | None, task: str = "transcribe", timestamps: bool = False) -> list[int]:
        """The forced prompt of this model for `language` (see `prompt_tokens`)."""
        return prompt_tokens(self.model.generation_config, language, task, timestamps)

    def logit_filters(self, options: DecodingOptions) -> list[LogitFilter]:
        """The rules every next token obeys under `options`, in the order they apply."""
        filters: list[LogitFilter] = [SuppressTokens(self.suppress), SuppressAtBegin(self.begin_suppress)]
        if options.timestamps:
            filters.append(TimestampRules(self.no_timestamps, self.eot))
        return filters

    # ----- model pieces -----------------------------------------------------------------------------------
    def encode(self, feats: torch.Tensor, frames: int) -> torch.Tensor:
        if self.encodings is None:
            return encode(self.model, feats, frames)
        key = (frames, hashlib.blake2b(feats.cpu().numpy().tobytes(), digest_size=16).digest())
        if key not in self.encodings:
            self.encodings[key] = encode(self.model, feats, frames)
        return self.encodings[key]

    def stepper(self, enc: torch.Tensor):
        """(step, keep, reorder) over one KV cache for the encoder output `enc`: `step(tokens[, sot_at])` gives the
        next token's logits (with `sot_at`, the prompt's position of <|startoftranscript|>, also the logits after
        it, which hold the no-speech probability); `keep(rows)` drops the other rows, `reorder(rows)` reorders."""
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        state = {"enc": enc}

        def step(tokens: torch.Tensor, sot_at: int | None = None):
            hidden = self.model.model.decoder(input_ids=tokens, encoder_hidden_states=state["enc"], cache=cache,
                                              use_cache=True).last_hidden_state
            last = self.model.proj_out(hidden[:, -1]).float()
            return (last, self.model.proj_out(hidden[:, sot_at]).float()) if sot_at is not None else last

        def keep(rows: torch.Tensor) -> None:
            cache.batch_select_indices(rows)
            state["enc"] = state["enc"][rows]

        return step, keep, cache.reorder_cache

    # ----- public -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def language_probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        """Per clip, the probability of each language: softmax over the language tokens after
        `<|startoftranscript|>` (English-only models: {"en": 1.0}).  A model with experts detects on its shared
        FFNs, the base model: before the language is known, no language's experts apply."""
        if not self.lang_to_id:
            return [{"en": 1.0} for _ in audios]
        clsr.set_language(self.model, clsr.SHARED, shared_fallback=True)
        step, _, _ = self.stepper(self.encode(*self.features(audios)))
        logits = step(torch.full((len(audios), 1), self.sot, device=self.device))
        probs = logits[:, torch.tensor(list(self.lang_to_id.values()), device=self.device)].softmax(-1)
        codes = [tok[2:-2] for tok in self.lang_to_id]
        return [dict(zip(codes, row)) for row in probs.tolist()]

    def detect_language(self, audios: list[np.ndarray], candidates: tuple[str, ...] = ()) -> list[str]:
        """Most likely language per clip (among `candidates`, when given)."""
        return [max(p, key=p.get) for p in map(partial(among, candidates=candidates),
                                                    self.language_probabilities(audios))]

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], languages: list[str | None] | str | None,
                   options: DecodingOptions | None = None, **changes) -> list[Transcript]:
        """Decode a batch of clips (each <= 30 s) with the given language forced (None: detected first), under
        `options` (`DecodingOptions`; keyword `changes` to them, e.g. `beam_size=4`): with `timestamps` the tokens
        keep Whisper's segment times; `previous` tokens come before the prompt as <|startofprev|> context, as
        Whisper's sequential long-form decoding gives them."""
        options = resolve_options(options, changes)
        if isinstance(languages, str) or languages is None:
            languages = [languages] * len(audios)
        if any(lang is None for lang in languages) and self.lang_to_id:
            detected = self.detect_language(audios, options.detect_languages)
            languages = [lang or det for lang, det in zip(languages, detected)]
        if clsr.clsr_modules(self.model):
            if len(set(languages)) != 1:
                raise ValueError("a model with language experts decodes one language per batch")
            clsr.set_language(self.model, languages[0], shared_fallback=True, task=options.task)  # their tasks
        context = context_tokens(self.processor.tokenizer, options, self.start_of_previous, self.max_positions)
        prompts = [context + self.prompt(lang, options.task, options.timestamps) for lang in languages]
        max_new = min(options.max_new_tokens, self.max_positions - len(prompts[0]))
        enc, filters = self.encode(*self.features(audios)), self.logit_filters(options)
        if options.beam_size <= 1 or options.temperature > 0:
            step, keep, _ = self.stepper(enc)
            outputs = sample(step, keep, torch.tensor(prompts, device=self.device), filters, self.eot, max_new,
                             options.temperature, options.seed, len(context), self.no_speech)
        else:
            outputs = []
            for i, p in enumerate(prompts):
                step, _, reorder = self.stepper(enc[i:i + 1].expand(options.beam_size, -1, -1))
                outputs.append(beam_search(step, reorder, p, filters, self.eot, options.beam_size, max_new,
                                           self.device) + (float("nan"),))
        tokenizer = self.processor.tokenizer
        transcripts = [Transcript(tokens=tokens, text=tokenizer.decode([t for t in tokens if t < self.eot],
                                                                       skip_special_tokens=True).strip(),
                                  language=lang or "en", avg_logprob=logprob, no_speech_prob=no_speech,
                                  temperature=options.temperature)
                       for (tokens, logprob, no_speech), lang in zip(outputs, languages)]
        if options.word_timestamps:
            for i, (transcript, audio) in enumerate(zip(transcripts, audios)):
                words = find_words(self.model, tokenizer, enc[i:i + 1], self.prompt(transcript.language, options.task),
                                   [t for t in transcript.tokens if t < self.eot], self.eot,
                                   len(audio) / SAMPLE_RATE, transcript.language)
                transcript.words = trim_pauses(words, voiced_frames(audio), FRAME / SAMPLE_RATE, MIN_PAUSE_FRAMES)
        return transcripts
