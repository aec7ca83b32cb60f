"""`jueju serve`: the web page and the JSON API, with concurrent requests batched into one model call.

* `GET /` -- one self-contained page (web/index.html: no CDN, no external font).
* `GET /api/health` -- which models and vocabularies are loaded.
* `POST /api/poems` -- poems from a first line, an acrostic or a template, each character annotated
  with its tone and the rhyme characters with their rhyme groups.
* `GET /docs` -- the OpenAPI description of both (request and response schemas).

The models are loaded once, at start; nothing else is kept between requests (no session,
no cache), so any number of workers or machines can stand behind a load balancer.

Each request becomes one `batcher.Job` of `num` rows; `batcher.Batcher` gathers unseeded
requests with identical options into shared `Poet.batch` calls (`serve.max_batch`,
`serve.max_wait_ms`) and decodes a seeded one on its own (see jueju.serve.batcher for the rule). At
most `serve.queue_size` requests wait or run at once; one more is answered 503 with
`Retry-After`. The annotations come from jueju.serve.annotate.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from jueju import options
from jueju.config import FORMS, PROJECT_ROOT, Config, config_from_dict
from jueju.data import prosody
from jueju.data.condition import MAX_KEYWORDS
from jueju.data.corpus import MAX_TITLE
from jueju.options import OptionError
from jueju.serve.annotate import annotate
from jueju.serve.batcher import Batcher, Job, QueueFull
from jueju.write.keywords import KEYWORD_PLANS
from jueju.write.plan import normalise_keywords
from jueju.write.poet import FORM_NAMES, Poet
from jueju.write.preprocess import EXAMPLE_FIRST_LINES, INPUTS, normalise_first_line, template_form

log = logging.getLogger(__name__)

MAX_POEMS = 20  # poems per request
# rows one request may ask the model to decode (num x (rerank x beam_width + 4 x redraw)): 20 poems at the committed
# defaults (rerank 16), about 12 s on a 2-core CPU; 20 x 64 x 16 would be 64 times that
MAX_ROWS = 320
MAX_TEXT = 100  # characters of first_line / acrostic accepted before any checking
SERVE_ENV = "JUEJU_SERVE"  # the config and model folders handed to each worker process (--workers > 1)


# ---------------------------------------------------------------------------------------------
# Schemas (pydantic: they are what /docs shows)
# ---------------------------------------------------------------------------------------------
class PoemInput(BaseModel):
    """Give `first_line`, `acrostic`, `template`, `keywords` or `title` (a title and keywords combine with the
    others); every option left out takes the model's [generate] default."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"first_line": "床前明月光", "num": 2, "seed": 7},
                {"acrostic": "春夏秋冬", "form": 7, "rhyme": "pingshui", "tonal": True},
                {"template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。", "rerank": 4},
                {"keywords": ["秋", "月", "故乡"], "tonal": True},
                {"title": "送友人", "keywords": ["柳"], "num": 2},
            ]
        },
    )

    first_line: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description=(
            "5 or 7 Han characters (with or without punctuation, traditional accepted); its length picks the form"
        ),
    )
    acrostic: str | None = Field(
        None, max_length=MAX_TEXT, description="4 Han characters that open the 4 lines (藏头诗)"
    )
    template: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description="4 lines of 5 or 7 places: Han characters to keep where they stand, blanks (＿ _ □) to write",
    )
    keywords: list[str] | None = Field(
        None,
        max_length=MAX_KEYWORDS,
        description="1-4 keywords of 1-2 Han characters, each written within one line (alone or after first_line)",
    )
    title: str | None = Field(
        None,
        max_length=MAX_TEXT,
        description=f"1-{MAX_TITLE} Han characters the whole poem is written toward (alone or with any of the above)",
    )
    form: Literal[5, 7] | None = Field(
        None,
        description=(
            "characters per line: with an acrostic it picks the model (default: the server's first model); "
            "with a first line or a template it may be left out, and must match its length if given"
        ),
    )
    num: int = Field(1, ge=1, le=MAX_POEMS, description=f"poems to write (at most {MAX_POEMS})")


# the request: what to write, then every decoding option of jueju.options (bounds and all), each optional
PoemRequest = create_model("PoemRequest", __base__=PoemInput, **options.optional_fields())


