"""Real processes killed with SIGKILL, then the same command run again, for every long job: nothing is lost or
duplicated, and the result equals an uninterrupted run's (tiny random models, generated clips).

Each job runs as a chain: the command is started and killed at one point, started again (it resumes) and killed at
the next, ..., then run to the end and compared with an uninterrupted run.  Points are either watched from outside
(`rows`: once a file holds N lines; `files`: once a folder holds N files) or hit from inside a write
(`tests/kill_inside.py`: halfway through an append, inside an atomic file write, inside a folder swap, halfway
through a safetensors file); every kill must land (the process dies by SIGKILL), so no point is skipped silently.
`KILL_POINTS` counts them for docs/results.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import WhisperConfig, WhisperForConditionalGeneration

from distilwhisper.io import read_jsonl
from distilwhisper.studies.bias import slug
from distilwhisper.runs import TrainedRun
from conftest import tiny_on_disk

CLI = [sys.executable, "-m", "distilwhisper.cli"]
KILLER = [sys.executable, str(Path(__file__).with_name("kill_inside.py"))]
ENV = dict(os.environ, OMP_NUM_THREADS="1")

EVAL_KILLS = [("rows", "results.jsonl", 2), ("append", 2), ("atomic:results.jsonl", 1), ("rows", "results.jsonl", 8),
              ("atomic:summary.json", 1)]
BIAS_KILLS = [("rows", "evals/{model}/fp32/results.jsonl", 3), ("append", 3), ("atomic:summary.json", 1),
              ("atomic:runs.json", 1), ("atomic:languages.csv", 1), ("atomic:report.md", 1)]
# with checkpoints at steps 2, 4, 6, 8 and dev evaluations at 0, 4, 8: best/ swapped in at step 0; the first checkpoint
# torn; killed after it; a swap left undone; a torn metrics row; a swap torn between its renames; checkpoint state
TRAIN_KILLS = [("swap-between", 1), ("tensors:trainable.safetensors", 1), ("rows", "metrics.jsonl", 3),
               ("swap-before", 1), ("append", 1), ("swap-between", 2), ("atomic:state.json", 1)]
# the other methods: a shorter chain that still resumes from a checkpoint, from a torn swap and from a torn row
METHOD_KILLS = [("rows", "metrics.jsonl", 3), ("swap-between", 2), ("append", 2)]
TRAIN_METHODS = {"clsr-ft": TRAIN_KILLS, "distilwhisper": METHOD_KILLS, "ft": METHOD_KILLS, "lora": METHOD_KILLS}
SYNTH_KILLS = [("files", "audio/cs", 2), ("atomic:*.wav", 2), ("atomic:manifest.jsonl", 1)]
DEMO_KILLS = [("atomic:*.wav", 3), ("rows", "eval/base-fp32/results.jsonl", 2), ("rows", "train/ft/metrics.jsonl", 1),
              ("rows", "train/distilwhisper-specialist/metrics.jsonl", 1), ("swap-between", 1),
              ("rows", "eval/distilwhisper-specialist/results.jsonl", 2), ("atomic:report.md", 1)]
KILL_POINTS = (len(EVAL_KILLS) + len(BIAS_KILLS) + sum(map(len, TRAIN_METHODS.values())) + len(SYNTH_KILLS)
               + len(DEMO_KILLS))


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    tiny_on_disk(tiny, root, 6)
    model, processor = tiny
    torch.manual_seed(1)  # a teacher that differs from the student
    teacher = WhisperForConditionalGeneration(WhisperConfig(**model.config.to_dict()))
    teacher.generation_config = model.generation_config
    teacher.save_pretrained(root / "teacher")
    processor.save_pretrained(root / "teacher")
    return root


def _count(path: Path) -> int:
    if path.is_dir():
        return sum(1 for p in path.iterdir() if not p.name.startswith("."))
    return len(path.read_bytes().splitlines()) if path.exists() else 0


def _kill_when(cmd: list[str], watched: Path, count: int, limit: float = 600, env: dict = ENV) -> bool:
    """Start `cmd`, SIGKILL it once `watched` holds at least `count` lines (a file) or files (a folder); whether
    the kill landed before the command ended by itself."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if _count(watched) >= count:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    return proc.wait(timeout=60) == -signal.SIGKILL


def _chain(args: list[str], out: Path, kills: list[tuple], after_each=None, env: dict = ENV) -> None:
    """Run `args` killed at each point in turn (each rerun resumes), then to the end."""
    for kill in kills:
        if kill[0] in ("rows", "files"):
            landed = _kill_when([*CLI, *args], out / kill[1], kill[2], env=env)
        else:
            point, nth = kill
            landed = subprocess.run([*KILLER, point, str(nth), "--", *args], env=env,
                                    capture_output=True).returncode == -signal.SIGKILL
        assert landed, f"{kill}: the run ended before reaching this point"
        if after_each:
            after_each(out)
    done = subprocess.run([*CLI, *args], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]


def _rows(path: Path) -> list[tuple[str, str]]:
    rows, clean = read_jsonl(path)
    assert clean, f"{path} has a torn row"
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an utterance appears twice"
    return [(r["id"], r["hypothesis"]) for r in rows]


def _timeless(node):
    if isinstance(node, dict):
        return {k: _timeless(v) for k, v in node.items() if k != "decode_seconds_per_utt"}
    return node


