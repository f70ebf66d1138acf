"""The method registry: a fifth method added through `methods.register` alone trains, saves, reloads and evaluates
through the ordinary commands, and nothing outside `methods/` needs to know its name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import WhisperForConditionalGeneration

from distilwhisper import methods
from distilwhisper.cli import main
from distilwhisper.hub import load_model
from distilwhisper.runs import TrainedRun
from conftest import tiny_on_disk

BIASES = "biases.safetensors"


class BiasOnly(methods.Method):
    """A toy tuner (BitFit-like): only the decoder's bias vectors train; the kept model is those vectors."""

    name, title = "bias-only", "Bias-only"

    def build(self, config):
        model, processor = load_model(config.student)
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith("model.decoder.") and name.endswith(".bias"))
        return model, model, processor

    def save(self, config, folder: Path, trained, decodable, processor, previous, languages, kept_steps) -> None:
        save_file({n: p.detach().contiguous() for n, p in decodable.named_parameters() if p.requires_grad},
                  str(folder / BIASES))

    def load(self, config, folder: Path):
        model, processor = load_model(config.student)
        unexpected = model.load_state_dict(load_file(str(folder / BIASES)), strict=False).unexpected_keys
        assert not unexpected
        return model.eval(), processor


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(methods, "_REGISTRY", dict(methods._REGISTRY))  # the registry as it was, after the test
    return methods.register(BiasOnly())


def test_the_four_methods_are_registered_with_their_kind():
    assert methods.names() == ("distilwhisper", "clsr-ft", "ft", "lora")
    assert [methods.get(n).uses_experts for n in methods.names()] == [True, True, False, False]
    assert [methods.get(n).needs_teacher for n in methods.names()] == [True, False, False, False]
    with pytest.raises(ValueError, match="--method must be one of distilwhisper, clsr-ft, ft, lora, not 'nope'"):
        methods.get("nope")


def test_a_fifth_method_trains_saves_reloads_and_evaluates_through_the_commands(registered, tiny, tmp_path,
                                                                                capsys):
    manifest = tiny_on_disk(tiny, tmp_path, per_language=4)
    student, out, evaluated = tmp_path / "tiny", tmp_path / "run", tmp_path / "eval"
    assert main(["train", "--method", "bias-only", "--student", str(student), "--languages", "ca,cs",
                 "--train", str(manifest), "--dev", str(manifest), "--out", str(out), "--max-steps", "4",
                 "--batch-size", "2", "--lr", "0.05", "--warmup", "0", "--eval-every", "2"]) == 0
    assert json.loads((out / "config.json").read_text())["method"] == "bias-only"
    kept = load_file(str(out / "best" / BIASES))
    assert kept and all(k.startswith("model.decoder.") and k.endswith(".bias") for k in kept)

    run = TrainedRun.open(out)
    model, _ = run.load()
    base = WhisperForConditionalGeneration.from_pretrained(student).state_dict()
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in kept.items())  # what the run kept is what loads
    if run.state.best_step:  # a trained step was kept: the biases moved, and nothing else did
        assert any(not torch.equal(base[k], v) for k, v in kept.items())
    assert all(torch.equal(state[k], v) for k, v in base.items() if k not in kept)

    assert main(["eval", "--model", str(out), "--data", str(manifest), "--out", str(evaluated)]) == 0
    summary = json.loads((evaluated / "summary.json").read_text())
    assert summary["overall"]["utterances"] == 8

    capsys.readouterr()
    with pytest.raises(SystemExit):  # the parser lists the method among --method's choices
        main(["train", "--help"])
    assert "bias-only" in capsys.readouterr().out


def test_an_unregistered_method_in_a_run_folder_is_named(registered, tiny, tmp_path, monkeypatch):
    manifest = tiny_on_disk(tiny, tmp_path, per_language=2)
    out = tmp_path / "run"
    assert main(["train", "--method", "bias-only", "--student", str(tmp_path / "tiny"), "--languages", "ca,cs",
                 "--train", str(manifest), "--out", str(out), "--max-steps", "1", "--batch-size", "2"]) == 0
    monkeypatch.setattr(methods, "_REGISTRY", {k: v for k, v in methods._REGISTRY.items() if k != "bias-only"})
    with pytest.raises(ValueError, match="--method must be one of .* not 'bias-only'"):
        TrainedRun.open(out).load()
