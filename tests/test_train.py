"""Training: every method learns on a tiny model with the real tokenizer, touches only what it should, resumes,
runs under DDP, and rejects bad input clearly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import WhisperConfig, WhisperForConditionalGeneration

from distilwhisper import clsr, losses
from distilwhisper.cli import main
from distilwhisper.io import read_jsonl
from distilwhisper.quantize import load_variant
from distilwhisper.runs import TrainedRun
from distilwhisper.train import TrainConfig, load_config
from distilwhisper.train.loop import train
from distilwhisper.train.caches import TeacherCache
from distilwhisper.train.model import check_teacher, trainable_state
from distilwhisper.train.objective import Objective
from conftest import write_wav

TEXTS = {"ca": ["bon dia", "gràcies"], "cs": ["dobrý den", "děkuji"]}


@pytest.fixture(scope="module")
def tiny_dirs(tiny, tmp_path_factory):
    """Student and teacher on disk, loadable by reference like any model."""
    root = tmp_path_factory.mktemp("models")
    tiny_model, processor = tiny
    # larger initial weights than Whisper's 0.02: with the frozen tied embeddings of a 0.02 model, logits stay
    # near uniform whatever the FFNs learn, and expert-only methods could not show learning in a few steps
    config = WhisperConfig(**{**tiny_model.config.to_dict(), "init_std": 0.15})
    paths = []
    for seed, name in enumerate(("student", "teacher")):
        torch.manual_seed(seed)
        model = WhisperForConditionalGeneration(config)
        model.generation_config = tiny_model.generation_config
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
        paths.append(root / name)
    student, teacher = paths
    return str(student), str(teacher)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rows = []
    for lang, texts in TEXTS.items():
        for i, text in enumerate(texts):
            audio = write_wav(root / f"{lang}{i}.wav", 1.0 + i)
            rows.append({"id": f"{lang}{i}", "audio": str(audio), "text": text, "language": lang})
    path = root / "m.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def _config(method, dirs, manifest, out, **kw):
    values = dict(method=method, student=dirs[0], languages=["ca", "cs"], train=manifest, out=str(out),
                  max_steps=16, batch_size=2, lr=1e-2, warmup=0.0, eval_every=0, skip_probability=0.0,
                  expert_dropout=0.0, label_smoothing=0.0)
    if method == "distilwhisper":
        values["teacher"] = dirs[1]
    values.update(kw)
    return TrainConfig(**values).check()


def _ce_curve(out):
    rows = [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    ce = [r["ce"] for r in rows]
    return np.mean(ce[:4]), np.mean(ce[-4:]), rows


@pytest.mark.parametrize("method", ["distilwhisper", "clsr-ft", "ft", "lora"])
def test_each_method_learns_and_touches_only_its_parameters(method, tiny_dirs, manifest, tmp_path):
    base = WhisperForConditionalGeneration.from_pretrained(tiny_dirs[0]).state_dict()
    result = train(_config(method, tiny_dirs, manifest, tmp_path), progress=False)
    first, last, rows = _ce_curve(tmp_path)
    assert last < first * 0.8, (first, last)
    assert result.state.step == 16
    trained = load_file(str(tmp_path / "checkpoint" / "trainable.safetensors"))
    if method in ("distilwhisper", "clsr-ft"):
        assert all(".experts." in n or ".gates." in n for n in trained)
        for name, p in result.model.named_parameters():  # the frozen base is bit-identical
            if not p.requires_grad:
                key = name.replace(".fc1.shared.fc1.", ".fc1.").replace(".fc1.shared.fc2.", ".fc2.")
                assert torch.equal(p, base[key]), name
        assert (tmp_path / "best" / "ca.safetensors").exists()
        if method == "distilwhisper":
            assert "kd" in rows[0] and "gate" in rows[0]
    elif method == "lora":
        assert trained and all("lora_" in n for n in trained)
        assert (tmp_path / "best" / "adapter_config.json").exists()
    else:
        assert len(trained) == len([k for k in base if k != "proj_out.weight"])
        assert (tmp_path / "best" / "model.safetensors").exists()
    assert list((tmp_path / "tensorboard").glob("events.*"))


def test_padding_free_training_learns(tiny_dirs, manifest, tmp_path):
    train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, trim=True), progress=False)
    first, last, _ = _ce_curve(tmp_path)
    assert last < first * 0.8, (first, last)


def test_encoder_cache_gives_the_same_steps_as_encoding_every_time(tiny_dirs, manifest, tmp_path):
    """With --scope decoder the encoder is frozen, so caching its outputs must not change training at all -- for
    every method, and when the teacher is the student's own model (as offline) and reuses the cached encodings."""
    runs = {}
    for method in ("clsr-ft", "distilwhisper", "ft", "lora"):
        for cache in (False, True):
            out = tmp_path / f"{method}-{cache}"
            teacher = {"teacher": tiny_dirs[0]} if method == "distilwhisper" else {}
            train(_config(method, tiny_dirs, manifest, out, scope="decoder", cache_encoder=cache, max_steps=6,
                          **teacher), progress=False)
            runs[method, cache] = _ce_curve(out)[2]
        for term in ("ce", "kd") if method == "distilwhisper" else ("ce",):
            assert [r[term] for r in runs[method, True]] == pytest.approx([r[term] for r in runs[method, False]],
                                                                          rel=1e-5)
    with pytest.raises(ValueError, match="--cache-encoder needs a frozen encoder"):
        _config("clsr-ft", tiny_dirs, manifest, tmp_path, cache_encoder=True)  # scope all: encoder experts train


