"""Serving under load, side by side: `distilwhisper serve` against faster-whisper-server (PyPI; an OpenAI-compatible
FastAPI server over faster-whisper) on the same bundled whisper-base weights and threads (issue #37).

Each server runs alone on the machine, a real uvicorn process on 127.0.0.1 started and stopped by this script.
Load: C concurrent clients (threads, each one request at a time) send the same fixed work, each recording once,
the language given, `response_format=json`: the first `--items` of a seeded order of asterisk telephone prompts
(en, es), lines of Fish Fillets NG's Czech dialogue (the demo's in-domain test lines) and two 3-minute recordings of
joined prompts.  The same work for every row makes the WERs comparable (a fixed sending time answers a different
subset per row).  Reported: throughput (audio seconds of the work per wall second, from the first request to the
last answer), p50/p95 latency, WER (normalised per language), and failed requests.  The peer runs at its best
`--batch-size` on the 16-client load (1 = faster-whisper's sequential `transcribe`; more = its
`BatchedInferencePipeline`, Silero VAD chunks decoded in batches), float32; ours at its best `--max-batch` and
`--trim` on the same load (by throughput, among the settings within 0.5 WER of `--max-batch 8` untrimmed).  With
`--experts RUN` a last row: the mixed stream served with those experts loaded (each request's language picks its
own), to read against the plain model's row at the same clients (`--clients ''` leaves the comparison out).

`--soak S`: S seconds at 8 clients sending the recordings round-robin, once per glibc malloc setting of
`--malloc` (environment variables of the server process: `default`, `arena2` = MALLOC_ARENA_MAX=2, `mmap1m` =
MALLOC_MMAP_THRESHOLD_=1048576, `both`), the server's resident memory sampled every 10 s.  Growth is counted from
the sample at 2 minutes: the first minute's growth is the allocator warming up to the largest batches.

    .venv/bin/python benchmarks/serve_load.py [--items 41] [--clients 1,4,16] [--experts RUN]
                                              [--soak 600 [--malloc default,arena2,mmap1m,both]]
"""

from __future__ import annotations

import argparse
import itertools
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx2 as httpx  # what the openai client itself sends requests with
import numpy as np
import soundfile as sf

from distilwhisper.audio import SAMPLE_RATE, load_audio
from distilwhisper.data.asterisk import import_asterisk
from distilwhisper.hub import resolve_ct2_dir
from distilwhisper.quantize import cpu_name
from distilwhisper.report import markdown_table
from distilwhisper.studies.demo_config import DemoConfig
from distilwhisper.studies.demo_corpus import real_speech_sets
from common import comma_list, corpus_wer

PEER_BATCHES = (1, 8)
Setting = tuple[int, bool]  # distilwhisper serve's --max-batch, --trim
OUR_SETTINGS: tuple[Setting, ...] = ((8, False), (16, False), (8, True), (16, True))
WER_SLACK = 0.5  # points of WER a setting of ours may lose to our default's (the first) and still be chosen
WARM_UP = 120  # seconds of soak before the memory baseline: the allocator's pools grow with the largest batch seen
MALLOC = {"default": {}, "arena2": {"MALLOC_ARENA_MAX": "2"}, "mmap1m": {"MALLOC_MMAP_THRESHOLD_": "1048576"},
          "both": {"MALLOC_ARENA_MAX": "2", "MALLOC_MMAP_THRESHOLD_": "1048576"}}


@dataclass
class Item:
    path: str
    language: str
    text: str
    seconds: float


@dataclass
class Load:
    """What one load run answered."""

    latencies: list[float] = field(default_factory=list)
    audio: float = 0.0
    failed: int = 0
    pairs: list[tuple[str, str, str]] = field(default_factory=list)  # (reference, answer, language)
    wall: float = 0.0

    def row(self, name: str, clients: int) -> list[str]:
        lat = np.array(self.latencies or [np.nan])
        return [name, str(clients), f"{self.audio / self.wall:.2f}", f"{np.percentile(lat, 50):.2f}",
                f"{np.percentile(lat, 95):.2f}", f"{corpus_wer(self.pairs):.2f}", str(len(self.latencies)),
                str(self.failed)]


HEADER = ["server", "clients", "throughput (audio s / s)", "p50 latency s", "p95 latency s", "WER %", "answered",
          "failed"]


