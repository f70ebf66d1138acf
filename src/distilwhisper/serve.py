"""`distilwhisper serve`: an OpenAI-compatible transcription server over one loaded model (issue #37).

`POST /v1/audio/transcriptions` and `/v1/audio/translations` take OpenAI's multipart form (`file`, `model`,
`language`, `prompt`, `response_format` json | text | srt | vtt | verbose_json, `temperature`,
`timestamp_granularities[]` segment | word, `stream`) and answer as OpenAI does, errors included (`{"error":
{"message", "type", "param", "code"}}`); `GET /v1/models` lists the one name the server answers to and `GET
/health` says it is up.  One model serves every language: each request is decoded with its own (given or detected)
language's experts, and requests are batched together by the worker (`batcher.py`).  The `model` field is a name
from the server's own list, never a path; uploads have a size limit, the queue a length (503 with Retry-After when
full), requests a time limit; a client that goes away frees its place; one JSON access-log line per request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastapi import FastAPI, File, Form, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse

from distilwhisper.audio import SAMPLE_RATE, AudioError, load_audio
from distilwhisper.batcher import Batcher, Job, QueueFull
from distilwhisper.decoding import DecodingOptions
from distilwhisper.languages import check as check_language
from distilwhisper.subtitles import render
from distilwhisper.transcribe import Transcriber, Transcription

FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
log = logging.getLogger("distilwhisper.serve")


@dataclass
class ServeConfig:
    """`distilwhisper serve`: an OpenAI-compatible transcription server (POST /v1/audio/transcriptions and
    /v1/audio/translations, GET /v1/models, GET /health) over one model that serves every language."""

    model: str = field(default="bundled:base", metadata={"help": "model reference, or a `train` run folder"})
    experts: str | None = field(default=None, metadata={
        "help": "experts (a `train` run folder or its best/): each request's language uses its own"})
    name: str = field(default="whisper-1", metadata={
        "help": "the model name clients send and GET /v1/models lists (OpenAI's clients send whisper-1)"})
    host: str = field(default="127.0.0.1", metadata={"help": "address to listen on"})
    port: int = field(default=8000, metadata={"min": 1, "help": "port to listen on"})
    api_key: str | None = field(default=None, metadata={
        "help": "when set, requests need `Authorization: Bearer KEY` (401 without it)"})
    precision: str = field(default="auto", metadata={"help": "as `transcribe --precision`"})
    trim: bool = field(default=False, metadata={
        "help": "encode only the frames holding audio (as `transcribe --trim`): short requests cost less, but a "
                "batch is encoded to its longest window, so an answer can depend on the requests beside it"})
    vad: bool = field(default=True, metadata={
        "negatable": True, "help": "decode only the speech Silero VAD finds, as `transcribe` does by default"})
    max_batch: int = field(default=8, metadata={"min": 1, "help": "windows decoded together, across requests"})
    max_wait_ms: float = field(default=20.0, metadata={
        "help": "how long the worker waits for more requests to batch with the first"})
    max_queue: int = field(default=64, metadata={"min": 1, "help": "requests waiting before 503"})
    max_upload_mb: float = field(default=25.0, metadata={"help": "largest upload (413 above; OpenAI's is 25 MB)"})
    timeout_s: float = field(default=600.0, metadata={"help": "a request's time limit (504 after it)"})
    threads: int | None = field(default=None, metadata={"min": 1, "help": "torch threads (default: all cores)"})


class ApiError(Exception):
    """An error answered in OpenAI's shape."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error", headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


def verbose(result: Transcription, task: str, words: bool) -> dict:
    """OpenAI's verbose_json: task, language, duration, text, segments (and words when asked)."""
    segments = [{"id": i, "seek": 0, "start": s.start, "end": s.end, "text": s.text, "tokens": [],
                 "temperature": s.temperature, "avg_logprob": s.avg_logprob, "compression_ratio": s.compression_ratio,
                 "no_speech_prob": s.no_speech_prob} for i, s in enumerate(result.segments)]
    body = {"task": task, "language": result.language, "duration": result.duration, "text": result.text,
            "segments": segments}
    if words:
        body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end}
                         for s in result.segments for w in s.words]
    return body