def test_bf16_autocast_covers_the_cached_encoder_and_teacher(tiny_dirs, manifest, tmp_path, monkeypatch):
    """--bf16 runs the encoder (outside the DDP wrapper, cached once per clip) and the teacher under autocast too,
    and the loss terms stay those of fp32 to bf16 precision."""
    from distilwhisper.train.caches import EncoderCache

    autocast = []  # per encoder-cache call (the student's, then the teacher's reuse): under bf16 autocast?
    encode = EncoderCache.encode

    def spy(self, whisper, batch, frames):
        autocast.append(torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16)
        return encode(self, whisper, batch, frames)

    monkeypatch.setattr(EncoderCache, "encode", spy)
    curves = {}
    for bf16 in (False, True):
        out = tmp_path / str(bf16)
        autocast.clear()
        train(_config("distilwhisper", tiny_dirs, manifest, out, teacher=tiny_dirs[0], scope="decoder",
                      cache_encoder=True, trim=True, max_steps=3, bf16=bf16), progress=False)
        assert len(autocast) == 6 and set(autocast) == {bf16}
        curves[bf16] = _ce_curve(out)[2]
    for term in ("ce", "kd"):  # kd is near 0 here (the teacher is the student): absolute tolerance
        got, expected = ([r[term] for r in curves[bf16]] for bf16 in (True, False))
        assert got == pytest.approx(expected, rel=0.05, abs=1e-3)


def test_runs_of_one_process_share_the_frozen_encoders_outputs(tiny_dirs, manifest, tmp_path, monkeypatch):
    """The demo's specialist (FT) and the experts it teaches train on the same clips with the same frozen encoder:
    with a shared cache the second run encodes nothing (student nor teacher) and trains exactly as with its own;
    another precision empties the cache instead of serving encodings made under other arithmetic."""
    from distilwhisper.train import caches

    calls = []
    encode = caches.encode
    monkeypatch.setattr(caches, "encode", lambda *args: calls.append(1) or encode(*args))
    shared = caches.EncoderCache()
    settings = dict(scope="decoder", cache_encoder=True, trim=True, max_steps=4)
    train(_config("ft", tiny_dirs, manifest, tmp_path / "ft", **settings), progress=False, encodings=shared)
    filled = len(calls)
    assert filled > 0 and shared.store
    curves = {}
    for name, cache in (("shared", shared), ("own", None)):
        train(_config("distilwhisper", tiny_dirs, manifest, tmp_path / name, teacher=str(tmp_path / "ft"),
                      **settings), progress=False, encodings=cache)
        curves[name] = _ce_curve(tmp_path / name)[2]
        if name == "shared":
            assert len(calls) == filled  # every batch was encoded by the FT run already
    assert len(calls) > filled
    assert curves["shared"] == curves["own"]
    kept = dict(shared.store)
    train(_config("ft", tiny_dirs, manifest, tmp_path / "bf16", bf16=True, **settings), progress=False,
          encodings=shared)
    assert shared.key[1] is True and all(shared.store[k] is not v for k, v in kept.items() if k in shared.store)


def test_patience_stops_a_run_whose_kept_model_stopped_improving(tiny_dirs, manifest, tmp_path, capsys):
    """lr 0: no evaluation beats the untrained start, so --patience 2 stops after the second one (step 2 of 8);
    the stopped run counts as finished, and resuming it trains nothing more."""
    config = _config("clsr-ft", tiny_dirs, manifest, tmp_path, dev=manifest, lr=0.0, eval_every=1, max_steps=8,
                     patience=2)
    result = train(config, progress=False)
    assert (result.state.step, result.state.best_step, result.state.evaluations_since_best()) == (2, 0, 2)
    assert "(--patience): stopped; kept step 0" in capsys.readouterr().out
    assert TrainedRun.open(tmp_path).finished
    assert train(config, resume=True, progress=False).state.step == 2
    assert [r["step"] for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())] == [1, 2]
    with pytest.raises(ValueError, match="--patience must be 0 or a number of dev evaluations, not -1"):
        _config("clsr-ft", tiny_dirs, manifest, tmp_path, patience=-1)


@pytest.mark.parametrize("method", ["ft", "lora"])
def test_baselines_train_only_the_scope_layers(method, tiny_dirs, manifest, tmp_path):
    """--scope decoder: FT updates and LoRA adapts decoder layers only; the encoder stays bit-identical."""
    result = train(_config(method, tiny_dirs, manifest, tmp_path, scope="decoder", max_steps=3), progress=False)
    trained = load_file(str(tmp_path / "checkpoint" / "trainable.safetensors"))
    assert trained and all(".decoder." in n for n in trained)
    if method == "lora":
        assert {n.split(".lora_")[0].rsplit(".", 1)[1] for n in trained} == {"fc1", "fc2"}
    base = WhisperForConditionalGeneration.from_pretrained(tiny_dirs[0]).state_dict()
    whisper = result.model.get_base_model() if method == "lora" else result.model
    for name, p in whisper.model.encoder.named_parameters():
        assert torch.equal(p, base[f"model.encoder.{name}"]), name
    with pytest.raises(ValueError, match="--scope must be one of"):
        _config(method, tiny_dirs, manifest, tmp_path, scope="middle")


@pytest.mark.parametrize("method", ["clsr-ft", "lora", "ft"])
def test_load_trained_decodes_what_training_kept(method, tiny_dirs, manifest, tmp_path):
    result = train(_config(method, tiny_dirs, manifest, tmp_path, max_steps=2), progress=False)
    run = TrainedRun.open(tmp_path)
    model, _ = run.load()
    assert run.config.method == method and run.state.step == 2
    feats = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(0))
    ids = torch.tensor([[50258, 50262, 50359, 50363]])
    clsr.set_language(model, "ca")
    clsr.set_language(result.model, "ca")
    trained = result.model.eval()
    with torch.no_grad():
        expected = trained(input_features=feats, decoder_input_ids=ids).logits
        assert torch.allclose(model(input_features=feats, decoder_input_ids=ids).logits, expected, atol=1e-4)
    with pytest.raises(ValueError, match="not a finished training run"):
        TrainedRun.open(tmp_path / "nothing")


