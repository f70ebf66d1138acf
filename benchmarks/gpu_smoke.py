"""The CUDA paths, checked on a lent GPU with a tiny random Whisper (the real weights do not travel to it): decoding
(greedy, beam, timestamps, word timestamps) on the GPU against the same model on the CPU, and every registered
training method trained a few steps on the GPU (fp32 and bf16 autocast), its run folder reloaded and evaluated.
Correctness, not speed: a tiny model times nothing of interest.

    python benchmarks/gpu_smoke.py --model DIR --out DIR     # DIR: a saved tiny Whisper with its processor
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from distilwhisper import methods
from distilwhisper.decoding import WhisperDecoder
from distilwhisper.evaluate import EvalConfig, run_eval
from distilwhisper.hub import load_model
from distilwhisper.runs import TrainedRun
from distilwhisper.train import TrainConfig
from distilwhisper.train.loop import train


def tones(root: Path) -> Path:
    """A manifest of 8 generated clips (ca, cs) of growing length."""
    rows = []
    for i in range(8):
        lang = ("ca", "cs")[i % 2]
        t = np.arange(int(16000 * (1.0 + 0.5 * i))) / 16000
        path = root / f"{lang}{i}.wav"
        sf.write(str(path), (0.3 * np.sin(2 * np.pi * (300 + 40 * i) * t)).astype(np.float32), 16000)
        rows.append({"id": f"{lang}{i}", "audio": str(path), "text": "bon dia" if lang == "ca" else "dobrý den",
                     "language": lang})
    manifest = root / "m.jsonl"
    manifest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return manifest


def decoding(model_dir: str, audios: list[np.ndarray]) -> dict:
    """Each decoding mode on the GPU and on the CPU: how many clips give the same tokens."""
    cpu_model, processor = load_model(model_dir)
    gpu_model, _ = load_model(model_dir)
    cpu, gpu = WhisperDecoder(cpu_model, processor), WhisperDecoder(gpu_model.to("cuda"), processor)
    report = {}
    for name, options in {"greedy": {}, "beam 4": {"beam_size": 4}, "timestamps": {"timestamps": True},
                          "word timestamps": {"word_timestamps": True}}.items():
        a = cpu.transcribe(audios, "ca", max_new_tokens=12, **options)
        b = gpu.transcribe(audios, "ca", max_new_tokens=12, **options)
        report[name] = {"same tokens": sum(x.tokens == y.tokens for x, y in zip(a, b)), "clips": len(a)}
        if options.get("word_timestamps"):
            report[name]["words within the clip"] = all(0 <= w.start <= w.end <= len(audio) / 16000 + 1e-6
                                                        for t, audio in zip(b, audios) for w in t.words)
    return report


def training(model_dir: str, manifest: Path, out: Path) -> dict:
    """Every registered method, 6 steps on the GPU in fp32 and in bf16 autocast, dev every 3; its kept model
    reloaded and evaluated on the GPU."""
    report = {}
    for method in methods.names():
        for bf16 in (False, True):
            run = out / f"{method}-{'bf16' if bf16 else 'fp32'}"
            config = TrainConfig(method=method, student=model_dir, languages=["ca", "cs"], train=str(manifest),
                                 dev=str(manifest), out=str(run), max_steps=6, batch_size=2, lr=1e-2, warmup=0.0,
                                 eval_every=3, bf16=bf16, teacher=model_dir if methods.get(method).needs_teacher
                                 else None)
            start = time.perf_counter()
            result = train(config, progress=False)
            seconds = time.perf_counter() - start
            model, _ = TrainedRun.open(run).load()
            rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
            summary = run_eval(EvalConfig(model=str(run), data=str(manifest), out=str(out / f"eval-{run.name}")),
                               progress=False)
            report[run.name] = {"steps": result.state.step, "device": str(next(result.model.parameters()).device),
                                "first loss": rows[0]["loss"], "last loss": rows[-1]["loss"],
                                "kept step": result.state.best_step, "reloaded parameters":
                                sum(p.numel() for p in model.parameters()),
                                "eval WER": summary["overall"]["wer"]["value"], "seconds": round(seconds, 1)}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device here")
    manifest = tones(out)
    audios = [sf.read(json.loads(line)["audio"], dtype="float32")[0] for line in manifest.read_text().splitlines()]
    report = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__,
              "decoding": decoding(args.model, audios), "training": training(args.model, manifest, out / "runs")}
    (out / "gpu_smoke.json").write_text(json.dumps(report, indent=1))  # the report; the runs stay beside it
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