Tone = Literal["平", "仄", "平仄", "unknown"]


class CharInfo(BaseModel):
    char: str
    tone: Tone = Field(
        description="平 level, 仄 oblique, 平仄 a character read both ways, unknown if the table lacks it"
    )
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
    scheme: Literal["pingshui", "xin"] = Field(
        description="the table tones and rhyme groups are read from (pingshui when rhyme is none)"
    )
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
            "form": self.form,
            "name": FORM_NAMES[self.form],
            "model": _shown(self.model_dir),
            "vocabulary": _shown(self.model_dir / "vocab.json" if self.model_dir else None),
            "vocab_size": len(self.poet.vocab),
            "model_sha256": digest("model.keras"),
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
    """The config's model (models/<form> of corpus.line_length, in the home), then the other form's when it is
    trained."""
    first = config.path(config.paths.model_dir) / config.form
    others = [config.path(config.paths.model_dir) / name for name in FORMS.values()]
    return [first, *(other for other in others if other != first and (other / "model.keras").is_file())]


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
# Requests -> jobs, poems -> annotated responses
# ---------------------------------------------------------------------------------------------
class Service:
    """What the routes share: the loaded models and the batcher (no per-client state)."""

    def __init__(self, models: Sequence[LoadedModel], batcher: Batcher):
        self.models = {model.form: model for model in models}
        self.default_form = models[0].form
        self.batcher = batcher

    def job(self, request: PoemRequest) -> Job:
        """The request as a job for the batcher, checked by the model's own Poet (OptionError names the field)."""
        if request.keywords is not None or request.title is not None:
            return self._planned_job(request)
        inputs = {"first_lines": request.first_line, "acrostics": request.acrostic, "templates": request.template}
        given = {kind: text for kind, text in inputs.items() if text is not None}
        if len(given) != 1:
            raise OptionError(
                INPUTS[list(given)[-1]] if given else "first_line",
                "give one of: a first line of 5 or 7 Han characters (e.g. 床前明月光), 4 acrostic characters "
                "(e.g. 春夏秋冬) or a template (e.g. 床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。)",
            )
        ((kind, given),) = given.items()
        if kind == "acrostics":
            model = self._model(request.form or self.default_form, "form")
        else:  # a first line's or a template's own length picks the model
            if kind == "first_lines":
                given = normalise_first_line(given)
            form = len(given) if kind == "first_lines" else template_form(given)
            if request.form is not None and request.form != form:
                raise OptionError(
                    "form",
                    f"form {request.form} ({FORM_NAMES[request.form]}) was asked for, but the "
                    f"{INPUTS[kind].replace('_', ' ')} has {form} characters a line: it decides the form",
                )
            model = self._model(form, INPUTS[kind])
        asked = request.model_dump(include=set(options.DECODING), exclude_none=True)
        settings = model.poet.check(**{kind: [given]}, **asked)
        check_cost(request.num, settings)
        seed = settings.pop("seed")
        del settings["num"]
        loop = asyncio.get_running_loop()
        return Job(model, kind, [given] * request.num, settings, seed, loop.create_future(), loop.time())

    def _planned_job(self, request: PoemRequest) -> Job:
        """A title or keywords (alone, or with one of a first line, an acrostic or a template):
        one Poet.poems call per group of equal requests."""
        inputs = {"first_line": request.first_line, "acrostic": request.acrostic, "template": request.template}
        given = {field: text for field, text in inputs.items() if text is not None}
        if len(given) > 1:
            raise OptionError(list(given)[-1], "give at most one of a first line, an acrostic or a template")
        if request.keywords is not None and set(given) & {"acrostic", "template"}:
            field = next(iter(given))
            raise OptionError(field, f"keywords combine with a first line (or stand alone), not with an {field}")
        field, text = next(iter(given.items()), (None, ""))
        form = None  # an acrostic's or a title's form is asked for; a first line's or a template's is its own
        if field == "first_line":
            text = normalise_first_line(text)
            form = len(text)
        elif field == "template":
            form = template_form(text)
        if form and request.form is not None and request.form != form:
            raise OptionError(
                "form", f"form {request.form} was asked for, but the {field} has {form} characters a line"
            )
        model = self._model(form or request.form or self.default_form, field if form else "form")
        poet = model.poet
        words = normalise_keywords(request.keywords, poet.config.corpus.simplify) if request.keywords else []
        title = poet.title(request.title)
        asked = request.model_dump(include=set(options.DECODING), exclude_none=True)
        kinds = {"first_line": "first_lines", "acrostic": "acrostics", "template": "templates"}
        settings = poet.check(**{kinds[field]: [text]}, **asked) if field else poet.settings(asked)
        check_cost(request.num, settings, planned=True)
        seed = settings.pop("seed")
        del settings["num"]
        loop = asyncio.get_running_loop()
        job_options = {**settings, "keywords": ",".join(words), "title": title, "given": field or ""}
        return Job(model, "planned", [text] * request.num, job_options, seed, loop.create_future(), loop.time())

    def _model(self, form: int, field_name: str) -> LoadedModel:
        if form not in self.models:
            loaded = ", ".join(f"{n} ({FORM_NAMES[n]})" for n in sorted(self.models))
            raise OptionError(
                field_name, f"this server has no {FORM_NAMES[form]} ({form}-character) model; loaded: {loaded}"
            )
        return self.models[form]

    def response(self, job: Job, poems: list[str]) -> dict:
        scheme = job.options["rhyme"] if job.options["rhyme"] != "none" else "pingshui"
        return {
            "poems": [annotate(poem, scheme, job.options["rhyme_first_line"]) for poem in poems],
            "form": job.model.form,
            "model": job.model.info["model"],
            "scheme": scheme,
            "seed": job.seed,
            "options": job.options,
        }


