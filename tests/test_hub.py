"""Model references: bundled, local dirs, hub ids offline, and the errors users see."""

from __future__ import annotations

import pytest
import torch

from distilwhisper import hub
from distilwhisper.hub import ModelNotFoundError, load_model


def test_unknown_bundled_size():
    with pytest.raises(ModelNotFoundError, match="available: bundled:base"):
        load_model("bundled:huge")


def test_missing_local_dir():
    with pytest.raises(ModelNotFoundError, match="not a model directory"):
        load_model("./no/such/model")


def test_dir_that_is_no_model(tmp_path):
    with pytest.raises(ModelNotFoundError, match="neither a Hugging Face model directory"):
        load_model(str(tmp_path))


def test_hub_id_offline_names_offline_alternatives(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match="bundled:base"):
        load_model("openai/whisper-tiny-does-not-exist")


def test_local_hf_dir_loads(bundled, tmp_path):
    model, processor = bundled
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again, _ = load_model(str(tmp_path))
    assert again.generation_config.lang_to_id["<|ca|>"] == 50270


def test_checksum_mismatch_is_reported(monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILWHISPER_CACHE", str(tmp_path))
    bad = tuple(hub.BundledSource(s.name, s.parts, s.files_package, s.size, "0" * 64) for s in hub.BUNDLED["base"])
    monkeypatch.setitem(hub.BUNDLED, "base", bad)
    with pytest.raises(ModelNotFoundError, match="sha256"):
        hub.bundled_ct2_dir("base")
    assert not (tmp_path / "bundled-base" / "ct2").exists()  # nothing half-written left in the cache


def test_models_listing_shows_bundled():
    rows = hub.available_models()
    assert rows[0]["ref"] == "bundled:base" and rows[0]["status"].startswith("installed")


def test_pickled_weights_only_with_an_explicit_flag(tiny, tmp_path, monkeypatch, capsys):
    """A model folder holding only pytorch_model.bin is refused (loading a pickle can run code) unless the user
    allows it; safetensors folders load as before."""
    from distilwhisper.cli import main
    from distilwhisper.hub import ALLOW_PICKLE

    model, processor = tiny
    folder = tmp_path / "pickled"
    folder.mkdir()
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    processor.save_pretrained(folder)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")  # how older checkpoints ship
    assert not list(folder.glob("*.safetensors")) and (folder / "pytorch_model.bin").exists()
    with pytest.raises(ModelNotFoundError, match="only pickled weights"):
        load_model(str(folder))
    monkeypatch.setenv(ALLOW_PICKLE, "1")
    loaded, _ = load_model(str(folder))
    assert torch.equal(loaded.proj_out.weight, model.proj_out.weight)
    monkeypatch.delenv(ALLOW_PICKLE)
    assert main(["transcribe", "--model", str(folder), "--language", "en", str(tmp_path / "none.wav")]) == 2
    assert "--allow-pickle" in capsys.readouterr().err
