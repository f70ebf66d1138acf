"""`distilwhisper demo --quick` end to end on the bundled model and the offline corpus, then `--compare` resuming
from it (only the baselines are trained and evaluated on top)."""

import json
import shutil
from pathlib import Path

import pytest

from distilwhisper.cli import main
from distilwhisper.results import read_results
from distilwhisper.runs import TrainedRun
from distilwhisper.train.model import weights_fingerprint
from distilwhisper.runs import model_or_run


@pytest.mark.slow
def test_quick_demo_runs_every_stage(quick_demo):
    out = quick_demo
    table = json.loads((out / "results.json").read_text())["table"]
    assert [row["system"] for row in table] == ["bundled:base fp32", "bundled:base int8", "DistilWhisper"]
    base, _, distil = table
    for name in ("in-domain", "out-of-domain", "held-out-characters", "control", "translate"):
        assert base[f"{name}_n"] > 0 and base[f"{name}_n"] == distil[f"{name}_n"]
    # Czech is real speech: it trains on Fish Fillets scenes and is tested on other scenes and other characters
    train = [json.loads(line) for line in (out / "corpus" / "train.jsonl").read_text().splitlines()]
    tests = [json.loads(line) for line in (out / "corpus" / "eval.jsonl").read_text().splitlines()]
    assert {r["source"] for r in train if r["language"] == "cs"} == {"fillets"}
    assert {r["level"] for r in train if r["language"] == "cs"}.isdisjoint(
        {r["level"] for r in tests if r.get("source") == "fillets" and r["domain"] == "in-domain"})
    assert {r["source"] for r in tests if r["language"] == "cs" and r["domain"] == "out-of-domain"} == {"synth"}
    assert base["translate_bleu"] >= 0 and "translate BLEU / chrF" in (out / "report.md").read_text()
    # control languages have no experts: they decode on the frozen shared FFNs, i.e. exactly the base model
    hyps = {r["id"]: r["hypothesis"] for r in read_results(out / "eval" / "base-fp32" / "results.jsonl")
            if r["domain"] == "control"}
    experts = read_results(out / "eval" / "distilwhisper-specialist" / "results.jsonl")
    assert hyps and all(hyps[r["id"]] == r["hypothesis"] for r in experts if r["id"] in hyps)
    assert distil["control_delta"] == 0
    # experts trained on transcription alone (--keep-translate 0, the default) leave the translate task to the
    # shared FFNs: the base model's English lines, word for word
    translated = {r["id"]: r["hypothesis"] for r in read_results(out / "eval" / "base-fp32" / "translate" /
                                                                  "results.jsonl")}
    served = read_results(out / "eval" / "distilwhisper-specialist" / "translate" / "results.jsonl")
    assert translated and {r["id"]: r["hypothesis"] for r in served} == translated
    assert distil["translate_delta"] == 0 and distil["translate_bleu"] == base["translate_bleu"]
    assert 0 < distil["trainable_m"] < distil["loaded_m"]
    # the default teacher is the specialist: the FT baseline, trained first on the same data
    assert json.loads((out / "train" / "distilwhisper-specialist" / "config.json").read_text())["teacher"] == \
        str(out / "train" / "ft")
    assert sorted(p.name for p in (out / "train" / "distilwhisper-specialist" / "best").glob("*.safetensors")) == \
        ["ca.safetensors", "cs.safetensors"]
    report = (out / "report.md").read_text()
    assert "| DistilWhisper |" in report and "## Changes against the base model" in report
    assert "| FT (specialist teacher: train) |" in report and "| total (this run" in report  # the teacher stage
    assert (out / "demo.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.long
def test_compare_resumes_the_quick_demo_and_adds_the_baselines(quick_demo, capsys):
    out = quick_demo
    before = (out / "eval" / "distilwhisper-specialist" / "results.jsonl").read_text()
    assert main(["demo", "--quick", "--compare", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for name in ("DistilWhisper", "DistilWhisper (self-teacher)", "CLSR-FT", "FT", "LoRA"):
        assert f"| {name} |" in printed
    assert (out / "eval" / "distilwhisper-specialist" / "results.jsonl").read_text() == before  # reused
    table = {row["system"]: row for row in json.loads((out / "results.json").read_text())["table"]}
    # every method trains the decoder only (--scope decoder): FT updates the decoder (with the tied embedding)
    assert 0 < table["LoRA"]["trainable_m"] < table["FT"]["trainable_m"] < table["bundled:base fp32"]["loaded_m"]
    assert table["LoRA"]["loaded_m"] == pytest.approx(table["FT"]["loaded_m"])  # adapters merged for inference
    assert table["CLSR-FT"]["control_delta"] == 0
    versus = json.loads((out / "results.json").read_text())["versus_distilwhisper"]
    assert [row["system"] for row in versus] == ["DistilWhisper", "DistilWhisper (self-teacher)", "CLSR-FT",
                                                 "FT", "LoRA"]
    # the self-taught DistilWhisper distils from the student itself, with its own teacher cache
    assert json.loads((out / "train" / "distilwhisper" / "config.json").read_text())["teacher"] == "bundled:base"
    caches = [json.loads((out / "teacher-cache" / key / "teacher.json").read_text())["fingerprint"]
              for key in ("distilwhisper", "distilwhisper-specialist")]
    # each cache is keyed by its teacher's weights: the student's, and what the FT run kept (which is the student
    # itself when no FT step beat the untrained start on dev, as 3 quick steps may not)
    teachers = [model_or_run(ref)[0] for ref in ("bundled:base", str(out / "train" / "ft"))]
    assert caches == [weights_fingerprint(t) for t in teachers]
    kept_ft = TrainedRun.open(out / "train" / "ft").state.best_step
    assert (caches[0] == caches[1]) == (kept_ft == 0)
    report = (out / "report.md").read_text()
    assert "## The baselines against DistilWhisper" in report and "- LoRA, control: WER" in report


@pytest.mark.slow
@pytest.mark.long  # it resumes the folder the comparison test (long too) filled: 7 systems
def test_a_moved_demo_folder_resumes_without_redoing_anything(quick_demo, tmp_path, monkeypatch):
    out = quick_demo
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    monkeypatch.chdir(tmp_path)  # and from another working directory
    results = {p: p.read_text() for p in (moved / "eval").glob("*/results.jsonl")}
    assert main(["demo", "--quick", "--compare", "--out", "moved"]) == 0
    assert len(results) == 7 and all(p.read_text() == text for p, text in results.items())


@pytest.mark.slow
def test_evaluations_of_weights_retrained_in_the_same_folder_are_redone(quick_demo, tmp_path, monkeypatch, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(quick_demo, copy)
    system = copy / "eval" / "distilwhisper-specialist"
    record = json.loads((system / "weights.json").read_text())
    model = TrainedRun.open(copy / "train" / "distilwhisper-specialist").load()[0]
    assert record == {"fingerprint": weights_fingerprint(model)}
    rows = (system / "results.jsonl").read_text().splitlines()
    stale = [json.dumps({**json.loads(row), "hypothesis": "STALE"}) for row in rows]
    (system / "results.jsonl").write_text("\n".join(stale) + "\n")
    (system / "weights.json").write_text(json.dumps({"fingerprint": "0" * 16}))  # as if best/ were retrained
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "--quick", "--out", "copy"]) == 0
    assert "the model's weights changed since these results were decoded" in capsys.readouterr().out
    redone = read_results(system / "results.jsonl")
    assert len(redone) == len(rows) and all(r["hypothesis"] != "STALE" for r in redone)
    assert json.loads((system / "weights.json").read_text()) == record
    base = copy / "eval" / "base-fp32" / "results.jsonl"
    assert base.read_text() == (quick_demo / "eval" / "base-fp32" / "results.jsonl").read_text()  # kept


def test_demo_names_a_target_language_without_voices(tmp_path, capsys):
    assert main(["demo", "--quick", "--languages", "zz", "--out", str(tmp_path / "d")]) == 2
    assert "zz" in capsys.readouterr().err


def test_demo_names_a_control_language_without_recordings(tmp_path, capsys):
    assert main(["demo", "--quick", "--control", "de", "--out", str(tmp_path / "d")]) == 2
    assert "no asterisk prompts for de" in capsys.readouterr().err


def test_demo_refuses_a_dropout_a_learning_rate_or_a_weight_out_of_range_before_any_work(tmp_path, capsys):
    assert main(["demo", "--quick", "--expert-dropout", "1.5", "--out", str(tmp_path / "d")]) == 2
    assert "--expert-dropout is a dropout probability in [0, 1), not 1.5" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
    for flag, value in (("--ft-lr", "-0.0003"), ("--lr", "-0.001")):
        assert main(["demo", "--quick", flag, value, "--out", str(tmp_path / "d")]) == 2
        assert f"{flag} must be 0 (no training) or a positive learning rate, not {float(value)}" \
            in capsys.readouterr().err
        assert not (tmp_path / "d").exists()
    assert main(["demo", "--quick", "--keep-translate", "-1", "--out", str(tmp_path / "d")]) == 2
    assert "--keep-translate is a loss weight, 0 (off) or positive, not -1.0" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_a_folder_built_from_another_corpus_is_refused_before_anything_changes(tmp_path, capsys):
    """Trained runs and results are reused by path: rebuilding the corpus under them would mix two corpora."""
    from pathlib import Path

    from distilwhisper.studies.demo import DemoConfig
    from distilwhisper.studies.demo_corpus import build_corpus

    out = tmp_path / "d"
    corpus = build_corpus(DemoConfig.make(quick=True, out=str(out)), out)
    assert build_corpus(DemoConfig.make(quick=True, out=str(out)), out) == corpus  # the same settings: reused

    def files() -> dict:  # but the folder's lock, which a run claims it with
        return {p: p.read_bytes() for p in Path(out).rglob("*") if p.is_file() and p.name != ".lock"}

    before = files()
    assert main(["demo", "--quick", "--per-language", "11", "--out", str(out)]) == 2
    assert "holds a demo built from another corpus (per-language: 10, now 11)" in capsys.readouterr().err
    assert files() == before


def test_the_specialist_teacher_trains_first_and_other_settings_are_refused(tmp_path):
    from distilwhisper.studies.demo import DemoConfig, planned_runs
    from distilwhisper.studies.experiments import train_system

    config = DemoConfig.make(quick=True, out=str(tmp_path))  # the default teacher: the specialist
    trained, shown = planned_runs(config)
    assert [(p.key, p.teacher) for p in trained] == [("ft", None), ("distilwhisper-specialist", "specialist")]
    assert [p.name for p in shown] == ["DistilWhisper"]  # the specialist itself is a row under --compare only
    trained, shown = planned_runs(DemoConfig.make(quick=True, compare=True))
    assert [p.key for p in trained] == ["ft", "distilwhisper-specialist", "distilwhisper", "clsr-ft", "lora"]
    assert [p.name for p in shown] == ["DistilWhisper", "DistilWhisper (self-teacher)", "CLSR-FT", "FT", "LoRA"]
    trained, shown = planned_runs(DemoConfig.make(quick=True, teacher="bundled:base"))
    assert [(p.key, p.teacher) for p in trained] == [("distilwhisper", "bundled:base")]  # no FT stage
    trained, shown = planned_runs(DemoConfig.make(quick=True, compare=True, teacher="bundled:base"))
    assert [p.name for p in shown] == ["DistilWhisper", "DistilWhisper (specialist teacher)", "CLSR-FT", "FT",
                                       "LoRA"]
    run = tmp_path / "train" / "ft"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"method": "ft", "lr": 0.5, "max_steps": 3}))
    with pytest.raises(ValueError, match="other settings.*lr: 0.5"):
        train_system(planned_runs(config)[0][0], config, tmp_path / "train.jsonl", tmp_path)


