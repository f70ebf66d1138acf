"""Real processes killed with SIGKILL at several points, then the same command run again: nothing is lost or
duplicated, and the result equals an uninterrupted run's (tiny random model, generated clips)."""

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

from distilwhisper.io import read_jsonl
from distilwhisper.train import TrainedRun
from conftest import write_wav

CLI = [sys.executable, "-m", "distilwhisper.cli"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    model, processor = tiny
    model.save_pretrained(root / "tiny")
    processor.save_pretrained(root / "tiny")
    rows = [{"id": f"{lang}{i}", "audio": str(write_wav(root / f"{lang}{i}.wav", 0.5 + 0.25 * i)),
             "text": "bon dia" if lang == "ca" else "dobrý den", "language": lang}
            for lang in ("ca", "cs") for i in range(6)]
    (root / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root


def _kill_when(cmd: list[str], watched: Path, rows: int, limit: float = 300) -> None:
    """Start `cmd`, SIGKILL it once `watched` holds at least `rows` lines (or it ends by itself)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + limit
    while proc.poll() is None and time.monotonic() < deadline:
        if watched.exists() and len(watched.read_bytes().splitlines()) >= rows:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)


def _hypotheses(out: Path) -> dict[str, str]:
    rows, _ = read_jsonl(out / "results.jsonl")
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "an utterance appears twice"
    return {r["id"]: r["hypothesis"] for r in rows}


@pytest.mark.parametrize("kill_after", [1, 5, 9])
def test_eval_killed_mid_run_completes_with_every_utterance_once(setup, kill_after, tmp_path):
    eval_cmd = [*CLI, "eval", "--model", str(setup / "tiny"), "--data", str(setup / "m.jsonl"), "--batch-size", "2"]
    whole = tmp_path / "whole"
    subprocess.run([*eval_cmd, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    cut = tmp_path / "cut"
    _kill_when([*eval_cmd, "--out", str(cut)], cut / "results.jsonl", kill_after)
    assert len(_hypotheses(cut)) < 12  # it was stopped before the end
    subprocess.run([*eval_cmd, "--out", str(cut)], env=ENV, check=True, capture_output=True)
    assert _hypotheses(cut) == _hypotheses(whole)
    summaries = [json.loads((out / "summary.json").read_text()) for out in (whole, cut)]
    for summary in summaries:
        for rates in [summary["overall"], *summary["languages"].values()]:
            rates.pop("decode_seconds_per_utt")
    assert summaries[0] == summaries[1]


@pytest.mark.parametrize("kill_after", [3, 6])
def test_training_killed_mid_run_resumes_to_the_uninterrupted_weights(setup, kill_after, tmp_path):
    """Checkpoints every 2 steps; a kill between them loses at most the steps since the last one; `best/` is a
    complete, loadable model whenever the process dies; the resumed run ends with the uninterrupted weights."""
    train_cmd = [*CLI, "train", "--method", "clsr-ft", "--student", str(setup / "tiny"), "--languages", "ca,cs",
                 "--train", str(setup / "m.jsonl"), "--max-steps", "8", "--batch-size", "2", "--lr", "0.01",
                 "--save-every", "2", "--eval-every", "4", "--dev", str(setup / "m.jsonl"), "--eval-limit", "2"]
    whole = tmp_path / "whole"
    subprocess.run([*train_cmd, "--out", str(whole)], env=ENV, check=True, capture_output=True)
    cut = tmp_path / "cut"
    _kill_when([*train_cmd, "--out", str(cut)], cut / "metrics.jsonl", kill_after)
    assert len((cut / "metrics.jsonl").read_text().splitlines()) < 8  # it was stopped before the end
    if (cut / "best").exists():  # whatever moment the kill hit, best/ is complete
        TrainedRun.open(cut).load()
    resumed = subprocess.run([*train_cmd, "--out", str(cut), "--resume"], env=ENV, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    expected = load_file(str(whole / "checkpoint" / "trainable.safetensors"))
    got = load_file(str(cut / "checkpoint" / "trainable.safetensors"))
    assert expected.keys() == got.keys()
    for name, weight in expected.items():
        torch.testing.assert_close(got[name], weight, rtol=0, atol=1e-6)
    steps = [json.loads(line)["step"] for line in (cut / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 9))
