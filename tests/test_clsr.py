"""CLSR blocks: conversion, routing, hard gates, expert files and their errors."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from distilwhisper import clsr
from distilwhisper.clsr import ExpertsError
from distilwhisper.decoding import WhisperDecoder


def _features(seed=0):
    return torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(seed))


def _logits(model, feats):
    with torch.no_grad():
        return model(input_features=feats, decoder_input_ids=torch.tensor([[50258, 50270, 50359, 50363]])).logits


def test_conversion_freezes_base_and_replaces_every_ffn(tiny):
    model = clsr.to_distilwhisper(copy.deepcopy(tiny[0]), ["ca", "cs"])
    modules = clsr.clsr_modules(model)
    assert len(modules) == 4 and {m.side for m in modules} == {"encoder", "decoder"}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".experts." in n or ".gates." in n for n in trainable)
    assert len(clsr.clsr_modules(clsr.to_distilwhisper(copy.deepcopy(tiny[0]), ["ca"], "decoder"))) == 2
    with pytest.raises(ExpertsError, match="already has CLSR"):
        clsr.to_distilwhisper(model, ["ca"])


def test_hard_gate_at_init_routes_to_expert_and_keeps_outputs(tiny):
    plain = tiny[0]
    model = clsr.to_distilwhisper(copy.deepcopy(plain), ["ca"]).eval()
    clsr.set_language(model, "ca")
    feats = _features()
    block = clsr.clsr_modules(model)[0]
    x = torch.randn(3, 5, 64)
    assert bool((block.gates["ca"](x) == 0).all())  # W2 starts at zero: G = 0, hard gate = 1 (expert)
    with torch.no_grad():
        block.shared.fc1.weight.add_(1.0)  # if the shared FFN were used, outputs would move
    assert torch.equal(_logits(model, feats), _logits(plain, feats))


def test_sparse_routing_equals_dense_selection():
    fc1, fc2 = torch.nn.Linear(16, 32), torch.nn.Linear(32, 16)
    block = clsr.CLSRFeedForward(fc1, fc2, torch.nn.GELU(), ["ca"]).eval()
    block.language = "ca"
    with torch.no_grad():
        block.experts["ca"].fc2.weight.mul_(-2)
        torch.nn.init.normal_(block.gates["ca"].w2.weight)
    x = torch.randn(4, 9, 16)
    to_expert = block.gates["ca"](x) >= 0
    assert 0 < int(to_expert.sum()) < to_expert.numel()
    dense = torch.where(to_expert.unsqueeze(-1), block.experts["ca"](x), block.shared(x))
    assert torch.allclose(block(x), dense, atol=1e-6)


def test_training_forward_uses_noisy_soft_gate_and_skipping():
    fc1, fc2 = torch.nn.Linear(8, 16), torch.nn.Linear(16, 8)
    block = clsr.CLSRFeedForward(fc1, fc2, torch.nn.GELU(), ["ca"], skip_probability=0.0).train()
    block.language = "ca"
    block(torch.randn(2, 3, 8))
    assert torch.allclose(block.last_gate, torch.full((2, 3), 0.5))  # sigmoid(0), no noise at alpha = 0
    block.noise_scale = 5.0
    torch.manual_seed(0)
    block(torch.randn(32, 16, 8))
    assert 0.3 < block.last_gate.std() < 0.5  # sigmoid(5 * N(0, 1)) has std ~0.4
    block.skip_probability = 1.0
    x = torch.randn(2, 3, 8)
    assert torch.equal(block(x), block.shared(x)) and block.last_gate is None


def test_experts_round_trip_bit_exact(tiny, tmp_path):
    model = clsr.to_distilwhisper(copy.deepcopy(tiny[0]), ["ca", "cs"])
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p))
    clsr.save_experts(model, tmp_path / "exp", "tiny-base")
    assert sorted(p.name for p in (tmp_path / "exp").glob("*.safetensors")) == ["ca.safetensors", "cs.safetensors"]
    loaded = clsr.attach_experts(copy.deepcopy(tiny[0]), tmp_path / "exp", ["cs"])
    original = dict(model.named_parameters())
    for name, p in loaded.named_parameters():
        if p.requires_grad:
            assert torch.equal(p, original[name]), name
    assert clsr.trained_languages(loaded) == ["cs"]
    with pytest.raises(ExpertsError, match="no experts for language 'ca'"):
        clsr.set_language(loaded, "ca")


def test_expert_errors(tiny, tmp_path):
    model = clsr.to_distilwhisper(copy.deepcopy(tiny[0]), ["ca"])
    exp = clsr.save_experts(model, tmp_path / "exp", "tiny-base")
    with pytest.raises(ExpertsError, match="no experts for uk"):
        clsr.attach_experts(copy.deepcopy(tiny[0]), exp, ["uk"])
    other_size = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=51865, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64))
    with pytest.raises(ExpertsError, match="d_model=64, this model has 32"):
        clsr.attach_experts(other_size, exp)
    other_weights = copy.deepcopy(tiny[0])
    with torch.no_grad():
        other_weights.model.encoder.layers[0].fc1.weight.add_(0.1)
    with pytest.raises(ExpertsError, match="other base weights"):
        clsr.attach_experts(other_weights, exp)
    (exp / "ca.safetensors").write_bytes((exp / "ca.safetensors").read_bytes()[:500])
    with pytest.raises(ExpertsError, match="corrupt or truncated"):
        clsr.attach_experts(copy.deepcopy(tiny[0]), exp)
    with pytest.raises(ExpertsError, match="not an experts directory"):
        clsr.attach_experts(copy.deepcopy(tiny[0]), tmp_path)


def test_language_without_experts_decodes_on_the_shared_ffns(tiny):
    """A DistilWhisper model serves untrained languages with the frozen original FFNs: same logits as the base."""
    plain = tiny[0]
    model = clsr.to_distilwhisper(copy.deepcopy(plain), ["ca"]).eval()
    for block in clsr.clsr_modules(model):
        torch.nn.init.normal_(block.experts["ca"].fc1.weight)  # experts that would change every output
    feats = _features(1)
    with pytest.raises(ExpertsError, match="no experts for language 'en'"):
        clsr.set_language(model, "en")
    clsr.set_language(model, "en", shared_fallback=True)
    assert torch.equal(_logits(model, feats), _logits(plain, feats))
    clsr.set_language(model, "ca")
    assert not torch.allclose(_logits(model, feats), _logits(plain, feats))


def test_experts_decode_the_tasks_they_were_trained_for(tiny, tmp_path):
    """Experts saved as transcription-only leave the translate task to the shared FFNs: the base model's tokens
    exactly; told to serve it (or saved as trained for it), they decode it themselves."""
    plain, processor = tiny
    model = clsr.to_distilwhisper(copy.deepcopy(plain), ["cs"])
    for block in clsr.clsr_modules(model):
        torch.nn.init.normal_(block.experts["cs"].fc1.weight)  # experts that change every output
    audio = [np.random.default_rng(3).normal(0, 0.1, 16000 * 2).astype(np.float32)]
    base = WhisperDecoder(plain, processor)

    def decoded(experts, task):
        loaded = clsr.attach_experts(copy.deepcopy(plain), experts)
        decoder = WhisperDecoder(loaded, processor)
        tokens = decoder.transcribe(audio, "cs", task=task, max_new_tokens=8)[0].tokens
        return tokens, clsr.routing_counts(loaded).get("cs", (0, 0))[1]

    transcribe_only = clsr.save_experts(model, tmp_path / "t", "tiny", extra={"tasks": ["transcribe"]})
    assert decoded(transcribe_only, "translate") == (base.transcribe(audio, "cs", task="translate",
                                                                     max_new_tokens=8)[0].tokens, 0)
    tokens, seen = decoded(transcribe_only, "transcribe")
    assert seen > 0 and tokens != base.transcribe(audio, "cs", max_new_tokens=8)[0].tokens
    both = clsr.save_experts(model, tmp_path / "b", "tiny", extra={"tasks": ["transcribe", "translate"]})
    assert decoded(both, "translate")[1] > 0
    older = clsr.save_experts(model, tmp_path / "o", "tiny")  # folders saved before tasks were: transcription
    assert clsr.served_tasks(clsr.attach_experts(copy.deepcopy(plain), older)) == ("transcribe",)
    with pytest.raises(ExpertsError, match="tasks must be some of transcribe, translate, not summarise"):
        clsr.serve_tasks(model, ["summarise"])