def test_the_untrained_start_is_a_checkpoint_candidate(tiny_dirs, manifest, tmp_path):
    """Dev WER is measured before the first step; training that never beats it (here lr 0) keeps the start."""
    result = train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, dev=manifest, lr=0.0, max_steps=4,
                           eval_every=2, trim=True), progress=False)
    assert sorted(p.name for p in (tmp_path / "dev").iterdir()) == ["step-0000000", "step-0000002", "step-0000004"]
    assert result.state.best_step == 0
    assert result.model.training  # the dev evaluations do not leave the model in eval mode
    state = result.state
    assert state.best_steps == {"ca": 0, "cs": 0}
    assert set(state.dev_counts["2"]) == set(state.dev_routing["2"]) == {"ca", "cs"}
    assert all(words > 0 for _, words in state.dev_counts["2"].values())
    assert all(0 <= routed <= seen > 0 for routed, seen in state.dev_routing["4"].values())
    dev = json.loads((tmp_path / "dev" / "step-0000002" / "config.json").read_text())
    assert dev["trim"] is True  # dev is decoded as training encodes (and as the demo decodes its tests)


def test_each_languages_experts_are_kept_from_its_own_best_dev_step(tiny_dirs, manifest, tmp_path, monkeypatch):
    """Catalan's dev WER is lowest at step 2, Czech's at step 4: best/ holds Catalan's experts and gate as they
    were at step 2 and Czech's as at step 4, and the kept dev WER is theirs pooled."""
    from distilwhisper.train import loop

    scripted = {0: {"ca": [5, 10], "cs": [5, 10]}, 2: {"ca": [2, 10], "cs": [6, 10]},
                4: {"ca": [3, 10], "cs": [4, 10]}}
    snapshots = {}

    def dev_counts(config, layout, state, model, *rest):
        snapshots[state.step] = {lang: {k: v.clone() for k, v in clsr._language_state(model, lang).items()}
                                 for lang in ("ca", "cs")}
        state.dev_routing[str(state.step)] = {"ca": [state.step, 10], "cs": [1, 10]}
        return scripted[state.step]

    monkeypatch.setattr(loop, "dev_counts", dev_counts)
    result = train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, dev=manifest, max_steps=4, eval_every=2),
                   progress=False)
    state = result.state
    assert state.best_steps == {"ca": 2, "cs": 4} and state.best_step == 4
    assert state.best_dev_wer == pytest.approx(100 * (2 + 4) / 20)
    assert TrainedRun.open(tmp_path).routed_share == pytest.approx((2 + 1) / 20)
    for lang, step in state.best_steps.items():
        kept = load_file(str(tmp_path / "best" / f"{lang}.safetensors"))
        assert set(kept) == set(snapshots[step][lang])
        assert all(torch.equal(kept[k], snapshots[step][lang][k]) for k in kept), lang
        other = 6 - step  # the other evaluated step: its weights differ, so the check can fail
        assert not all(torch.equal(kept[k], snapshots[other][lang][k]) for k in kept), lang
    assert clsr.read_experts_config(tmp_path / "best")["kept_steps"] == {"ca": 2, "cs": 4}


def test_kept_steps_per_language_follow_dev_and_break_ties_early():
    from distilwhisper.runs import State

    state = State("clsr-ft", dev_counts={"0": {"ca": [4, 10], "en": [1, 10]}, "5": {"ca": [4, 10], "en": [0, 10]},
                                         "10": {"ca": [3, 10], "en": [5, 10]}})
    # ca: lowest at 10; the tie 0/5 goes to 0 for a language with one; cs has no dev lines: pooled WER (5 is lowest)
    assert state.kept_steps(["ca", "cs"]) == {"ca": 10, "cs": 5}
    state.dev_counts["10"]["ca"] = [4, 10]
    assert state.kept_steps(["ca"]) == {"ca": 0}


def test_resume_continues_and_checks_method(tiny_dirs, manifest, tmp_path):
    train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, max_steps=4), progress=False)
    result = train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, max_steps=6), resume=True, progress=False)
    assert result.state.step == 6
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 6
    with pytest.raises(ValueError, match="checkpoint of --method clsr-ft, not ft"):
        train(_config("ft", tiny_dirs, manifest, tmp_path, max_steps=6), resume=True, progress=False)
    (tmp_path / "checkpoint" / "optim.pt").write_bytes(b"")  # a checkpoint of the version before accelerate state
    with pytest.raises(ValueError, match="written by an earlier version"):
        train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, max_steps=8), resume=True, progress=False)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "extra": {}}))  # a key that version wrote
    assert TrainedRun.open(tmp_path).config.method == "clsr-ft" and TrainedRun.open(tmp_path).finished


@pytest.mark.parametrize("save_every", [3, 4])
def test_an_interrupted_run_resumes_to_the_same_weights(save_every, tiny_dirs, manifest, tmp_path, monkeypatch):
    """Checkpoints every `save_every` steps; a run killed between two of them continues from the last one, skips
    the batches of the epoch it had trained on, and ends with the weights of a run that was never interrupted."""
    # 4 batches an epoch, no evaluation before the end: the step-3 checkpoint is mid-epoch, the step-4 one at its end
    settings = dict(max_steps=8, batch_size=1, save_every=save_every, eval_every=100)
    whole = train(_config("clsr-ft", tiny_dirs, manifest, tmp_path / "whole", **settings), progress=False)

    terms = Objective.terms

    def crash_at_step_6(self, batch, step, total):
        if step == 5:
            raise KeyboardInterrupt
        return terms(self, batch, step, total)

    monkeypatch.setattr(Objective, "terms", crash_at_step_6)
    with pytest.raises(KeyboardInterrupt):
        train(_config("clsr-ft", tiny_dirs, manifest, tmp_path / "cut", **settings), progress=False)
    state = json.loads((tmp_path / "cut" / "checkpoint" / "state.json").read_text())
    assert (state["step"], state["epoch"], state["epoch_batches"]) == (save_every, 0, save_every)
    with (tmp_path / "cut" / "metrics.jsonl").open("a") as log:
        log.write('{"step": 6, "c')  # a row torn by the interruption
    monkeypatch.setattr(Objective, "terms", terms)
    resumed = train(_config("clsr-ft", tiny_dirs, manifest, tmp_path / "cut", **settings), resume=True,
                    progress=False)
    assert resumed.state.step == 8 and resumed.state.seconds > 0
    for name, weight in trainable_state(whole.model).items():
        torch.testing.assert_close(trainable_state(resumed.model)[name], weight, rtol=0, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))  # the steps lost with the interruption are logged once, by the resumed run


