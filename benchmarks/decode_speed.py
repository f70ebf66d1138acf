"""Decode speed and accuracy of the decoding options on real speech (asterisk prompts), side by side.

Rows: this toolkit's batched decoder (fp32, batch 1 and batched, with/without encoder trimming, bf16),
`transformers` `generate` at batch 1, and CTranslate2 float32 / int8 (batch 1 and batched), all on bundled:base,
same clips, same process, same thread count.  Prints seconds per utterance, speed relative to CTranslate2 float32
at batch 1, corpus WER, and how many transcripts are token-identical to `generate`.

    .venv/bin/python benchmarks/decode_speed.py [--per-language 16] [--threads 2] [--batch-size 8]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from distilwhisper.audio import load_audio
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.ct2 import CT2Decoder
from distilwhisper.decoding import MAX_NEW_TOKENS, Decoder, WhisperDecoder
from distilwhisper.hub import load_model, resolve_ct2_dir
from distilwhisper.quantize import quantize_dynamic_int8
from common import corpus_wer


def batched(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-language", type=int, default=16, help="prompts per language (en, es)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--out", default="bench-out/corpus")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    utts, _ = import_asterisk(["en", "es"], args.out, args.per_language)
    # batches hold one language and are sorted by length, as the evaluator does
    utts.sort(key=lambda u: (u.language, len(load_audio(u.audio))))
    audios = [load_audio(u.audio) for u in utts]
    refs = [(u.text, u.language) for u in utts]
    groups = [[i for i, u in enumerate(utts) if u.language == lang] for lang in ("en", "es")]
    seconds = sum(len(a) for a in audios) / 16000
    print(f"{len(utts)} clips (en, es), {seconds / len(utts):.1f} s average; {args.threads} threads; "
          f"CPU: {platform.processor() or platform.machine()}, torch CPU capability: "
          f"{torch.backends.cpu.get_cpu_capability()}")

    model, processor = load_model("bundled:base")
    rows: list[tuple[str, float, list[str], list[list[int]] | None]] = []

    def run_ours(name: str, batch: int, trim: bool, dtype: torch.dtype | None = None, int8: bool = False) -> None:
        m = model if dtype is None and not int8 else load_model("bundled:base", dtype=dtype or torch.float32)[0]
        if int8:
            quantize_dynamic_int8(m, parts=("decoder",))
        run(name, WhisperDecoder(m, processor, trim=trim), batch)

    def run(name: str, dec: Decoder, batch: int) -> None:
        dec.transcribe(audios[:1], "en")  # warm-up
        texts: list[str] = [""] * len(utts)
        tokens: list[list[int]] = [[] for _ in utts]
        start = time.perf_counter()
        for idx in groups:
            for chunk in batched(idx, batch):
                for i, tr in zip(chunk, dec.transcribe([audios[i] for i in chunk], utts[chunk[0]].language)):
                    texts[i], tokens[i] = tr.text, tr.tokens
        rows.append((name, (time.perf_counter() - start) / len(utts), texts,
                     tokens if isinstance(dec, WhisperDecoder) else None))

    # (b) transformers generate, batch 1
    fe, tok = processor.feature_extractor, processor.tokenizer
    model.generate(fe(audios[0], sampling_rate=16000, return_tensors="pt").input_features, language="en",
                   task="transcribe", max_new_tokens=MAX_NEW_TOKENS)
    start = time.perf_counter()
    gen_tokens = []
    for audio, (_, lang) in zip(audios, refs):
        feats = fe(audio, sampling_rate=16000, return_tensors="pt").input_features
        gen_tokens.append(model.generate(feats, language=lang, task="transcribe",
                                         max_new_tokens=MAX_NEW_TOKENS)[0].tolist())
    rows.append(("transformers generate, batch 1", (time.perf_counter() - start) / len(utts),
                 [tok.decode(t, skip_special_tokens=True).strip() for t in gen_tokens], gen_tokens))

    # (a) this decoder
    run_ours("ours fp32, batch 1", 1, trim=False)
    run_ours(f"ours fp32, batch {args.batch_size}", args.batch_size, trim=False)
    run_ours("ours fp32, batch 1, trim", 1, trim=True)
    run_ours(f"ours fp32, batch {args.batch_size}, trim", args.batch_size, trim=True)
    run_ours(f"ours fp32, batch {args.batch_size}, int8 decoder", args.batch_size, trim=False, int8=True)
    run_ours(f"ours fp32, batch {args.batch_size}, trim, int8 decoder", args.batch_size, trim=True, int8=True)
    run_ours(f"ours fp32, batch {2 * args.batch_size}, trim, int8 decoder", 2 * args.batch_size, trim=True, int8=True)
    run_ours(f"ours bf16, batch {args.batch_size}, trim", args.batch_size, trim=True, dtype=torch.bfloat16)

    # (c) CTranslate2 on the same features and prompts (the toolkit's CTranslate2 backend)
    ct2_dir = str(resolve_ct2_dir("bundled:base"))
    for compute_type in ("float32", "int8"):
        ct = CT2Decoder(ct2_dir, processor, model.generation_config, compute_type, args.threads)
        for batch in (1, args.batch_size):
            run(f"CTranslate2 {compute_type}, batch {batch}", ct, batch)

    base = next(r[1] for r in rows if r[0] == "CTranslate2 float32, batch 1")
    print("\n| option | s/utt | speed-up vs CT2 fp32 batch 1 | WER % | tokens identical to generate |")
    print("|---|---|---|---|---|")
    for name, sec, texts, tokens in rows:
        same = "n/a" if tokens is None else f"{sum(t == g for t, g in zip(tokens, gen_tokens))}/{len(utts)}"
        wer = corpus_wer((text, hyp, lang) for (text, lang), hyp in zip(refs, texts))
        print(f"| {name} | {sec:.3f} | {base / sec:.2f}x | {wer:.2f} | {same} |")


if __name__ == "__main__":
    main()
