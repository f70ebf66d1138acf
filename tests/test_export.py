"""`distilwhisper export` (issue #38): FT and merged LoRA runs as transformers and CTranslate2 folders that the other
libraries load and decode to the same tokens; runs with experts as an experts folder, refused as a plain model
unless the merge is asked for; on a tiny model with the real tokenizer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import WhisperForConditionalGeneration, pipeline

from distilwhisper import clsr
from distilwhisper.cli import main
from distilwhisper.ct2 import CT2Decoder
from distilwhisper.decoding import WhisperDecoder, prompt_tokens
from distilwhisper.hub import load_model
from distilwhisper.runs import TrainedRun
from conftest import tiny_on_disk, tone


@pytest.fixture(scope="module")
def runs(tiny, tmp_path_factory):
    """A tiny FT, LoRA and CLSR-FT run on generated clips (a few steps: weights that differ from the start)."""
    root = tmp_path_factory.mktemp("export")
    manifest = tiny_on_disk(tiny, root, per_language=3)
    folders = {}
    for method in ("ft", "lora", "clsr-ft"):
        folders[method] = root / method
        assert main(["train", "--method", method, "--student", str(root / "tiny"), "--languages", "ca,cs",
                     "--train", str(manifest), "--out", str(folders[method]), "--max-steps", "3", "--batch-size",
                     "2", "--lr", "0.05", "--warmup", "0", "--scope", "decoder"]) == 0
    return root, folders


def _clips() -> list[np.ndarray]:
    return [tone(2.0, freq=330.0), tone(3.5, freq=520.0)]


def _tokens(model, processor, language: str = "ca") -> list[list[int]]:
    return [t.tokens for t in WhisperDecoder(model.eval(), processor).transcribe(_clips(), language,
                                                                                  max_new_tokens=10)]


@pytest.mark.parametrize("method", ["ft", "lora"])
def test_a_plain_run_exports_to_transformers_and_decodes_the_same(runs, tmp_path, method):
    _, folders = runs
    out = tmp_path / "hf"
    assert main(["export", str(folders[method]), "--format", "hf", "--out", str(out)]) == 0
    kept, processor = TrainedRun.open(folders[method]).load()
    exported = WhisperForConditionalGeneration.from_pretrained(out)
    assert not any("lora" in name for name in exported.state_dict())  # LoRA merged into the weights
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in kept.state_dict().items())
    assert exported.generation_config.alignment_heads == kept.generation_config.alignment_heads
    assert _tokens(*load_model(str(out))) == _tokens(kept, processor)
    asr = pipeline("automatic-speech-recognition", model=str(out))  # the transformers pipeline loads it as it is
    assert isinstance(asr(_clips()[0], generate_kwargs={"language": "ca", "max_new_tokens": 10})["text"], str)
    batched = asr(_clips(), batch_size=2, generate_kwargs={"language": "ca", "max_new_tokens": 10})  # needs a pad token
    assert len(batched) == 2 and all(isinstance(o["text"], str) for o in batched)


def test_an_export_names_a_pad_token_where_the_run_s_tokenizer_has_none(runs, tmp_path, monkeypatch):
    """Models converted before the tokenizer named its pad token still export a folder the pipeline can batch."""
    _, folders = runs
    load = TrainedRun.load

    def without_pad(self):
        model, processor = load(self)
        processor.tokenizer.pad_token = None
        return model, processor

    monkeypatch.setattr(TrainedRun, "load", without_pad)
    assert main(["export", str(folders["ft"]), "--format", "hf", "--out", str(tmp_path / "hf")]) == 0
    assert json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())["pad_token"] == "<|endoftext|>"


def test_a_run_exports_to_ctranslate2_that_faster_whisper_loads(runs, tmp_path):
    from faster_whisper import WhisperModel

    _, folders = runs
    out = tmp_path / "ct2"
    assert main(["export", str(folders["ft"]), "--format", "ct2", "--out", str(out)]) == 0
    assert {"model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"} <= {p.name for p in
                                                                                           out.iterdir()}
    kept, processor = TrainedRun.open(folders["ft"]).load()
    engine = CT2Decoder(str(out), processor, kept.generation_config, "float32", threads=1)
    same = [a.tokens == b for a, b in zip(engine.transcribe(_clips(), "ca", max_new_tokens=10),
                                          _tokens(kept, processor))]
    assert sum(same) >= len(same) - 1  # the same weights on another engine (float rounding may move one token)
    segments, info = WhisperModel(str(out), device="cpu", compute_type="float32").transcribe(
        _clips()[1], language="ca", beam_size=1, vad_filter=False)
    list(segments)
    assert info.language == "ca"
    int8 = tmp_path / "ct2-int8"
    assert main(["export", str(folders["ft"]), "--format", "ct2", "--quantization", "int8", "--out", str(int8)]) == 0
    assert (int8 / "model.bin").stat().st_size < (out / "model.bin").stat().st_size


def test_a_run_with_experts_is_refused_as_a_plain_model_unless_merged(runs, tmp_path, capsys):
    root, folders = runs
    assert main(["export", str(folders["clsr-ft"]), "--format", "hf", "--out", str(tmp_path / "no")]) == 2
    assert "neither transformers nor CTranslate2 can express" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()
    merge = ["export", str(folders["clsr-ft"]), "--format", "hf", "--merge-experts", "ca"]
    assert main([*merge, "--out", str(tmp_path / "nodev")]) == 2  # the run has no dev lines to measure gates on
    assert "--calibration MANIFEST" in capsys.readouterr().err
    merged = tmp_path / "merged"
    assert main([*merge, "--calibration", str(root / "m.jsonl"), "--out", str(merged)]) == 0
    info = json.loads((merged / "distilwhisper_merge.json").read_text())
    model, processor = TrainedRun.open(folders["clsr-ft"]).load()
    plain = WhisperForConditionalGeneration.from_pretrained(merged).eval()
    assert info["language"] == "ca" and info["calibration_lines"] == 3
    assert len(info["shares"]) == model.config.decoder_layers and all(0 <= s <= 1 for s in info["shares"])
    assert plain.config.decoder_ffn_dim == 2 * model.config.decoder_ffn_dim  # shared and expert side by side
    assert plain.config.encoder_ffn_dim == model.config.encoder_ffn_dim  # the run's scope: decoder layers only

    def constant_gate(block, x):  # what the merge stands for: each gate fixed at its measured share
        share = info["shares"][clsr.clsr_modules(model).index(block)]
        return share * block.experts["ca"](x) + (1 - share) * block.shared(x)

    features = processor.feature_extractor([_clips()[1]], sampling_rate=16000, return_tensors="pt").input_features
    prompt = torch.tensor([prompt_tokens(model.generation_config, "ca")])
    clsr.set_language(model, "ca")
    with torch.no_grad(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(clsr.CLSRFeedForward, "forward", constant_gate)
        expected = model(input_features=features, decoder_input_ids=prompt).logits
    with torch.no_grad():
        got = plain(input_features=features, decoder_input_ids=prompt).logits
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    ct2 = tmp_path / "merged-ct2"  # CTranslate2's converter takes the doubled width as it is
    assert main([*merge, "--calibration", str(root / "m.jsonl"), "--format", "ct2", "--out", str(ct2)]) == 0
    assert json.loads((ct2 / "distilwhisper_merge.json").read_text())["shares"] == info["shares"]
    engine = CT2Decoder(str(ct2), processor, plain.generation_config, "float32", threads=1)
    for n in (5, 12):  # CTranslate2 writes at most half its max_length: CT2Decoder asks for enough (the tiny loops)
        ours = [t.tokens for t in WhisperDecoder(plain, processor).transcribe(_clips(), "ca", max_new_tokens=n)]
        assert max(map(len, ours)) == n
        same = [a.tokens == b for a, b in zip(engine.transcribe(_clips(), "ca", max_new_tokens=n), ours)]
        assert sum(same) >= len(same) - 1
    assert main([*merge[:-1], "de", "--calibration", str(root / "m.jsonl"), "--out", str(tmp_path / "de")]) == 2
    assert "no experts for language 'de'" in capsys.readouterr().err


def test_calibration_without_lines_of_the_language_is_named(runs, tmp_path, capsys):
    root, folders = runs
    only_cs = tmp_path / "cs.jsonl"
    only_cs.write_text("".join(l + "\n" for l in (root / "m.jsonl").read_text().splitlines() if '"cs"' in l))
    merge = ["export", str(folders["clsr-ft"]), "--format", "hf", "--merge-experts", "ca", "--out", str(tmp_path / "o")]
    assert main([*merge, "--calibration", str(only_cs)]) == 2
    err = capsys.readouterr().err
    assert f"--calibration {only_cs}: no utterances left" in err and "language=ca" in err
    assert main([*merge, "--calibration", str(root / "m.jsonl"), "--calibration-lines", "0"]) == 2
    assert "--calibration-lines must be at least 1, not 0" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_gate_shares_need_decoded_speech_of_the_language(runs):
    _, folders = runs
    model, _ = TrainedRun.open(folders["clsr-ft"]).load()
    clsr.routing_counts(model)
    with pytest.raises(clsr.ExpertsError, match="saw no 'ca' tokens"):
        clsr.routed_shares(model, "ca")


def test_an_experts_folder_attaches_to_its_base_model(runs, tmp_path, capsys):
    root, folders = runs
    out = tmp_path / "experts"
    assert main(["export", str(folders["clsr-ft"]), "--format", "experts", "--languages", "cs", "--out",
                 str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["cs.safetensors", clsr.EXPERTS_CONFIG]
    assert json.loads((out / clsr.EXPERTS_CONFIG).read_text())["languages"] == ["cs"]
    base, processor = load_model(str(root / "tiny"))
    clsr.attach_experts(base, out)
    kept, _ = TrainedRun.open(folders["clsr-ft"]).load()
    assert _tokens(base, processor, "cs") == _tokens(kept, processor, "cs")
    assert main(["export", str(folders["ft"]), "--format", "experts", "--out", str(tmp_path / "x")]) == 2
    assert "has no experts" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "hf", "--out", str(tmp_path / "y")]) == 2
    assert "not a `train` run folder" in capsys.readouterr().err


@pytest.mark.slow
def test_trained_bundled_runs_export_and_decode_alike_in_the_other_libraries(quick_demo, tmp_path):
    """The quick demo's FT run (bundled whisper-base) in transformers and faster-whisper writes the run's own tokens
    on real Czech lines; its DistilWhisper run merged for Czech loads in faster-whisper with the shares it measured
    on the run's dev lines."""
    from faster_whisper import WhisperModel

    from distilwhisper.audio import load_audio
    from distilwhisper.data.manifest import read_manifest

    lines = [u for u in read_manifest(quick_demo / "corpus" / "eval.jsonl")[0]
             if u.language == "cs" and u.source == "fillets"][:3]
    clips = [load_audio(u.audio) for u in lines]
    ft = quick_demo / "train" / "ft"
    kept, processor = TrainedRun.open(ft).load()
    own = [t.tokens for t in WhisperDecoder(kept.eval(), processor).transcribe(clips, "cs", fallback_temperatures=())]
    hf, ct2 = tmp_path / "ft-hf", tmp_path / "ft-ct2"
    assert main(["export", str(ft), "--format", "hf", "--out", str(hf)]) == 0
    assert main(["export", str(ft), "--format", "ct2", "--out", str(ct2)]) == 0
    own_texts = [processor.tokenizer.decode(t, skip_special_tokens=True).strip() for t in own]
    asr = pipeline("automatic-speech-recognition", model=str(hf))
    texts = [o["text"].strip() for o in asr([{"raw": c, "sampling_rate": 16000} for c in clips], batch_size=3,
                                             generate_kwargs={"language": "cs", "num_beams": 1})]
    assert texts == own_texts
    model = WhisperModel(str(ct2), device="cpu", compute_type="float32", cpu_threads=2)
    padded = [np.pad(c, (0, 30 * 16000 - len(c))) for c in clips]  # Whisper pads audio, not log-mel (results.md)
    fw = [[k for s in model.transcribe(c, language="cs", beam_size=1, temperature=0.0, without_timestamps=True,
                                       condition_on_previous_text=False, vad_filter=False)[0] for k in s.tokens]
          for c in padded]
    eot = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert sum(a == [k for k in b if k < eot] for a, b in zip(fw, own)) >= 2
    merged = tmp_path / "dw-ct2"
    assert main(["export", str(quick_demo / "train" / "distilwhisper-specialist"), "--format", "ct2",
                 "--merge-experts", "cs", "--out", str(merged)]) == 0
    info = json.loads((merged / "distilwhisper_merge.json").read_text())
    assert info["calibration_lines"] > 0 and all(0 <= s <= 1 for s in info["shares"])
    segments, result = WhisperModel(str(merged), device="cpu", compute_type="float32").transcribe(
        padded[0], language="cs", beam_size=1, vad_filter=False)
    assert result.language == "cs" and isinstance(" ".join(s.text for s in segments), str)
