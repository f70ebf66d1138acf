"""The OpenAI-compatible server (issue #37): the batcher gives each request what `transcribe` gives its file alone;
a real uvicorn process on 127.0.0.1, driven by the official `openai` client for every response format and the
stream, and by raw requests for every error."""

from __future__ import annotations

import itertools
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2 as httpx  # what the openai client itself sends requests with
import numpy as np
import pytest

from distilwhisper.batcher import Batcher, Job
from distilwhisper.decoding import DecodingOptions
from distilwhisper.transcribe import SAMPLE_RATE, Transcriber
from conftest import tone, write_wav

KEY = "test-key"


@pytest.fixture(scope="module")
def tiny_dir(tiny, tmp_path_factory):
    model, processor = tiny
    root = tmp_path_factory.mktemp("serve")
    model.save_pretrained(root / "tiny")
    processor.save_pretrained(root / "tiny")
    return root


def _recording(seconds: list[float], freq: float) -> np.ndarray:
    gap = np.zeros(SAMPLE_RATE, np.float32)
    return np.concatenate([part for s in seconds for part in (tone(s, freq=freq), gap)])


def test_requests_of_two_languages_batched_together_get_what_each_gets_alone(tiny_dir):
    transcriber = Transcriber(str(tiny_dir / "tiny"), precision="fp32")
    audios = {"ca": _recording([8.0], 440.0), "cs": _recording([6.0], 300.0)}
    alone = {lang: transcriber(audio, lang) for lang, audio in audios.items()}
    batcher = Batcher(transcriber, max_batch=8, max_wait=0.5)
    try:
        jobs = {lang: batcher.submit(Job(audio, lang, DecodingOptions())) for lang, audio in audios.items()}
        for job in jobs.values():
            assert job.done.wait(120) and job.error is None
    finally:
        batcher.stop()
    for lang, job in jobs.items():
        assert [(s.start, s.end, s.text) for s in job.result.segments] == \
            [(s.start, s.end, s.text) for s in alone[lang].segments]
        assert job.result.language == lang


