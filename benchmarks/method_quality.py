"""DistilWhisper against its baselines (CLSR-FT, FT, LoRA) and the base model, every method on the same data, steps,
batch and layers.

The same pipeline as `distilwhisper demo --compare` (corpus builder, training loop, evaluation, paired statistics),
plus a markdown table with the machine and the wall time, written to `OUT/method_quality.md` and printed.  The
defaults are the demo's sizes, so `--out demo-out` adds the baselines to a finished `make demo` run (its corpus, base
evaluations and DistilWhisper are reused); a larger budget is a matter of flags, e.g.

    .venv/bin/python benchmarks/method_quality.py --per-language 720 --test-per-language 40 --steps 600 --out bench-out/mq

Run by hand, not in CI; it resumes like the demo (rerun the same command after an interruption).  On 2 CPU cores a
decoder-scope method takes about 20 min at the default sizes (first epoch ~6 s/step, later ~2 s/step).
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
    parser.add_argument("--per-language", type=int, default=360, help="synthesised sentences per target language")
    parser.add_argument("--test-per-language", type=int, default=24,
                        help="of which in each test set (in-domain, out-of-domain)")
    parser.add_argument("--control-per-language", type=int, default=16)
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