def test_two_runs_of_the_same_settings_give_the_same_weights(tiny_dirs, tmp_path, monkeypatch):
    """Two threads, a batch of 16 long, distinct transcripts: the backward of Whisper's positional embedding adds a
    position's gradients in a thread-dependent order unless training runs under torch's deterministic algorithms, so
    two runs drift apart without them (checked too, so that this test can fail) and give the same weights with
    them.  (Identical transcripts would hide it: equal addends sum alike in any order.)"""
    words = "bon dia a tothom gràcies per la paciència fins demà".split()
    rows = [{"id": f"ca{i}", "audio": str(write_wav(tmp_path / f"ca{i}.wav", 1.0 + i / 10)),
             "text": " ".join(words[(i * j) % len(words)] for j in range(120)), "language": "ca"} for i in range(16)]
    (tmp_path / "long.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    torch.set_num_threads(2)

    def weights(name):
        config = _config("ft", tiny_dirs, str(tmp_path / "long.jsonl"), tmp_path / name, languages=["ca"],
                         batch_size=16, max_steps=4, bf16=False)
        return train(config, progress=False).model.state_dict()

    first, second = weights("a"), weights("b")
    assert not torch.are_deterministic_algorithms_enabled()  # the caller's setting is back
    for name, weight in first.items():
        assert torch.equal(second[name], weight), name
    monkeypatch.setattr("distilwhisper.train.loop.deterministic_algorithms", contextlib.nullcontext)
    first, second = weights("c"), weights("d")
    assert any(not torch.equal(second[name], weight) for name, weight in first.items())


def test_gate_budget_settings_steer_the_gates(tiny_dirs, manifest, tmp_path):
    """The budget term pulls the mean gate towards --gate-target; --gate-weight 0 takes it out of the loss."""
    means = {}
    for target in (0.0, 1.0):
        train(_config("clsr-ft", tiny_dirs, manifest, tmp_path / str(target), gate_target=target, gate_weight=20.0),
              progress=False)
        means[target] = np.mean([r["g_mean"] for r in _ce_curve(tmp_path / str(target))[2][-4:]])
    assert means[1.0] > 0.5 > means[0.0], means
    train(_config("clsr-ft", tiny_dirs, manifest, tmp_path / "free", gate_weight=0.0, max_steps=2), progress=False)
    rows = _ce_curve(tmp_path / "free")[2]
    assert all(r["gate"] == 0.0 and r["loss"] == pytest.approx(r["ce"], rel=1e-5) for r in rows), rows


def test_bad_input(tiny, tiny_dirs, manifest, tmp_path):
    with pytest.raises(ValueError, match="outside --languages"):
        train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, languages=["ca"]), progress=False)
    config = tiny[0].config.to_dict()
    config.update(vocab_size=51866)
    odd = WhisperForConditionalGeneration(WhisperConfig(**config))
    odd.generation_config = tiny[0].generation_config
    odd.save_pretrained(tmp_path / "odd")
    tiny[1].save_pretrained(tmp_path / "odd")
    with pytest.raises(ValueError, match="teacher vocabulary"):
        train(_config("distilwhisper", (tiny_dirs[0], str(tmp_path / "odd")), manifest, tmp_path), progress=False)
    from types import SimpleNamespace

    mel128 = SimpleNamespace(config=WhisperConfig(**{**config, "vocab_size": 51865, "num_mel_bins": 128}))
    with pytest.raises(ValueError, match="teacher takes 128 mel bins, the student 80"):
        check_teacher(tiny[0], mel128)
    with pytest.raises(ValueError, match="--save-every must be 0 or a number of steps, not -5"):
        load_config(None, dict(method="clsr-ft", student="x", languages=["ca"], train="t", out="o", save_every=-5))
    with pytest.raises(ValueError, match=r"--gate-target is a share of tokens in \[0, 1\], not 1.5"):
        load_config(None, dict(method="clsr-ft", student="x", languages=["ca"], train="t", out="o", gate_target=1.5))
    with pytest.raises(ValueError, match="--gate-weight is a loss weight, 0 .off. or positive, not -1"):
        load_config(None, dict(method="clsr-ft", student="x", languages=["ca"], train="t", out="o", gate_weight=-1))
    with pytest.raises(ValueError, match="needs --teacher"):
        load_config(None, dict(method="distilwhisper", student="x", languages=["ca"], train="t", out="o"))
    for flag, value in (("expert_dropout", -0.1), ("lora_dropout", 1.0)):
        with pytest.raises(ValueError, match=f"--{flag.replace('_', '-')} is a dropout probability in .0, 1., "
                                             f"not {value}"):
            load_config(None, dict(method="lora", student="x", languages=["ca"], train="t", out="o", **{flag: value}))
    with pytest.raises(ValueError, match=r"--lr must be 0 \(no training\) or a positive learning rate, not -0.0001"):
        load_config(None, dict(method="ft", student="x", languages=["ca"], train="t", out="o", lr=-1e-4))
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("lr: 0.001\nbogus: 1\n")
    with pytest.raises(ValueError, match="unknown setting"):
        load_config(yaml_file, dict(method="ft", student="x", languages=["ca"], train="t", out="o"))
    yaml_file.write_text("- lr\n")
    with pytest.raises(ValueError, match="expected a mapping of settings"):
        load_config(yaml_file, {})


def test_cli_flags_come_from_the_config_and_override_yaml(tmp_path, capsys):
    """`train --config` + flags: the YAML sets values, given flags win, comma lists and switches parse, and a
    missing required setting is named by its flag."""
    from distilwhisper.cli import build_parser, config_from
    from distilwhisper.train.config import read_yaml

    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("method: lora\nstudent: s\nlr: 0.001\nlanguages: [ca]\n")
    args = build_parser().parse_args(["train", "--config", str(yaml_file), "--lr", "0.01", "--languages", "ca,cs",
                                      "--train", "t.jsonl", "--out", "o", "--trim"])
    config = config_from(args, TrainConfig, read_yaml(args.config))
    assert (config.method, config.lr, config.languages, config.trim, config.batch_size) == (
        "lora", 0.01, ["ca", "cs"], True, 16)
    assert main(["train", "--method", "ft", "--student", "s", "--languages", "ca"]) == 2
    assert "missing --train, --out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--method", "sgd"])  # choices come from the config's metadata