class OverBudget(OptionError):
    """A request that asks the model to decode more than MAX_ROWS rows; `fields` are the options that multiply."""

    def __init__(self, fields: Sequence[str], message: str):
        super().__init__(fields[0], message)
        self.fields = tuple(fields)


def check_cost(num: int, settings: dict, planned: bool = False) -> None:
    """Raise OverBudget when the rows a request asks the model to decode pass MAX_ROWS: num poems x
    (rerank candidates each (a title or keywords: at least KEYWORD_PLANS) x beam_width for the beam
    sampler, + 4 lines x redraw). A reader or critic scores the same candidates: they add no rows."""
    candidates = max(settings["rerank"], KEYWORD_PLANS) if planned else settings["rerank"]
    fields, product = ["num", "rerank"], f"num {num} × (rerank {candidates}"
    if settings["sampler"] == "beam":
        candidates *= settings["beam_width"]
        fields.append("beam_width")
        product += f" × beam_width {settings['beam_width']}"
    redrawn = 4 * settings.get("redraw", 0)  # each of the four lines redrawn this many times
    if redrawn:
        fields.append("redraw")
        product += f" + 4 lines × redraw {settings['redraw']}"
    rows = num * (candidates + redrawn)
    if rows > MAX_ROWS:
        why = f"; a title or keywords draw at least {KEYWORD_PLANS} candidates a poem" if planned else ""
        raise OverBudget(
            fields,
            f"this request asks the model to decode {rows:,} rows ({product}){why}, over the budget of "
            f"{MAX_ROWS} rows a request: lower {', '.join(fields)}",
        )


def _unprocessable(fields: Sequence[str], message: str) -> JSONResponse:
    items = [{"loc": ["body", name], "msg": message, "type": "value_error"} for name in fields]
    return JSONResponse({"detail": items}, status_code=422)


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
        too_large = JSONResponse(
            {"detail": f"the request body is larger than {self.max_bytes // 1024} KB"}, status_code=413
        )
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
    return resources.files("jueju.serve").joinpath("web/index.html").read_text("utf-8")