@pytest.mark.parametrize("flags, bf16", [({"avx2", "avx512_bf16"}, True), ({"avx2", "amx_bf16"}, True),
                                         ({"avx2", "avx512f"}, False)])
def test_training_precision_follows_the_cpu_flags(flags, bf16, monkeypatch, tmp_path):
    """auto trains in bf16 only where the CPU has bf16 units (emulated bf16 is several times slower); an explicit
    choice wins; the run's TrainConfig carries the resolved choice."""
    from distilwhisper import quantize
    from distilwhisper.studies.demo import DemoConfig
    from distilwhisper.studies.experiments import Planned, train_system

    monkeypatch.setattr(quantize, "_cpu_flags", lambda: flags)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert DemoConfig().bf16 is bf16
    named = "AVX512-BF16" if "avx512_bf16" in flags else "AMX" if bf16 else "none"
    assert quantize.cpu_name().endswith(f", bf16 units: {named})")  # what a measured run names its machine by
    assert DemoConfig(train_precision="fp32").bf16 is False and DemoConfig(train_precision="bf16").bf16 is True
    settings = []
    monkeypatch.setattr("distilwhisper.studies.experiments.train", lambda config, resume, encodings: settings.append(config))
    monkeypatch.setattr("distilwhisper.studies.experiments.TrainedRun.open", lambda run: None)
    train_system(Planned("distilwhisper", "distilwhisper", "DistilWhisper", "bundled:base"), DemoConfig(),
                 tmp_path / "train.jsonl", tmp_path)
    assert settings[0].bf16 is bf16 and settings[0].expert_dropout == 0.3