def test_teacher_cache_matches_live_teacher(bundled, speech, tmp_path):
    """Top-64 cached log-probs of a real teacher on real speech give nearly the live KD loss: the bound is the
    teacher's probability mass outside its top 64, small where the teacher is confident."""
    from distilwhisper.audio import load_audio

    teacher, processor = bundled
    clip = next(u for u in speech if u.language == "es")
    feats = processor.feature_extractor(load_audio(clip.audio), sampling_rate=16000,
                                        return_tensors="pt").input_features
    tokens = [50258, 50262, 50359, 50363] + processor.tokenizer.encode(" " + clip.text,
                                                                          add_special_tokens=False) + [50257]
    dec_in = torch.tensor([tokens[:-1]])
    mask = torch.ones(1, len(tokens) - 1)
    with torch.no_grad():
        t_logits = teacher(input_features=feats, decoder_input_ids=dec_in).logits
    student_logits = t_logits + torch.randn(t_logits.shape, generator=torch.Generator().manual_seed(0)) * 2.0
    live = losses.kd_loss_logits(student_logits, t_logits, mask)
    cache = TeacherCache(tmp_path / "cache", "bundled:base", 64)
    cache.put(["u1"], dec_in, mask, t_logits)
    values, indices = cache.get(["u1"], dec_in, mask)
    cached = losses.kd_loss_topk(student_logits, values, indices, mask)
    assert abs(cached.item() - live.item()) < 0.05 * live.item() + 1e-3
    assert cache.get(["u1"], dec_in + 1, mask) is None  # another transcript: a miss, not a wrong hit
    longer = torch.cat([dec_in, dec_in[:, -1:]], 1)  # the same transcript extended: a miss, not zero-filled
    assert cache.get(["u1"], longer, torch.ones(1, longer.shape[1])) is None
    padded = torch.cat([dec_in, torch.zeros(1, 3, dtype=torch.long)], 1)  # the same one padded in a batch: a hit
    hit = cache.get(["u1"], padded, torch.cat([mask, torch.zeros(1, 3)], 1))
    assert hit is not None and torch.equal(hit[0][0, :dec_in.shape[1]], values[0])
    with pytest.raises(ValueError, match="another teacher or setting"):
        TeacherCache(tmp_path / "cache", "bundled:base", 32)


def test_distilwhisper_with_teacher_cache_and_cli_eval(tiny_dirs, manifest, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--method", "distilwhisper", "--student", tiny_dirs[0], "--teacher", tiny_dirs[1],
            "--languages", "ca,cs", "--train", manifest, "--dev", manifest, "--out", str(out), "--max-steps", "4",
            "--batch-size", "2", "--teacher-cache", str(tmp_path / "tc"), "--eval-every", "2"]
    assert main(args) == 0
    assert len(list((tmp_path / "tc").glob("*.safetensors"))) >= 2
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["best_dev_wer"] is not None
    assert (out / "dev" / "step-0000002" / "summary.json").exists()
    evaluated = tmp_path / "eval"
    assert main(["eval", "--model", tiny_dirs[0], "--experts", str(out / "best"), "--data", manifest,
                 "--out", str(evaluated), "--language", "ca"]) == 0
    assert json.loads((evaluated / "summary.json").read_text())["languages"]["ca"]["utterances"] == 2
    assert main(["transcribe", "--model", tiny_dirs[0], "--experts", str(out), "--language", "cs",
                 str(Path(manifest).parent / "cs0.wav")]) == 0
    assert "cs0.wav\tcs\t" in capsys.readouterr().out
    assert main(["eval", "--model", tiny_dirs[0], "--experts", str(out / "best"), "--data", manifest,
                 "--out", str(tmp_path / "e2")]) == 0  # every language of the manifest has experts
    assert main(["eval", "--model", str(out), "--data", manifest, "--out", str(tmp_path / "e4"),
                 "--language", "ca"]) == 0  # the run folder itself as the model: the student with its kept experts
    assert (json.loads((tmp_path / "e4" / "results.jsonl").read_text().splitlines()[0])["hypothesis"]
            == json.loads((evaluated / "results.jsonl").read_text().splitlines()[0])["hypothesis"])
    bad = tmp_path / "uk.jsonl"
    bad.write_text(json.dumps({"id": "u", "audio": str(Path(manifest).parent / "cs0.wav"), "text": "x",
                               "language": "uk"}) + "\n")
    capsys.readouterr()
    assert main(["eval", "--model", tiny_dirs[0], "--experts", str(out / "best"), "--data", str(bad),
                 "--out", str(tmp_path / "e3")]) == 0  # a language without experts runs on the shared FFNs
    assert "no experts for uk: decoded with the shared FFNs" in capsys.readouterr().out


