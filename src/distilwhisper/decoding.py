"""Fast batched decoding for `transformers` Whisper models (plain or with language experts).

Why not `model.generate`: for Whisper it goes through long-form bookkeeping and a generic logits-processor stack on
every step, and users call it one clip at a time.  This decoder does only what short-form transcription needs:
- one encoder pass per batch, optionally over just the frames that hold audio (`trim`: a 4 s clip is 87 % padding
  in Whisper's fixed 30 s window; cf. whisper.cpp's `audio_ctx`), bucketed to a multiple of `TRIM_BUCKET` frames
  and never under `TRIM_MIN_FRAMES`: on windows of 1-3 s whisper-base fell into repetition loops (benchmark WER
  260-300 %), a 10 s floor still looped on one clip in one of three runs, a 15 s floor kept WER unchanged;
- whatever precision the model was given (`quantize.py`): decoding is memory-bound here (each step reads all decoder
  and output-projection weights; the 51865x512 projection alone is 106 MB in fp32), so int8 decoder weights are
  the decoder's lever;
- a key/value cache for self- and cross-attention; finished sequences leave the batch (their cache rows are dropped)
  so late steps cost only the unfinished ones;
- the same token rules as `generate` (suppress list every step, begin-suppress on the first generated token), so
  fp32 greedy output is token-identical to `generate`;
- greedy or beam search (sum of log-probabilities, length-normalised, OpenAI's rule).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from transformers import EncoderDecoderCache, DynamicCache, WhisperForConditionalGeneration, WhisperProcessor

from distilwhisper import clsr
from distilwhisper.audio import SAMPLE_RATE
from distilwhisper.languages import check as check_language

MAX_NEW_TOKENS = 225  # the paper's evaluation limit
TASKS = clsr.TASKS  # Whisper's two tasks; translate = speech to English text
HOP = 160  # samples per mel frame at 16 kHz
TRIM_BUCKET = 100  # mel frames (1 s): trimmed lengths are rounded up to this, bounding distinct shapes
TRIM_MARGIN = 50  # mel frames of silence kept after the audio, so the model sees the end of speech
TRIM_MIN_FRAMES = 1500  # 15 s: the shortest encoder window that kept whisper-base out of repetition loops


@dataclass
class Transcript:
    """One decoded utterance."""

    tokens: list[int]
    text: str
    language: str
    avg_logprob: float
    no_speech_prob: float = float("nan")  # probability of <|nospeech|> right after <|startoftranscript|>
    temperature: float = 0.0


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


def previous_context(previous: list[int] | None, start_of_previous: int, max_positions: int) -> list[int]:
    """`<|startofprev|>` and the last tokens of the text before a window (at most half the decoder's positions, as
    openai-whisper keeps), the context Whisper's sequential long-form decoding puts before the prompt."""
    return [start_of_previous, *previous[-(max_positions // 2 - 1):]] if previous else []


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
        vocab = model.config.vocab_size
        self.suppress = torch.zeros(vocab, dtype=torch.bool)
        self.suppress[[t for t in (gen.suppress_tokens or []) if t < vocab]] = True
        self.begin_suppress = torch.zeros(vocab, dtype=torch.bool)
        self.begin_suppress[[t for t in (gen.begin_suppress_tokens or []) if t < vocab]] = True
        self.suppress, self.begin_suppress = self.suppress.to(self.device), self.begin_suppress.to(self.device)
        self.max_positions = model.config.max_target_positions
        tokenizer = processor.tokenizer
        no_speech = tokenizer.convert_tokens_to_ids("<|nospeech|>")
        self.no_speech = None if no_speech in (None, tokenizer.unk_token_id, self.eot) else int(no_speech)
        self.no_timestamps = int(gen.no_timestamps_token_id)
        self.timestamp_begin = self.no_timestamps + 1  # <|0.00|>; one token per 0.02 s after it
        self.start_of_previous = int(tokenizer.convert_tokens_to_ids("<|startofprev|>"))

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

    # ----- model pieces -----------------------------------------------------------------------------------
    def encode(self, feats: torch.Tensor, frames: int) -> torch.Tensor:
        if self.encodings is None:
            return encode(self.model, feats, frames)
        key = (frames, hashlib.blake2b(feats.cpu().numpy().tobytes(), digest_size=16).digest())
        if key not in self.encodings:
            self.encodings[key] = encode(self.model, feats, frames)
        return self.encodings[key]

    def _step(self, tokens: torch.Tensor, enc: torch.Tensor, cache: EncoderDecoderCache,
              sot_at: int | None = None) -> torch.Tensor:
        """Logits of the next token (with `sot_at`, the prompt's position of <|startoftranscript|>, also the logits
        after it, which hold the no-speech probability)."""
        hidden = self.model.model.decoder(input_ids=tokens, encoder_hidden_states=enc, cache=cache,
                                          use_cache=True).last_hidden_state
        last = self.model.proj_out(hidden[:, -1]).float()
        return (last, self.model.proj_out(hidden[:, sot_at]).float()) if sot_at is not None else last

    def _mask(self, logits: torch.Tensor, first: bool) -> torch.Tensor:
        logits = logits.masked_fill(self.suppress, -math.inf)
        return logits.masked_fill(self.begin_suppress, -math.inf) if first else logits

    # ----- public -----------------------------------------------------------------------------------------
    @torch.inference_mode()
    def language_probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        """Per clip, the probability of each language: softmax over the language tokens after
        `<|startoftranscript|>` (English-only models: {"en": 1.0}).  A model with experts detects on its shared
        FFNs, the base model: before the language is known, no language's experts apply."""
        if not self.lang_to_id:
            return [{"en": 1.0} for _ in audios]
        clsr.set_language(self.model, clsr.SHARED, shared_fallback=True)
        enc = self.encode(*self.features(audios))
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        logits = self._step(torch.full((len(audios), 1), self.sot, device=self.device), enc, cache)
        probs = logits[:, torch.tensor(list(self.lang_to_id.values()), device=self.device)].softmax(-1)
        codes = [tok[2:-2] for tok in self.lang_to_id]
        return [dict(zip(codes, row)) for row in probs.tolist()]

    def detect_language(self, audios: list[np.ndarray]) -> list[str]:
        """Most likely language per clip."""
        return [max(p, key=p.get) for p in self.language_probabilities(audios)]

    @torch.inference_mode()
    def transcribe(self, audios: list[np.ndarray], languages: list[str | None] | str | None,
                   beam_size: int = 1, max_new_tokens: int = MAX_NEW_TOKENS, task: str = "transcribe",
                   temperature: float = 0.0, seed: int = 0, timestamps: bool = False,
                   previous: list[int] | None = None) -> list[Transcript]:
        """Decode a batch of clips (each <= 30 s) with the given language forced (None: detected first);
        `task` "translate" asks for English text, Whisper's other task; a `temperature` above 0 samples (seeded)
        instead of taking the most likely token (beam search is greedy's alternative, not sampling's).
        `timestamps` lets the model write segment times under Whisper's timestamp rules (the tokens keep them; greedy
        or sampling only); `previous` tokens (the text before the clip) are given as context after
        <|startofprev|>, as Whisper's sequential long-form decoding does."""
        if timestamps and beam_size > 1 and temperature == 0:
            raise ValueError("timestamp decoding is greedy or sampled, not beam search")
        if isinstance(languages, str) or languages is None:
            languages = [languages] * len(audios)
        if any(lang is None for lang in languages) and self.lang_to_id:
            detected = self.detect_language(audios)
            languages = [lang or det for lang, det in zip(languages, detected)]
        if clsr.clsr_modules(self.model):
            if len(set(languages)) != 1:
                raise ValueError("a model with language experts decodes one language per batch")
            clsr.set_language(self.model, languages[0], shared_fallback=True, task=task)  # experts: their tasks
        context = previous_context(previous, self.start_of_previous, self.max_positions)
        prompts = [context + self.prompt(lang, task, timestamps) for lang in languages]
        max_new_tokens = min(max_new_tokens, self.max_positions - len(prompts[0]))
        enc = self.encode(*self.features(audios))
        if beam_size <= 1 or temperature > 0:
            outputs = self._greedy(prompts, enc, max_new_tokens, temperature, seed, len(context), timestamps)
        else:
            outputs = [self._beam(p, enc[i:i + 1], beam_size, max_new_tokens) + (float("nan"),)
                       for i, p in enumerate(prompts)]
        tokenizer = self.processor.tokenizer
        return [Transcript(tokens=tokens, text=tokenizer.decode([t for t in tokens if t < self.eot],
                                                                skip_special_tokens=True).strip(),
                           language=lang or "en", avg_logprob=logprob, no_speech_prob=no_speech,
                           temperature=temperature)
                for (tokens, logprob, no_speech), lang in zip(outputs, languages)]

    def _greedy(self, prompts: list[list[int]], enc: torch.Tensor, max_new: int, temperature: float = 0.0,
                seed: int = 0, sot_at: int = 0, timestamps: bool = False) -> list[tuple[list[int], float, float]]:
        """(tokens, average log-probability, no-speech probability) per clip; sampled when `temperature` > 0."""
        n = len(prompts)
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        tokens = torch.tensor(prompts, device=self.device)
        alive = torch.arange(n, device=self.device)  # original index of each row still decoding
        out: list[list[int]] = [[] for _ in range(n)]
        logprob_sum = [0.0] * n
        no_speech = [float("nan")] * n
        generator = torch.Generator(device=self.device).manual_seed(seed)
        for step in range(max_new):
            if step == 0:
                logits, after_sot = self._step(tokens, enc, cache, sot_at)
                if self.no_speech is not None:
                    no_speech = after_sot.softmax(-1)[:, self.no_speech].tolist()
            else:
                logits = self._step(tokens, enc, cache)
            logits = self._mask(logits, first=step == 0)
            if timestamps:
                logits = self._timestamp_rules(logits, [out[i] for i in alive.tolist()], first=step == 0)
            logprobs = logits.log_softmax(-1)
            if temperature > 0:
                nxt = torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)[:, 0]
            else:
                nxt = logits.argmax(-1)
            picked = logprobs.gather(1, nxt[:, None])[:, 0]
            done = nxt == self.eot
            for row, (i, t, lp) in enumerate(zip(alive.tolist(), nxt.tolist(), picked.tolist())):
                logprob_sum[i] += lp
                if t != self.eot:
                    out[i].append(t)
            if bool(done.all()):
                break
            if bool(done.any()):
                keep = (~done).nonzero()[:, 0]
                cache.batch_select_indices(keep)
                enc, alive, nxt = enc[keep], alive[keep], nxt[keep]
            tokens = nxt[:, None]
        return [(toks, logprob_sum[i] / (len(toks) + 1), no_speech[i]) for i, toks in enumerate(out)]

    def _timestamp_rules(self, logits: torch.Tensor, generated: list[list[int]], first: bool,
                         max_initial: int = 50) -> torch.Tensor:
        """Whisper's timestamp grammar: the text of a segment sits between two times; after a closing time comes an
        opening one or the end; times never go back; the first token is a time of at most 1 s; and a time is taken
        whenever all times together are more likely than the likeliest text token."""
        logits = logits.clone()
        begin = self.timestamp_begin
        logits[:, self.no_timestamps] = -math.inf
        for row, seq in enumerate(generated):
            last = len(seq) >= 1 and seq[-1] >= begin
            before_last = len(seq) < 2 or seq[-2] >= begin
            if last:
                if before_last:
                    logits[row, begin:] = -math.inf  # a pair just closed (or the opening time): text follows
                else:
                    logits[row, :self.eot] = -math.inf  # text then a time: another time, or the end
            times = [t for t in seq if t >= begin]
            if times:
                floor = times[-1] if last and not before_last else times[-1] + 1
                logits[row, begin:floor] = -math.inf
        if first:
            logits[:, :begin] = -math.inf
            logits[:, begin + max_initial + 1:] = -math.inf
        logprobs = logits.float().log_softmax(-1)
        times_win = logprobs[:, begin:].logsumexp(-1) > logprobs[:, :begin].max(-1).values
        logits[times_win, :begin] = -math.inf
        return logits

    def _beam(self, prompt: list[int], enc: torch.Tensor, beam: int, max_new: int) -> tuple[list[int], float]:
        cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        tokens = torch.tensor([prompt] * beam, device=self.device)
        enc = enc.expand(beam, -1, -1)
        seqs: list[list[int]] = [[] for _ in range(beam)]
        scores = torch.zeros(beam, device=self.device)
        scores[1:] = -math.inf  # all beams start identical: expand only the first at step 0
        finished: list[tuple[float, list[int], float]] = []
        for step in range(max_new):
            logprobs = self._mask(self._step(tokens, enc, cache), first=step == 0).log_softmax(-1)
            total = (scores[:, None] + logprobs).flatten()
            top_scores, top_idx = total.topk(2 * beam)
            vocab = logprobs.shape[-1]
            next_rows, next_tokens, next_scores, next_seqs = [], [], [], []
            for s, idx in zip(top_scores.tolist(), top_idx.tolist()):
                row, tok = divmod(idx, vocab)
                if tok == self.eot:
                    length = len(seqs[row]) + 1
                    finished.append((s / length, seqs[row], s / length))
                else:
                    next_rows.append(row)
                    next_tokens.append(tok)
                    next_scores.append(s)
                    next_seqs.append(seqs[row] + [tok])
                if len(next_rows) == beam:
                    break
            if len(finished) >= beam or not next_rows:
                break
            cache.reorder_cache(torch.tensor(next_rows, device=self.device))
            seqs, scores = next_seqs, torch.tensor(next_scores, device=self.device)
            tokens = torch.tensor(next_tokens, device=self.device)[:, None]
        if not finished:  # hit the length limit: keep the live beams as candidates
            finished = [(s / (len(q) + 1), q, s / (len(q) + 1)) for s, q in zip(scores.tolist(), seqs)]
        best = max(finished, key=lambda f: f[0])
        return best[1], best[2]


class CT2Decoder:
    """CTranslate2 backend (plain models only) with `WhisperDecoder`'s interface: the same log-mel features and
    forced prompts, so transcripts differ only by the engine and its compute type; language detection, temperature
    sampling and the no-speech probability too, so long-form transcription runs on it."""

    def __init__(self, ct2_dir: str, processor: WhisperProcessor, generation_config, compute_type: str,
                 threads: int | None = None) -> None:
        import ctranslate2

        self.ctranslate2 = ctranslate2
        self.model = ctranslate2.models.Whisper(str(ct2_dir), device="cpu", compute_type=compute_type,
                                                intra_threads=threads or torch.get_num_threads())
        self.processor, self.generation_config = processor, generation_config
        self.timestamp_begin = int(generation_config.no_timestamps_token_id) + 1
        self.start_of_previous = int(processor.tokenizer.convert_tokens_to_ids("<|startofprev|>"))
        self.max_positions = 448  # Whisper's decoder positions (CTranslate2 keeps no config for them)

    def _features(self, audios: list[np.ndarray]):
        feats = self.processor.feature_extractor(audios, sampling_rate=SAMPLE_RATE, return_tensors="np").input_features
        return self.ctranslate2.StorageView.from_array(np.ascontiguousarray(feats))

    def language_probabilities(self, audios: list[np.ndarray]) -> list[dict[str, float]]:
        """Per clip, the probability of each language (CTranslate2's `detect_language`; English-only: en)."""
        if not self.model.is_multilingual:
            return [{"en": 1.0} for _ in audios]
        return [{token[2:-2]: prob for token, prob in pairs} for pairs in
                self.model.detect_language(self._features(audios))]

    def transcribe(self, audios: list[np.ndarray], languages: list[str | None] | str | None,
                   beam_size: int = 1, max_new_tokens: int = MAX_NEW_TOKENS, task: str = "transcribe",
                   temperature: float = 0.0, seed: int = 0, timestamps: bool = False,
                   previous: list[int] | None = None) -> list[Transcript]:
        """As `WhisperDecoder.transcribe` (a language of None is detected first); with `timestamps` CTranslate2
        applies Whisper's timestamp rules itself (a prompt without <|notimestamps|>) and the tokens keep the times."""
        if isinstance(languages, str) or languages is None:
            languages = [languages] * len(audios)
        if any(lang is None for lang in languages):
            detected = [max(p, key=p.get) for p in self.language_probabilities(audios)]
            languages = [lang or det for lang, det in zip(languages, detected)]
        context = previous_context(previous, self.start_of_previous, self.max_positions)
        prompts = [context + prompt_tokens(self.generation_config, lang, task, timestamps) for lang in languages]
        max_new_tokens = min(max_new_tokens, self.max_positions - len(prompts[0]))
        sampling = dict(sampling_topk=0, sampling_temperature=temperature) if temperature > 0 else {}
        if sampling:
            self.ctranslate2.set_random_seed(seed)
        results = self.model.generate(self._features(audios), prompts, beam_size=1 if sampling else max(beam_size, 1),
                                      max_length=len(prompts[0]) + max_new_tokens, return_scores=True,
                                      return_no_speech_prob=True, suppress_blank=True, suppress_tokens=[-1], **sampling)
        tokenizer = self.processor.tokenizer
        out = []
        for r, lang in zip(results, languages):
            tokens = r.sequences_ids[0]
            # CTranslate2's score is the log-probability divided by the length (length_penalty 1); the average
            # of `WhisperDecoder` counts the end-of-text token too
            logprob = float(r.scores[0]) * len(tokens) / (len(tokens) + 1) if r.scores else float("nan")
            out.append(Transcript(tokens=tokens, language=lang, text=tokenizer.decode(tokens, skip_special_tokens=True)
                                  .strip(), avg_logprob=logprob, no_speech_prob=float(r.no_speech_prob),
                                  temperature=temperature))
        return out