def read_upload(data: bytes, filename: str) -> np.ndarray:
    """The uploaded file's samples (any format `load_audio` reads); unreadable audio is the client's error."""
    suffix = Path(filename or "upload").suffix[:10]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        tmp.write(data)
        tmp.flush()
        try:
            return load_audio(tmp.name)
        except AudioError as err:
            reason = str(err).split(": ", 1)[-1]
            raise ApiError(400, f"could not read the uploaded file {filename!r}: {reason}", "file",
                           "invalid_audio") from None


def create_app(config: ServeConfig, transcriber: Transcriber | None = None) -> FastAPI:
    """The FastAPI application over `transcriber` (loaded from `config` when not given)."""
    state: dict = {}

    @asynccontextmanager
    async def lifespan(app):
        state["batcher"] = Batcher(transcriber or Transcriber(config.model, config.experts, config.trim,
                                                              precision=config.precision, threads=config.threads),
                                   config.max_batch, config.max_wait_ms / 1000, config.max_queue)
        yield
        await asyncio.to_thread(state["batcher"].stop)  # requests in flight are answered first

    app = FastAPI(title="distilwhisper", lifespan=lifespan)
    _errors_and_access_log(app, config)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": config.name}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": config.name, "object": "model", "owned_by": "distilwhisper"}]}

    @app.post("/v1/audio/transcriptions")
    async def transcriptions(request: Request, file: UploadFile = File(...), model: str = Form(...),
                             language: str | None = Form(None), prompt: str | None = Form(None),
                             response_format: str = Form("json"), temperature: float = Form(0.0),
                             timestamp_granularities: list[str] = Form([], alias="timestamp_granularities[]"),
                             stream: bool = Form(False)):
        return await _answer(request, state, config, AudioForm(model, language, prompt, response_format, temperature,
                                                           timestamp_granularities, stream), "transcribe", file)

    @app.post("/v1/audio/translations")
    async def translations(request: Request, file: UploadFile = File(...), model: str = Form(...),
                           prompt: str | None = Form(None), response_format: str = Form("json"),
                           temperature: float = Form(0.0)):
        return await _answer(request, state, config, AudioForm(model, None, prompt, response_format, temperature, [],
                                                           False), "translate", file)

    return app


def _errors_and_access_log(app: FastAPI, config: ServeConfig) -> None:
    """Errors in OpenAI's shape (the form's own validation included), the API key, and one JSON log line per
    request (id, status, audio seconds, language, experts, latency)."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, err: ApiError):
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, err: RequestValidationError):
        first = err.errors()[0] if err.errors() else {}
        param = ".".join(str(p) for p in first.get("loc", ())[1:]) or None
        return await api_error(request, ApiError(400, f"{param or 'request'}: {first.get('msg', 'invalid')}", param))

    @app.middleware("http")
    async def access(request: Request, call_next):
        request.state.audio, start = {}, time.perf_counter()
        if config.api_key and request.url.path.startswith("/v1/") and \
                request.headers.get("authorization") != f"Bearer {config.api_key}":
            response = await api_error(request, ApiError(401, "a valid API key is needed (Authorization: Bearer "
                                                         "KEY)", None, "invalid_api_key", "authentication_error"))
        else:
            response = await call_next(request)
        log.info(json.dumps({"id": uuid.uuid4().hex[:12], "method": request.method, "path": request.url.path,
                             "status": response.status_code, **request.state.audio,
                             "latency_s": round(time.perf_counter() - start, 3)}))
        return response


@dataclass
class AudioForm:
    """The form fields of an audio request, besides the file."""

    model: str
    language: str | None
    prompt: str | None
    response_format: str
    temperature: float
    granularities: list[str]
    stream: bool


async def _answer(request: Request, state: dict, config: ServeConfig, form: AudioForm, task: str, file: UploadFile):
    """Check the request, decode it with the others the worker batches, answer in the asked format."""
    options, samples = await _checked(request, config, form, task, file)
    request.state.audio = {"audio_s": round(len(samples) / SAMPLE_RATE, 2)}
    if form.stream:
        return StreamingResponse(_events(request, state["batcher"], Job(samples, form.language, options), config),
                                 media_type="text/event-stream")
    job = await _wait(request, state["batcher"], Job(samples, form.language, options), config)
    request.state.audio.update(language=job.result.language, experts=job.result.experts)
    if form.response_format == "verbose_json":
        return verbose(job.result, task, options.word_timestamps)
    if form.response_format == "json":
        return {"text": job.result.text}
    if form.response_format == "text":
        return PlainTextResponse(job.result.text + "\n")
    return PlainTextResponse(render(job.result, form.response_format))


async def _checked(request: Request, config: ServeConfig, form: AudioForm, task: str,
                   file: UploadFile) -> tuple[DecodingOptions, np.ndarray]:
    """The request's decoding options and audio, or the error that refuses it (before any decoding)."""
    limit = int(config.max_upload_mb * 2**20)
    too_large = ApiError(413, f"the upload is larger than this server takes ({config.max_upload_mb:g} MB)", "file",
                         "file_too_large")
    if int(request.headers.get("content-length") or 0) > limit + 2**16:  # the form's own bytes besides the file
        raise too_large
    if form.model != config.name:
        raise ApiError(404, f"model {form.model!r} is not served here; this server serves {config.name!r}", "model",
                       "model_not_found")
    if form.response_format not in FORMATS:
        raise ApiError(400, f"response_format must be one of {', '.join(FORMATS)}, not {form.response_format!r}",
                       "response_format")
    unknown = sorted(set(form.granularities) - {"segment", "word"})
    if unknown:
        raise ApiError(400, f"timestamp_granularities: {', '.join(unknown)} is not segment or word",
                       "timestamp_granularities[]")
    if form.language is not None:
        try:
            check_language(form.language)
        except ValueError as err:
            raise ApiError(400, str(err), "language", "unsupported_language") from None
    if not 0.0 <= form.temperature <= 1.0:
        raise ApiError(400, f"temperature is between 0 and 1, not {form.temperature}", "temperature")
    data = await file.read()
    if len(data) > limit:
        raise too_large
    options = DecodingOptions(task=task, initial_prompt=form.prompt or None, temperature=form.temperature,
                              word_timestamps="word" in form.granularities, vad=config.vad)
    return options, await asyncio.to_thread(read_upload, data, file.filename)


