"""DistilWhisper speed, side by side on bundled:base (student and teacher are both base offline).

(a) inference: greedy decoding of the same real clips with the plain student, with DistilWhisper at init (every
    token routed to the expert) and with gates that send about half the tokens to each FFN (sparse routing:
    each FFN runs on its own tokens only);
(b) training: one optimizer step of plain fine-tuning vs one DistilWhisper step with a cached teacher and with the
    live teacher, fp32, plus bf16 autocast; with the padding-free encoder (trim) for both; and the demo's setting:
    experts in the decoder only, whose frozen encoder's outputs are computed once per clip (`train
    --cache-encoder`), so a step after the first epoch runs the decoder only.

    .venv/bin/python benchmarks/clsr_speed.py [--clips 16] [--batch-size 4] [--steps 3]
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import numpy as np
import torch

from distilwhisper import clsr
from distilwhisper.audio import load_audio
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.decoding import WhisperDecoder, prompt_tokens
from distilwhisper.hub import load_model
from distilwhisper.train import TrainConfig
from distilwhisper.train.caches import EncoderCache, TeacherCache
from distilwhisper.train.data import SpeechDataset, collate
from distilwhisper.train.model import weights_fingerprint
from distilwhisper.train.objective import Objective


def decode_time(model, processor, audios, batch: int) -> tuple[float, list[list[int]]]:
    decoder = WhisperDecoder(model, processor)
    decoder.transcribe(audios[:1], "en")
    start, tokens = time.perf_counter(), []
    for i in range(0, len(audios), batch):
        tokens += [t.tokens for t in decoder.transcribe(audios[i:i + batch], "en")]
    return (time.perf_counter() - start) / len(audios), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved inference runs (best is reported)")
    parser.add_argument("--bf16-steps", type=int, default=1,
                        help="timed bf16 steps (slow without bf16 units; 0 skips the row)")
    parser.add_argument("--skip-inference", action="store_true", help="only the training-step table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    tmp = tempfile.mkdtemp()
    utts, _ = import_asterisk(["en"], tmp, args.clips)
    audios = [load_audio(u.audio) for u in utts]
    plain, processor = load_model("bundled:base")

    if not args.skip_inference:
        inference_table(args, plain, processor, audios)
    training_table(args, plain, processor, utts)


def inference_table(args, plain, processor, audios) -> None:
    print(f"## (a) inference, {len(audios)} clips, batch 8, {args.threads} threads, best of {args.repeats} "
          "interleaved runs\n", flush=True)
    experts = clsr.to_distilwhisper(copy.deepcopy(plain), ["en"]).eval()
    routed = clsr.to_distilwhisper(copy.deepcopy(plain), ["en"]).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        for block in clsr.clsr_modules(routed):
            torch.nn.init.normal_(block.gates["en"].w2.weight, std=1.0)
    clsr.set_language(routed, "en")
    share = []
    hooks = [b.register_forward_hook(lambda m, i, o: share.append(float((m.gates["en"](i[0]) >= 0).float().mean())))
             for b in clsr.clsr_modules(routed)]
    models = {"plain": plain, "init": experts, "routed": routed}
    times: dict[str, list[float]] = {k: [] for k in models}
    tokens: dict[str, list[list[int]]] = {}
    for _ in range(args.repeats):  # interleaved: machine noise hits every model alike
        for key, model in models.items():
            t, tokens[key] = decode_time(model, processor, audios, 8)
            times[key].append(t)
    for h in hooks:
        h.remove()
    best = {k: min(v) for k, v in times.items()}
    same = sum(a == b for a, b in zip(tokens["init"], tokens["plain"]))
    print("| model | s/utt | vs plain | tokens identical to plain |\n|---|---|---|---|")
    print(f"| plain whisper-base | {best['plain']:.3f} | 1.00x | - |")
    print(f"| DistilWhisper at init (all tokens to expert) | {best['init']:.3f} | {best['init'] / best['plain']:.2f}x "
          f"| {same}/{len(audios)} |")
    print(f"| DistilWhisper, random gates ({100 * np.mean(share):.0f} % of tokens to experts) | {best['routed']:.3f} "
          f"| {best['routed'] / best['plain']:.2f}x | (other weights) |", flush=True)


def training_table(args, plain, processor, utts) -> None:
    """Times `train.objective.Objective` (the loss the training loop runs) plus backward and optimizer step."""
    print(f"\n## (b) training step, batch {args.batch_size}, {args.threads} threads (median of {args.steps})\n")
    eot = int(plain.generation_config.eos_token_id)
    dataset = SpeechDataset(utts[:args.batch_size], processor, {"en": prompt_tokens(plain.generation_config, "en")},
                            eot)
    batch = collate([dataset[i] for i in range(len(dataset))], eot)
    teacher = copy.deepcopy(plain).requires_grad_(False)
    fingerprint = weights_fingerprint(teacher)

    def step_time(model, method: str, scope: str, teacher_mode: str | None = None, encoder: str = "full",
                  bf16: bool = False) -> float:
        """encoder: "full" (30 s window), "trim" (padding-free) or "cached" (trimmed, computed once: frozen)."""
        config = TrainConfig(method=method, student="bundled:base", languages=["en"], train="-", out="-",
                             teacher="bundled:base" if teacher_mode else None, scope=scope,
                             trim=encoder != "full", cache_encoder=encoder == "cached").check()
        objective = Objective(config, model, model, teacher if teacher_mode else None,
                              TeacherCache(tempfile.mkdtemp(), fingerprint, 64, config.trim)
                              if teacher_mode == "cache" else None,
                              EncoderCache() if encoder == "cached" else None)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        steps = args.bf16_steps if bf16 else args.steps
        times = []
        for i in range(steps + 1):  # step 0 (untimed) fills the caches
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = objective.terms(batch, i, steps + 1)["loss"]
            loss.backward()
            opt.step()
            opt.zero_grad()
            if i:
                times.append(time.perf_counter() - start)
        return float(np.median(times))

    print("| step | s/step | vs plain FT |\n|---|---|---|", flush=True)
    ft = copy.deepcopy(plain).train().requires_grad_(True)
    base_step = step_time(ft, "ft", "all")
    print(f"| plain fine-tuning (all weights), fp32 | {base_step:.2f} | 1.00x |", flush=True)
    t = step_time(ft, "ft", "all", encoder="trim")
    print(f"| plain fine-tuning, fp32, padding-free encoder (trim) | {t:.2f} | {t / base_step:.2f}x |", flush=True)
    del ft
    rows = [("DistilWhisper, cached teacher, fp32", "cache", "full", "all", False),
            ("DistilWhisper, live teacher, fp32", "live", "full", "all", False),
            ("DistilWhisper, cached teacher, fp32, padding-free encoder (trim)", "cache", "trim", "all", False),
            ("DistilWhisper, decoder experts, cached teacher, trim, cached encoder outputs (the demo)", "cache",
             "cached", "decoder", False)]
    if args.bf16_steps:
        rows.append(("DistilWhisper, cached teacher, bf16 autocast", "cache", "full", "all", True))
    for label, teacher_mode, encoder, scope, bf16 in rows:
        student = clsr.to_distilwhisper(copy.deepcopy(plain), ["en"], scope).train()
        t = step_time(student, "distilwhisper", scope, teacher_mode, encoder, bf16)
        print(f"| {label} | {t:.2f} | {t / base_step:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