@pytest.mark.long  # `make test` keeps the CLSR-FT training chain; `make test-all` (CI) runs every chain
def test_eval_killed_at_every_kind_of_point_completes_with_every_utterance_once(setup, tmp_path):
    args = ["eval", "--model", str(setup / "tiny"), "--data", str(setup / "m.jsonl"), "--batch-size", "2"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*CLI, *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    _chain([*args, "--out", str(cut)], cut, EVAL_KILLS)
    assert sorted(_rows(cut / "results.jsonl")) == sorted(_rows(whole / "results.jsonl"))
    summaries = [_timeless(json.loads((out / "summary.json").read_text())) for out in (whole, cut)]
    for summary in summaries:  # intervals resample rows in file order, which a resumed run may change
        summary.pop("groups")
        for rates in [summary["overall"], *summary["languages"].values()]:
            for metric in ("wer", "cer"):
                rates[metric] = rates[metric]["value"]
    assert summaries[0] == summaries[1]


@pytest.mark.long
def test_bias_killed_at_every_kind_of_point_gives_the_uninterrupted_tables(setup, tmp_path):
    args = ["bias", "--data", str(setup / "m.jsonl"), "--models", str(setup / "tiny"), "--precisions",
            "fp32,int8-dynamic", "--batch-size", "2"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*CLI, *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    model = slug(str(setup / "tiny"))
    kills = [(k[0], k[1].format(model=model), k[2]) if k[0] == "rows" else k for k in BIAS_KILLS]
    _chain([*args, "--out", str(cut)], cut, kills)
    for precision in ("fp32", "int8-dynamic"):
        results = Path("evals") / model / precision / "results.jsonl"
        assert sorted(_rows(cut / results)) == sorted(_rows(whole / results))
    for table in ("languages.csv", "speakers.csv", "quantization.csv"):
        assert (cut / table).read_text() == (whole / table).read_text(), table


# clsr-ft's chain kills at every kind of point and stays in `make test`; the other methods' chains (the same
# points, each method's own save and load) run in `make test-all`
@pytest.mark.parametrize("method", [m if m == "clsr-ft" else pytest.param(m, marks=pytest.mark.long)
                                    for m in TRAIN_METHODS])
def test_training_killed_at_every_kind_of_point_resumes_to_the_uninterrupted_weights(setup, method, tmp_path):
    """Checkpoints every 2 steps and at each dev evaluation (every 4); after every kill `best/` is absent (before
    the first) or a complete, loadable model; the finished run has every step logged once and the uninterrupted
    run's weights (exactly: rtol 0, atol 1e-6)."""
    args = ["train", "--method", method, "--student", str(setup / "tiny"), "--languages", "ca,cs",
            "--train", str(setup / "m.jsonl"), "--max-steps", "8", "--batch-size", "2", "--lr", "0.01",
            "--save-every", "2", "--eval-every", "4", "--dev", str(setup / "m.jsonl"), "--eval-limit", "2",
            "--resume", *(["--teacher", str(setup / "teacher")] if method == "distilwhisper" else [])]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*CLI, *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)

    def best_is_complete(out: Path) -> None:
        if (out / "best").exists() or (out / ".best.old").exists():
            TrainedRun.open(out).load()

    _chain([*args, "--out", str(cut)], cut, TRAIN_METHODS[method], best_is_complete)
    expected = load_file(str(whole / "checkpoint" / "trainable.safetensors"))
    got = load_file(str(cut / "checkpoint" / "trainable.safetensors"))
    assert expected.keys() == got.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=0, atol=1e-6)
    steps = [row["step"] for row in read_jsonl(cut / "metrics.jsonl")[0]]
    assert steps == list(range(1, 9))
    assert TrainedRun.open(cut).state.best_step == TrainedRun.open(whole).state.best_step


@pytest.mark.long
def test_synth_killed_at_every_kind_of_point_builds_the_uninterrupted_corpus(tmp_path):
    args = ["data", "synth", "--languages", "cs", "--per-language", "6", "--workers", "1"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    subprocess.run([*CLI, *args, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    _chain([*args, "--out", str(cut)], cut, SYNTH_KILLS)
    assert (cut / "manifest.jsonl").read_text() == (whole / "manifest.jsonl").read_text()
    clips = sorted(p.relative_to(whole) for p in (whole / "audio").rglob("*.wav"))
    assert clips and clips == sorted(p.relative_to(cut) for p in (cut / "audio").rglob("*.wav"))
    for clip in clips:
        assert (cut / clip).read_bytes() == (whole / clip).read_bytes(), clip


@pytest.mark.slow
@pytest.mark.long
def test_demo_killed_in_every_stage_gives_the_uninterrupted_results(quick_demo, tmp_path):
    """Killed while synthesising the corpus, evaluating the base model, training the specialist teacher and the
    experts (a resumed run encodes its clips again: the uninterrupted one reused the specialist's encodings),
    swapping a checkpoint in, evaluating DistilWhisper and writing the report: the finished demo has the
    uninterrupted demo's transcripts and table (same threads as the uninterrupted run, so the same arithmetic)."""
    cut = tmp_path / "cut"
    _chain(["demo", "--quick", "--threads", "2", "--out", str(cut)], cut, DEMO_KILLS,
           env=dict(os.environ, OMP_NUM_THREADS="2"))
    for system in ("base-fp32", "base-int8", "distilwhisper-specialist"):
        for task in ("", "translate"):
            results = Path("eval") / system / task / "results.jsonl"
            assert sorted(_rows(cut / results)) == sorted(_rows(quick_demo / results)), results
    tables = [json.loads((out / "results.json").read_text())["table"] for out in (quick_demo, cut)]
    compared = ("_wer", "_cer", "_bleu", "_chrf", "_n", "kept_step", "kept_steps")
    for got, expected in zip(*tables):
        assert {k: v for k, v in got.items() if k.endswith(compared)} \
            == {k: v for k, v in expected.items() if k.endswith(compared)}