def test_ddp_two_cpu_processes_train_like_one_process_with_the_global_batch(tiny_dirs, tmp_path):
    """2 processes of batch 1 train like 1 process of batch 2: the same global batches, the same learning rate at
    every optimizer step (accelerate steps a prepared schedule once per process), above 0 after the warm-up's first
    step, and after 6 steps the same weights (full fine-tuning without dropout; each process's transcripts have
    the same number of tokens, so averaging the processes' mean losses is the one-process mean)."""
    rows = [{"id": f"{lang}{i}", "audio": str(write_wav(tmp_path / f"{lang}{i}.wav", 0.6 + 0.3 * i)), "text": text,
             "language": lang} for lang, text in (("ca", "bon dia"), ("cs", "dobrý den")) for i in range(5)]
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "ddp"
    # `accelerate launch --cpu --num_processes 2` starts one plain process; torchrun + ACCELERATE_USE_CPU is DDP
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")
    settings = ["--method", "ft", "--student", tiny_dirs[0], "--languages", "ca,cs", "--train", str(manifest),
                "--max-steps", "6", "--warmup", "0.2", "--lr", "0.001", "--dev", str(manifest), "--eval-every", "3"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "distilwhisper.cli",
           "train", *settings, "--out", str(out), "--batch-size", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MULTI_CPU" in proc.stderr + proc.stdout  # really two processes (the run logs its distributed type)
    assert main(["train", *settings, "--out", str(tmp_path / "one"), "--batch-size", "2"]) == 0
    logs = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            for run in (out, tmp_path / "one")]
    lrs = [[row["lr"] for row in log] for log in logs]
    assert len(lrs[0]) == 6 and lrs[0] == pytest.approx(lrs[1])
    assert lrs[0][0] == 0 and all(lr > 0 for lr in lrs[0][1:])
    weights = [load_file(str(run / "checkpoint" / "trainable.safetensors")) for run in (out, tmp_path / "one")]
    untrained = load_file(str(Path(tiny_dirs[0]) / "model.safetensors"))
    assert weights[0].keys() == weights[1].keys()
    for name, weight in weights[1].items():
        torch.testing.assert_close(weights[0][name], weight, rtol=0, atol=2e-5)
    moved = max(float((weight - untrained[name]).abs().max()) for name, weight in weights[1].items())
    assert moved > 1e-3  # the runs trained (the tolerance is far below what 6 steps change)
    # dev evaluation shared out over the two processes: the untrained model's dev rows are those of one process
    dev = [read_jsonl(run / "dev" / "step-0000000" / "results.jsonl")[0] for run in (out, tmp_path / "one")]
    assert len(dev[0]) == 10 and _without_seconds(dev[0]) == _without_seconds(dev[1])
    assert not list(out.glob("dev/*/shards"))


def _without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "decode_seconds"} for row in rows]


@pytest.mark.parametrize("teacher_method", ["ft", "lora", "clsr-ft"])
def test_a_trained_run_is_a_teacher(teacher_method, tiny_dirs, manifest, tmp_path):
    """--teacher RUN_DIR: the KD target is the teacher run's own kept model (FT model, base + merged LoRA, or the
    student with its experts routed by the batch language); the cache knows the teacher by its weights."""
    from distilwhisper.train.model import load_teacher, weights_fingerprint

    teacher_run = tmp_path / "teacher"
    train(_config(teacher_method, tiny_dirs, manifest, teacher_run, max_steps=3), progress=False)
    student = tmp_path / "student"
    config = _config("distilwhisper", tiny_dirs, manifest, student, max_steps=2, teacher=str(teacher_run),
                     teacher_cache=str(tmp_path / "tc"))
    train(config, progress=False)
    expected, _ = TrainedRun.open(teacher_run).load()
    teacher = load_teacher(config, expected, "cpu")
    assert weights_fingerprint(teacher) == weights_fingerprint(expected)
    cached = json.loads((tmp_path / "tc" / "teacher.json").read_text())
    assert cached["fingerprint"] == weights_fingerprint(expected)
    ids = torch.tensor([[50258, 50262, 50359, 50363, 220]])
    feats = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(1))
    clsr.set_language(expected, "ca")
    clsr.set_language(teacher, "ca")
    with torch.no_grad():
        assert torch.equal(teacher(input_features=feats, decoder_input_ids=ids).logits,
                           expected(input_features=feats, decoder_input_ids=ids).logits)
    with pytest.raises(ValueError, match="not a finished training run"):
        (tmp_path / "unfinished").mkdir()
        (tmp_path / "unfinished" / "config.json").write_text(json.dumps({"method": "ft"}))
        train(_config("distilwhisper", tiny_dirs, manifest, tmp_path / "s2", teacher=str(tmp_path / "unfinished")),
              progress=False)
    with pytest.raises(ValueError, match="another teacher or setting"):  # the student as teacher: other weights
        train(_config("distilwhisper", tiny_dirs, manifest, tmp_path / "s3", max_steps=1,
                      teacher_cache=str(tmp_path / "tc")), progress=False)


def test_a_teacher_with_the_students_frozen_encoder_reuses_its_cached_encodings(tiny_dirs, manifest, tmp_path,
                                                                               monkeypatch):
    """An FT specialist trained with the encoder frozen has the student's encoder weights: its forward takes the
    student's cached encodings (no encoder pass of its own); one whose encoder trained does not share them."""
    from distilwhisper.hub import load_model
    from distilwhisper.train import objective
    from distilwhisper.train.model import same_encoder

    frozen, whole = tmp_path / "ft-decoder", tmp_path / "ft-all"
    train(_config("ft", tiny_dirs, manifest, frozen, max_steps=2, scope="decoder"), progress=False)
    train(_config("ft", tiny_dirs, manifest, whole, max_steps=2, scope="all"), progress=False)
    student, _ = load_model(tiny_dirs[0])
    assert same_encoder(TrainedRun.open(frozen).load()[0], student)
    assert not same_encoder(TrainedRun.open(whole).load()[0], student)
    passes = []
    real_encode = objective.encode
    monkeypatch.setattr(objective, "encode", lambda *a: passes.append(1) or real_encode(*a))
    for teacher, expected in ((frozen, 0), (whole, 1)):
        passes.clear()
        train(_config("distilwhisper", tiny_dirs, manifest, tmp_path / f"dw-{teacher.name}", max_steps=2,
                      teacher=str(teacher), scope="decoder", cache_encoder=True, trim=True), progress=False)
        assert (len(passes) > 0) == bool(expected), teacher.name


