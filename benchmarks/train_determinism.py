"""Does a training step give the same weights in two fresh processes?  (Why benchmarks/method_quality.py's runs
did not reproduce: docs/results.md.)

Each setting (precision x torch threads x `torch.use_deterministic_algorithms`) trains whisper-base's decoder for
`--steps` AdamW steps on fixed random features and labels, in two fresh processes, and compares a hash of the
decoder's weights; the table says whether they match, and the seconds of each process (load included).

    .venv/bin/python benchmarks/train_determinism.py
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time

import torch

from distilwhisper.quantize import cpu_name, has_bf16_units
from distilwhisper.report import markdown_table


def train_once(precision: str, threads: int, deterministic: bool, steps: int) -> str:
    """Hash of the decoder's weights after `steps` steps from bundled:base on fixed inputs."""
    from distilwhisper.hub import load_model

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(deterministic)
    torch.manual_seed(0)
    model, _ = load_model("bundled:base")
    model.train()
    model.model.encoder.requires_grad_(False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    generator = torch.Generator().manual_seed(1)
    features = torch.randn(4, 80, 3000, generator=generator)
    labels = torch.randint(0, 50000, (4, 20), generator=generator)
    for _ in range(steps):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model(input_features=features, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    digest = hashlib.sha256()
    for p in model.model.decoder.parameters():
        digest.update(p.detach().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per process (default: 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the multi-threaded rows")
    parser.add_argument("--child", nargs=3, metavar=("PRECISION", "THREADS", "DETERMINISTIC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        precision, threads, deterministic = args.child
        print(train_once(precision, int(threads), deterministic == "1", args.steps))
        return
    precisions = ["fp32", "bf16"] if has_bf16_units() else ["fp32"]
    rows = []
    for precision in precisions:
        for threads, deterministic in ((1, False), (args.threads, False), (args.threads, True)):
            hashes, seconds = [], []
            for _ in range(2):
                start = time.perf_counter()
                proc = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--child", precision,
                                       str(threads), str(int(deterministic))], capture_output=True, text=True,
                                      check=True)
                seconds.append(time.perf_counter() - start)
                hashes.append(proc.stdout.split()[-1])
            rows.append([precision, threads, "yes" if deterministic else "no", " / ".join(hashes),
                         "**same**" if hashes[0] == hashes[1] else "differ", " / ".join(f"{s:.1f}" for s in seconds)])
    print(f"{cpu_name()}, torch {torch.__version__}, {args.steps} steps of whisper-base's decoder, batch 4\n")
    print("\n".join(markdown_table(["precision", "threads", "deterministic algorithms", "weights hash (two processes)",
                                    "", "seconds"], rows)))


if __name__ == "__main__":
    main()
