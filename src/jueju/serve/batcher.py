"""Request batching for `jueju serve`: many concurrent jobs, few `Poet.batch` calls.

This module owns one thing: the bounded queue of jobs between the event loop and the model,
and how jobs are gathered into `Poet.batch` calls, run off the event loop and answered
through their futures. It knows nothing of HTTP (no FastAPI): the caller builds each
`Job` and turns its result, or the exception set on its future, into a response.

Batching rule. Jobs with the same key (form, first lines or acrostics, and identical options:
everything but the rows and the seed, after the model's defaults are filled in) that carry
**no seed** are gathered while the first of them waits `max_wait_ms`, up to `max_batch`
rows, into one `Poet.batch` call; each job's rows are rows of it and a job is never split.
A job **with a seed** is decoded on its own, as one `Poet.batch` call of its rows with that
seed, so the same job always gives the same poems, however busy the server is (exactly
`Poet.poems(first_line, num, seed=...)`). Calls run one at a time on a worker thread, off the
event loop. At most `queue_size` jobs wait or run at once; one more raises `QueueFull`,
which carries a Retry-After estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Protocol

from jueju.write.poet import Poet

log = logging.getLogger(__name__)


class Served(Protocol):
    """What a job is decoded by: a Poet and its form (serve.LoadedModel is one)."""

    poet: Poet

    @property
    def form(self) -> int: ...


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request: its rows (the same first line or acrostic `num` times) and its options."""

    model: Served
    kind: Literal["first_lines", "acrostics", "templates", "planned"]
    rows: list[str]
    options: dict
    seed: int | None
    future: asyncio.Future
    arrived: float

    @property
    def key(self) -> tuple:
        first = self.rows[0] if self.kind == "planned" else None  # planned jobs share a call only when equal
        return (self.model.form, self.kind, tuple(sorted(self.options.items())), first)


class Batcher:
    """Gathers jobs into `Poet.batch` calls run on one worker thread; bounded, never a backlog."""

    def __init__(self, max_batch: int = 64, max_wait_ms: float = 5, queue_size: int = 256):
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000, queue_size
        self.queue: deque[Job] = deque()
        self.pending = 0  # jobs accepted and not yet answered (waiting or running)
        self.calls = 0  # Poet.batch calls made
        self.seconds_per_call = 0.1  # running average, for Retry-After
        self._executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._wakeup: asyncio.Event | None = None

    def submit(self, job: Job) -> asyncio.Future:
        """Queue a job (on the event loop); raises QueueFull when queue_size jobs are already in."""
        self._ensure_running()
        if self.pending >= self.queue_size:
            raise QueueFull(self.retry_after())
        self.pending += 1
        self.queue.append(job)
        self._wakeup.set()
        return job.future

    def retry_after(self) -> int:
        calls_ahead = self.pending / self.max_batch + 1
        return max(1, math.ceil(calls_ahead * self.seconds_per_call))

    def _ensure_running(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._task is None or self._task.done():
            # first use, or a new event loop (a test's second TestClient): start clean on this one
            self._loop, self.queue, self.pending = loop, deque(), 0
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="jueju-generate")
            self._wakeup = asyncio.Event()
            self._task = loop.create_task(self._run(), name="jueju-batcher")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self.queue:
            if not job.future.done():
                job.future.cancel()
        self.queue.clear()
        self._task = None
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            first = self.queue[0]
            if first.seed is None and self.max_batch > 1:
                delay = first.arrived + self.max_wait - loop.time()
                if delay > 0 and self._rows_like(first) < self.max_batch:
                    await asyncio.sleep(delay)  # let others join this one's batch
            jobs = self._take()
            if jobs:
                await self._execute(jobs)

    def _rows_like(self, first: Job) -> int:
        return sum(len(job.rows) for job in self.queue if job.seed is None and job.key == first.key)

    def _take(self) -> list[Job]:
        """The oldest job, and (when unseeded) the later unseeded jobs with its options, up to max_batch rows."""
        while self.queue and self.queue[0].future.done():  # its client went away
            self.queue.popleft()
            self.pending -= 1
        if not self.queue:
            return []
        first = self.queue.popleft()
        jobs, rows = [first], len(first.rows)
        if first.seed is None:
            kept: deque[Job] = deque()
            for job in self.queue:
                if (
                    job.seed is None
                    and job.key == first.key
                    and rows + len(job.rows) <= self.max_batch
                    and not job.future.done()
                ):
                    jobs.append(job)
                    rows += len(job.rows)
                else:
                    kept.append(job)
            self.queue = kept
        return jobs

    async def _execute(self, jobs: list[Job]) -> None:
        try:
            outcome = await self._call(jobs)
            if isinstance(outcome, ValueError) and len(jobs) > 1:
                # one request's input failed the whole call: decode each alone, so only it gets the error
                per_job = []
                for job in jobs:
                    single = await self._call([job])
                    per_job.append(single if isinstance(single, BaseException) else single[0])
            elif isinstance(outcome, BaseException):
                per_job = [outcome] * len(jobs)
            else:
                per_job = outcome
            for job, result in zip(jobs, per_job):
                if job.future.done():  # cancelled: its client went away
                    continue
                if isinstance(result, BaseException):
                    job.future.set_exception(result)
                else:
                    job.future.set_result(result)
        finally:
            self.pending -= len(jobs)

    async def _call(self, jobs: list[Job]) -> list[list[str]] | Exception:
        """One Poet.batch call for `jobs`: each job's poems, or the exception the call raised."""
        first = jobs[0]
        rows = [row for job in jobs for row in job.rows]
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        self.calls += 1
        try:
            poems = await loop.run_in_executor(
                self._executor, _generate, first.model.poet, first.kind, rows, first.seed, first.options
            )
        except Exception as err:  # noqa: BLE001 - handed to the request, which turns it into a response
            return err
        finally:
            seconds = time.perf_counter() - started
            self.seconds_per_call = 0.8 * self.seconds_per_call + 0.2 * seconds
            log.debug("Poet.batch: %d poems for %d requests in %.1f ms", len(rows), len(jobs), seconds * 1000)
        results, start = [], 0
        for job in jobs:
            results.append(poems[start : start + len(job.rows)])
            start += len(job.rows)
        return results


def _generate(poet: Poet, kind: str, rows: list[str], seed: int | None, options: dict) -> list[str]:
    if kind == "planned":  # a title or keywords: equal requests only (what they give is in the job's key)
        options = dict(options)
        keywords, title, given = options.pop("keywords"), options.pop("title"), options.pop("given")
        inputs = {given: rows[0]} if given else {}
        return poet.poems(
            num=len(rows),
            keywords=keywords.split(",") if keywords else None,
            title=title or None,
            seed=seed,
            **inputs,
            **options,
        )
    return poet.batch(**{kind: rows}, seed=seed, **options)
