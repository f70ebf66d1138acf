"""Trained runs exported and decoded by the tools people already run, side by side with this toolkit (issue #38).

For each run (`--run NAME=FOLDER`, any method): `distilwhisper export --format hf` (LoRA merged; a run with experts
with `--merge-experts LANG`, the opt-in approximation) and `--format ct2` at float32 and int8; then the demo's real
Czech test lines (Fish Fillets NG dialogue, never the reserved confirmation lines) are decoded greedily, the language
given, one pass, by
  - `distilwhisper eval`'s decoder on the run folder itself (exact: a run with experts decodes with its gates),
  - the transformers `pipeline("automatic-speech-recognition")` on the exported folder,
  - faster-whisper `WhisperModel` on the CTranslate2 folder, float32 and int8 (no timestamps, no VAD, no previous
    text, temperature 0 only), given each clip as it is and given it padded with silence to 30 s: faster-whisper
    pads a short clip's log-mel with zeros after normalising it, where Whisper (openai-whisper, transformers, this
    toolkit) pads the audio with silence before; the padded row feeds faster-whisper the features the model was
    trained on,
  - CTranslate2's `Whisper.generate` on the same folder given this toolkit's log-mel features and prompt
    (`ct2.CT2Decoder`): the conversion alone, without faster-whisper's own feature extraction and decoding loop.
A control row decodes the bundled model itself (no export) with faster-whisper against this toolkit: how far the
two front ends part on these lines before any export.
Prints per run and system: lines whose transcript is identical to the run's own (text; for the CTranslate2 engines
also the token ids), WER, and the WER change against the run's own.

    .venv/bin/python benchmarks/export_fidelity.py --run ft=RUN [--run lora=RUN] [--run distilwhisper=RUN]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jiwer
import numpy as np
import torch

from distilwhisper.audio import MAX_SECONDS, SAMPLE_RATE, load_audio
from distilwhisper.ct2 import CT2Decoder
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import ONE_PASS
from distilwhisper.export import ExportConfig, export
from distilwhisper.hub import resolve_ct2_dir
from distilwhisper.normalize import normalize
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table
from distilwhisper import methods
from distilwhisper.runs import TrainedRun, model_or_run
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets

LANGUAGE = "cs"


def wer(references: list[str], hypotheses: list[str]) -> float:
    refs = [normalize(r, LANGUAGE) for r in references]
    hyps = [normalize(h, LANGUAGE) or "-" for h in hypotheses]
    out = jiwer.process_words(refs, hyps)
    return 100 * (out.substitutions + out.deletions + out.insertions) / sum(len(r.split()) for r in refs)


def decode(decoder, audios: list[np.ndarray], eot: int) -> tuple[list[str], list[list[int]]]:
    """(texts, text tokens) of any `decoding.Decoder` (this toolkit's torch decoder or `ct2.CT2Decoder`), in
    batches of 8, one pass; the comparison is of text tokens, so end-of-text and the special tokens after it are
    left out."""
    texts, tokens = [], []
    for i in range(0, len(audios), 8):
        for t in decoder.transcribe(audios[i:i + 8], LANGUAGE, ONE_PASS):
            texts.append(t.text.strip())
            tokens.append([k for k in t.tokens if k < eot])
    return texts, tokens


def pipeline_texts(folder: Path, audios: list[np.ndarray]) -> list[str]:
    from transformers import pipeline

    asr = pipeline("automatic-speech-recognition", model=str(folder), device="cpu")
    out = asr([{"raw": a, "sampling_rate": 16000} for a in audios], batch_size=8,
              generate_kwargs={"language": LANGUAGE, "task": "transcribe", "num_beams": 1, "do_sample": False,
                               "max_new_tokens": 225})
    return [o["text"].strip() for o in out]


def padded(audios: list[np.ndarray]) -> list[np.ndarray]:
    """Each clip followed by silence up to 30 s: the input Whisper's own front end builds its features from."""
    return [np.pad(a, (0, max(0, int(MAX_SECONDS * SAMPLE_RATE) - len(a)))) for a in audios]


def faster_whisper(folder: Path, audios: list[np.ndarray], compute_type: str,
                   threads: int) -> tuple[list[str], list[list[int]]]:
    from faster_whisper import WhisperModel

    model = WhisperModel(str(folder), device="cpu", compute_type=compute_type, cpu_threads=threads)
    texts, tokens = [], []
    for audio in audios:
        segments = list(model.transcribe(audio, language=LANGUAGE, beam_size=1, temperature=0.0,
                                         without_timestamps=True, condition_on_previous_text=False,
                                         vad_filter=False)[0])
        texts.append(" ".join(s.text.strip() for s in segments).strip())
        tokens.append([k for s in segments for k in s.tokens])
    return texts, tokens


def _row(name: str, system: str, references: list[str], texts: list[str], tokens: list[list[int]],
         own_texts: list[str], own_tokens: list[list[int]], own_wer: float) -> list[str]:
    same_tokens = sum(a == b for a, b in zip(tokens, own_tokens))
    same_text = sum(a == b for a, b in zip(texts, own_texts))
    return [name, system, f"{100 * same_tokens / len(texts):.1f} % tokens, {100 * same_text / len(texts):.1f} % text",
            f"{wer(references, texts):.2f}", f"{wer(references, texts) - own_wer:+.2f}"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=FOLDER of a `train` run (repeat)")
    parser.add_argument("--out", default="bench-out/export-fidelity", help="where the exported folders go")
    parser.add_argument("--lines", type=int, help="the first N test lines (default: all)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    lines = real_speech_sets(LANGUAGE, DemoConfig(), 0)[1][:args.lines]
    audios = [load_audio(u.audio) for u in lines]
    references = [u.text for u in lines]
    rows = []
    for spec in args.run:
        name, _, folder = spec.partition("=")
        merge = LANGUAGE if methods.get(TrainedRun.open(folder).config.method).uses_experts else None
        out = Path(args.out) / name
        hf = export(ExportConfig(folder, "hf", str(out / "hf"), merge_experts=merge))
        model, processor = model_or_run(folder)  # loaded once: its decoder and the CTranslate2 rows' features
        own = WhisperDecoder(model, processor)
        own_texts, own_tokens = decode(own, audios, own.eot)
        own_wer = wer(references, own_texts)
        rows.append([name, "distilwhisper eval (the run)" + (", exact experts" if merge else ""), "-", f"{own_wer:.2f}",
                     "-"])
        texts = pipeline_texts(hf, audios)
        same = sum(a == b for a, b in zip(texts, own_texts))
        rows.append([name, "transformers pipeline, exported hf" + (f" (experts merged: {merge})" if merge else ""),
                     f"{100 * same / len(lines):.1f} % text", f"{wer(references, texts):.2f}",
                     f"{wer(references, texts) - own_wer:+.2f}"])
        for quantization in ("float32", "int8"):
            ct2 = export(ExportConfig(folder, "ct2", str(out / f"ct2-{quantization}"), quantization=quantization,
                                      merge_experts=merge))
            for clips, how in ((audios, ""), (padded(audios), ", clips padded to 30 s")):
                texts, tokens = faster_whisper(ct2, clips, quantization, args.threads)
                rows.append(_row(name, f"faster-whisper {quantization}, exported ct2{how}", references, texts,
                                 tokens, own_texts, own_tokens, own_wer))
            texts, tokens = decode(CT2Decoder(str(ct2), processor, model.generation_config, quantization,
                                              args.threads), audios, own.eot)
            rows.append(_row(name, f"CTranslate2 generate {quantization}, our features, exported ct2", references,
                             texts, tokens, own_texts, own_tokens, own_wer))
        print(f"{name} done", flush=True)
    base = WhisperDecoder(*model_or_run("bundled:base"))
    base_texts, base_tokens = decode(base, audios, base.eot)
    for clips, how in ((audios, ""), (padded(audios), ", clips padded to 30 s")):
        texts, tokens = faster_whisper(resolve_ct2_dir("bundled:base"), clips, "float32", args.threads)
        rows.append(_row("control: bundled:base, no export", f"faster-whisper float32{how} against distilwhisper eval",
                         references, texts, tokens, base_texts, base_tokens, wer(references, base_texts)))
    print(f"\n{len(lines)} real Czech test lines, greedy, {cpu_name()}, {args.threads} threads\n")
    print("\n".join(markdown_table(["run", "decoded by", "identical to the run's own", "WER %", "change"], rows)))


if __name__ == "__main__":
    main()