def test_each_method_trains_at_its_own_rate_times_the_grid_factor(monkeypatch, tmp_path):
    """FT (the specialist teacher) has its own rate, not a fixed share of the experts' (their dev-best rates are
    chosen apart, benchmarks/method_quality.py); a grid point scales the method's rate."""
    from distilwhisper.studies.demo import DemoConfig
    from distilwhisper.studies.experiments import Planned, train_system

    settings = []
    monkeypatch.setattr("distilwhisper.studies.experiments.train", lambda config, resume, encodings: settings.append(config))
    monkeypatch.setattr("distilwhisper.studies.experiments.TrainedRun.open", lambda run: None)
    config = DemoConfig(lr=2e-3, ft_lr=5e-5, out=str(tmp_path))
    for key, factor in (("ft", 1.0), ("lora", 1.0), ("clsr-ft", 0.5), ("ft", 3.0)):
        train_system(Planned(f"{key}-{factor}", key, key, None, factor), config, tmp_path / "train.jsonl", tmp_path)
    assert [s.lr for s in settings] == pytest.approx([5e-5, 2e-3, 1e-3, 1.5e-4])


def test_the_comparison_reports_a_scene_bootstrap_beside_the_utterance_one(tmp_path):
    """Sets of scene lines (a `level` column) get the interval of the bootstrap over whole scenes beside the one
    over utterances; a set without scenes (synthetic sentences) gets the utterance one only."""
    from distilwhisper.io import append_jsonl
    from distilwhisper.studies.comparison import changes_markdown, language_markdown, language_table, results_table
    from distilwhisper.studies.experiments import System

    systems = [System("base", "base", tmp_path / "base"), System("trained", "ft", tmp_path / "trained")]
    for k, system in enumerate(systems):
        system.directory.mkdir()
        rows = [{"id": f"cs{scene}-{line}", "language": "cs", "domain": "in-domain", "level": f"scene{scene}",
                 "word_errors": 4 - k * (2 if scene % 2 else 0), "words": 10, "char_errors": 0, "chars": 40,
                 "decode_seconds": 0.1} for scene in range(6) for line in range(5)]
        rows += [{"id": f"ca{i}", "language": "ca", "domain": "out-of-domain", "word_errors": 3 - k, "words": 10,
                  "char_errors": 0, "chars": 40, "decode_seconds": 0.1} for i in range(8)]
        with (system.directory / "results.jsonl").open("w") as f:
            append_jsonl(f, rows)
    table = results_table(systems)
    trained = table[1]
    assert trained["in-domain_scenes"] == 6 and trained["out-of-domain_scenes"] == 0
    assert trained["in-domain_scene_high"] - trained["in-domain_scene_low"] > (
        trained["in-domain_delta_high"] - trained["in-domain_delta_low"])
    cells = "\n".join(changes_markdown(table))
    assert "by scene (6 clusters)" in cells and cells.count("by scene") == 2  # in-domain of both rows only
    per_language = {(r["system"], r["language"]): r for r in language_table(systems)}
    assert per_language["trained", "cs"]["scenes"] == 6 and per_language["trained", "ca"]["scenes"] == 0
    assert per_language["trained", "ca"]["delta"] == pytest.approx(-10.0)  # 3 -> 2 errors in 10 words
    assert "by scene (6)" in "\n".join(language_markdown(language_table(systems)))


def test_the_confirmation_set_is_recorded_and_the_demo_never_decodes_it():
    """The reserved real-Czech lines are the recorded ones, and no set of the demo's default corpus (train, dev, the
    in-domain and translate tests) holds any of them."""
    from distilwhisper.studies.demo import DemoConfig
    from distilwhisper.studies.demo_corpus import real_speech_sets, reserved

    recorded = json.loads((Path(__file__).parents[1] / "benchmarks" / "records" / "confirmation" / "cs.json")
                          .read_text())
    config = DemoConfig()
    ids = [u.id for u in reserved("cs", config)]
    assert ids == recorded["ids"] and len(ids) == recorded["lines"] > 100
    used = {u.id for part in real_speech_sets("cs", config, config.seed) for u in part}
    assert used and not used & set(ids)
