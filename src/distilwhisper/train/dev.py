"""Dev evaluations during training: the student decoded on the dev manifest as the test sets are (hard gates,
`trim` as in training), shared out over the processes of a launch, counted per language, with the share of tokens
the gates routed to experts.  The training loop decides what to keep from these counts."""

from __future__ import annotations

from tqdm import tqdm

from distilwhisper import clsr
from distilwhisper.data.manifest import validate_manifest
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.distributed import gather
from distilwhisper.evaluate import evaluate, select
from distilwhisper.results import by_language, rate
from distilwhisper.results import counts as result_counts
from distilwhisper.runs import RunLayout, State
from distilwhisper.train.config import TrainConfig
from distilwhisper.train.logs import RunLog


def dev_counts(config: TrainConfig, layout: RunLayout, state: State, model, decodable, processor,
               encodings: dict | None, process_state, log: RunLog) -> dict[str, list[int]]:
    """Per dev language [word errors, reference words] of `decodable` at `state.step`; every process returns the
    same counts.  Records the routing in `state.dev_routing` (CLSR methods); `model`: where the routing counters
    live (the unwrapped student); `encodings`: a memo of a frozen encoder's outputs."""
    model.eval()
    clsr.routing_counts(model)  # reset the routing counters
    utterances = validate_manifest(config.dev, check_audio=False)
    utterances = select(utterances, split="dev" if any(u.split for u in utterances) else None,
                        limit=config.eval_limit, source=config.dev)
    decoder = WhisperDecoder(decodable, processor, trim=config.trim, encodings=encodings)
    rows = evaluate(decoder, utterances, layout.dev(state.step),
                    {"model": f"{config.student}+{config.method}@{state.step}", "trim": config.trim},
                    config.batch_size, progress=False, fresh=True)
    model.train()
    counts = {lang: [int(c) for c in (errors.sum(), words.sum())]
              for lang, group in by_language(rows).items() for errors, words in [result_counts(group, "wer")]}
    routing: dict[str, list[int]] = {}
    for part in gather(clsr.routing_counts(model), process_state):
        for lang, (routed, seen) in part.items():
            routing[lang] = [a + b for a, b in zip(routing.get(lang, [0, 0]), (routed, seen))]
    seen = sum(s for _, s in routing.values())
    share = sum(r for r, _ in routing.values()) / seen if seen else None
    if seen:
        state.dev_routing[str(state.step)] = routing
    if log.main:
        wer = rate(rows, "wer")
        log.scalar("dev/wer", wer, state.step)
        if share is not None:
            log.scalar("dev/expert_fraction", share, state.step)
        tqdm.write(f"step {state.step}: dev WER {wer:.2f} (" + ", ".join(
            f"{lang} {100 * e / w:.1f}" for lang, (e, w) in counts.items() if w) + ")"
            + (f", {100 * share:.0f} % of tokens routed to experts" if share is not None else ""))
    return counts
