"""Download the chinese-poetry corpus files over HTTP.

This module owns getting the raw poem files of the public `chinese-poetry`
repository (github.com/chinese-poetry/chinese-poetry, MIT licence) onto local
disk, and nothing after that: parsing poems and cleaning them belong elsewhere.

It knows which files make up each collection, fetches them with bounded
concurrency through one shared HTTP client, retries transient failures with
exponential backoff, caps the size of every body, and writes each file
atomically. A file on disk under its final name is therefore always a complete,
valid JSON list, which is what makes a crawl resumable: a second run only
fetches what is missing or unreadable.

Local layout: `{out_dir}/{collection}/poet.{collection}.{N}.json`.
"""

from __future__ import annotations

import json
import logging
import math
import random
import time
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import quote

import httpx
from tqdm import tqdm

from jueju.files import atomic_path

logger = logging.getLogger(__name__)

# Collection name -> (upstream folder, number of the last file). Files are
# numbered in steps of FILE_STEP from 0; both collections live in the
# same upstream folder (upstream's naming, not ours).
COLLECTIONS: dict[str, tuple[str, int]] = {
    "tang": ("全唐诗", 57000),
    "song": ("全唐诗", 254000),
}
DEFAULT_BASE_URL = "https://raw.githubusercontent.com/chinese-poetry/chinese-poetry/master"
FILE_STEP = 1000

# Upper bound on a server's Retry-After, so a misbehaving server cannot
# park a worker for hours.
MAX_RETRY_AFTER = 60.0
# Redirects are followed (hosts move files around) but not endlessly.
MAX_REDIRECTS = 5
# How many failures the one-line summary names before it says "and N more".
SUMMARY_MAX_NAMED = 3
# Default total time one file may take, all attempts and waits included. A
# server that trickles bytes slowly never trips the per-read `timeout`;
# this bounds it. Generous: the largest upstream file is a few megabytes.
DEFAULT_DEADLINE = 900.0
# Media types that are an error or login page, never a poem file (upstream
# serves its JSON as text/plain or application/json).
HTML_TYPES = ("text/html", "application/xhtml+xml")


def collection_files(collection: str) -> list[str]:
    """Return the file names of `collection` in upstream order.

    >>> collection_files("tang")[:2]
    ['poet.tang.0.json', 'poet.tang.1000.json']
    """
    if collection not in COLLECTIONS:
        valid = ", ".join(sorted(COLLECTIONS))
        raise ValueError(f"unknown collection {collection!r}; valid collections: {valid}")
    _folder, last = COLLECTIONS[collection]
    return [f"poet.{collection}.{n}.json" for n in range(0, last + 1, FILE_STEP)]


def file_url(base_url: str, collection: str, name: str) -> str:
    """Return the upstream URL of one file, with each path segment percent-encoded."""
    folder, _last = COLLECTIONS[collection]
    return f"{base_url.rstrip('/')}/{quote(folder, safe='')}/{quote(name, safe='')}"