def test_requests_that_wait_while_the_worker_decodes_fill_whole_batches(tiny_dir):
    """Eight one-window requests of two languages, alternating, queued while the worker is busy: the next round
    takes all of them and decodes one full batch per language (taking `max_batch` requests made four half-full
    batches), and each request still gets its alone answer."""
    transcriber = Transcriber(str(tiny_dir / "tiny"), precision="fp32")
    audios = [(lang, _recording([2.0 + 0.25 * i], 300.0 + 40 * i)) for i, lang in enumerate(["ca", "cs"] * 4)]
    options = DecodingOptions(max_new_tokens=8)  # the batches' sizes are what is tested, not long random texts
    alone = [transcriber(audio, lang, options).text for lang, audio in audios]
    decode, sizes, busy, release = transcriber.decode, [], threading.Event(), threading.Event()

    def recorded(windows, language, options):
        sizes.append((language, len(windows)))
        busy.set()
        release.wait(60)
        return decode(windows, language, options)

    transcriber.decode = recorded
    batcher = Batcher(transcriber, max_batch=4, max_wait=0.0)
    try:
        first = batcher.submit(Job(_recording([3.0], 500.0), "cs", options))
        assert busy.wait(60)
        jobs = [batcher.submit(Job(audio, lang, options)) for lang, audio in audios]
        release.set()
        for job in [first, *jobs]:
            assert job.done.wait(120) and job.error is None
    finally:
        release.set()
        batcher.stop()
    assert sizes == [("cs", 1), ("ca", 4), ("cs", 4)]
    assert [job.result.text for job in jobs] == alone


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_dir):
    """A real server process on 127.0.0.1 (tiny model, API key, 2 MB uploads); stopped by its PID at teardown."""
    port = _free_port()
    log = open(tiny_dir / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "distilwhisper.cli", "serve", "--no-vad",  # tones: by energy
                             "--model", str(tiny_dir / "tiny"),
                             "--port", str(port), "--api-key", KEY, "--max-upload-mb", "2", "--precision", "fp32",
                             "--threads", "1"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                raise RuntimeError(f"server exited: {(tiny_dir / 'server.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        yield base, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def clip(tiny_dir) -> Path:
    return write_wav(tiny_dir / "clip.wav", 6.0)


def test_the_openai_client_gets_every_response_format(server, tiny_dir, clip):
    from openai import OpenAI

    base, _ = server
    client = OpenAI(base_url=f"{base}/v1", api_key=KEY)
    expected = Transcriber(str(tiny_dir / "tiny"), precision="fp32")(clip, "ca")
    assert [m.id for m in client.models.list().data] == ["whisper-1"]
    plain = client.audio.transcriptions.create(model="whisper-1", file=clip.open("rb"), language="ca")
    assert plain.text == expected.text
    text = client.audio.transcriptions.create(model="whisper-1", file=clip.open("rb"), language="ca",
                                              response_format="text")
    assert text.strip() == expected.text
    for fmt, marker in (("srt", "00:00:00,"), ("vtt", "WEBVTT")):
        subtitles = client.audio.transcriptions.create(model="whisper-1", file=clip.open("rb"), language="ca",
                                                       response_format=fmt)
        assert marker in subtitles
    detailed = client.audio.transcriptions.create(model="whisper-1", file=clip.open("rb"), language="ca",
                                                  response_format="verbose_json",
                                                  timestamp_granularities=["word", "segment"])
    assert detailed.language == "ca" and detailed.text == expected.text and detailed.duration == pytest.approx(6.0)
    assert detailed.segments and all(0 <= w.start <= w.end <= 6.0 for w in detailed.words or [])
    translated = client.audio.translations.create(model="whisper-1", file=clip.open("rb"))
    assert isinstance(translated.text, str)


def test_the_stream_sends_deltas_then_the_whole_text(server, tiny_dir):
    from openai import OpenAI

    base, _ = server
    audio = write_wav(tiny_dir / "long.wav", 1.0)
    long = _recording([20.0, 20.0], 440.0)
    import soundfile as sf

    sf.write(str(audio), long, SAMPLE_RATE)
    client = OpenAI(base_url=f"{base}/v1", api_key=KEY)
    events = list(client.audio.transcriptions.create(model="whisper-1", file=audio.open("rb"), language="ca",
                                                     stream=True))
    kinds = [e.type for e in events]
    assert kinds[-1] == "transcript.text.done" and set(kinds[:-1]) <= {"transcript.text.delta"}
    assert "".join(e.delta for e in events[:-1]) == events[-1].text


@pytest.mark.parametrize("case, status, code", [
    ("no key", 401, "invalid_api_key"), ("unknown model", 404, "model_not_found"),
    ("a path as the model", 404, "model_not_found"), ("unknown language", 400, "unsupported_language"),
    ("unreadable audio", 400, "invalid_audio"), ("too large", 413, "file_too_large"),
    ("unknown format", 400, None), ("no file", 400, None)])
def test_every_error_is_answered_in_openais_shape(server, tiny_dir, clip, case, status, code):
    base, _ = server
    headers = {} if case == "no key" else {"Authorization": f"Bearer {KEY}"}
    data = {"model": "whisper-1", "language": "ca"}
    files = {"file": ("clip.wav", clip.read_bytes(), "audio/wav")}
    if case == "unknown model":
        data["model"] = "whisper-9"
    elif case == "a path as the model":
        data["model"] = str(tiny_dir / "tiny")
    elif case == "unknown language":
        data["language"] = "klingon"
    elif case == "unreadable audio":
        files = {"file": ("clip.wav", b"RIFF not really a wave file", "audio/wav")}
    elif case == "too large":
        files = {"file": ("big.wav", b"\0" * (3 * 2**20), "audio/wav")}
    elif case == "unknown format":
        data["response_format"] = "docx"
    elif case == "no file":
        files = {}
    response = httpx.post(f"{base}/v1/audio/transcriptions", data=data, files=files or None, headers=headers,
                          timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code


def test_the_server_logs_one_json_line_per_request_and_stops_by_its_pid(server, tiny_dir):
    base, proc = server
    assert httpx.get(f"{base}/health", timeout=10).json()["status"] == "ok"
    assert proc.poll() is None
    lines = [json.loads(line) for line in (tiny_dir / "server.log").read_text().splitlines()
             if line.startswith("{")]
    assert any(r["path"] == "/health" and r["status"] == 200 for r in lines)
    assert any(r["path"] == "/v1/audio/transcriptions" and "audio_s" in r and "latency_s" in r for r in lines)


def test_a_request_past_the_time_limit_is_answered_504_and_the_server_stays_up(tiny_dir):
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "distilwhisper.cli", "serve", "--no-vad",  # tones: by energy
                             "--model", str(tiny_dir / "tiny"),
                             "--port", str(port), "--timeout-s", "0.3", "--precision", "fp32", "--threads", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        long = write_wav(tiny_dir / "timeout.wav", 1.0)
        import soundfile as sf

        sf.write(str(long), _recording([25.0, 25.0], 440.0), SAMPLE_RATE)  # two windows and their fallbacks
        response = httpx.post(f"{base}/v1/audio/transcriptions", data={"model": "whisper-1", "language": "ca"},
                              files={"file": ("timeout.wav", long.read_bytes(), "audio/wav")}, timeout=120)
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        assert httpx.get(f"{base}/health", timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _disconnect_mid_upload(base: str) -> None:
    """A client that announces a 1 MB upload, sends the form's start and half a WAV, then closes its socket."""
    host, port = base.removeprefix("http://").split(":")
    boundary = "faultboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"cut.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall((f"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
                      f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {2**20}\r\n\r\n"
                      ).encode() + head + b"RIFF" + b"\0" * 2**18)


def _disconnect_mid_stream(base: str, audio: bytes) -> bool:
    """A streaming client that reads the first event, then goes away; True if an event came."""
    with httpx.Client(timeout=120) as client, client.stream(
            "POST", f"{base}/v1/audio/transcriptions", headers={"Authorization": f"Bearer {KEY}"},
            data={"model": "whisper-1", "language": "ca", "stream": "true"},
            files={"file": ("long.wav", audio, "audio/wav")}) as response:
        assert response.status_code == 200, response.read()
        return any(line.startswith("data:") for line in itertools.islice(response.iter_lines(), 4))


def test_faults_of_some_clients_leave_every_other_answer_correct(server, tiny_dir):
    """While four clients wait for their answers, one client drops mid-upload, one mid-stream, one sends audio with
    NaN samples and one a truncated WAV: the four get exactly what their file gets alone, the bad files 400, and the
    server keeps serving."""
    import soundfile as sf
    from concurrent.futures import ThreadPoolExecutor

    base, proc = server
    good = tiny_dir / "good.wav"
    sf.write(str(good), _recording([9.0, 7.0], 330.0), SAMPLE_RATE)
    expected = Transcriber(str(tiny_dir / "tiny"), precision="fp32")(good, "ca").text
    long = tiny_dir / "stream.wav"
    sf.write(str(long), _recording([25.0, 25.0], 440.0), SAMPLE_RATE)  # two windows, under the 2 MB limit
    nan = tiny_dir / "nan.wav"
    sf.write(str(nan), np.full(SAMPLE_RATE * 3, np.nan, np.float32), SAMPLE_RATE, subtype="FLOAT")
    headers = {"Authorization": f"Bearer {KEY}"}

    def post(name: str, data: bytes) -> httpx.Response:
        return httpx.post(f"{base}/v1/audio/transcriptions", headers=headers, timeout=300,
                          data={"model": "whisper-1", "language": "ca"}, files={"file": (name, data, "audio/wav")})

    with ThreadPoolExecutor(8) as pool:
        answers = [pool.submit(post, "good.wav", good.read_bytes()) for _ in range(4)]
        faults = [pool.submit(_disconnect_mid_upload, base),
                  pool.submit(_disconnect_mid_stream, base, long.read_bytes()),
                  pool.submit(post, "nan.wav", nan.read_bytes()),
                  pool.submit(post, "truncated.wav", good.read_bytes()[:40])]
        assert faults[1].result()
        assert [f.result().status_code for f in faults[2:]] == [400, 400]
        assert faults[2].result().json()["error"]["code"] == "invalid_audio"
        assert [a.result().status_code for a in answers] == [200] * 4
    assert [a.result().json()["text"] for a in answers] == [expected] * 4
    assert proc.poll() is None and post("good.wav", good.read_bytes()).json()["text"] == expected


def test_the_server_uses_vad_and_trim_as_configured(tiny_dir, speech, tmp_path):
    """`serve` decodes as `transcribe` does: by default only the speech Silero finds (prompts 20 s apart joined
    into one segment), with --no-vad windows cut at pauses (one per prompt); --trim reaches the model the server
    loads (its answer is that of a trimming Transcriber alone, not the untrimmed one's)."""
    import soundfile as sf
    from fastapi.testclient import TestClient

    from distilwhisper.audio import load_audio
    from distilwhisper.serve import ServeConfig, create_app

    silence = np.zeros(20 * SAMPLE_RATE, np.float32)
    talk, short = tmp_path / "talk.wav", tmp_path / "short.wav"
    sf.write(str(talk), np.concatenate([p for u in speech[:3] for p in (load_audio(u.audio), silence)]), SAMPLE_RATE)
    sf.write(str(short), _recording([4.0], 440.0), SAMPLE_RATE)

    def answer(config: ServeConfig, path: Path) -> dict:
        with TestClient(create_app(config)) as client:
            reply = client.post("/v1/audio/transcriptions", files={"file": (path.name, path.read_bytes())},
                                data={"model": "whisper-1", "language": "ca", "response_format": "verbose_json"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    model = str(tiny_dir / "tiny")
    assert len(answer(ServeConfig(model=model, precision="fp32"), talk)["segments"]) == 1
    assert len(answer(ServeConfig(model=model, precision="fp32", vad=False), talk)["segments"]) == 3
    trimmed = answer(ServeConfig(model=model, precision="fp32", vad=False, trim=True), short)["text"]
    alone = {trim: Transcriber(model, trim=trim, precision="fp32")(str(short), "ca").text for trim in (False, True)}
    assert alone[True] != alone[False] and trimmed == alone[True]
