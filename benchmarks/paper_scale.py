"""The paper's scale, probed: a whisper-small-shaped student with experts in all 24 FFN blocks for 8 languages and
a whisper-large-v2-shaped teacher (random weights: only shapes matter for cost), batch 16, bf16 autocast where the
device has bf16 units.  Measures, side by side in one run:

- the DistilWhisper training step (`train.objective.Objective`, the loss the training loop runs, plus backward and
  AdamW) with the live teacher and with its top-k outputs cached, and peak memory;
- teacher-cache throughput: utterances per second of teacher forward + top-k + writing the cache;
- greedy decoding s/utt of the student with experts against the same student without them.

    .venv/bin/python benchmarks/paper_scale.py                 # full size: for a GPU (minutes); CPU: hours
    .venv/bin/python benchmarks/paper_scale.py --size tiny     # the same code at toy sizes (a test runs it)
"""

from __future__ import annotations

import argparse
import copy
import platform
import resource
import tempfile
import time

import numpy as np
import torch
from transformers import WhisperConfig, WhisperForConditionalGeneration

from distilwhisper import clsr
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.hub import bundled_processor
from distilwhisper.quantize import UnsupportedPrecision, check_supported
from distilwhisper.report import markdown_table
from distilwhisper.train import TrainConfig
from distilwhisper.train.caches import TeacherCache
from distilwhisper.train.data import collate
from distilwhisper.train.model import weights_fingerprint
from distilwhisper.train.objective import Objective

LANGUAGES = ["ca", "cs", "gl", "hu", "pl", "ta", "th", "uk"]  # the paper's
SHAPES = {  # (d_model, layers per side, heads, ffn)
    "paper": {"student": (768, 12, 12, 3072), "teacher": (1280, 32, 20, 5120)},  # whisper-small, large-v2
    "tiny": {"student": (64, 2, 2, 128), "teacher": (96, 3, 2, 192)},
}


def whisper(d_model: int, layers: int, heads: int, ffn: int, generation_config) -> WhisperForConditionalGeneration:
    config = WhisperConfig(vocab_size=51865, d_model=d_model, encoder_layers=layers, decoder_layers=layers,
                           encoder_attention_heads=heads, decoder_attention_heads=heads, encoder_ffn_dim=ffn,
                           decoder_ffn_dim=ffn, max_source_positions=1500, max_target_positions=448,
                           pad_token_id=50257, bos_token_id=50257, eos_token_id=50257, decoder_start_token_id=50258)
    model = WhisperForConditionalGeneration(config)
    model.generation_config = generation_config
    return model


def batch(size: int, tokens: int, device: torch.device, seed: int) -> dict:
    """Random 30 s log-mel windows and transcripts of `tokens` tokens after the Czech prompt."""
    g = torch.Generator().manual_seed(seed)
    prompt = [50258, 50283, 50359, 50363]  # <|sot|><|cs|><|transcribe|><|notimestamps|>
    items = [{"id": f"u{seed}-{i}", "language": "cs", "input_features": torch.randn(80, 3000, generator=g),
              "tokens": prompt + torch.randint(220, 50000, (tokens,), generator=g).tolist() + [50257],
              "prompt_length": len(prompt), "num_samples": 30 * 16000} for i in range(size)]
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in collate(items, 50257).items()}


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def step_seconds(objective: Objective, model, batches: list[dict], bf16: bool, device: torch.device) -> float:
    """Median seconds of a training step over the batches after the first (which fills the caches)."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    times = []
    for i, b in enumerate(batches):
        synchronize(device)
        start = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = objective.terms(b, i, len(batches))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        synchronize(device)
        if i:
            times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2 ** 30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20  # Linux: KiB; the process's peak RSS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=tuple(SHAPES), default="paper")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=40, help="transcript tokens per utterance")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps (after one warm-up step)")
    parser.add_argument("--decode-clips", type=int, default=8)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        bf16 = device.type == "cuda" and torch.cuda.is_bf16_supported() or (
            device.type == "cpu" and check_supported("bf16", "bundled:base") is None)
    except UnsupportedPrecision:
        bf16 = False
    processor, generation = bundled_processor("base")
    torch.manual_seed(0)
    shapes = SHAPES[args.size]
    plain = whisper(*shapes["student"], generation).to(device)
    student = clsr.to_distilwhisper(copy.deepcopy(plain), LANGUAGES, "all").to(device).train()
    teacher = whisper(*shapes["teacher"], generation).to(device).requires_grad_(False).eval()
    config = TrainConfig(method="distilwhisper", student="-", languages=LANGUAGES, train="-", out="-",
                         teacher="-", bf16=bf16).check()
    batches = [batch(args.batch_size, args.tokens, device, seed) for seed in range(args.steps + 1)]
    rows = []
    live = step_seconds(Objective(config, student, student, teacher), student, batches, bf16, device)
    rows.append(["DistilWhisper step, live teacher", f"{live:.3f} s", f"{peak_memory_gib(device):.2f}"])
    cache = TeacherCache(tempfile.mkdtemp(), weights_fingerprint(teacher), config.top_k, name="random")
    synchronize(device)
    start = time.perf_counter()
    for b in batches:
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = teacher(input_features=b["input_features"], decoder_input_ids=b["decoder_input_ids"]).logits
        cache.put(b["ids"], b["decoder_input_ids"], b["decoder_mask"], logits)
    synchronize(device)
    rate = len(batches) * args.batch_size / (time.perf_counter() - start)
    rows.append(["teacher cache fill (forward + top-k + write)", f"{rate:.1f} utt/s", "-"])
    cached = step_seconds(Objective(config, student, student, teacher, cache), student, batches, bf16, device)
    rows.append(["DistilWhisper step, cached teacher (every batch a hit)", f"{cached:.3f} s",
                 f"{peak_memory_gib(device):.2f}"])

    audios = [np.random.default_rng(i).standard_normal(16000 * 10).astype(np.float32) * 0.1
              for i in range(args.decode_clips)]
    decoded = {}
    for name, model in (("student without experts", plain), ("student with experts (cs)", student)):
        decoder = WhisperDecoder(model.eval(), processor)
        decoder.transcribe(audios[:1], "cs", max_new_tokens=args.tokens)  # warm-up
        synchronize(device)
        start = time.perf_counter()
        decoder.transcribe(audios, "cs", max_new_tokens=args.tokens)
        synchronize(device)
        decoded[name] = (time.perf_counter() - start) / len(audios)
        rows.append([f"greedy decoding, {name}", f"{decoded[name]:.3f} s/utt", "-"])
    ratio = decoded["student with experts (cs)"] / decoded["student without experts"]
    name = torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"{args.size} size: student {shapes['student']}, teacher {shapes['teacher']} (d_model, layers, heads, "
          f"ffn), experts for {len(LANGUAGES)} languages in all FFN blocks, batch {args.batch_size}, "
          f"{args.tokens} tokens; device {device.type} ({name}), bf16 {'on' if bf16 else 'off'}, torch "
          f"{torch.__version__}\n")
    print("\n".join(markdown_table(["measure", "value", "peak memory (GiB)"], rows)))
    print(f"\nexperts / no experts decode time: {ratio:.2f}x")


if __name__ == "__main__":
    main()
