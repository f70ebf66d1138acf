"""What the learned gates cost or buy: trained CLSR experts decoded with their hard gates (as shipped) against the
same experts with every token sent to them, on the demo's test sets.

The gate-budget loss (|mean gate - 0.5|) makes the gates route about half of the tokens to the experts, the other
half through the frozen shared FFN.  When the experts lose to FT or LoRA, this tells whether the routing is what
holds them back: if sending every token to the experts lowers the WER, the budget (not the experts) is the limit.

    .venv/bin/python benchmarks/gate_routing.py --out demo-out

Needs a finished `make demo` / `benchmarks/method_quality.py` folder.  Writes `OUT/gate_routing/` (resumable
evaluations) and `OUT/gate_routing.md`, and prints the table.  About 1.5 min per method and set on 2 CPU cores.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from torch import nn

from distilwhisper import clsr, stats
from distilwhisper.data.manifest import read_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import EvalConfig, evaluate, select
from distilwhisper.report import markdown_table
from distilwhisper.results import rate, read_results, where
from distilwhisper.studies.experiments import title
from distilwhisper.runs import TrainedRun
from common import comma_list

SETS = ("in-domain", "out-of-domain")


class AlwaysExpert(nn.Module):
    """A gate whose logit is positive for every token: the hard gate sends all of them to the expert."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_ones(x.shape[:-1])


def every_token_to_experts(model: nn.Module) -> None:
    for module in clsr.clsr_modules(model):
        for language in module.gates:
            module.gates[language] = AlwaysExpert()


def _evaluate_forced(run: TrainedRun, out: Path, manifest: Path, name: str, batch_size: int
                     ) -> dict[str, list[dict]]:
    """Result rows per set of the run's experts with every token routed to them."""
    model, processor = run.load()
    every_token_to_experts(model)
    decoder = WhisperDecoder(model, processor, trim=True)
    utterances = read_manifest(manifest)[0]
    identity = EvalConfig(model=f"{name}+every-token", data=str(manifest), out=str(out), trim=True).identity()
    return {domain: evaluate(decoder, select(utterances, domain=domain), out / domain, identity, batch_size)
            for domain in SETS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="demo-out", help="a demo / method_quality output folder")
    parser.add_argument("--methods", default="distilwhisper,clsr-ft", help="CLSR methods trained in that folder")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    out = Path(args.out)
    manifest = out / "corpus" / "eval.jsonl"
    base = read_results(out / "eval" / "base-fp32" / "results.jsonl")
    table = []
    for method in comma_list(args.methods, "--methods"):
        try:
            run = TrainedRun.open(out / "train" / method)
        except ValueError as err:
            raise SystemExit(f"{err} (train {method} with the demo or method_quality first)")
        routed = run.routed_share
        gated = read_results(out / "eval" / method / "results.jsonl")
        forced = _evaluate_forced(run, out / "gate_routing" / method, manifest, method, args.batch_size)
        for k, domain in enumerate(SETS):
            pick, every = where(gated, domain=domain), forced[domain]
            delta = stats.paired_delta(pick, every, "wer", seed=k)
            table.append([title(method), domain, f"{rate(where(base, domain=domain), 'wer'):.1f}",
                          f"{rate(pick, 'wer'):.1f}", "n/a" if routed is None else f"{100 * routed:.0f} %",
                          f"{rate(every, 'wer'):.1f}",
                          f"{delta.value:+.1f} [{delta.low:+.1f}, {delta.high:+.1f}], p = {delta.p:.3f}"])
    lines = markdown_table(["system", "set", "base WER", "hard gates WER", "routed (dev)", "every token WER",
                            "every token - hard gates"], table)
    text = "\n".join(lines) + "\n"
    (out / "gate_routing.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