def pool(out: Path, seed: int) -> list[Item]:
    """The recordings the clients send, in a seeded round-robin order."""
    items = []
    prompts = import_asterisk(["en", "es"], out / "asterisk")[0]
    for u in prompts[:40:2] + prompts[1:40:2]:
        items.append(Item(u.audio, u.language, u.text, len(load_audio(u.audio)) / SAMPLE_RATE))
    for u in real_speech_sets("cs", DemoConfig(), 0)[1][:40]:
        items.append(Item(u.audio, "cs", u.text, len(load_audio(u.audio)) / SAMPLE_RATE))
    for language in ("en", "es"):  # 3-minute recordings: prompts joined with 0.5 s pauses
        chosen = [u for u in prompts if u.language == language]
        parts, texts, total = [], [], 0.0
        for u in chosen:
            audio = load_audio(u.audio)
            parts += [audio, np.zeros(SAMPLE_RATE // 2, np.float32)]
            texts.append(u.text)
            total += len(audio) / SAMPLE_RATE + 0.5
            if total >= 180:
                break
        path = out / f"long-{language}.wav"
        sf.write(str(path), np.concatenate(parts), SAMPLE_RATE)
        items.append(Item(str(path), language, " ".join(texts), total))
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[i] for i in order]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """A server process (with `env` added to this one's environment), once its /health answers."""
    proc = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(command)} exited with {proc.returncode}; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(1)
    proc.kill()
    raise RuntimeError(f"{' '.join(command)}: no /health after 300 s; see {log}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def run_load(port: int, items: list[Item], clients: int, seconds: float | None = None, warm: bool = True) -> Load:
    """`clients` threads sending `items`: each once, or with `seconds` round-robin for that long; answers collected
    until the last one."""
    url = f"http://127.0.0.1:{port}/v1/audio/transcriptions"
    if warm:  # one request first: model loading is not load
        httpx.post(url, files={"file": open(items[0].path, "rb")}, data={"model": "whisper-1"}, timeout=600)
    result, lock, counter = Load(), threading.Lock(), itertools.count()
    begin = time.perf_counter()

    def client() -> None:
        with httpx.Client(timeout=900) as http:
            while seconds is None or time.perf_counter() - begin < seconds:
                index = next(counter)
                if seconds is None and index >= len(items):
                    return
                item = items[index % len(items)]
                sent = time.perf_counter()
                try:
                    with open(item.path, "rb") as f:
                        answer = http.post(url, files={"file": (Path(item.path).name, f, "audio/wav")},
                                           data={"model": "whisper-1", "language": item.language,
                                                 "response_format": "json", "temperature": "0"})
                    ok = answer.status_code == 200
                    text = answer.json().get("text", "") if ok else ""
                except httpx.HTTPError:
                    ok, text = False, ""
                with lock:
                    if ok:
                        result.latencies.append(time.perf_counter() - sent)
                        result.audio += item.seconds
                        result.pairs.append((item.text, text, item.language))
                    else:
                        result.failed += 1

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.wall = time.perf_counter() - begin
    return result


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def ours(port: int, threads: int, experts: str | None, precision: str, setting: Setting) -> list[str]:
    max_batch, trim = setting
    return [sys.executable, "-m", "distilwhisper.cli", "serve", "--port", str(port), "--threads", str(threads),
            "--precision", precision, "--max-batch", str(max_batch), *(["--trim"] if trim else []),
            *(["--experts", experts] if experts else [])]


def setting_name(setting: Setting) -> str:
    return f"--max-batch {setting[0]}" + (" --trim" if setting[1] else "")


def peer(port: int, threads: int, batch: int, tmp: Path) -> list[str]:
    config = tmp / f"peer-{batch}.yaml"
    config.write_text(f"models:\n  - name: whisper-1\n    path: {resolve_ct2_dir('bundled:base')}\n"
                      f"    batch_size: {batch}\n    model_options:\n      device: cpu\n      compute_type: float32\n"
                      f"      cpu_threads: {threads}\n    transcribe_options:\n      beam_size: 1\n")
    return [sys.executable, "-m", "faster_whisper_server", "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port)]


def serve_and_load(command_of, tmp: Path, items: list[Item], clients: list[int]) -> dict[int, Load]:
    port = free_port()
    proc = start(command_of(port), port, tmp / f"server-{port}.log")
    try:
        return {c: run_load(port, items, c, warm=(i == 0)) for i, c in enumerate(clients)}
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=41,
                        help="the work of every load: this many recordings of the pool's seeded order (82 in all)")
    parser.add_argument("--clients", default="1,4,16", help="the loads compared ('' leaves the comparison out)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto", help="distilwhisper serve --precision")
    parser.add_argument("--experts", help="a DistilWhisper run: the mixed stream with its experts loaded")
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of an 8-client soak of distilwhisper serve")
    parser.add_argument("--malloc", default="default", help=f"the soak's malloc settings ({', '.join(MALLOC)})")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    clients = comma_list(args.clients, "--clients", int)
    mallocs = comma_list(args.malloc, "--malloc", known=MALLOC)
    if args.items < 1:
        parser.error(f"--items {args.items}: a load needs at least one recording")
    if 0 < args.soak < 2 * WARM_UP:
        parser.error(f"--soak {args.soak:.0f}: growth is counted from {WARM_UP} s, so a soak needs {2 * WARM_UP} s")
    tmp = Path(tempfile.mkdtemp(prefix="serve-load-"))
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    everything = pool(Path("bench-out/serve-load"), args.seed)
    work = everything[:args.items]
    print(f"{cpu_name()}, {args.threads} threads; every load: {len(work)} recordings, each once "
          f"({sum(i.seconds for i in work):.0f} s; en, es, cs; {sum(i.seconds > 120 for i in work)} of 3 minutes)\n",
          flush=True)

    def ours_of(experts: str | None, setting: Setting):
        return lambda port: ours(port, args.threads, experts, args.precision, setting)

    chosen = OUR_SETTINGS[0]
    if clients:
        chosen = compare(ours_of, lambda p, b: peer(p, args.threads, b, tmp), args.precision, args.experts, tmp,
                         work, clients)
    if args.soak:
        rows = [soak(ours_of(args.experts, chosen), tmp, everything, args.soak, name) for name in mallocs]
        print(f"\nsoak: {args.soak:.0f} s at 8 clients, `distilwhisper serve` (resident memory MiB)\n")
        print("\n".join(markdown_table(["malloc setting", "answered", "failed", "at 10 s", "at 60 s",
                                         f"at {WARM_UP} s", "at the end", f"growth from {WARM_UP} s %",
                                         "each minute"], rows)), flush=True)


def compare(ours_of, peer_of, precision: str, experts: str | None, tmp: Path, work: list[Item],
            clients: list[int]) -> Setting:
    """Each server's setting chosen on the largest load (the peer's batch size by throughput; ours by throughput
    among the settings within WER_SLACK of our default's WER), then both at every load (and the experts' row).
    Returns our chosen setting."""
    most = max(clients)
    calibration = {b: serve_and_load(lambda p, b=b: peer_of(p, b), tmp, work, [most])[most] for b in PEER_BATCHES}
    best = max(calibration, key=lambda b: calibration[b].audio / calibration[b].wall)
    print(f"faster-whisper-server's --batch-size on the {most}-client load:")
    print("\n".join(markdown_table(HEADER, [calibration[b].row(f"faster-whisper-server --batch-size {b}", most)
                                            for b in PEER_BATCHES])) + "\n", flush=True)
    ours_calibration = {s: serve_and_load(ours_of(None, s), tmp, work, [most])[most] for s in OUR_SETTINGS}
    default_wer = corpus_wer(ours_calibration[OUR_SETTINGS[0]].pairs)
    chosen = max((s for s, load in ours_calibration.items() if corpus_wer(load.pairs) <= default_wer + WER_SLACK),
                 key=lambda s: ours_calibration[s].audio / ours_calibration[s].wall)
    print(f"distilwhisper serve's settings on the {most}-client load (chosen: {setting_name(chosen)}):")
    print("\n".join(markdown_table(HEADER, [load.row(f"distilwhisper serve {setting_name(s)}", most)
                                            for s, load in ours_calibration.items()])) + "\n", flush=True)
    rows = []
    for name, command_of in ((f"distilwhisper serve ({precision}, {setting_name(chosen)})", ours_of(None, chosen)),
                             (f"faster-whisper-server --batch-size {best} (float32)", lambda p: peer_of(p, best))):
        loads = serve_and_load(command_of, tmp, work, clients)
        rows += [loads[c].row(name, c) for c in clients]
        print(f"{name} done", flush=True)
    if experts:
        loads = serve_and_load(ours_of(experts, chosen), tmp, work, [most])
        rows.append(loads[most].row(f"distilwhisper serve ({precision}, {setting_name(chosen)}), experts {experts}",
                                    most))
    print("\n".join(markdown_table(HEADER, rows)), flush=True)
    return chosen


def soak(command_of, tmp: Path, items: list[Item], seconds: float, malloc: str) -> list[str]:
    """One soak of a server under a malloc setting: its answers and its resident-memory curve, as a table row."""
    port = free_port()
    proc = start(command_of(port), port, tmp / f"soak-{malloc}.log", MALLOC[malloc])
    samples: list[float] = []
    sampler_done = threading.Event()

    def sample() -> None:
        while not sampler_done.wait(10):
            samples.append(rss_mib(proc.pid))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        load = run_load(port, items, 8, seconds)
    finally:
        sampler_done.set()
        sampler.join()
        stop(proc)
    warm = samples[WARM_UP // 10 - 1]
    return [malloc, str(len(load.latencies)), str(load.failed), f"{samples[0]:.0f}", f"{samples[5]:.0f}", f"{warm:.0f}",
            f"{samples[-1]:.0f}", f"{100 * (samples[-1] / warm - 1):+.1f}", " ".join(f"{m:.0f}" for m in samples[5::6])]


if __name__ == "__main__":
    main()
