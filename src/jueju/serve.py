"""`jueju serve`: the web page and the JSON API, with concurrent requests batched into one model call.

* ``GET /`` -- one self-contained page (web/index.html: no CDN, no external font).
* ``GET /api/health`` -- which models and vocabularies are loaded.
* ``POST /api/poems`` -- poems from a first line or an acrostic, each character annotated
  with its tone and the rhyme characters with their rhyme groups.
* ``GET /docs`` -- the OpenAPI description of both (request and response schemas).

The models are loaded once, at start; nothing else is kept between requests (no session,
no cache), so any number of workers or machines can stand behind a load balancer.

Batching rule. Requests whose options are identical (everything but first line, acrostic,
num and seed, after the model's defaults are filled in) and that carry **no seed** are
gathered while the first of them waits ``serve.max_wait_ms``, up to ``serve.max_batch``
poems, into one ``Poet.batch`` call; each request's ``num`` poems are ``num`` rows of it and
a request is never split. A request **with a seed** is decoded on its own, as one
``Poet.batch`` call of its ``num`` rows with that seed, so the same request always gives the
same poems, however busy the server is (exactly ``Poet.poems(first_line, num, seed=...)``).
Calls run one at a time on a worker thread, off the event loop. At most ``serve.queue_size``
requests wait or run at once; one more is answered 503 with ``Retry-After``.
"""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from . import prosody
from .config import FORMS, PROJECT_ROOT, Config, config_from_dict
from .generate import FORM_NAMES, Poet, normalise_acrostic, normalise_first_line

log = logging.getLogger(__name__)

MAX_NUM = 20  # poems per request
MAX_RERANK = 8  # candidates per poem: bounds the work one request can ask for
MAX_BEAM = 8
MAX_TEXT = 100  # characters of first_line / acrostic accepted before any checking
OPTION_NAMES = ("sampler", "temperature", "top_k", "top_p", "beam_width", "rhyme", "rhyme_first_line", "tonal",
                "no_repeat", "no_copy", "rerank")
SERVE_ENV = "JUEJU_SERVE"  # the config and model folders handed to each worker process (--workers > 1)
TONE_BOTH, TONE_UNKNOWN = "平仄", "unknown"