@dataclass
class CrawlSummary:
    """What a crawl did, per file name (file names are unique across collections)."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> reason

    @property
    def ok(self) -> bool:
        """True when every requested file is now on disk."""
        return not self.failed

    def __str__(self) -> str:
        text = f"fetched {len(self.fetched)}, skipped {len(self.skipped)} (already complete), failed {len(self.failed)}"
        if not self.failed:
            return text
        named = list(self.failed.items())[:SUMMARY_MAX_NAMED]
        details = ", ".join(f"{name} ({reason})" for name, reason in named)
        more = len(self.failed) - len(named)
        return f"{text}: {details}" + (f" and {more} more" if more else "")


def crawl(
    base_url: str,
    out_dir: str | Path,
    collections: Iterable[str] = ("tang", "song"),
    *,
    workers: int = 8,
    timeout: float = 30.0,
    retries: int = 4,
    backoff: float = 1.0,
    max_bytes: int = 20_000_000,
    deadline: float = DEFAULT_DEADLINE,
    progress: bool = True,
) -> CrawlSummary:
    """Download every file of `collections` from `base_url` into `out_dir`.

    Files already present and valid are skipped, so an interrupted crawl can
    simply be run again. `retries` is the number of extra attempts after the
    first one for transient failures (timeouts, connection errors, HTTP 5xx
    and 429, bodies that are not valid JSON); the wait before retry `k`
    (0-based) is `backoff * 2**k` plus a little jitter, or the server's
    numeric Retry-After (at most MAX_RETRY_AFTER seconds). Other failures are
    not retried. `deadline` bounds the total time spent on one file, all
    attempts and waits included: a server that trickles its body slowly (and
    so never trips `timeout`, which is per read) is given up on once it
    passes, and no retry starts or waits past it. Failures never raise: they
    are logged and listed in the returned summary.

    Raises ValueError for an unknown collection or a bad argument, before any
    request is made, and OSError when `out_dir` cannot be created.
    """
    _check_arguments(base_url, workers, timeout, retries, backoff, max_bytes, deadline)
    jobs = _plan_jobs(base_url, Path(out_dir), collections)
    for directory in {job.dest.parent for job in jobs}:
        directory.mkdir(parents=True, exist_ok=True)
        _remove_stale_temp_files(directory)

    policy = _RetryPolicy(retries=retries, backoff=backoff, deadline=deadline)
    outcomes: dict[str, _Outcome] = {}
    with (
        _make_client(timeout, workers) as client,
        tqdm(total=len(jobs), desc="chinese-poetry", unit="file", disable=not progress) as bar,
        ThreadPoolExecutor(max_workers=workers, thread_name_prefix="crawl") as pool,
    ):
        futures = {pool.submit(_process, client, job, policy, max_bytes): job for job in jobs}
        try:
            for future in as_completed(futures):
                job = futures[future]
                outcomes[job.name] = _outcome_of(future, job)
                bar.update(1)
        except KeyboardInterrupt:
            # Do not start new downloads; the ones in flight finish (or fail)
            # and clean up their temporary files in their own threads.
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    summary = _summarise(jobs, outcomes)
    logger.info("crawl finished: %s", summary)
    return summary


# --------------------------------------------------------------------------
# Planning


@dataclass(frozen=True)
class _Job:
    name: str  # local and upstream file name, always from collection_files()
    url: str
    dest: Path


@dataclass(frozen=True)
class _Outcome:
    status: str  # "fetched", "skipped" or "failed"
    reason: str = ""


def _check_arguments(
    base_url: str,
    workers: int,
    timeout: float,
    retries: int,
    backoff: float,
    max_bytes: int,
    deadline: float,
) -> None:
    if not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    if retries < 0:
        raise ValueError(f"retries must be 0 or more, got {retries}")
    if backoff < 0:
        raise ValueError(f"backoff must be 0 or more, got {backoff}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    if not deadline > 0:
        raise ValueError(f"deadline must be positive, got {deadline}")


def _plan_jobs(base_url: str, out_dir: Path, collections: Iterable[str]) -> list[_Job]:
    # A bare string would otherwise be iterated letter by letter.
    names = [collections] if isinstance(collections, str) else list(collections)
    jobs = []
    for collection in dict.fromkeys(names):  # drop duplicates, keep order
        for name in collection_files(collection):  # raises on unknown names
            url = file_url(base_url, collection, name)
            # The local path comes from our own list, never from the server.
            jobs.append(_Job(name=name, url=url, dest=out_dir / collection / name))
    return jobs


def _summarise(jobs: list[_Job], outcomes: dict[str, _Outcome]) -> CrawlSummary:
    """Build the summary in collection order, whatever order downloads finished in."""
    summary = CrawlSummary()
    for job in jobs:
        outcome = outcomes.get(job.name)
        if outcome is None:
            continue
        if outcome.status == "fetched":
            summary.fetched.append(job.name)
        elif outcome.status == "skipped":
            summary.skipped.append(job.name)
        else:
            summary.failed[job.name] = outcome.reason
    return summary


# --------------------------------------------------------------------------
# One file


class _TransientError(Exception):
    """A failure worth retrying; `retry_after` is the server's wish, if any."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _PermanentError(Exception):
    """A failure that retrying will not fix."""


@dataclass(frozen=True)
class _Deadline:
    """When the time for one file runs out (time.monotonic() clock)."""

    seconds: float
    at: float

    @classmethod
    def start(cls, seconds: float) -> _Deadline:
        return cls(seconds, time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def error(self) -> _PermanentError:
        return _PermanentError(f"took longer than the {self.seconds:g} s deadline per file")

    def check(self) -> None:
        if self.remaining() <= 0:
            raise self.error()


@dataclass(frozen=True)
class _RetryPolicy:
    retries: int
    backoff: float
    deadline: float = DEFAULT_DEADLINE  # seconds per file, all attempts and waits included

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return retry_after
        base = self.backoff * 2**attempt
        # Jitter keeps parallel workers that failed together from retrying in lockstep.
        return base + random.uniform(0, 0.1 * base)


def _make_client(timeout: float, workers: int) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(timeout),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
        limits=httpx.Limits(max_connections=workers, max_keepalive_connections=workers),
        headers={"User-Agent": "jueju-crawl (+https://github.com/chinese-poetry/chinese-poetry)"},
    )


def _process(client: httpx.Client, job: _Job, policy: _RetryPolicy, max_bytes: int) -> _Outcome:
    if _is_complete(job.dest):
        return _Outcome("skipped")
    try:
        _download_with_retries(client, job, policy, max_bytes)
    except _PermanentError as exc:
        logger.warning("failed to fetch %s from %s: %s", job.name, job.url, exc)
        return _Outcome("failed", str(exc))
    except OSError as exc:
        logger.warning("cannot write %s: %s", job.dest, exc)
        return _Outcome("failed", f"cannot write {job.dest}: {exc.strerror or exc}")
    return _Outcome("fetched")


def _outcome_of(future: Future[_Outcome], job: _Job) -> _Outcome:
    try:
        return future.result()
    except Exception as exc:  # a bug must not throw away the other downloads
        logger.exception("unexpected error while fetching %s", job.name)
        return _Outcome("failed", f"unexpected error: {type(exc).__name__}: {exc}")


