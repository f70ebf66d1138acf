"""AdamW's step on the parameters each method trains in the demo, side by side: torch's per-tensor loop (the default
on CPU), `foreach` (multi-tensor) and `fused` (one kernel per tensor), which `train` uses.  Whisper-base with
decoder-scope training: FT steps the whole decoder (52 M parameters with the tied 26.6 M token embedding),
DistilWhisper one language's experts and gates (12.6 M).  Gradients are random (the step's cost does not depend on
their values); the table gives ms per step (median of `--steps`) and the ratio to the default, and the largest
difference of the updated weights from the default's after the steps (same algorithm, another rounding order).

    .venv/bin/python benchmarks/optimizer_step.py [--steps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from distilwhisper import methods
from distilwhisper.report import markdown_table
from distilwhisper.train import TrainConfig

VARIANTS = {"default (per-tensor loop)": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def trained_tensors(method: str) -> list[torch.Tensor]:
    """Copies of the tensors `method` updates (decoder scope), as `train` builds them."""
    config = TrainConfig(method=method, student="bundled:base", languages=["cs"], train="", out="", scope="decoder")
    model, _, _ = methods.get(method).build(config)
    return [p.detach().clone() for p in model.parameters() if p.requires_grad]


def time_steps(tensors: list[torch.Tensor], options: dict, steps: int) -> tuple[float, list[torch.Tensor]]:
    params = [torch.nn.Parameter(t.clone()) for t in tensors]
    generator = torch.Generator().manual_seed(0)
    grads = [torch.randn(t.shape, generator=generator) * 1e-3 for t in tensors]
    optimizer = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.98), weight_decay=0.0, **options)
    times = []
    for _ in range(steps + 1):  # the first step allocates the moments: not timed
        for p, g in zip(params, grads):
            p.grad = g
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), [p.detach() for p in params]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for method in ("ft", "distilwhisper"):
        tensors = trained_tensors(method)
        count = sum(t.numel() for t in tensors)
        results = {name: time_steps(tensors, options, args.steps) for name, options in VARIANTS.items()}
        default_time, default_weights = results["default (per-tensor loop)"]
        for name, (seconds, weights) in results.items():
            drift = max(float((a - b).abs().max()) for a, b in zip(weights, default_weights))
            rows.append([method, f"{count / 1e6:.1f} M", name, f"{1000 * seconds:.1f}",
                         f"{default_time / seconds:.2f}x", f"{drift:.1e}"])
    print(f"AdamW step, {platform.processor() or 'cpu'}, {torch.get_num_threads()} threads, median of {args.steps}")
    print("\n".join(markdown_table(["method", "trained", "AdamW", "ms / step", "speed-up", "max |w - w_default|"],
                                   rows)))


if __name__ == "__main__":
    main()
