"""Dynamic batching across requests: the server's one worker thread owns the model; each round it gathers every
request that waits and those that arrive within `max_wait` seconds of the first, cuts each recording into windows at
its pauses (`Transcriber.prepare`: the language detected per request unless given, so each request gets its own
language's experts), and decodes the windows of all requests that share a language and decoding options together,
`max_batch` at a time.  Windows of different languages never share a batch (one expert set per batch), so a request
gets exactly what `Transcriber.__call__` gives its file alone.  Segments are handed back as each batch finishes, in
order (streaming).
"""

from __future__ import annotations

import queue
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from distilwhisper.decoding import DecodingOptions
from distilwhisper.transcribe import Prepared, Segment, Transcriber, Transcription, window_segment


class QueueFull(RuntimeError):
    """More requests wait than the server queues: the client should retry later."""


@dataclass
class Job:
    """One request: its audio, language (None: detect), options, and what the worker fills in."""

    samples: np.ndarray
    language: str | None
    options: DecodingOptions
    on_segment: Callable[[Segment], None] | None = None  # called in order as segments are decoded (streaming)
    cancelled: bool = False  # the client went away: the worker skips what is left of it
    result: Transcription | None = None
    error: Exception | None = None
    done: threading.Event = field(default_factory=threading.Event)
    prepared: Prepared | None = None
    _decoded: dict[int, Segment] = field(default_factory=dict)
    _emitted: int = 0

    def _add(self, index: int, segment: Segment) -> None:
        """Keep a window's segment; hand on every segment whose predecessors are all there."""
        self._decoded[index] = segment
        while self._emitted in self._decoded:
            if self.on_segment is not None:
                self.on_segment(self._decoded[self._emitted])
            self._emitted += 1
        if self._emitted == len(self.prepared.windows):
            self._finish()

    def _finish(self) -> None:
        self.result = self.prepared.result
        self.result.segments = [self._decoded[i] for i in range(len(self.prepared.windows))]
        self.done.set()

    def _fail(self, error: Exception) -> None:
        self.error = error
        self.done.set()


class Batcher:
    """The worker thread and its queue (`submit` from any thread; `stop` finishes what is queued, then returns)."""

    def __init__(self, transcriber: Transcriber, max_batch: int = 8, max_wait: float = 0.02,
                 max_queue: int = 64) -> None:
        self.transcriber, self.max_batch, self.max_wait = transcriber, max_batch, max_wait
        self.jobs: queue.Queue[Job | None] = queue.Queue(maxsize=max_queue)
        self.thread = threading.Thread(target=self._run, name="distilwhisper-batcher", daemon=True)
        self.thread.start()

    def submit(self, job: Job) -> Job:
        try:
            self.jobs.put_nowait(job)
        except queue.Full:
            raise QueueFull(f"{self.jobs.maxsize} requests are waiting already") from None
        return job

    def stop(self) -> None:
        self.jobs.put(None)
        self.thread.join()

    def _gather(self) -> tuple[list[Job], bool]:
        """The next requests: the first to arrive, those within `max_wait` of it, and every one that waits already;
        True once stopped.  Taking all that wait (not `max_batch` requests) is what fills the batches under load:
        windows are grouped by language and options before they are batched, so `max_batch` requests of three
        languages made three part-filled batches."""
        first = self.jobs.get()
        if first is None:
            return [], True
        jobs, deadline = [first], time.monotonic() + self.max_wait
        while True:
            try:
                left = deadline - time.monotonic()
                job = self.jobs.get(timeout=left) if left > 0 and len(jobs) < self.max_batch else \
                    self.jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _run(self) -> None:
        stopping = False
        while not stopping:
            jobs, stopping = self._gather()
            self._serve(jobs)
        while not self.jobs.empty():  # requests that came with the stop: still answered
            job = self.jobs.get_nowait()
            if job is not None:
                self._serve([job])

    def _serve(self, jobs: list[Job]) -> None:
        groups: dict[tuple, list[tuple[Job, int]]] = defaultdict(list)
        for job in jobs:
            if job.cancelled:
                continue
            try:
                job.prepared = self.transcriber.prepare(job.samples, job.language, job.options)
            except Exception as err:  # the request's own error, reported to it
                job._fail(err)
                continue
            if not job.prepared.windows:
                job._finish()
            for index in range(len(job.prepared.windows)):
                groups[job.prepared.result.language, job.prepared.options].append((job, index))
        for (language, options), windows in groups.items():
            for start in range(0, len(windows), self.max_batch):
                batch = [(job, i) for job, i in windows[start:start + self.max_batch] if not job.cancelled]
                if not batch:
                    continue
                try:
                    decoded = self.transcriber.decode([job.prepared.windows[i] for job, i in batch], language,
                                                      options)
                except Exception as err:  # every request of the batch is told
                    for job, _ in batch:
                        job._fail(err)
                    continue
                for (job, i), transcript in zip(batch, decoded):
                    if not job.done.is_set():
                        job._add(i, window_segment(job.prepared.ranges[i], transcript, job.options))