def _is_complete(path: Path) -> bool:
    try:
        _validate(path)
    except (OSError, _TransientError, _PermanentError):
        return False
    return True


def _download_with_retries(client: httpx.Client, job: _Job, policy: _RetryPolicy, max_bytes: int) -> None:
    deadline = _Deadline.start(policy.deadline)
    for attempt in range(policy.retries + 1):
        try:
            deadline.check()
            _download_once(client, job, max_bytes, deadline)
            return
        except _TransientError as exc:
            attempts = "1 attempt" if attempt == 0 else f"{attempt + 1} attempts"
            if attempt == policy.retries:
                raise _PermanentError(f"{exc} (gave up after {attempts})") from exc
            delay = policy.delay(attempt, exc.retry_after)
            if delay >= deadline.remaining():
                raise _PermanentError(
                    f"{exc} (gave up after {attempts}: the next one would start after "
                    f"the {policy.deadline:g} s deadline per file)"
                ) from exc
            logger.info("%s: %s; retrying in %.2f s", job.name, exc, delay)
            time.sleep(delay)


def _download_once(client: httpx.Client, job: _Job, max_bytes: int, deadline: _Deadline) -> None:
    """Fetch one file into a temporary sibling and move it into place only once valid."""
    # a hidden .<name>.<pid>.<random>.tmp beside the destination, fsynced and renamed (jueju.files)
    with atomic_path(job.dest) as tmp:
        with open(tmp, "xb") as out:
            _stream_body(client, job.url, out, max_bytes, deadline)
        _validate(tmp)


def _stream_body(client: httpx.Client, url: str, out: BinaryIO, max_bytes: int, deadline: _Deadline) -> None:
    # No single wait may outlast the file's deadline either.
    timeout = client.timeout
    if deadline.remaining() < (timeout.read or math.inf):
        timeout = httpx.Timeout(max(deadline.remaining(), 0.001))
    try:
        with client.stream("GET", url, timeout=timeout) as response:
            _check_status(response)
            _check_content_type(response)
            _copy_capped(response, out, max_bytes, deadline)
    except httpx.TimeoutException as exc:
        deadline.check()
        raise _TransientError(f"timed out ({type(exc).__name__})") from exc
    except httpx.UnsupportedProtocol as exc:
        raise _PermanentError(f"unsupported URL: {exc}") from exc
    except httpx.TooManyRedirects as exc:
        raise _PermanentError(f"more than {MAX_REDIRECTS} redirects") from exc
    except httpx.DecodingError as exc:
        raise _TransientError(f"undecodable body (bad Content-Encoding?): {exc}") from exc
    except httpx.TransportError as exc:
        raise _TransientError(f"connection error: {exc}") from exc


def _check_status(response: httpx.Response) -> None:
    code = response.status_code
    if code == 200:
        return
    if code == 429 or code >= 500:
        retry_after = _retry_after_seconds(response.headers.get("Retry-After"))
        raise _TransientError(f"HTTP {code}", retry_after)
    raise _PermanentError(f"HTTP {code}")


def _check_content_type(response: httpx.Response) -> None:
    """Refuse an HTML page served with 200 (a proxy's or portal's error page): it is never a poem file."""
    media_type = response.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if media_type in HTML_TYPES:
        raise _PermanentError(f"got an HTML page ({media_type}), not a JSON file")


def _retry_after_seconds(value: str | None) -> float | None:
    """Parse a numeric Retry-After; HTTP-date forms fall back to our own backoff."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, MAX_RETRY_AFTER)


def _copy_capped(response: httpx.Response, out: BinaryIO, max_bytes: int, deadline: _Deadline) -> None:
    too_big = _PermanentError(f"body larger than {max_bytes} bytes")
    declared = response.headers.get("Content-Length", "")
    # Refuse early when the server announces it; still count, as it may lie.
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_big
    size = 0
    for chunk in response.iter_bytes():  # decoded bytes: a compression bomb is capped too
        size += len(chunk)
        if size > max_bytes:
            raise too_big
        deadline.check()  # a trickling body never trips the per-read timeout
        out.write(chunk)


def _validate(path: Path) -> None:
    """Check that `path` holds a JSON list of objects, the shape of every upstream file."""
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        # Usually a body cut short in transit, so worth another attempt.
        raise _TransientError(f"invalid JSON (truncated?): {exc}") from exc
    if not isinstance(data, list):
        raise _PermanentError(f"not a JSON list of poems (got a JSON {type(data).__name__})")
    if not all(isinstance(item, dict) for item in data):
        raise _PermanentError("not a JSON list of poems (an item is not an object)")


def _remove_stale_temp_files(directory: Path) -> None:
    """Delete temporary files left by a crawl that was killed before it could clean up."""
    # .<name>.<pid>.<random>.tmp (jueju.files), and .<name>.part-<random> from crawls before it
    for stale in [*directory.glob(".poet.*.json.*.tmp"), *directory.glob(".poet.*.json.part-*")]:
        try:
            stale.unlink()
            logger.info("removed stale partial download %s", stale)
        except OSError:
            pass  # not ours to fight over; it never has a final name anyway
