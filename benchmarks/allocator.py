"""Does the memory allocator slow CPU training down?  (Training spent ~15 % of its CPU time in the kernel, at
~130,000 page faults a second, in benchmarks/method_quality.py's runs: docs/results.md.)

Every step allocates tensors of tens of megabytes (the student's logits over Whisper's 51,865-token vocabulary are
~100 MB for a batch of 8) that glibc serves with fresh mmap'ed pages and returns at once, so each step faults and
zeroes them again, 4 KiB at a time. Huge pages (2 MiB) cut the faults 512-fold where the kernel grants them
(`/sys/kernel/mm/transparent_hugepage/enabled` = madvise or always). Each variant sets an environment variable at
process start, which is when torch and glibc read it:

- glibc malloc as is;
- `THP_MEM_ALLOC_ENABLE=1`: torch's CPU allocator aligns allocations of 2 MiB and more to 2 MiB and asks for huge
  pages (madvise);
- `GLIBC_TUNABLES=glibc.malloc.hugetlb=1`: glibc itself asks for huge pages for its mmap'ed chunks (glibc >= 2.35).

Each variant runs the same DistilWhisper training (`distilwhisper train`, the demo's settings: decoder experts,
batch 8, encoder outputs cached, teacher = the student, its cache shared and filled by an untimed first run) in a
fresh process, interleaved with the others `--repeats` times; the table gives the run's own training seconds (model
loading excluded), the process's page faults and kernel CPU seconds, and a hash of the trained experts (an allocator
must not change the numbers).

    .venv/bin/python benchmarks/allocator.py --manifest mq/corpus/train.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from distilwhisper.data.manifest import validate_manifest, write_manifest
from distilwhisper.io import file_sha256
from distilwhisper.quantize import cpu_name, has_bf16_units
from distilwhisper.report import markdown_table
from distilwhisper.train.data import select_split

VARIANTS = {
    "glibc malloc (default)": {},
    "THP_MEM_ALLOC_ENABLE=1 (torch)": {"THP_MEM_ALLOC_ENABLE": "1"},
    "GLIBC_TUNABLES=glibc.malloc.hugetlb=1": {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},
}


def train(manifest: Path, out: Path, cache: Path, args: argparse.Namespace, env: dict[str, str]) -> dict:
    """One training process; its own training seconds, page faults, kernel CPU seconds and weights hash."""
    cmd = [sys.executable, "-m", "distilwhisper.cli", "train", "--method", "distilwhisper", "--student",
           "bundled:base", "--teacher", "bundled:base", "--teacher-cache", str(cache), "--languages", args.language,
           "--train", str(manifest), "--out", str(out), "--max-steps", str(args.steps), "--batch-size", "8",
           "--lr", "1e-3", "--scope", "decoder", "--cache-encoder", "--trim", "--save-every", "0"]
    if has_bf16_units():
        cmd.append("--bf16")
    clean = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "GLIBC_TUNABLES")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, env={**clean, "OMP_NUM_THREADS": str(args.threads), **env},
                          capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"training failed ({' '.join(cmd)}):\n{done.stderr[-3000:]}")
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    digest = hashlib.sha256("".join(file_sha256(p) for p in sorted((out / "best").glob("*.safetensors"))).encode())
    return {"seconds": state["seconds"], "faults": after.ru_minflt - before.ru_minflt,
            "kernel": after.ru_stime - before.ru_stime, "user": after.ru_utime - before.ru_utime,
            "hash": digest.hexdigest()[:12]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, help="training manifest (e.g. the demo's train.jsonl)")
    parser.add_argument("--language", default="cs", help="language whose train lines are used (default: cs)")
    parser.add_argument("--lines", type=int, default=80, help="training lines (default: 80, 10 batches an epoch)")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run (default: 40)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved (default: 2)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    args = parser.parse_args()

    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    train_split = select_split(validate_manifest(args.manifest, check_audio=False), "train", str(args.manifest))
    lines = [u for u in train_split if u.language == args.language][:args.lines]
    if len(lines) < args.lines:
        raise SystemExit(f"{args.manifest}: {len(lines)} train lines of language {args.language}, "
                         f"--lines asks for {args.lines}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest = root / "train.jsonl"
        write_manifest(manifest, lines)
        cache = root / "teacher-cache"
        print("filling the teacher cache (untimed run)", file=sys.stderr)
        train(manifest, root / "warm-up", cache, args, {})
        results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for repeat in range(args.repeats):
            for i, (name, env) in enumerate(VARIANTS.items()):
                print(f"repeat {repeat + 1}/{args.repeats}: {name}", file=sys.stderr)
                results[name].append(train(manifest, root / f"run-{repeat}-{i}", cache, args, env))

    base = statistics.median(r["seconds"] for r in results["glibc malloc (default)"])
    rows = []
    for name, runs in results.items():
        seconds = statistics.median(r["seconds"] for r in runs)
        rows.append([name, " / ".join(f"{r['seconds']:.1f}" for r in runs), f"{base / seconds:.2f}x",
                     f"{statistics.median(r['faults'] for r in runs) / 1e6:.2f}",
                     f"{statistics.median(r['kernel'] for r in runs):.1f}",
                     f"{statistics.median(r['user'] for r in runs):.1f}",
                     " / ".join(sorted({r["hash"] for r in runs}))])
    print(f"{cpu_name()}, torch {torch.__version__}, transparent huge pages: {thp.read_text().strip()}; "
          f"DistilWhisper, {args.steps} steps of batch 8 on {args.lines} {args.language} lines, "
          f"{args.threads} threads, {'bf16' if has_bf16_units() else 'fp32'}\n")
    print("\n".join(markdown_table(["allocator", "training s (each run)", "speed vs default", "page faults (M)",
                                    "kernel CPU s", "user CPU s", "experts hash"], rows)))


if __name__ == "__main__":
    main()