async def _wait(request: Request, batcher: Batcher, job: Job, config: ServeConfig) -> Job:
    """The job's result; a client that goes away cancels it (its windows are skipped), one past the time limit is
    answered 504, a full queue 503 with Retry-After."""
    try:
        batcher.submit(job)
    except QueueFull as err:
        raise ApiError(503, f"the server is busy ({err}); retry shortly", None, "server_busy", "server_error",
                       {"Retry-After": "1"}) from None
    deadline = time.monotonic() + config.timeout_s
    while not await asyncio.to_thread(job.done.wait, 0.1):
        if await request.is_disconnected():
            job.cancelled = True
            raise ApiError(499, "the client closed the request", None, "client_closed")
        if time.monotonic() > deadline:
            job.cancelled = True
            raise ApiError(504, f"the request took longer than {config.timeout_s:g} s", None, "timeout",
                           "server_error")
    if job.error is not None:
        client = isinstance(job.error, ValueError)
        raise ApiError(400 if client else 500, str(job.error), None, "decoding_failed",
                       "invalid_request_error" if client else "server_error")
    return job


def _event(body: dict) -> str:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _events(request: Request, batcher: Batcher, job: Job, config: ServeConfig):
    """Server-sent events as OpenAI streams a transcription: a `transcript.text.delta` per segment as its batch is
    decoded, then `transcript.text.done` with the whole text."""
    loop, pieces = asyncio.get_running_loop(), asyncio.Queue()
    job.on_segment = lambda segment: loop.call_soon_threadsafe(pieces.put_nowait, segment)
    waiting = asyncio.ensure_future(_wait(request, batcher, job, config))
    sent = 0
    try:
        while not (waiting.done() and pieces.empty()):
            try:
                segment = await asyncio.wait_for(pieces.get(), 0.1)
            except asyncio.TimeoutError:
                continue
            if segment.text:
                yield _event({"type": "transcript.text.delta", "delta": (" " if sent else "") + segment.text})
                sent += 1
        result = (await waiting).result
        yield _event({"type": "transcript.text.done", "text": result.text})
    finally:
        job.cancelled = job.cancelled or not job.done.is_set()  # a client gone mid-stream frees the worker


def run_server(config: ServeConfig) -> None:
    """Serve until stopped (Ctrl-C or SIGTERM: requests in flight are finished first)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    uvicorn.run(create_app(config), host=config.host, port=config.port, log_level="warning",
                timeout_graceful_shutdown=config.timeout_s)
