"""DistilWhisper against its baselines (CLSR-FT, FT, LoRA) and the base model, every method on the same data, steps,
batch and layers.

The same pipeline as `distilwhisper demo --compare` (corpus builder, training loop, evaluation, paired statistics),
plus a markdown table with the machine and the wall time, written to `OUT/method_quality.md` and printed.  The
defaults are the demo's sizes, so `--out demo-out` adds the baselines to a finished `make demo` run (its corpus, base
evaluations and DistilWhisper are reused); a larger budget is a matter of flags, e.g.

    .venv/bin/python benchmarks/method_quality.py --per-language 720 --test-per-language 40 --steps 600 --out bench-out/mq

Run by hand, not in CI; it resumes like the demo (rerun the same command after an interruption).  Measured times
are in docs/results.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import torch

from distilwhisper.cli import add_config_flags
from distilwhisper.io import atomic_write_text
from distilwhisper.studies.demo import DemoConfig, run_demo, table_markdown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_flags(parser, DemoConfig)  # the demo's settings and defaults, not a copy of them
    args = parser.parse_args()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(DemoConfig)}
    config = DemoConfig.make(**{**given, "compare": True, "quick": bool(given["quick"]),
                                "out": given["out"] or "bench-out/method-quality"})
    start = time.perf_counter()
    table = run_demo(config)
    header = (f"{config.per_language} sentences per target language ({','.join(config.languages)}; "
              f"{config.test_per_language} per test set), control {','.join(config.control)}, {config.steps} steps "
              f"of batch {config.batch_size}, lr {config.lr:g} (FT {config.method_lr('ft'):g}), scope "
              f"{config.scope}, student {config.student}, teacher {config.teacher}; "
              f"{platform.processor() or 'cpu'}, {torch.get_num_threads()} threads; "
              f"{(time.perf_counter() - start) / 60:.0f} min for this run (finished stages of an earlier run are "
              "reused).")
    text = f"{header}\n\n{table_markdown(table)}\n"
    atomic_write_text(Path(config.out, "method_quality.md"), text)
    print(text)


if __name__ == "__main__":
    main()
