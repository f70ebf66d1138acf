"""`eval` shared out over processes vs one process, side by side on the same real clips (asterisk prompts, en+es).

Rows: one process with T threads; N processes with T/N threads each (torchrun + accelerate on CPU, the way
`accelerate launch --cpu --num_processes N` runs on a machine without GPUs).  Both decode bundled:base greedily
with the same batches; prints wall time of the whole command (model loading included), the ratio to one process,
and whether the result rows are identical.  On a GPU machine the point of N processes is N GPUs; here it shows what
sharding costs or saves on the CPU cores of one machine.

    .venv/bin/python benchmarks/sharded_eval.py [--per-language 16] [--threads 2] [--processes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.data.manifest import write_manifest


def run(manifest: Path, out: Path, processes: int, threads: int, batch_size: int) -> float:
    """Wall seconds of one `eval` command into a fresh `out`."""
    shutil.rmtree(out, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ACCELERATE_USE_CPU="true")
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(processes)] if processes > 1 else []
    cmd = [sys.executable, *launch, "-m", "distilwhisper.cli", "eval", "--model", "bundled:base", "--data",
           str(manifest), "--out", str(out), "--batch-size", str(batch_size), "--threads", str(threads)]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return time.perf_counter() - start


def rows(out: Path) -> list[tuple[str, str]]:
    return [(r["id"], r["hypothesis"]) for r in map(json.loads, (out / "results.jsonl").read_text().splitlines())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=16, help="prompts per language (en, es)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="cores used in every row")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each row (best kept)")
    parser.add_argument("--out", default="bench-out/sharded_eval")
    args = parser.parse_args()
    root = Path(args.out)
    utts, _ = import_asterisk(["en", "es"], root / "corpus", args.per_language)
    manifest = write_manifest(root / "manifest.jsonl", utts, relative=False)
    settings = [(1, args.threads), (args.processes, max(1, args.threads // args.processes))]
    timings: dict[tuple[int, int], float] = {}
    for _ in range(args.repeats):  # interleaved, so drift of a noisy machine hits both rows alike
        for processes, threads in settings:
            seconds = run(manifest, root / f"p{processes}", processes, threads, args.batch_size)
            timings[processes, threads] = min(timings.get((processes, threads), float("inf")), seconds)
    reference = rows(root / "p1")
    print(f"{len(utts)} clips, bundled:base fp32 greedy, batch {args.batch_size}, {args.threads} cores, best of "
          f"{args.repeats}\n")
    print("| processes | threads each | wall s | vs 1 process | rows identical to 1 process |")
    print("|---|---|---|---|---|")
    base = timings[1, args.threads]
    for processes, threads in settings:
        same = rows(root / f"p{processes}") == reference
        print(f"| {processes} | {threads} | {timings[processes, threads]:.1f} | "
              f"{timings[processes, threads] / base:.2f}x | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
