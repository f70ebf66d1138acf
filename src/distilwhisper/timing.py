"""Word timestamps from Whisper's own cross-attention (issue #36), as openai-whisper's `timing.py` finds them: the
decoder reads the clip's text tokens again (teacher-forced), the cross-attention of its alignment heads is taken
(each head's weights normalised over the tokens, median-filtered over time, averaged over heads), and dynamic time
warping finds the monotonic path of tokens through the audio frames; a word starts where the path enters its first
token and ends where it enters the next word's.

Why cross-attention and not a separate aligner (whisperX's wav2vec2): no second model, so it works for every
language Whisper transcribes, experts included (the forward runs through them as the decoding did).  The alignment
heads are the published ones of each OpenAI model (the bundled CTranslate2 config lists them); a model without them
uses every head of its decoder's second half (openai-whisper's fallback).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np
import torch
from scipy.ndimage import median_filter

FRAMES_PER_SECOND = 50  # encoder positions per second (20 ms each)
MEDIAN_WIDTH = 7  # time steps of the median filter over each head's weights
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}  # split into characters, not at spaces
PREPEND_PUNCTUATION = "\"'“¿([{-"
APPEND_PUNCTUATION = "\"'.。,，!！?？:：”)]}、"
SENTENCE_ENDS = ".。!！?？"


@dataclass
class Word:
    """A word (with its leading space, as Whisper writes it), its times in seconds and its mean token probability."""

    word: str
    start: float
    end: float
    probability: float
    tokens: list[int]


def alignment_heads(model) -> list[tuple[int, int]]:
    """(layer, head) pairs whose cross-attention follows the audio: the model's published heads, or every head of
    the decoder's second half."""
    config = model.config
    heads = [(int(layer), int(head)) for layer, head in getattr(model.generation_config, "alignment_heads", None) or []
             if layer < config.decoder_layers and head < config.decoder_attention_heads]  # another size's are no use
    if heads:
        return heads
    return [(layer, head) for layer in range(config.decoder_layers // 2, config.decoder_layers)
            for head in range(config.decoder_attention_heads)]


def dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cheapest monotonic path from the first to the last cell of a (tokens, frames) cost matrix, moving one
    token, one frame or both at each step: (token indices, frame indices) along it."""
    n, m = cost.shape
    total = np.full((n + 1, m + 1), np.inf)
    total[0, 0] = 0.0
    trace = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0: diagonal, 1: from the token above, 2: from the frame left
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            options = (total[i - 1, j - 1], total[i - 1, j], total[i, j - 1])
            k = int(np.argmin(options))
            total[i, j], trace[i, j] = cost[i - 1, j - 1] + options[k], k
    i, j, tokens, frames = n, m, [], []
    while i > 0 and j > 0:
        tokens.append(i - 1)
        frames.append(j - 1)
        step = trace[i, j]
        i, j = (i - 1, j - 1) if step == 0 else (i - 1, j) if step == 1 else (i, j - 1)
    return np.array(tokens[::-1]), np.array(frames[::-1])


def split_words(tokenizer, tokens: list[int], language: str) -> tuple[list[str], list[list[int]]]:
    """The words of text tokens (and their tokens): a token starting with a space, or a punctuation mark, starts a
    word; scripts written without spaces are split into characters, where a token boundary allows."""
    words, word_tokens, current = [], [], []
    for token in tokens:
        current.append(token)
        text = tokenizer.decode(current)
        if "\ufffd" in text:  # a character split over tokens: wait for the rest of it
            continue
        if language in NO_SPACE_LANGUAGES or not words or text.startswith(" ") or _punctuation(text.strip()):
            words.append(text)
            word_tokens.append(current)
        else:
            words[-1] += text
            word_tokens[-1] += current
        current = []
    if current:  # an unfinished character at the end
        words.append(tokenizer.decode(current))
        word_tokens.append(current)
    return words, word_tokens


def _punctuation(text: str) -> bool:
    return bool(text) and all(unicodedata.category(c).startswith("P") for c in text)


def merge_punctuation(words: list[Word]) -> list[Word]:
    """Opening marks join the word after them, closing marks the word before, as a reader sees them."""
    merged: list[Word] = []
    pending: Word | None = None
    for word in words:
        stripped = word.word.strip()
        if pending is not None:
            word = Word(pending.word + word.word.lstrip() if pending.word.startswith(" ") else pending.word + word.word,
                        pending.start, word.end, min(pending.probability, word.probability), pending.tokens + word.tokens)
            pending = None
        if stripped and all(c in PREPEND_PUNCTUATION for c in stripped):
            pending = word
        elif merged and stripped and all(c in APPEND_PUNCTUATION for c in stripped):
            last = merged[-1]
            merged[-1] = Word(last.word + word.word.strip(), last.start, word.end,
                              min(last.probability, word.probability), last.tokens + word.tokens)
        else:
            merged.append(word)
    if pending is not None:
        merged.append(pending)
    return merged


@torch.inference_mode()
def cross_attention(model, enc: torch.Tensor, tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(alignment heads' cross-attention weights (heads, tokens, frames), next-token logits (tokens, vocab)) when
    the decoder reads `tokens` over one clip's encoder output `enc` (1, frames, d)."""
    layers = model.model.decoder.layers
    heads = alignment_heads(model)
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    for layer in sorted({layer for layer, _ in heads}):
        def keep_query(module, args, kwargs, layer=layer):
            captured[layer] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        hooks.append(layers[layer].encoder_attn.register_forward_pre_hook(keep_query, with_kwargs=True))
    try:
        hidden = model.model.decoder(input_ids=torch.tensor([tokens], device=enc.device), encoder_hidden_states=enc,
                                     use_cache=False).last_hidden_state
    finally:
        for hook in hooks:
            hook.remove()
    weights = []
    for layer, head in heads:
        attention = layers[layer].encoder_attn
        size = attention.head_dim
        query = (attention.q_proj(captured[layer][0]) * attention.scaling)[:, head * size:(head + 1) * size]
        key = attention.k_proj(enc[0])[:, head * size:(head + 1) * size]
        weights.append((query.float() @ key.float().T).softmax(-1))
    return torch.stack(weights), model.proj_out(hidden[0]).float()


def find_words(model, tokenizer, enc: torch.Tensor, prompt: list[int], text: list[int], eot: int,
               seconds: float, language: str) -> list[Word]:
    """The words of one clip's `text` tokens with their times (seconds from the clip's start, within it) and mean
    token probabilities; `prompt`: the decoding prompt without previous text, ending with <|notimestamps|>."""
    if not text:
        return []
    frames = max(1, min(enc.shape[1], int(round(seconds * FRAMES_PER_SECOND))))
    weights, logits = cross_attention(model, enc, prompt + text + [eot])
    logits, weights = logits.cpu(), weights[:, :, :frames].cpu()  # a GPU's too: the rest runs in numpy
    probabilities = logits[len(prompt) - 1:-1, :eot].softmax(-1)[torch.arange(len(text)), torch.tensor(text)]
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = median_filter(((weights - mean) / std.clamp_min(1e-10)).numpy(), (1, 1, MEDIAN_WIDTH))
    matrix = weights.mean(axis=0)[len(prompt) - 1:-1]  # rows predicting each text token, then the end of text
    token_index, frame_index = dtw(-matrix)
    words, word_tokens = split_words(tokenizer, text, language)
    boundaries = np.cumsum([0] + [len(t) for t in word_tokens])
    jumps = np.pad(np.diff(token_index), (1, 0), constant_values=1).astype(bool)
    times = frame_index[jumps] / FRAMES_PER_SECOND  # where the path enters each row
    found = [Word(word, float(min(times[a], seconds)), float(min(times[b], seconds)),
                  float(probabilities[a:b].mean()), tokens)
             for word, tokens, a, b in zip(words, word_tokens, boundaries[:-1], boundaries[1:])]
    return merge_punctuation(truncate_at_sentence_ends(found))


def longest_word(words: list[Word]) -> float | None:
    """How long a word may plausibly last: twice the median duration of `words` (at most 1.4 s), openai-whisper's
    bound; None without a timed word."""
    durations = [w.end - w.start for w in words if w.end > w.start]
    return 2 * min(0.7, float(np.median(durations))) if durations else None


def truncate_at_sentence_ends(words: list[Word]) -> list[Word]:
    """A sentence's final mark takes the pause after it, and the word after a sentence end the pause before it,
    in the attention path: each is cut to twice the median word duration (at most 1.4 s), openai-whisper's rule."""
    longest = longest_word(words)
    if longest is None:
        return words
    for i in range(1, len(words)):
        word = words[i]
        if word.end - word.start > longest:
            if word.word.strip() in SENTENCE_ENDS:
                word.end = word.start + longest
            elif words[i - 1].word.strip() in SENTENCE_ENDS:
                word.start = word.end - longest
    return words


def truncate_after_pauses(words: list[Word], pause_ends: list[float]) -> list[Word]:
    """The first word after each pause (`pause_ends`: seconds where speech resumes, in the words' time) cut to
    twice the median word duration, from its end: the alignment path enters the first word while it still hears
    what preceded the speech (with VAD: non-speech Silero took for speech; in a dev diagnosis most words written
    inside non-speech were such first words, docs/results.md); openai-whisper and faster-whisper cut the first
    word after a pause the same way."""
    longest = longest_word(words)
    if longest is None:
        return words
    out, firsts = list(words), set()
    for t in pause_ends:
        first = next((i for i, w in enumerate(out) if (w.start + w.end) / 2 >= t), None)
        if first is not None and first not in firsts:
            firsts.add(first)
            w = out[first]
            if w.end - w.start > longest:
                out[first] = Word(w.word, w.end - longest, w.end, w.probability, w.tokens)
    return out


def trim_pauses(words: list[Word], voiced: np.ndarray, frame_seconds: float, min_pause: int) -> list[Word]:
    """Words moved out of the pauses at their edges: where a run of at least `min_pause` silent frames (`voiced`,
    per frame of `frame_seconds`) ends a word, its end moves back to the pause; where one starts it, its start moves
    on to the speech.  Why: a clip decoded without timestamp tokens (windows cut at pauses) has nothing in its text
    to take a pause between two phrases, so the alignment path stays on the word before the pause and its end runs
    to the next word's start (openai-whisper's sentence-end rule catches this only after punctuation); stable-ts
    snaps words to sound for the same reason.  A word with no sound in it is left as found."""
    for word in words:
        first, last = int(word.start / frame_seconds), min(len(voiced), int(np.ceil(word.end / frame_seconds)))
        sound = np.flatnonzero(voiced[first:last])
        if not len(sound):
            continue
        if last - (first + sound[-1] + 1) >= min_pause:
            word.end = (first + sound[-1] + 1) * frame_seconds
        if sound[0] >= min_pause:
            word.start = (first + sound[0]) * frame_seconds
    return words
