"""DistilWhisper against its baselines (CLSR-FT, FT, LoRA) and the base model at a larger budget than `make demo`.

The same pipeline as `distilwhisper demo --compare` (same corpus builder, same training loop, same evaluation and
paired statistics), with more sentences per language and more steps; run by hand, not in CI:

    .venv/bin/python benchmarks/method_quality.py --per-language 100 --steps 300 --out bench-out/method-quality

It resumes like the demo (rerun the same command after an interruption) and writes the markdown table to
`OUT/method_quality.md` as well as printing it.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

from distilwhisper.demo import DemoConfig, run_demo, table_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--languages", default="ca,cs")
    parser.add_argument("--control", default="en,es")
    parser.add_argument("--per-language", type=int, default=400, help="synthesised sentences per target language")
    parser.add_argument("--test-per-language", type=int, default=40,
                        help="of which in each test set (in-domain, out-of-domain)")
    parser.add_argument("--control-per-language", type=int, default=24)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--scope", default="decoder", choices=("all", "encoder", "decoder"))
    parser.add_argument("--student", default="bundled:base")
    parser.add_argument("--teacher", default="bundled:base")
    parser.add_argument("--out", default="bench-out/method-quality")
    args = parser.parse_args()

    config = DemoConfig.make(languages=args.languages.split(","), control=args.control.split(","), out=args.out,
                             compare=True, per_language=args.per_language,
                             test_per_language=args.test_per_language,
                             control_per_language=args.control_per_language, steps=args.steps,
                             batch_size=args.batch_size, lr=args.lr, scope=args.scope, student=args.student,
                             teacher=args.teacher)
    start = time.perf_counter()
    table = run_demo(config)
    header = (f"{args.per_language} sentences per target language ({args.languages}; {args.test_per_language} per "
              f"test set), control {args.control}, "
              f"{args.steps} steps of batch {args.batch_size}, lr {args.lr:g} (FT {args.lr / 10:g}), scope "
              f"{args.scope}, student {args.student}, teacher {args.teacher}; {platform.processor() or 'cpu'}, "
              f"{torch.get_num_threads()} threads; {(time.perf_counter() - start) / 60:.0f} min for this run "
              "(finished stages of an earlier run are reused).")
    text = f"{header}\n\n{table_markdown(table)}\n"
    Path(args.out, "method_quality.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