# ---------------------------------------------------------------------------------------------
# Schemas (pydantic: they are what /docs shows)
# ---------------------------------------------------------------------------------------------
class PoemRequest(BaseModel):
    """Give `first_line` or `acrostic`; every option left out takes the model's [generate] default."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"first_line": "床前明月光", "num": 2, "seed": 7},
        {"acrostic": "春夏秋冬", "form": 7, "rhyme": "pingshui", "tonal": True},
    ]})

    first_line: str | None = Field(None, max_length=MAX_TEXT, description=(
        "5 or 7 Han characters (with or without punctuation, traditional accepted); its length picks the form"))
    acrostic: str | None = Field(None, max_length=MAX_TEXT,
                                 description="4 Han characters that open the 4 lines (藏头诗)")
    form: Literal[5, 7] | None = Field(None, description=(
        "characters per line: with an acrostic it picks the model (default: the server's first model); "
        "with a first line it may be left out, and must match the line's length if given"))
    rhyme: Literal["pingshui", "xin", "none"] | None = Field(
        None, description="rhyme scheme of lines 2 and 4: pingshui (平水韵), xin (中华新韵) or none")
    rhyme_first_line: bool | None = Field(None, description="line 1 rhymes too (首句入韵)")
    tonal: bool | None = Field(None, description="follow a standard tonal pattern (平仄, 一三五不论)")
    sampler: Literal["greedy", "temperature", "top_k", "top_p", "beam"] | None = None
    temperature: float | None = Field(None, ge=0.01, le=10.0)
    top_k: int | None = Field(None, ge=1, le=100_000)
    top_p: float | None = Field(None, ge=0.01, le=1.0)
    beam_width: int | None = Field(None, ge=1, le=MAX_BEAM)
    no_repeat: bool | None = Field(None, description="never repeat a character within a poem")
    no_copy: bool | None = Field(None, description="never output a line of the training corpus (after line 1)")
    rerank: int | None = Field(None, ge=1, le=MAX_RERANK,
                               description="draw this many per poem and keep the most probable")
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description=(
        "same request and seed, same poems (a seeded request is decoded on its own); "
        "left out: new poems each time"))
    num: int = Field(1, ge=1, le=MAX_NUM, description=f"poems to write (at most {MAX_NUM})")


Tone = Literal["平", "仄", "平仄", "unknown"]


class CharInfo(BaseModel):
    char: str
    tone: Tone = Field(description="平 level, 仄 oblique, 平仄 a character read both ways, unknown if the table "
                                   "lacks it")
    rhyme: bool = Field(description="stands at a rhyme position: end of lines 2 and 4, and of line 1 when it rhymes")
    rhyme_groups: list[str] = Field(description="its rhyme groups in the scheme (rhyme characters only, else [])")


class Line(BaseModel):
    text: str
    punctuation: str
    chars: list[CharInfo]


class Poem(BaseModel):
    text: str
    lines: list[Line]
    rhyme_group: list[str] = Field(description="the groups its rhyme characters share (empty when they share none)")


class PoemResponse(BaseModel):
    poems: list[Poem]
    form: Literal[5, 7]
    model: str = Field(description="the model folder that wrote them")
    scheme: Literal["pingshui", "xin"] = Field(description="the table tones and rhyme groups are read from "
                                                           "(pingshui when rhyme is none)")
    seed: int | None
    options: dict[str, Any] = Field(description="every decoding option as used, model defaults filled in")


class ModelInfo(BaseModel):
    form: Literal[5, 7]
    name: str
    model: str
    vocabulary: str
    vocab_size: int
    model_sha256: str
    vocab_sha256: str


class Health(BaseModel):
    status: Literal["ok"]
    models: list[ModelInfo]
    max_batch: int
    max_wait_ms: float
    queue_size: int
    max_body_kb: int
    pending: int = Field(description="requests waiting or being written right now")


class ErrorItem(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    detail: list[ErrorItem] | str


# ---------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------
@dataclass
class LoadedModel:
    """A Poet with where it came from (for /api/health)."""

    poet: Poet
    model_dir: Path | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self):
        def digest(name: str) -> str:
            path = self.model_dir / name if self.model_dir else None
            if path is None or not path.is_file():
                return ""
            return hashlib.sha256(path.read_bytes()).hexdigest()[:16]

        self.info = {
            "form": self.form, "name": FORM_NAMES[self.form], "model": _shown(self.model_dir),
            "vocabulary": _shown(self.model_dir / "vocab.json" if self.model_dir else None),
            "vocab_size": len(self.poet.vocab), "model_sha256": digest("model.keras"),
            "vocab_sha256": digest("vocab.json"),
        }

    @property
    def form(self) -> int:
        return self.poet.line_length


def _shown(path: Path | None) -> str:
    """A path as shown to clients: relative to the project when inside it, else its last two parts
    (the server's own layout is not shown)."""
    if path is None:
        return "(in memory)"
    try:
        return str(Path(path).resolve().relative_to(PROJECT_ROOT.resolve()))
    except ValueError:
        return "/".join(Path(path).resolve().parts[-2:])


def default_model_dirs(config: Config) -> list[Path]:
    """The config's model (models/<form> of corpus.line_length), then the other form's when it is trained."""
    dirs = [config.model_dir]
    for name in FORMS.values():
        other = config.path(config.paths.model_dir) / name
        if other != config.model_dir and (other / "model.keras").is_file():
            dirs.append(other)
    return dirs


def load_models(model_dirs: Sequence[str | Path]) -> list[LoadedModel]:
    """Load each folder once; at most one model per form."""
    models: list[LoadedModel] = []
    for model_dir in model_dirs:
        loaded = LoadedModel(Poet.load(model_dir), Path(model_dir))
        if any(m.form == loaded.form for m in models):
            raise ValueError(f"two {FORM_NAMES[loaded.form]} models given ({model_dir}): serve one per form")
        models.append(loaded)
        log.info("loaded the %s model in %s (%d tokens)", FORM_NAMES[loaded.form], model_dir, len(loaded.poet.vocab))
    if not models:
        raise ValueError("no model to serve")
    return models


# ---------------------------------------------------------------------------------------------
# Batching
# ---------------------------------------------------------------------------------------------
class InputError(ValueError):
    """Bad input, answered 422 naming the field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(message)
        self.field = field_name


class QueueFull(Exception):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; try again in {retry_after} s")
        self.retry_after = retry_after


@dataclass(eq=False)
class Job:
    """One request: its rows (the same first line or acrostic `num` times) and its options."""

    model: LoadedModel
    kind: Literal["first_lines", "acrostics"]
    rows: list[str]
    options: dict
    seed: int | None
    future: asyncio.Future
    arrived: float

    @property
    def key(self) -> tuple:
        return (self.model.form, self.kind, tuple(sorted(self.options.items())))


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
                if (job.seed is None and job.key == first.key and rows + len(job.rows) <= self.max_batch
                        and not job.future.done()):
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
            poems = await loop.run_in_executor(self._executor, _generate, first.model.poet, first.kind, rows,
                                               first.seed, first.options)
        except Exception as err:  # noqa: BLE001 - handed to the request, which turns it into a response
            return err
        finally:
            seconds = time.perf_counter() - started
            self.seconds_per_call = 0.8 * self.seconds_per_call + 0.2 * seconds
            log.debug("Poet.batch: %d poems for %d requests in %.1f ms", len(rows), len(jobs), seconds * 1000)
        results, start = [], 0
        for job in jobs:
            results.append(poems[start:start + len(job.rows)])
            start += len(job.rows)
        return results


def _generate(poet: Poet, kind: str, rows: list[str], seed: int | None, options: dict) -> list[str]:
    return poet.batch(**{kind: rows}, seed=seed, **options)


# ---------------------------------------------------------------------------------------------
# Requests -> jobs, poems -> annotated responses
# ---------------------------------------------------------------------------------------------
class Service:
    """What the routes share: the loaded models and the batcher (no per-client state)."""

    def __init__(self, models: Sequence[LoadedModel], batcher: Batcher):
        self.models = {model.form: model for model in models}
        self.default_form = models[0].form
        self.batcher = batcher

    def job(self, request: PoemRequest) -> Job:
        if request.first_line is not None and request.acrostic is not None:
            raise InputError("acrostic", "give a first line or acrostic characters, not both")
        if request.first_line is None and request.acrostic is None:
            raise InputError("first_line", "give a first line of 5 or 7 Han characters (e.g. 床前明月光), "
                                            "or 4 acrostic characters (e.g. 春夏秋冬)")
        if request.first_line is not None:
            line = _checked("first_line", normalise_first_line, request.first_line)
            if request.form is not None and request.form != len(line):
                raise InputError("form", f"form {request.form} ({FORM_NAMES[request.form]}) was asked for, but the "
                                         f"first line has {len(line)} characters: the first line decides the form")
            model = self._model(len(line), "first_line")
            line = _checked("first_line", normalise_first_line, request.first_line, model.form,
                            model.poet.config.corpus.simplify)
            kind, given = "first_lines", line
        else:
            model = self._model(request.form or self.default_form, "form")
            given = _checked("acrostic", normalise_acrostic, request.acrostic, model.poet.config.corpus.simplify)
            if not model.poet.config.dataset.pad_start:
                raise InputError("acrostic", "this model was trained without dataset.pad_start, so it cannot write "
                                             "first lines for an acrostic")
            kind = "acrostics"
        options = self.options(model, request)
        if kind == "first_lines" and options["rhyme"] != "none" and options["rhyme_first_line"]:
            if prosody.PING not in prosody.tones(given[-1], options["rhyme"]):
                raise InputError("first_line", f"the first line ends in {given[-1]!r}, which is not a level-tone (平) "
                                               f"character in the {options['rhyme']} table, so it cannot rhyme: "
                                               "turn rhyme_first_line off or end the first line differently")
        loop = asyncio.get_running_loop()
        return Job(model, kind, [given] * request.num, options, request.seed, loop.create_future(), loop.time())

    def _model(self, form: int, field_name: str) -> LoadedModel:
        if form not in self.models:
            loaded = ", ".join(f"{n} ({FORM_NAMES[n]})" for n in sorted(self.models))
            raise InputError(field_name, f"this server has no {FORM_NAMES[form]} ({form}-character) model; "
                                         f"loaded: {loaded}")
        return self.models[form]

    @staticmethod
    def options(model: LoadedModel, request: PoemRequest) -> dict:
        defaults = model.poet.config.generate
        given = request.model_dump(include=set(OPTION_NAMES), exclude_none=True)
        return {name: given.get(name, getattr(defaults, name)) for name in OPTION_NAMES}

    def response(self, job: Job, poems: list[str]) -> dict:
        scheme = job.options["rhyme"] if job.options["rhyme"] != "none" else "pingshui"
        return {
            "poems": [annotate(poem, scheme, job.options["rhyme_first_line"]) for poem in poems],
            "form": job.model.form, "model": job.model.info["model"], "scheme": scheme, "seed": job.seed,
            "options": job.options,
        }


def _checked(field_name: str, function, *args):
    try:
        return function(*args)
    except ValueError as err:
        raise InputError(field_name, str(err)) from None


@functools.lru_cache(maxsize=1 << 16)
def tone_of(char: str, scheme: str) -> str:
    """平, 仄, 平仄 (read both ways: 多音字 or a character listed under both tones) or unknown."""
    found = prosody.tones(char, scheme)
    if found == {prosody.PING, prosody.ZE}:
        return TONE_BOTH
    return next(iter(found)) if found else TONE_UNKNOWN


@functools.lru_cache(maxsize=1 << 16)
def _groups(char: str, scheme: str) -> frozenset[str]:
    return prosody.rhyme_groups(char, scheme)


def annotate(poem: str, scheme: str = "pingshui", rhyme_first_line: bool = False) -> dict:
    """The poem split into lines and characters, with tones, rhyme positions and rhyme groups."""
    lines = re.findall(r"([^，。？！；,.?!;]+)([，。？！；,.?!;]?)", poem)
    ends = [text[-1] for text, _ in lines]
    groups = [_groups(char, scheme) for char in ends]
    rhyming = {1, 3} if len(lines) == 4 else set(range(1, len(lines), 2))
    if len(lines) == 4:
        shared = groups[1] & groups[3]
        target = shared or (groups[1] | groups[3])
        if rhyme_first_line or groups[0] & target:
            rhyming.add(0)
        common = frozenset.intersection(*(groups[i] for i in rhyming)) if rhyming else frozenset()
        rhyme_group = sorted(common or shared)
    else:
        rhyme_group = []
    annotated = []
    for index, (text, mark) in enumerate(lines):
        chars = []
        for column, char in enumerate(text):
            rhymes = index in rhyming and column == len(text) - 1
            chars.append({"char": char, "tone": tone_of(char, scheme), "rhyme": rhymes,
                          "rhyme_groups": sorted(groups[index]) if rhymes else []})
        annotated.append({"text": text, "punctuation": mark, "chars": chars})
    return {"text": poem, "lines": annotated, "rhyme_group": rhyme_group}


def error_field(message: str, job: Job | None) -> str:
    """The request field a ValueError from Poet is about, read from its message."""
    text = message.lower()
    source = "acrostic" if job is not None and job.kind == "acrostics" else "first_line"
    if text.startswith("the first line"):
        return "first_line"
    if text.startswith("acrostic"):
        return "acrostic"
    for name in ("temperature", "top_k", "top_p", "beam_width", "rerank", "num", "seed", "no_copy",
                 "rhyme_first_line", "no_repeat", "tonal"):
        if re.search(rf"\b{name}\b", text):
            return name
    if text.startswith("beam width"):
        return "beam_width"
    if "sampler" in text:
        return "sampler"
    if "rhyme scheme" in text:
        return "rhyme"
    if "satisfies the constraints" in text and job is not None:
        if job.options.get("tonal"):
            return "tonal"
        if job.options.get("rhyme") != "none":
            return "rhyme"
    return source


def _unprocessable(field_name: str, message: str) -> JSONResponse:
    return JSONResponse({"detail": [{"loc": ["body", field_name], "msg": message, "type": "value_error"}]},
                        status_code=422)


# ---------------------------------------------------------------------------------------------
# The app
# ---------------------------------------------------------------------------------------------
class BodyLimit:
    """ASGI middleware: refuse a request body over `max_bytes` with 413, declared or streamed (chunked)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_large = JSONResponse({"detail": f"the request body is larger than {self.max_bytes // 1024} KB"},
                                 status_code=413)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                return await JSONResponse({"detail": "bad Content-Length"}, status_code=400)(scope, receive, send)
            if int(declared) > self.max_bytes:
                return await too_large(scope, receive, send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return None
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await too_large(scope, receive, send)
            if not message.get("more_body", False):
                break
        body, replayed = b"".join(chunks), False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


PAGE_HEADERS = {
    # the page is one file: its own inline script and style, calls to this origin, nothing else
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def page() -> str:
    return resources.files("jueju").joinpath("web/index.html").read_text("utf-8")


def create_app(models: Sequence[LoadedModel] | LoadedModel | Poet, *, max_batch: int = 64, max_wait_ms: float = 5,
               queue_size: int = 256, max_body_kb: int = 16) -> FastAPI:
    """The FastAPI app serving already loaded models (the first one's form is the acrostic default)."""
    if isinstance(models, Poet):
        models = LoadedModel(models)
    if isinstance(models, LoadedModel):
        models = [models]
    if not models:
        raise ValueError("no model to serve")
    batcher = Batcher(max_batch, max_wait_ms, queue_size)
    service = Service(list(models), batcher)
    html = page()

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await batcher.close()

    app = FastAPI(title="jueju", version="0.1.0", lifespan=lifespan,
                  description="Classical Chinese quatrains (绝句): write poems from a first line or an acrostic, "
                              "each character annotated with its tone (平仄) and the rhyme characters with their "
                              "rhyme groups.")
    app.state.service = service

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get("/api/health", response_model=Health)
    async def health() -> dict:
        """Which models and vocabularies are loaded, and the batching settings."""
        return {"status": "ok", "models": [model.info for model in service.models.values()],
                "max_batch": batcher.max_batch, "max_wait_ms": batcher.max_wait * 1000,
                "queue_size": batcher.queue_size, "max_body_kb": max_body_kb, "pending": batcher.pending}

    @app.post("/api/poems", response_model=PoemResponse, responses={
        413: {"model": ErrorResponse, "description": f"the body is over serve.max_body_kb ({max_body_kb} KB)"},
        422: {"model": ErrorResponse, "description": "bad input: `detail[0].loc` names the field, `msg` says why"},
        503: {"model": ErrorResponse, "description": "the queue is full: try again after `Retry-After` seconds"},
    })
    async def poems(request: PoemRequest):
        """Poems from `first_line` or `acrostic`, annotated with tones and rhyme groups."""
        job = None
        try:
            job = service.job(request)
            future = batcher.submit(job)
            return service.response(job, await future)
        except InputError as err:
            return _unprocessable(err.field, str(err))
        except QueueFull as full:
            return JSONResponse({"detail": str(full)}, status_code=503,
                                headers={"Retry-After": str(full.retry_after)})
        except ValueError as err:  # from Poet: bad option or input it caught
            message, field_name = str(err), error_field(str(err), job)
            if "satisfies the constraints" in message:  # sampling.ConstraintError
                message += (": no character of this model's vocabulary fits the rhyme, tonal and no-repeat "
                            "constraints together here; try rhyme none, tonal off or another first line")
            return _unprocessable(field_name, message)

    app.add_middleware(BodyLimit, max_bytes=max_body_kb * 1024)
    return app


WARM_UP_LINES = {5: "床前明月光", 7: "朝辞白帝彩云间"}


def warm_up(models: Sequence[LoadedModel]) -> None:
    """Pay the one-time costs before the first request does: the model's compiled step (traced for a
    batch of one, then for any size) and the rhyme tables."""
    options = {"seed": 0, "rhyme": "none", "tonal": False, "no_copy": False}
    for model in models:
        try:
            for rows in (1, 2, 3):
                model.poet.batch([WARM_UP_LINES[model.form]] * rows, **options)
        except ValueError as err:  # nothing a request could not meet anyway: say so and go on
            log.warning("could not warm up the %s model: %s", FORM_NAMES[model.form], err)
    for scheme in prosody.SCHEMES:
        annotate("床前明月光，疑是地上霜。举头望明月，低头思故乡。", scheme)


def create_app_from_config(config: Config, model_dirs: Sequence[str | Path] | None = None) -> FastAPI:
    """Load the models (default: default_model_dirs), warm them up and build the app with the [serve] settings."""
    models = load_models(model_dirs or default_model_dirs(config))
    warm_up(models)
    serve = config.serve
    return create_app(models, max_batch=serve.max_batch, max_wait_ms=serve.max_wait_ms,
                      queue_size=serve.queue_size, max_body_kb=serve.max_body_kb)


def app_from_environment() -> FastAPI:
    """uvicorn's factory for worker processes: the config and model folders come in $JUEJU_SERVE."""
    settings = json.loads(os.environ[SERVE_ENV])
    return create_app_from_config(config_from_dict(settings["config"]), settings["models"] or None)


def run(config: Config, model_dirs: Sequence[str | Path] | None = None, host: str | None = None,
        port: int | None = None, workers: int = 1) -> None:
    """Serve until Ctrl-C: one process, or `workers` processes sharing the port (each loads the models)."""
    import uvicorn

    host, port = host or config.serve.host, port or config.serve.port
    if workers <= 1:
        uvicorn.run(create_app_from_config(config, model_dirs), host=host, port=port,
                    timeout_graceful_shutdown=5)
        return
    for model_dir in model_dirs or default_model_dirs(config):  # fail here, not in every worker
        if not (Path(model_dir) / "model.keras").is_file():
            raise FileNotFoundError(f"no trained model in {model_dir}: train one with `jueju train`")
    os.environ[SERVE_ENV] = json.dumps({"config": config.to_dict(),
                                        "models": [str(Path(d).resolve()) for d in model_dirs or []]})
    uvicorn.run("jueju.serve:app_from_environment", factory=True, host=host, port=port, workers=workers,
                timeout_graceful_shutdown=5)


@contextlib.contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` with uvicorn on a free port in a background thread; yields its base URL (tests, load runs)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="jueju-serve")
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.02)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
