"""scripts/paper_setting.sh, the README's paper recipe, run end to end on 2 processes: Common Voice and FLEURS
release folders in their real layouts (generated clips), a tiny student, two methods; then run again, reusing
everything."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from distilwhisper.io import read_jsonl
from distilwhisper.runs import TrainedRun
from conftest import write_wav

ROOT = Path(__file__).resolve().parents[1]
CV_HEADER = "client_id\tpath\tsentence\tup_votes\tdown_votes\tage\tgender\taccents\tvariant\tlocale\tsegment\n"
TEXTS = {"ca": "bon dia", "cs": "dobrý den"}


def _releases(root: Path) -> tuple[Path, Path]:
    """Common Voice (<locale>/{train,dev,test}.tsv + clips/) and FLEURS (<lang>_<region>/test.tsv + audio/test/)."""
    for lang, text in TEXTS.items():
        cv = root / "cv" / lang
        for split, n in (("train", 5), ("dev", 2), ("test", 2)):
            rows = []
            for i in range(n):
                write_wav(cv / "clips" / f"{split}{i}.wav", 0.5 + 0.2 * i)
                rows.append(f"c{i}\t{split}{i}.wav\t{text}\t{i}\t0\ttwenties\t{'female' if i % 2 else 'male'}"
                            f"\t\t\t{lang}\t\n")
            (cv / f"{split}.tsv").write_text(CV_HEADER + "".join(rows))
        fleurs = root / "fleurs" / {"ca": "ca_es", "cs": "cs_cz"}[lang]
        rows = []
        for i in range(2):
            write_wav(fleurs / "audio" / "test" / f"{i}.wav", 0.7 + 0.2 * i)
            rows.append(f"{i}\t{i}.wav\t{text}\t{text}\t{text}\t16000\t{'FEMALE' if i % 2 else 'MALE'}\n")
        (fleurs / "test.tsv").write_text("".join(rows))
    return root / "cv", root / "fleurs"


@pytest.mark.slow
@pytest.mark.long
def test_the_paper_script_runs_from_release_folders_to_the_tables_on_two_processes(tiny, tmp_path):
    model, processor = tiny
    model.save_pretrained(tmp_path / "tiny")
    processor.save_pretrained(tmp_path / "tiny")
    cv, fleurs = _releases(tmp_path)
    out = tmp_path / "paper"
    python = f"{sys.executable} -m"
    env = dict(os.environ, OMP_NUM_THREADS="1", ACCELERATE_USE_CPU="true", CV=str(cv), FLEURS=str(fleurs),
               LANGUAGES="ca cs", STUDENT=str(tmp_path / "tiny"), TEACHER=str(tmp_path / "tiny"), MAX_TRAIN="3",
               LAUNCH=f"{python} torch.distributed.run --nproc_per_node 2", DISTILWHISPER=f"{python} distilwhisper.cli",
               TRAIN_ARGS="--max-steps 2 --batch-size 1", EVAL_ARGS="--batch-size 2 --limit 3",
               BIAS_ARGS="--precisions fp32 --per-language 2", METHODS="distilwhisper lora", OUT=str(out))
    first = subprocess.run(["bash", str(ROOT / "scripts" / "paper_setting.sh")], env=env, capture_output=True,
                           text=True, timeout=1200)
    assert first.returncode == 0, first.stderr[-4000:]
    assert "MULTI_CPU" in first.stdout + first.stderr  # the launches ran two processes
    # the paper's training subset: 3 most up-voted of 5 training clips per language; dev and test whole
    rows, _ = read_jsonl(out / "data" / "cv.jsonl")
    assert sum(r["split"] == "train" for r in rows) == 6 and sum(r["split"] == "test" for r in rows) == 4
    for method in ("distilwhisper", "lora"):
        assert TrainedRun.open(out / "runs" / method).state.step == 2
    tables = (out / "tables.md").read_text()
    for corpus in ("cv", "fleurs"):
        assert f"### {corpus}: WER (%)" in tables
        for system in ("base", "distilwhisper", "lora"):
            assert len(read_jsonl(out / "eval" / corpus / system / "results.jsonl")[0]) == 3  # --limit 3
            assert f"| {system} |" in tables
    assert (out / "bias" / "report.md").is_file()

    before = {p: p.read_bytes() for p in out.glob("eval/*/*/results.jsonl")}
    again = subprocess.run(["bash", str(ROOT / "scripts" / "paper_setting.sh")], env=env, capture_output=True,
                           text=True, timeout=1200)
    assert again.returncode == 0, again.stderr[-4000:]
    assert {p: p.read_bytes() for p in out.glob("eval/*/*/results.jsonl")} == before  # nothing decoded again
    assert (out / "tables.md").read_text() == tables
