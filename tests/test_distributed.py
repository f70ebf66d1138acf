"""Evaluation shared out over real processes (torchrun + accelerate on CPU, gloo): N processes give the rows of one,
resume after a dead process and after a change of N, and refuse shards of another setting."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distilwhisper.distributed import share_out
from distilwhisper.io import read_jsonl
from distilwhisper.studies.bias import slug
from conftest import tiny_on_disk

ENV = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true")


def _cli(*args: str, processes: int = 1) -> subprocess.CompletedProcess:
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    return subprocess.run([sys.executable, *launch, "-m", "distilwhisper.cli", *args], env=ENV, capture_output=True,
                          text=True, timeout=600)


@pytest.fixture(scope="module")
def setup(tiny, tmp_path_factory):
    root = tmp_path_factory.mktemp("sharded")
    tiny_on_disk(tiny, root, 5, first=0.4, step=0.3)
    whole = root / "whole"
    done = _cli("eval", "--model", str(root / "tiny"), "--data", str(root / "m.jsonl"), "--batch-size", "2",
                "--out", str(whole))
    assert done.returncode == 0, done.stderr[-2000:]
    return root


def _eval(setup: Path, out: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    return _cli("eval", "--model", str(setup / "tiny"), "--data", str(setup / "m.jsonl"), "--batch-size", "2",
                "--out", str(out), *extra, processes=processes)


def _rows(out: Path) -> list[tuple[str, str]]:
    rows, _ = read_jsonl(out / "results.jsonl")
    return [(r["id"], r["hypothesis"]) for r in rows]


def _summary(out: Path) -> dict:
    """summary.json without its wall-clock figures."""
    def timeless(node):
        if isinstance(node, dict):
            return {k: timeless(v) for k, v in node.items() if k != "decode_seconds_per_utt"}
        return node

    return timeless(json.loads((out / "summary.json").read_text()))


def test_share_out_balances_by_cost_and_keeps_the_order():
    assert share_out([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    assert share_out([1, 2, 3, 4], 2) == [[0, 3], [1, 2]]
    assert share_out([1.0], 3) == [[0], [], []]  # more processes than batches: some get none


def test_two_processes_give_the_rows_of_one(setup, tmp_path):
    """Same rows in the same order and the same summary; the shards are merged away; the launch really ran two
    processes (each wrote a shard: the merged file keeps rows of both)."""
    out = tmp_path / "two"
    done = _eval(setup, out, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank1" in done.stderr  # the second process's progress bar
    assert _rows(out) == _rows(setup / "whole")
    assert _summary(out) == _summary(setup / "whole")
    assert not (out / "shards").exists()


def test_more_processes_than_utterances(setup, tmp_path):
    out = tmp_path / "one-utterance"
    done = _eval(setup, out, 2, "--limit", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    assert _rows(out) == _rows(setup / "whole")[:1]


def test_resume_after_a_dead_process_and_after_a_change_of_n(setup, tmp_path):
    """A first run with one process stopped after 4 utterances (simulated by --limit); a launch of 2 processes
    whose second died (its shard ends in a torn row) ; then 2 processes again: every utterance once, the rows of an
    uninterrupted run."""
    out = tmp_path / "resumed"
    assert _eval(setup, out, 1, "--limit", "4").returncode == 0
    whole = {uid: hyp for uid, hyp in _rows(setup / "whole")}
    shards = out / "shards"
    shards.mkdir()
    (shards / "config.json").write_text((out / "config.json").read_text())
    dead = [r for r in read_jsonl(setup / "whole" / "results.jsonl")[0] if r["id"] in ("cs2", "cs3")]
    (shards / "rank1.jsonl").write_text(json.dumps(dead[0], ensure_ascii=False) + "\n"
                                        + json.dumps(dead[1], ensure_ascii=False)[:40])
    done = _eval(setup, out, 2)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = _rows(out)
    assert sorted(uid for uid, _ in rows) == sorted(whole)  # every utterance exactly once
    assert dict(rows) == whole


def test_a_shard_of_another_setting_is_refused(setup, tmp_path):
    out = tmp_path / "foreign"
    assert _eval(setup, out, 1, "--limit", "2").returncode == 0
    (out / "shards").mkdir()
    (out / "shards" / "config.json").write_text(json.dumps({"model": "someone else's", "beam_size": 5}))
    done = _eval(setup, out, 2)
    assert done.returncode != 0
    assert "shards holds results of another setting" in done.stderr
    assert "the main process stopped" in done.stderr  # the other process was told, not left at a barrier


@pytest.mark.long  # the bias command end to end on two processes; the share-out itself is tested above
def test_bias_with_two_processes_gives_the_tables_of_one(setup, tmp_path):
    args = ["bias", "--data", str(setup / "m.jsonl"), "--models", str(setup / "tiny"), "--precisions", "fp32",
            "--batch-size", "2"]
    one, two = tmp_path / "one", tmp_path / "two"
    assert _cli(*args, "--out", str(one)).returncode == 0
    done = _cli(*args, "--out", str(two), processes=2)
    assert done.returncode == 0, done.stderr[-3000:]
    evals = Path("evals") / slug(str(setup / "tiny")) / "fp32"
    assert _rows(two / evals) == _rows(one / evals)
    for table in sorted(p.name for p in one.glob("*.csv")):
        if table != "variants.csv":  # its speed columns are wall-clock
            assert (two / table).read_text() == (one / table).read_text(), table
