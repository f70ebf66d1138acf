"""The batched decoder matches `generate` token for token and handles batches, beams and trimming."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilwhisper import decoding
from distilwhisper.audio import load_audio
from distilwhisper.decoding import TRIM_MIN_FRAMES, DecodingOptions, WhisperDecoder
from distilwhisper.search import beam_search
from conftest import tone


def _generate(model, processor, audio, language, max_new_tokens):
    feats = processor.feature_extractor(audio, sampling_rate=16000, return_tensors="pt").input_features
    return model.generate(feats, language=language, task="transcribe", max_new_tokens=max_new_tokens)[0].tolist()


def _noise(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * 16000)) + tone(seconds)).astype(np.float32)


def test_greedy_batch_matches_generate_on_tiny_model(tiny):
    """Different lengths in one batch: rows finish at different steps and leave the batch."""
    model, processor = tiny
    audios = [_noise(s, i) for i, s in enumerate((1.0, 3.5, 7.0))]
    decoder = WhisperDecoder(model, processor)
    ours = decoder.transcribe(audios, "ca", max_new_tokens=12)
    for audio, tr in zip(audios, ours):
        assert tr.tokens == _generate(model, processor, audio, "ca", 12)
        assert all(t not in decoder.prompt("ca") for t in tr.tokens[:1])


def test_rows_leaving_the_batch_do_not_change_others(tiny):
    model, processor = tiny
    decoder = WhisperDecoder(model, processor)
    audios = [_noise(2.0, 7), _noise(5.0, 8)]
    together = decoder.transcribe(audios, ["ca", "cs"], max_new_tokens=10)
    alone = [decoder.transcribe([a], lang, max_new_tokens=10)[0] for a, lang in zip(audios, ["ca", "cs"])]
    assert [t.tokens for t in together] == [t.tokens for t in alone]


def test_a_sampled_row_does_not_depend_on_its_batch(tiny):
    """At a temperature each row draws from its own generator: the server batches windows of unrelated requests,
    and a window's fallback text must be what it gets alone; another seed draws another text."""
    model, processor = tiny
    decoder = WhisperDecoder(model, processor)
    audios = [_noise(2.0, 7), _noise(5.0, 8), _noise(3.0, 9)]
    together = decoder.transcribe(audios, "ca", max_new_tokens=10, temperature=1.0, seed=3)
    alone = [decoder.transcribe([a], "ca", max_new_tokens=10, temperature=1.0, seed=3)[0] for a in audios]
    assert [t.tokens for t in together] == [t.tokens for t in alone]
    reseeded = [decoder.transcribe([a], "ca", max_new_tokens=10, temperature=1.0, seed=4)[0] for a in audios]
    assert [t.tokens for t in reseeded] != [t.tokens for t in alone]


def test_an_encoding_memo_encodes_each_batch_once_and_changes_nothing(tiny, monkeypatch):
    """Training's dev evaluations decode the same clips with a frozen encoder many times: a memo serves the
    encodings of a batch seen before, with the transcripts of encoding it again."""
    model, processor = tiny
    audios = [_noise(2.0, 3), _noise(4.0, 4)]
    plain = [t.tokens for t in WhisperDecoder(model, processor, trim=True).transcribe(audios, "ca", max_new_tokens=8)]
    calls = []
    original = decoding.encode
    monkeypatch.setattr(decoding, "encode", lambda *args: calls.append(1) or original(*args))
    memo = {}
    for _ in range(3):
        decoder = WhisperDecoder(model, processor, trim=True, encodings=memo)  # a new decoder per evaluation
        assert [t.tokens for t in decoder.transcribe(audios, "ca", max_new_tokens=8)] == plain
    assert len(calls) == 1 and len(memo) == 1
    decoder.transcribe(audios[:1], "ca", max_new_tokens=8)  # another batch: encoded, not served a wrong entry
    assert len(calls) == 2 and len(memo) == 2


def test_beam_of_one_is_greedy_and_beams_score_at_least_greedy(tiny):
    model, processor = tiny
    decoder = WhisperDecoder(model, processor)
    audio = [_noise(3.0, 3)]
    greedy = decoder.transcribe(audio, "es", max_new_tokens=8)[0]
    with torch.inference_mode():
        feats, frames = decoder.features(audio)
        enc = decoder.encode(feats, frames)
        step, _, reorder = decoder.stepper(enc)
        tokens, _ = beam_search(step, reorder, decoder.prompt("es"), decoder.logit_filters(DecodingOptions()),
                                decoder.eot, 1, 8, decoder.device)
    assert tokens == greedy.tokens
    beam = decoder.transcribe(audio, "es", beam_size=4, max_new_tokens=8)[0]
    assert beam.avg_logprob >= greedy.avg_logprob - 1e-6
    assert 0 < len(beam.tokens) <= 8


def test_trim_frames(tiny):
    model, processor = tiny
    decoder = WhisperDecoder(model, processor, trim=True)
    _, frames = decoder.features([tone(2.0), tone(3.0)])
    assert frames == TRIM_MIN_FRAMES
    _, frames = decoder.features([tone(19.2)])
    assert frames == 2000  # 1920 frames + 50 margin, rounded up to 100
    _, frames = decoder.features([tone(29.9)])
    assert frames == 3000


def test_full_window_encode_equals_transformers_encoder(tiny):
    from distilwhisper.decoding import encode

    model, processor = tiny
    feats = processor.feature_extractor(_noise(4.0, 1), sampling_rate=16000, return_tensors="pt").input_features
    with torch.no_grad():
        assert torch.allclose(encode(model, feats, 3000), model.model.encoder(feats).last_hidden_state, atol=1e-5)


def test_prompt_and_language_errors(tiny):
    model, processor = tiny
    decoder = WhisperDecoder(model, processor)
    assert decoder.prompt("ca") == [50258, 50270, 50359, 50363]
    with pytest.raises(ValueError, match="unknown language code 'xx'"):
        decoder.prompt("xx")


@pytest.mark.slow
def test_real_model_matches_generate_and_transcribes(bundled, speech):
    model, processor = bundled
    decoder = WhisperDecoder(model, processor)
    clips = [u for u in speech if u.language == "en"][:3]
    audios = [load_audio(u.audio) for u in clips]
    ours = decoder.transcribe(audios, "en")
    for audio, tr in zip(audios, ours):
        assert tr.tokens == _generate(model, processor, audio, "en", 225)
    assert decoder.detect_language(audios[:1]) == ["en"]
    assert ours[0].text.lower().rstrip(".") == clips[0].text.lower().rstrip(".")
