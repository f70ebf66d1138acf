"""benchmarks/synthetic_to_real.py, method_quality.py, gate_budget.py and keep_translate.py at --quick sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from distilwhisper.quantize import cpu_name

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "synthetic_to_real.py"


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.long
def test_synthetic_to_real_trains_each_condition_on_its_speech(tmp_path):
    out = tmp_path / "s2r"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "2", "--conditions",
                           "synthetic,synthetic-real-dev,synthetic-sox,synthetic-voices,synthetic-base-teacher",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    corpus = out / "corpus"
    synthetic, real = _rows(corpus / "train-synthetic.jsonl"), _rows(corpus / "train-real.jsonl")
    assert {(r["language"], r["source"]) for r in synthetic} == {("cs", "synth")}
    assert {(r["language"], r["source"]) for r in real} == {("cs", "fillets")}
    assert {r["split"] for r in synthetic} == {r["split"] for r in real} == {"train", "dev"}
    both = _rows(corpus / "train-both.jsonl")
    assert sorted(r["id"] for r in both) == sorted(r["id"] for r in synthetic + real)
    real_dev = _rows(corpus / "train-synthetic-real-dev.jsonl")
    assert {(r["source"], r["split"]) for r in real_dev} == {("synth", "train"), ("fillets", "dev")}
    # the synthetic test lines of the training voices are tested, and never trained on
    tests = _rows(corpus / "eval-transfer.jsonl")
    heard = {r["text"] for r in tests if r["domain"] == "synthetic-in-domain"}
    assert heard and heard.isdisjoint(r["text"] for r in synthetic)
    # sox: the same sentences and voices under other acoustics, own ids; dev stays the clean synthetic lines
    sox = _rows(corpus / "train-synthetic-sox.jsonl")
    sox_train = [r for r in sox if r["split"] == "train"]
    clean_train = {r["id"]: r for r in synthetic if r["split"] == "train"}
    assert sorted(r["id"] for r in sox_train) == sorted(f"{i}-sox" for i in clean_train)
    assert all(r["text"] == clean_train[r["id"][:-4]]["text"] and "synth-sox" in r["audio"] for r in sox_train)
    assert len({r["condition"] for r in sox_train}) > 1
    stretched = next(r for r in sox_train if r["condition"] == "speed:1.1")
    assert sf.info(stretched["audio"]).duration < sf.info(clean_train[stretched["id"][:-4]]["audio"]).duration
    assert [r for r in sox if r["split"] == "dev"] == [r for r in synthetic if r["split"] == "dev"]
    # more voices: the same training sentences, more speakers, none of them an out-of-domain test voice
    voiced = [r for r in _rows(corpus / "train-synthetic-voices.jsonl") if r["split"] == "train"]
    assert sorted((r["id"], r["text"]) for r in voiced) == sorted((f"{i}-voices", r["text"])
                                                                  for i, r in clean_train.items())
    unheard = {r["speaker"] for r in tests if r["domain"] == "out-of-domain" and r["language"] == "cs"}
    assert len({r["speaker"] for r in voiced}) > len({r["speaker"] for r in clean_train.values()})
    assert unheard and unheard.isdisjoint(r["speaker"] for r in voiced)
    # the base model as the teacher: DistilWhisper only, distilled from the student itself
    taught = out / "synthetic-base-teacher" / "train"
    assert [p.name for p in taught.iterdir()] == ["distilwhisper"]
    assert json.loads((taught / "distilwhisper" / "config.json").read_text())["teacher"] == "bundled:base"
    report = json.loads((out / "synthetic_to_real.json").read_text())
    table = report["table"]
    assert [r["system"] for r in table] == ["bundled:base fp32", "FT (synthetic)", "DistilWhisper (synthetic)",
                                            "FT (synthetic-real-dev)",
                                            "DistilWhisper (synthetic-real-dev)", "FT (synthetic-sox)",
                                            "DistilWhisper (synthetic-sox)", "FT (synthetic-voices)",
                                            "DistilWhisper (synthetic-voices)", "DistilWhisper (synthetic-base-teacher)"]
    for row in table:
        assert row["in-domain_n"] > 0 and row["synthetic-in-domain_n"] > 0 and row["translate_n"] > 0
    assert all(row["control_delta"] == 0 for row in table if row["system"].startswith("DistilWhisper"))
    # DistilWhisper distils from its condition's FT run (the specialist), on that condition's speech
    folder = out / "synthetic-real-dev" / "train"
    config = json.loads((folder / "distilwhisper-specialist" / "config.json").read_text())
    assert config["teacher"] == str(folder / "ft") and config["train"].endswith("train-synthetic-real-dev.jsonl")
    assert "| DistilWhisper (synthetic-real-dev) |" in proc.stdout and (out / "synthetic_to_real.md").is_file()
    # every other condition against the same method under `synthetic`, on the same lines: the difference of WERs
    wer = {r["system"]: r["in-domain_wer"] for r in table}
    versus = report["versus_synthetic"]
    assert [r["system"] for r in versus] == [r["system"] for r in table[3:]]
    for row in versus:
        reference = ("FT" if row["system"].startswith("FT") else "DistilWhisper") + " (synthetic)"
        assert row["in-domain_delta"] == pytest.approx(wer[row["system"]] - wer[reference])
    assert "Change against the same method trained under `synthetic`:" in proc.stdout


def _method_quality(out: Path, record: Path, *flags: str) -> subprocess.CompletedProcess:
    script = SCRIPT.parent / "method_quality.py"
    return subprocess.run([sys.executable, str(script), "--quick", "--threads", "2", "--lr-factors", "1,3",
                           "--eval-every", "1", "--patience", "1", "--out", str(out), "--record", str(record),
                           *flags], capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
@pytest.mark.long
def test_method_quality_chooses_each_methods_lr_on_dev_and_tests_only_that(tmp_path):
    out, record = tmp_path / "mq", tmp_path / "record"
    proc = _method_quality(out, record, "--methods", "ft")  # a first session: FT's grid only
    assert proc.returncode == 0, proc.stderr[-3000:]
    ft_lr = json.loads((out / "method_quality.json").read_text())["grid"]["ft"]["chosen_lr"]
    assert "Against bundled:base fp32" in proc.stdout  # FT against the base model, paired bootstrap
    assert "Against DistilWhisper" not in proc.stdout  # no headline DistilWhisper to compare it with yet
    # a later session, its output folder new: FT comes from the record, its chosen run retrained as the teacher
    out = tmp_path / "mq-2"
    proc = _method_quality(out, record, "--methods", "ft,distilwhisper-specialist")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "differs from its record" not in proc.stdout  # the retrained teacher is the recorded run
    assert [p.name for p in (out / "train" / "ft").iterdir()] == [f"lr-{ft_lr:g}"]
    result = json.loads((out / "method_quality.json").read_text())
    for key, lrs in (("ft", ["0.0001", "0.0003"]), ("distilwhisper-specialist", ["0.001", "0.003"])):
        grid = result["grid"][key]
        assert sorted(grid["lrs"]) == lrs
        best = min(grid["lrs"].values())
        assert grid["lrs"][f"{grid['chosen_lr']:g}"] == best  # the lowest kept dev WER is chosen
        for lr in lrs:  # every run stopped on dev or at the cap
            state = json.loads((record / key / f"lr-{lr}" / "checkpoint" / "state.json").read_text())
            stale = sum(int(s) > state["best_step"] for s in state["dev_counts"])
            assert state["step"] == 3 or stale >= 1
    # the specialist-taught experts distil from FT at its chosen rate; the record says where each run trained
    teacher = json.loads((out / "train" / "distilwhisper-specialist" / "lr-0.001" / "config.json").read_text())
    assert teacher["teacher"] == str(out / "train" / "ft" / f"lr-{ft_lr:g}")
    about = json.loads((record / "distilwhisper-specialist" / "lr-0.001" / "about.json").read_text())
    assert about["teacher_kept_dev_wer"] == result["grid"]["ft"]["lrs"][f"{ft_lr:g}"]
    assert about["machine"].startswith(cpu_name()) and about["machine"] in proc.stdout
    # the test sets are decoded once per method: only its chosen run, not the other grid points, not FT again
    assert sorted(p.name for p in (out / "eval").iterdir()) == ["base-fp32", "distilwhisper-specialist"]
    assert sorted(p.name for p in record.iterdir()) == ["base", "distilwhisper-specialist", "ft", "settings.json"]
    def decoded(path: Path) -> list[tuple[str, str]]:
        return [(row["id"], row["hypothesis"]) for row in map(json.loads, path.read_text().splitlines())]

    assert decoded(record / "base" / "eval" / "results.jsonl") == decoded(out / "eval" / "base-fp32" /
                                                                          "results.jsonl")  # recorded once
    assert [r["system"] for r in result["table"]] == ["bundled:base fp32", "DistilWhisper", "FT"]
    assert "kept dev WER per lr" in proc.stdout and "Against DistilWhisper" in proc.stdout
    assert "| DistilWhisper | cs |" in proc.stdout  # the size of each language's expert file
    assert (out / "gain_vs_control.png").stat().st_size > 0 and (out / "dev_curves.png").stat().st_size > 0
    state = json.loads((record / "ft" / "lr-0.0001" / "checkpoint" / "state.json").read_text())
    counts = state["dev_counts"]["0"]  # the untrained start: the curve's first point, pooled over languages
    pooled = 100 * sum(c[0] for c in counts.values()) / sum(c[1] for c in counts.values())
    ft_about = json.loads((record / "ft" / "lr-0.0001" / "about.json").read_text())
    assert (f"- FT, lr 0.0001{' (chosen)' if ft_lr == 1e-4 else ''} ({ft_about['machine']}): 0 {pooled:.1f}"
            in proc.stdout)
    # everything recorded: a third output folder trains and decodes nothing but the base model, same table
    third = _method_quality(tmp_path / "mq-3", record, "--methods", "ft,distilwhisper-specialist")
    assert third.returncode == 0, third.stderr[-3000:]
    assert not (tmp_path / "mq-3" / "train").exists()
    def scores(table: list[dict]) -> list[dict]:  # all but the decoding speed of the base model, decoded again
        return [{k: v for k, v in row.items() if k != "s_per_utt"} for row in table]

    assert scores(json.loads((tmp_path / "mq-3" / "method_quality.json").read_text())["table"]) == scores(
        result["table"])
    # another training seed: each method's chosen rate only, the specialist retrained at that seed as its teacher
    dw_lr = result["grid"]["distilwhisper-specialist"]["chosen_lr"]
    seeded = _method_quality(tmp_path / "mq-6", record, "--methods", "ft,distilwhisper-specialist", "--seeds", "1")
    assert seeded.returncode == 0, seeded.stderr[-3000:]
    assert [p.name for p in (tmp_path / "mq-6" / "train" / "ft").iterdir()] == ["seed-1"]
    assert sorted(p.name for p in (record / "ft" / "seed-1").iterdir()) == ["eval", f"lr-{ft_lr:g}", "system.json"]
    seed_run = json.loads((record / "ft" / "seed-1" / f"lr-{ft_lr:g}" / "config.json").read_text())
    assert seed_run["seed"] == 1 and seed_run["lr"] == ft_lr
    taught = json.loads((tmp_path / "mq-6" / "train" / "distilwhisper-specialist" / "seed-1" / f"lr-{dw_lr:g}"
                         / "config.json").read_text())
    assert taught["seed"] == 1 and taught["teacher"] == str(tmp_path / "mq-6" / "train" / "ft" / "seed-1" /
                                                             f"lr-{ft_lr:g}")
    assert "Across training seeds 0,1" in seeded.stdout and "| FT | in-domain | cs |" in seeded.stdout
    again = _method_quality(tmp_path / "mq-7", record, "--methods", "ft,distilwhisper-specialist", "--seeds", "0,1")
    assert again.returncode == 0 and not (tmp_path / "mq-7" / "train").exists()  # every seed recorded
    # the reserved confirmation lines: decoded once by the base model and each chosen run at every seed (the runs
    # trained again where this --out lacks them), recorded, then reprinted from the record alone
    confirmed = _method_quality(tmp_path / "mq-10", record, "--methods", "ft,distilwhisper-specialist", "--seeds",
                                "0,1", "--confirm")
    assert confirmed.returncode == 0, confirmed.stderr[-3000:]
    for folder in (record / "base", record / "ft", record / "distilwhisper-specialist" / "seed-1"):
        rows = _rows(folder / "confirmation" / "results.jsonl")
        assert len(rows) == 3 and {(r["domain"], r["language"]) for r in rows} == {("in-domain", "cs")}
    test_ids = {r["id"] for r in _rows(record / "base" / "eval" / "results.jsonl")}
    assert not test_ids & {r["id"] for r in _rows(record / "base" / "confirmation" / "results.jsonl")}
    assert "The reserved confirmation lines" in confirmed.stdout
    def confirmation_table(text: str) -> str:
        return text[text.index("The reserved confirmation lines"):text.index("Learning rates")]

    assert "| DistilWhisper | in-domain | cs | real |" in confirmation_table(confirmed.stdout)
    reprinted = _method_quality(tmp_path / "mq-11", record, "--methods", "ft,distilwhisper-specialist", "--seeds",
                                "0,1", "--confirm", "--from-record")
    assert reprinted.returncode == 0, reprinted.stderr[-3000:]
    assert confirmation_table(reprinted.stdout) == confirmation_table(confirmed.stdout)
    # the record alone reprints it: no corpus built, nothing decoded, the same seed table; what it lacks is named
    printed = _method_quality(tmp_path / "mq-8", record, "--methods", "ft,distilwhisper-specialist", "--seeds", "0,1",
                              "--from-record")
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert sorted(p.name for p in (tmp_path / "mq-8").glob("[!.]*")) == ["dev_curves.png", "gain_vs_control.png",
                                                                      "method_quality.json", "method_quality.md"]
    def seed_table(text: str) -> str:
        return text[text.index("Across training seeds"):text.index("Learning rates")]

    assert seed_table(printed.stdout) == seed_table(again.stdout) and "printed from the record" in printed.stdout
    lacking = _method_quality(tmp_path / "mq-9", record, "--methods", "ft", "--seeds", "0,2", "--from-record")
    assert lacking.returncode != 0 and f"no record of ft at lr {ft_lr:g}, training seed 2" in lacking.stderr
    # recorded runs taught by another teacher than FT's chosen run are refused before anything trains
    config = record / "distilwhisper-specialist" / "lr-0.001" / "config.json"
    taught = json.loads(config.read_text())
    other_lr = next(lr for lr in ("0.0001", "0.0003") if float(lr) != ft_lr)
    config.write_text(json.dumps({**taught, "teacher": str(Path(taught["teacher"]).with_name(f"lr-{other_lr}"))}))
    refused = _method_quality(tmp_path / "mq-5", record, "--methods", "ft,distilwhisper-specialist")
    assert refused.returncode != 0 and f"recorded runs taught by train/ft/lr-{other_lr}, now train/ft/lr-{ft_lr:g}" \
        in refused.stderr and not (tmp_path / "mq-5" / "train").exists()
    # a record of other settings is refused, naming what differs
    other = _method_quality(tmp_path / "mq-4", record, "--methods", "ft", "--steps", "4")
    assert other.returncode != 0 and "records runs of other settings (steps: 3, now 4)" in other.stderr


@pytest.mark.slow
@pytest.mark.long
def test_gate_budget_trains_each_budget_with_its_term_and_compares_on_dev(tmp_path):
    out = tmp_path / "gates"
    script = SCRIPT.parent / "gate_budget.py"
    proc = subprocess.run([sys.executable, str(script), "--quick", "--threads", "2", "--budgets", "0.5:1,0.9:0",
                           "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "gate_budget.json").read_text())
    assert list(result["results"]) == ["target 0.5, weight 1 (paper)", "no budget term"]
    assert result["chosen"] == min(result["results"], key=lambda k: result["results"][k]["dev_wer"])
    for key, weight in (("distilwhisper-specialist", 1.0), ("distilwhisper-specialist-gate-0.9-w0", 0.0)):
        config = json.loads((out / "train" / key / "config.json").read_text())
        assert config["gate_weight"] == weight and config["teacher"] == str(out / "train" / "ft")
        logged = [json.loads(line) for line in (out / "train" / key / "metrics.jsonl").read_text().splitlines()]
        assert all((r["gate"] == 0.0) == (weight == 0.0) for r in logged[1:])  # step 1: gates start at 0.5
    assert sorted(p.name for p in (out / "train").iterdir()) == [
        "distilwhisper-specialist", "distilwhisper-specialist-gate-0.9-w0", "ft"]
    assert not (out / "eval").exists()  # dev only: no test set decoded
    assert "| no budget term" in proc.stdout and "dev tokens to experts" in proc.stdout


@pytest.mark.parametrize("budgets, named", [("0.5:1,x", "'x'"), ("0.5", "'0.5'"), ("0.5:1:2", "'0.5:1:2'")])
def test_gate_budget_names_a_budget_it_cannot_read(budgets, named, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "gate_budget.py"), "--budgets", budgets, "--out",
                           str(tmp_path / "g")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"--budgets: {named} is not target:weight" in proc.stderr
    assert not (tmp_path / "g").exists()  # refused before any work


@pytest.mark.parametrize("flag, value", [("--conditions", "synthetic,loud"), ("--baselines", "lora,prompting")])
def test_synthetic_to_real_names_an_unknown_condition_or_baseline(flag, value, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), flag, value, "--out", str(tmp_path / "s")],
                          capture_output=True, text=True, timeout=120)
    unknown = value.split(",")[1]
    assert proc.returncode == 2 and f"{flag}: unknown {unknown} (known: " in proc.stderr
    assert not (tmp_path / "s").exists()  # refused before any work


@pytest.mark.slow
@pytest.mark.long
def test_keep_translate_trains_each_weight_and_scores_the_dev_translations(tmp_path):
    out = tmp_path / "keep"
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "keep_translate.py"), "--quick", "--threads", "2",
                           "--weights", "0,1", "--out", str(out)], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "keep-translate" / "keep_translate.json").read_text())
    assert list(result["results"]) == ["0", "1"]
    served = {k: r["translate"]["served"] for k, r in result["results"].items()}
    keeping = [k for k, r in served.items() if r["chrf"] >= result["base"]["chrf"]]
    assert result["chosen"] == min(keeping, key=lambda k: result["results"][k]["dev_wer"])
    # experts trained without the term serve translation on the shared FFNs: the base model's BLEU/chrF exactly
    assert served["0"] == result["base"] and "0" in keeping
    assert result["results"]["1"]["translate"]["experts"] == served["1"]  # trained for it: served by the experts
    base_lines = (out / "keep-translate" / "base" / "results.jsonl").read_text().splitlines()
    # the demo's default weight (0) is the demo's own run, reused from a demo folder
    for key, weight in (("distilwhisper-specialist", 0.0), ("distilwhisper-specialist-keep-translate-1", 1.0)):
        config = json.loads((out / "train" / key / "config.json").read_text())
        assert config["keep_translate"] == weight and config["teacher"] == str(out / "train" / "ft")
        logged = [json.loads(line) for line in (out / "train" / key / "metrics.jsonl").read_text().splitlines()]
        assert any("keep" in r for r in logged) == bool(weight)  # Czech batches carry translate rows
        scored = (out / "keep-translate" / key / "results.jsonl").read_text().splitlines()
        assert len(scored) == result["base"]["n"] == 2  # the quick corpus's Czech dev lines
    shared = (out / "keep-translate" / "distilwhisper-specialist" / "served" / "results.jsonl").read_text()
    hypotheses = [[json.loads(r)["hypothesis"] for r in lines] for lines in (shared.splitlines(), base_lines)]
    assert hypotheses[0] == hypotheses[1]
    assert not (out / "keep-translate" / "distilwhisper-specialist-keep-translate-1" / "served").exists()
    assert not (out / "eval").exists()  # dev only: no test set decoded
    assert "| base model" in proc.stdout and "dev translate BLEU / chrF: experts" in proc.stdout


@pytest.mark.parametrize("weights, named", [("0,x", "'x' is not a number"), ("0,-1", "'-1' is not a loss weight")])
def test_keep_translate_names_a_weight_it_cannot_use(weights, named, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "keep_translate.py"), "--weights", weights, "--out",
                           str(tmp_path / "k")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and f"--weights: {named}" in proc.stderr
    assert not (tmp_path / "k").exists()  # refused before any work


def test_scope_compare_prints_the_recorded_runs_and_refuses_swapped_records(tmp_path):
    """The scope comparison reads both records (each scope's rate grid and chosen run: kept dev WER per language,
    seconds per step; paired test changes) and refuses a record of the other scope."""
    records = SCRIPT.parent / "records"
    args = [sys.executable, str(SCRIPT.parent / "scope_compare.py"), "--decoder",
            str(records / "method_quality_300steps"), "--all", str(records / "method_quality_300steps_all")]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    # the grid, the rate it chose, that run's dev WERs, the grid's fastest seconds per step
    assert ("| ft | decoder | 3e-05: 52.5, 0.0001: 44.0, 0.0003: 43.8 | 0.0003 | ca 35.1 / cs 52.8 / pooled 43.8 | "
            "1.61 | 300 | 8.0 |") in proc.stdout
    assert ("| distilwhisper-specialist | decoder | 0.0003: 60.9, 0.001: 60.6, 0.003: 61.9 | 0.001 | ca 57.4 / "
            "cs 64.1 / pooled 60.6 |") in proc.stdout
    assert "| ft | all | " in proc.stdout and "0.0003: 36.6" in proc.stdout
    assert "| distilwhisper-specialist | control | en | recorded | 4.3 | 4.3 | 4.3 | +0.0" in proc.stdout
    swapped = subprocess.run([*args[:2], "--decoder", args[5], "--all", args[3]], capture_output=True, text=True)
    assert swapped.returncode != 0 and "not a --scope decoder record" in swapped.stderr
    unrecorded = subprocess.run([*args, "--methods", "lora"], capture_output=True, text=True)
    assert unrecorded.returncode == 2 and "no run of lora" in unrecorded.stderr and "Traceback" not in unrecorded.stderr


def test_method_quality_records_which_rate_its_test_decodes_are_of(tmp_path, monkeypatch):
    """A recorded test row names the rate it decoded: asked for the chosen rate of a grid that grew and chose
    another, the record has no row (so the new choice is decoded), and a row of the same rate is found whatever
    float arithmetic gave the rate (1e-4 x 3 is 0.00030000000000000003)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    from method_quality import Record

    from distilwhisper.studies.experiments import System

    decodes = tmp_path / "decodes"
    decodes.mkdir()
    (decodes / "results.jsonl").write_text('{"id": "a"}\n')
    record = Record(tmp_path / "record", {"steps": 3, "bf16": False})
    record.keep_system("ft", System("FT", "ft", decodes), {}, 3e-4)
    assert record.system("ft", 0, 1e-4 * 3) is not None
    assert record.system("ft", 0, 9e-4) is None
    assert record.system("ft") is not None  # read without asking for a rate
    assert (tmp_path / "record" / "ft" / "eval" / "results.jsonl").read_text() == '{"id": "a"}\n'


@pytest.mark.parametrize("flags, named", [
    (["--per-recording", "2"], "--per-recording: at least 3 clips"),
    (["--recordings", "0"], "--recordings: at least 1"),
    (["--languages", "cs,xx"], "--languages: unknown xx (known: cs, en"),
    (["--languages", "cs", "--recordings", "9"], "cs: its 48 clips of this split fill 8 recordings, not 9"),
])
def test_vad_benchmark_refuses_recordings_it_cannot_make(flags, named, tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT.parent / "vad.py"), *flags], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert proc.returncode == 2 and named in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "bench-out").exists()  # refused before any audio was written