def create_app(
    models: Sequence[LoadedModel] | LoadedModel | Poet,
    *,
    max_batch: int = 64,
    max_wait_ms: float = 5,
    queue_size: int = 256,
    max_body_kb: int = 16,
) -> FastAPI:
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

    app = FastAPI(
        title="jueju",
        version="0.1.0",
        lifespan=lifespan,
        description="Classical Chinese quatrains (绝句): write poems from a first line or an acrostic, "
        "each character annotated with its tone (平仄) and the rhyme characters with their "
        "rhyme groups.",
    )
    app.state.service = service

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(html, headers=PAGE_HEADERS)

    @app.get("/api/health", response_model=Health)
    async def health() -> dict:
        """Which models and vocabularies are loaded, and the batching settings."""
        return {
            "status": "ok",
            "models": [model.info for model in service.models.values()],
            "max_batch": batcher.max_batch,
            "max_wait_ms": batcher.max_wait * 1000,
            "queue_size": batcher.queue_size,
            "max_body_kb": max_body_kb,
            "pending": batcher.pending,
        }

    @app.post(
        "/api/poems",
        response_model=PoemResponse,
        responses={
            413: {"model": ErrorResponse, "description": f"the body is over serve.max_body_kb ({max_body_kb} KB)"},
            422: {"model": ErrorResponse, "description": "bad input: `detail[0].loc` names the field, `msg` says why"},
            503: {"model": ErrorResponse, "description": "the queue is full: try again after `Retry-After` seconds"},
        },
    )
    async def poems(request: PoemRequest):
        """Poems from `first_line`, `acrostic` or `template`, annotated with tones and rhyme groups."""
        try:
            job = service.job(request)
            future = batcher.submit(job)
            return service.response(job, await future)
        except OptionError as err:  # from Poet or the request's own checks: it names the field (or fields)
            return _unprocessable(getattr(err, "fields", [err.field]), str(err))
        except QueueFull as full:
            return JSONResponse({"detail": str(full)}, status_code=503, headers={"Retry-After": str(full.retry_after)})

    app.add_middleware(BodyLimit, max_bytes=max_body_kb * 1024)
    return app


def warm_up(models: Sequence[LoadedModel]) -> None:
    """Pay the one-time costs before the first request does: the model's compiled step (traced for a
    batch of one, then for any size) and the rhyme tables."""
    options = {"seed": 0, "rhyme": "none", "tonal": False, "no_copy": False}
    for model in models:
        try:
            for rows in (1, 2, 3):
                model.poet.batch([EXAMPLE_FIRST_LINES[model.form]] * rows, **options)
        except ValueError as err:  # nothing a request could not meet anyway: say so and go on
            log.warning("could not warm up the %s model: %s", FORM_NAMES[model.form], err)
    for scheme in prosody.SCHEMES:
        annotate("床前明月光，疑是地上霜。举头望明月，低头思故乡。", scheme)


def create_app_from_config(config: Config, model_dirs: Sequence[str | Path] | None = None) -> FastAPI:
    """Load the models (default: default_model_dirs), warm them up and build the app with the [serve] settings."""
    models = load_models(model_dirs or default_model_dirs(config))
    warm_up(models)
    serve = config.serve
    return create_app(
        models,
        max_batch=serve.max_batch,
        max_wait_ms=serve.max_wait_ms,
        queue_size=serve.queue_size,
        max_body_kb=serve.max_body_kb,
    )


def app_from_environment() -> FastAPI:
    """uvicorn's factory for worker processes: the config and model folders come in $JUEJU_SERVE."""
    settings = json.loads(os.environ[SERVE_ENV])
    return create_app_from_config(config_from_dict(settings["config"]), settings["models"] or None)


def run(
    config: Config,
    model_dirs: Sequence[str | Path] | None = None,
    host: str | None = None,
    port: int | None = None,
    workers: int = 1,
) -> None:
    """Serve until Ctrl-C: one process, or `workers` processes sharing the port (each loads the models)."""
    host, port = host or config.serve.host, port or config.serve.port
    if workers <= 1:
        uvicorn.run(create_app_from_config(config, model_dirs), host=host, port=port, timeout_graceful_shutdown=5)
        return
    for model_dir in model_dirs or default_model_dirs(config):  # fail here, not in every worker
        if not (Path(model_dir) / "model.keras").is_file():
            raise FileNotFoundError(f"no trained model in {model_dir}: train one with `jueju train`")
    os.environ[SERVE_ENV] = json.dumps(
        {"config": config.to_dict(), "models": [str(Path(d).resolve()) for d in model_dirs or []]}
    )
    uvicorn.run(
        "jueju.serve.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        timeout_graceful_shutdown=5,
    )


@contextlib.contextmanager
def serving(app: FastAPI, host: str = "127.0.0.1") -> Iterator[str]:
    """Run `app` with uvicorn on a free port in a background thread; yields its base URL (tests, load runs)."""
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