class _RunsCode:
    """A pickle that runs code when loaded: what a tampered checkpoint file could hold."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("name", ["random_states_0.pkl", "optimizer.bin", "scheduler.bin"])
def test_resume_never_unpickles_code_from_a_checkpoint(name, tiny_dirs, manifest, tmp_path):
    """accelerate's state files are read with weights_only=True: a checkpoint file that would run code on loading
    is refused with a message naming it, and the code never runs."""
    out = tmp_path / "run"
    train(_config("clsr-ft", tiny_dirs, manifest, out, max_steps=2, save_every=1), progress=False)
    marker = tmp_path / "the-pickle-ran"
    torch.save(_RunsCode(marker), out / "checkpoint" / name)
    with pytest.raises(ValueError, match=f"checkpoint/{name} is not plain tensors and numbers.*refused"):
        train(_config("clsr-ft", tiny_dirs, manifest, out, max_steps=4, save_every=1), resume=True, progress=False)
    assert not marker.exists()


@pytest.fixture(scope="module")
def translated_manifest(manifest, tmp_path_factory):
    """The training manifest with an English line for every clip but one (a clip without one is not translated)."""
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    english = {"ca0": "good morning", "ca1": "thank you", "cs0": "good day"}
    path = tmp_path_factory.mktemp("translated") / "m.jsonl"
    path.write_text("".join(json.dumps({**r, **({"translation_en": english[r["id"]]} if r["id"] in english else {})},
                                       ensure_ascii=False) + "\n" for r in rows))
    return str(path)


def _translate_batch(model_dir: str, manifest: str, language: str) -> dict:
    """The collated batch of `language`'s clips, translate rows included."""
    from transformers import WhisperProcessor

    from distilwhisper.data.manifest import validate_manifest
    from distilwhisper.decoding import prompt_tokens
    from distilwhisper.train.data import SpeechDataset, collate

    processor = WhisperProcessor.from_pretrained(model_dir)
    gen = WhisperForConditionalGeneration.from_pretrained(model_dir).generation_config
    eot = int(gen.eos_token_id)
    data = SpeechDataset([u for u in validate_manifest(manifest) if u.language == language], processor,
                         {language: prompt_tokens(gen, language)}, eot,
                         {language: prompt_tokens(gen, language, task="translate")})
    return collate([data[i] for i in range(len(data))], eot)


def _translate_divergence(model, batch: dict) -> float:
    """JS divergence of the model's translate-task distributions from the base model's (its shared FFNs)."""
    translate = batch["translate"]
    feats, ids = batch["input_features"][translate["rows"]], translate["decoder_input_ids"]
    mask = (translate["labels"] != losses.IGNORE).float()
    with torch.no_grad():
        clsr.set_language(model, batch["language"])
        student = model(input_features=feats, decoder_input_ids=ids).logits
        clsr.set_language(model, clsr.SHARED, shared_fallback=True)
        base = model(input_features=feats, decoder_input_ids=ids).logits
    return float(losses.kd_loss_logits(student, base, mask))


def test_keep_translate_adds_the_divergence_from_the_base_model_on_the_translate_rows(tiny_dirs,
                                                                                      translated_manifest, tmp_path):
    """One forward serves both tasks: the transcription terms are those of the batch alone, and `keep` is the
    divergence of the experts' translate-task outputs from the frozen base model's, on the rows with English."""
    batch = _translate_batch(tiny_dirs[0], translated_manifest, "cs")
    assert batch["translate"]["rows"] == [0]  # cs1 has no English line
    terms = {}
    for keep in (0.0, 2.0):
        config = _config("clsr-ft", tiny_dirs, translated_manifest, tmp_path, keep_translate=keep)
        model = clsr.to_distilwhisper(WhisperForConditionalGeneration.from_pretrained(tiny_dirs[0]), ["ca", "cs"],
                                      expert_dropout=0.0, skip_probability=0.0)
        torch.manual_seed(3)
        for block in clsr.clsr_modules(model):  # experts that differ from the shared FFNs they start as
            for p in block.experts["cs"].parameters():
                p.data += 0.3 * torch.randn_like(p)
        model.train()
        terms[keep] = Objective(config, model, model).terms(batch, 0, 10)
    assert "keep" not in terms[0.0]
    assert float(terms[2.0]["ce"]) == pytest.approx(float(terms[0.0]["ce"]), rel=1e-5)
    clsr.set_language(model, "cs")  # the student in training mode: soft gates (noise 0 at step 0)
    translate = batch["translate"]
    with torch.no_grad():
        student = model(input_features=batch["input_features"][[0]],
                        decoder_input_ids=translate["decoder_input_ids"]).logits
        clsr.set_language(model, clsr.SHARED, shared_fallback=True)
        base = WhisperForConditionalGeneration.from_pretrained(tiny_dirs[0])(
            input_features=batch["input_features"][[0]], decoder_input_ids=translate["decoder_input_ids"]).logits
    mask = (translate["labels"] != losses.IGNORE).float()
    assert float(terms[2.0]["keep"]) > 0.01
    assert float(terms[2.0]["keep"]) == pytest.approx(float(losses.kd_loss_logits(student, base, mask)), rel=1e-4)
    got = {name: float(value.detach()) for name, value in terms[2.0].items()}
    assert got["loss"] == pytest.approx(got["ce"] + got["gate"] + 2.0 * got["keep"], rel=1e-5)


def test_keep_translate_holds_the_translate_task_near_the_base_model(tiny_dirs, translated_manifest, tmp_path):
    """Experts trained on transcription drift on the translate task; the keep term holds them near the base."""
    drift = {}
    for keep in (0.0, 10.0):
        out = tmp_path / str(keep)
        train(_config("clsr-ft", tiny_dirs, translated_manifest, out, keep_translate=keep), progress=False)
        rows = _ce_curve(out)[2]
        assert ("keep" in rows[-1]) == bool(keep)
        model, _ = TrainedRun.open(out).load()
        model.eval()  # experts serve translation only when the term trained them for it
        assert clsr.served_tasks(model) == (("transcribe", "translate") if keep else ("transcribe",))
        drift[keep] = np.mean([_translate_divergence(model, _translate_batch(tiny_dirs[0], translated_manifest, lang))
                               for lang in ("ca", "cs")])
    assert drift[10.0] < 0.7 * drift[0.0], drift  # measured: 0.16 against 0.29
    # experts folders written between bc74f00 and 96c5aa5 saved no tasks: the run's settings say what they learnt,
    # whichever way the run is given (as the model, as --experts, or its best/)
    info_path = tmp_path / "10.0" / "best" / clsr.EXPERTS_CONFIG
    info = json.loads(info_path.read_text())
    del info["tasks"]
    info_path.write_text(json.dumps(info))
    both = ("transcribe", "translate")
    assert clsr.served_tasks(TrainedRun.open(tmp_path / "10.0").load()[0]) == both
    for experts in (tmp_path / "10.0", tmp_path / "10.0" / "best"):
        assert clsr.served_tasks(load_variant(tiny_dirs[0], "fp32", experts=str(experts)).decoder.model) == both
    # a bare experts folder without tasks (no run around it) serves transcription, as before
    bare = tmp_path / "bare"
    shutil.copytree(tmp_path / "10.0" / "best", bare)
    assert clsr.served_tasks(load_variant(tiny_dirs[0], "fp32", experts=str(bare)).decoder.model) == ("transcribe",)


