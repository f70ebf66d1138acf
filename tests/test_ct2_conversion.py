"""CTranslate2 -> transformers conversion: exact on real speech, clear errors on broken files."""

from __future__ import annotations

import ctranslate2
import numpy as np
import pytest

from distilwhisper import ct2
from distilwhisper.audio import load_audio
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.hub import resolve_ct2_dir


def test_converted_model_gives_ctranslate2_greedy_tokens(bundled, speech):
    """Same features, same prompt: the converted model and CTranslate2 float32 produce identical token ids."""
    model, processor = bundled
    decoder = WhisperDecoder(model, processor)
    engine = ctranslate2.models.Whisper(str(resolve_ct2_dir("bundled:base")), device="cpu",
                                        compute_type="float32", intra_threads=2)
    for language in ("en", "es"):
        clips = [u for u in speech if u.language == language]
        audios = [load_audio(u.audio) for u in clips]
        feats, _ = decoder.features(audios)
        prompt = decoder.prompt(language)
        reference = engine.generate(ctranslate2.StorageView.from_array(np.ascontiguousarray(feats.numpy())),
                                    [prompt] * len(audios), beam_size=1, max_length=225, suppress_blank=True,
                                    suppress_tokens=[-1])
        ours = decoder.transcribe(audios, language)
        for r, o in zip(reference, ours):
            assert o.tokens == r.sequences_ids[0]
            assert len(o.tokens) > 1


def test_dims_and_tied_projection(bundled):
    model, _ = bundled
    assert model.config.d_model == 512 and model.config.encoder_layers == 6
    assert model.proj_out.weight.data_ptr() == model.model.decoder.embed_tokens.weight.data_ptr()


def test_truncated_model_bin_is_reported(tmp_path):
    src = resolve_ct2_dir("bundled:base") / "model.bin"
    broken = tmp_path / "model.bin"
    broken.write_bytes(src.read_bytes()[:1_000_000])
    with pytest.raises(ct2.CT2FormatError, match="truncated"):
        ct2.read_model_bin(broken)


def test_not_a_ct2_file_is_reported(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x63\x00\x00\x00garbage")
    with pytest.raises(ct2.CT2FormatError, match="binary version 99"):
        ct2.read_model_bin(bad)