def test_keep_translate_with_cached_padding_free_encodings(tiny_dirs, translated_manifest, tmp_path):
    """The demo's path: the base model's translate rows reuse the student's cached encodings, at the frames of the
    whole batch, so caching changes no term."""
    runs = {}
    for cache in (False, True):
        out = tmp_path / str(cache)
        train(_config("clsr-ft", tiny_dirs, translated_manifest, out, keep_translate=1.0, scope="decoder", trim=True,
                      cache_encoder=cache, max_steps=4), progress=False)
        runs[cache] = _ce_curve(out)[2]
    for term in ("ce", "keep"):
        assert [r[term] for r in runs[True]] == pytest.approx([r[term] for r in runs[False]], rel=1e-5)
    assert all(r["keep"] > 0 for r in runs[True][1:])


def test_keep_translate_bad_input(tiny_dirs, manifest, tmp_path):
    with pytest.raises(ValueError, match="--keep-translate needs experts beside a frozen base .* not --method ft"):
        load_config(None, dict(method="ft", student="x", languages=["ca"], train="t", out="o", keep_translate=1.0))
    with pytest.raises(ValueError, match="--keep-translate is a loss weight, 0 .off. or positive, not -1"):
        load_config(None, dict(method="clsr-ft", student="x", languages=["ca"], train="t", out="o",
                               keep_translate=-1.0))
    with pytest.raises(ValueError, match="--keep-translate: no training utterance of .*m.jsonl has an English line"):
        train(_config("clsr-ft", tiny_dirs, manifest, tmp_path, keep_translate=1.0), progress=False)


def test_joined_lines_join_the_next_lines_of_one_language_inside_one_window(tmp_path):
    """Each joined item: a seeded line and the lines after it in the manifest, of its language, with pauses, under
    28 s; its audio is the parts and pauses end to end; the same seed gives the same items."""
    from distilwhisper.audio import SAMPLE_RATE
    from distilwhisper.data.manifest import Utterance
    from distilwhisper.train.data import PAUSE_SECONDS, joined_lines

    seconds = {"cs0": 2.0, "ca0": 1.0, "cs1": 3.0, "cs2": 10.0, "cs3": 20.0, "ca1": 1.5, "cs4": 2.0}
    lines = [Utterance(uid, str(write_wav(tmp_path / f"{uid}.wav", s)), f"line {uid}", uid[:2],
                       extra={"translation_en": f"en {uid}"} if uid != "cs4" else {})
             for uid, s in seconds.items()]
    items = joined_lines(lines, 1.0, seed=0)
    assert [item.id for item in items] == ["ca0+ca1", "cs0+cs1+cs2", "cs1+cs2", "cs3+cs4"]  # cs2 + cs3 > 28 s
    for item in items:
        assert len(item.pauses) == len(item.parts) - 1
        assert all(PAUSE_SECONDS[0] <= p <= PAUSE_SECONDS[1] for p in item.pauses)
        expected = sum(seconds[u.id] for u in item.parts) + sum(item.pauses)
        assert abs(len(item.load()) / SAMPLE_RATE - expected) < 2 / SAMPLE_RATE * len(item.parts) and expected < 28
    first = items[1]
    assert first.text == "line cs0 line cs1 line cs2" and first.language == "cs"
    assert first.metadata("translation_en") == "en cs0 en cs1 en cs2"
    assert items[3].metadata("translation_en") == ""  # cs4 has no English line: the item has none
    assert joined_lines(lines, 1.0, seed=0) == items and joined_lines(lines, 0.0, seed=0) == []
    assert len(joined_lines(lines, 0.5, seed=1)) <= 3


def test_joined_lines_train_with_both_caches_and_are_counted(tiny_dirs, manifest, tmp_path, monkeypatch):
    """Joined items go through the teacher cache (keyed by the joined id) and the encoder cache like any line, in
    batches of their own (beside single lines they would pad each clip to their length); the run's data.json counts
    them; a share outside [0, 1] is refused."""
    import distilwhisper.train.loop as loop

    batches, collate = [], loop.collate
    monkeypatch.setattr(loop, "collate", lambda items, pad: batches.append([it["id"] for it in items]) or
                        collate(items, pad))
    config = _config("distilwhisper", tiny_dirs, manifest, tmp_path / "run", joined_lines=1.0, trim=True,
                     cache_encoder=True, scope="decoder", teacher_cache=str(tmp_path / "tc"), max_steps=6)
    train(config, progress=False)
    assert any("+" in ids[0] for ids in batches)
    assert all(len({"+" in uid for uid in ids}) == 1 for ids in batches)  # joined and single lines never mixed
    assert json.loads((tmp_path / "run" / "data.json").read_text())["joined_items"] == 2  # ca0+ca1, cs0+cs1
    assert {p.stem for p in (tmp_path / "tc").glob("*+*.safetensors")} == {"ca0+ca1", "cs0+cs1"}
    with pytest.raises(ValueError, match="--joined-lines is a share"):
        _config("ft", tiny_dirs, manifest, tmp_path / "bad", joined_lines=1.5)
