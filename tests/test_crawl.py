"""Tests for jueju.data.crawl against a local fake upstream with scripted faults.

The fake serves a small fixture tree from tmp_path over HTTP on 127.0.0.1 and
counts requests per path, so tests can check retries and resumption. A tiny
"mini" collection of 5 files (0..4000) stands in for the real ones.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import jueju.data.crawl as jc
from jueju.data.crawl import CrawlSummary, collection_files, crawl

from local_server import clear_proxies, local_server

FOLDER = "全唐诗"
FOLDER_ENCODED = "%E5%85%A8%E5%94%90%E8%AF%97"
MINI_FILES = [f"poet.mini.{n}.json" for n in range(0, 5000, 1000)]
SLOW_SECONDS = 2.0


class FakeUpstream:
    """Files under `root` served at their relative path, with faults per path.

    `plan(name, *faults)` scripts the answers for one file of the fake
    folder: request k gets faults[k], and the last fault repeats forever.
    Faults: ok, 404, 500, 429 (Retry-After: 0), 429-long (Retry-After: 3600),
    truncate (half the body, honest Content-Length), cut (connection closed
    mid-body), slow (stall past any test timeout), no-length (body without
    Content-Length), redirect-loop, redirect:<name>.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.plans: dict[str, list[str]] = {}
        self.requests: Counter[str] = Counter()  # decoded path -> count
        self.raw_paths: list[str] = []  # request targets exactly as sent
        self.lock = threading.Lock()
        self.release = threading.Event()  # set at teardown to wake "slow" handlers
        self.base_url = ""

    def path_of(self, name: str) -> str:
        return f"/{FOLDER}/{name}"

    def plan(self, name: str, *faults: str) -> None:
        self.plans[self.path_of(name)] = list(faults)

    def count(self, name: str) -> int:
        return self.requests[self.path_of(name)]

    def body(self, name: str) -> bytes:
        return (self.root / FOLDER / name).read_bytes()

    def next_fault(self, path: str) -> str:
        with self.lock:
            n = self.requests[path]
            self.requests[path] += 1
        plan = self.plans.get(path, ["ok"])
        return plan[min(n, len(plan) - 1)]


def make_handler(up: FakeUpstream) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format, *args):  # keep test output quiet
            pass

        def do_GET(self):
            with up.lock:
                up.raw_paths.append(self.path)
            path = unquote(urlsplit(self.path).path)
            fault = up.next_fault(path)
            try:
                self.answer(path, fault)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up first (timeouts), which is the point

        def answer(self, path: str, fault: str) -> None:
            if fault in ("404", "500"):
                self.send_bytes(int(fault), b"error\n")
            elif fault in ("429", "429-long"):
                self.send_bytes(429, b"slow down\n", {"Retry-After": "0" if fault == "429" else "3600"})
            elif fault == "slow":
                up.release.wait(SLOW_SECONDS)
                self.serve_file(path)
            elif fault == "redirect-loop":
                self.send_bytes(302, b"", {"Location": self.path})
            elif fault.startswith("redirect:"):
                self.send_bytes(302, b"", {"Location": f"/{FOLDER_ENCODED}/{fault.split(':', 1)[1]}"})
            else:
                self.serve_file(path, fault)

        def serve_file(self, path: str, fault: str = "ok") -> None:
            file = (up.root / path.lstrip("/")).resolve()
            if up.root.resolve() not in file.parents or not file.is_file():
                self.send_bytes(404, b"not found\n")
                return
            body = file.read_bytes()
            if fault == "truncate":
                self.send_bytes(200, body[: len(body) // 2])
            elif fault == "cut":
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
            elif fault == "no-length":
                # HTTP/1.0 without Content-Length: the body ends when we close.
                self.send_response(200)
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
            else:
                self.send_bytes(200, body)

        def send_bytes(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def poem_file(collection: str, n: int) -> bytes:
    poems = [
        {
            "author": f"作者{n}",
            "title": f"{collection} 詩 {n}.{i}",
            "paragraphs": ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。"],
            "id": f"{collection}-{n}-{i}",
        }
        for i in range(3)
    ]
    return json.dumps(poems, ensure_ascii=False, indent=2).encode("utf-8")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    clear_proxies(monkeypatch)


@pytest.fixture
def mini(monkeypatch):
    """Register a 5-file collection "mini" in the upstream folder."""
    monkeypatch.setitem(jc.COLLECTIONS, "mini", (FOLDER, 4000))
    return "mini"


@pytest.fixture
def upstream(tmp_path, mini):
    root = tmp_path / "upstream"
    (root / FOLDER).mkdir(parents=True)
    for name in MINI_FILES:
        n = int(name.split(".")[2])
        (root / FOLDER / name).write_bytes(poem_file("mini", n))
    up = FakeUpstream(root)
    with local_server(make_handler(up)) as up.base_url:
        try:
            yield up
        finally:
            up.release.set()  # stalled handlers end before the server shuts down


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def run(up: FakeUpstream, out: Path, **kwargs) -> CrawlSummary:
    options = {"workers": 4, "timeout": 5.0, "retries": 2, "backoff": 0.01, "progress": False}
    options.update(kwargs)
    return crawl(up.base_url, out, ["mini"], **options)


def listing(out: Path) -> list[str]:
    """Everything in the collection folder, hidden temp files included."""
    folder = out / "mini"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------
# collection_files and arguments


def test_collection_files_known_answer():
    tang = collection_files("tang")
    assert len(tang) == 58
    assert tang[0] == "poet.tang.0.json"
    assert tang[1] == "poet.tang.1000.json"
    assert tang[-1] == "poet.tang.57000.json"
    song = collection_files("song")
    assert len(song) == 255
    assert song[-1] == "poet.song.254000.json"


def test_unknown_collection_names_it_and_the_valid_ones():
    with pytest.raises(ValueError, match=r"'yuan'.*song, tang"):
        collection_files("yuan")


def test_crawl_rejects_unknown_collection_before_any_request(upstream, out):
    with pytest.raises(ValueError, match="yuan"):
        crawl(upstream.base_url, out, ["mini", "yuan"], progress=False)
    assert not upstream.requests
    assert not out.exists()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"workers": 0}, "workers"),
        ({"timeout": 0}, "timeout"),
        ({"retries": -1}, "retries"),
        ({"max_bytes": 0}, "max_bytes"),
    ],
)
def test_bad_arguments_are_refused(upstream, out, kwargs, message):
    with pytest.raises(ValueError, match=message):
        run(upstream, out, **kwargs)


def test_base_url_must_be_http(out, mini):
    with pytest.raises(ValueError, match="http"):
        crawl("ftp://example.org/x", out, ["mini"], progress=False)


def test_file_url_percent_encodes_the_upstream_folder():
    url = jc.file_url(jc.DEFAULT_BASE_URL + "/", "tang", "poet.tang.0.json")
    assert url == f"{jc.DEFAULT_BASE_URL}/{FOLDER_ENCODED}/poet.tang.0.json"


# --------------------------------------------------------------------------
# Happy path and resumption


def test_fetches_every_file_byte_identical(upstream, out):
    summary = run(upstream, out)

    assert summary.fetched == MINI_FILES  # collection order, not completion order
    assert summary.skipped == [] and summary.failed == {}
    assert summary.ok
    assert listing(out) == sorted(MINI_FILES)  # and no temp files
    for name in MINI_FILES:
        assert (out / "mini" / name).read_bytes() == upstream.body(name)
    # The folder went over the wire percent-encoded.
    assert sorted(upstream.raw_paths) == sorted(f"/{FOLDER_ENCODED}/{name}" for name in MINI_FILES)


def test_accepts_a_single_collection_name_as_a_string(upstream, out):
    summary = crawl(upstream.base_url, out, "mini", progress=False, backoff=0.01)
    assert summary.fetched == MINI_FILES


def test_second_run_fetches_only_what_is_missing(upstream, out):
    upstream.plan("poet.mini.2000.json", "404")
    first = run(upstream, out)
    assert first.failed == {"poet.mini.2000.json": "HTTP 404"}

    upstream.plans.clear()  # the file has appeared upstream
    second = run(upstream, out)

    assert second.fetched == ["poet.mini.2000.json"]
    assert second.skipped == [name for name in MINI_FILES if name != "poet.mini.2000.json"]
    assert second.failed == {}
    assert upstream.count("poet.mini.2000.json") == 2
    for name in second.skipped:
        assert upstream.count(name) == 1
    assert listing(out) == sorted(MINI_FILES)


def test_present_but_unreadable_file_is_fetched_again(upstream, out):
    folder = out / "mini"
    folder.mkdir(parents=True)
    (folder / "poet.mini.0.json").write_bytes(b'[{"author": "cut sh')  # a torn write
    (folder / "poet.mini.1000.json").write_bytes(b"[]")  # valid JSON list: complete

    summary = run(upstream, out)

    assert "poet.mini.0.json" in summary.fetched
    assert summary.skipped == ["poet.mini.1000.json"]
    assert upstream.count("poet.mini.1000.json") == 0
    assert (folder / "poet.mini.0.json").read_bytes() == upstream.body("poet.mini.0.json")


def test_stale_temp_files_from_a_killed_run_are_removed(upstream, out):
    folder = out / "mini"
    folder.mkdir(parents=True)
    (folder / ".poet.mini.0.json.part-abc123").write_bytes(b"[{")
    run(upstream, out)
    assert listing(out) == sorted(MINI_FILES)


def test_progress_bar_is_shown(upstream, out, capsys):
    run(upstream, out, progress=True)
    assert "5/5" in capsys.readouterr().err


# --------------------------------------------------------------------------
# Faults


def test_mixed_faults_are_retried_or_reported(upstream, out):
    upstream.plan("poet.mini.0.json", "404")
    upstream.plan("poet.mini.1000.json", "500", "ok")
    upstream.plan("poet.mini.2000.json", "truncate")
    upstream.plan("poet.mini.3000.json", "429", "ok")

    summary = run(upstream, out, retries=2)

    assert summary.fetched == ["poet.mini.1000.json", "poet.mini.3000.json", "poet.mini.4000.json"]
    assert list(summary.failed) == ["poet.mini.0.json", "poet.mini.2000.json"]
    assert summary.failed["poet.mini.0.json"] == "HTTP 404"
    assert summary.failed["poet.mini.2000.json"].startswith("invalid JSON")
    assert "gave up after 3 attempts" in summary.failed["poet.mini.2000.json"]
    # 404 is final; 5xx and 429 are retried once here; bad JSON until retries run out.
    assert upstream.count("poet.mini.0.json") == 1
    assert upstream.count("poet.mini.1000.json") == 2
    assert upstream.count("poet.mini.2000.json") == 3
    assert upstream.count("poet.mini.3000.json") == 2
    # Only complete files under their final names; no temp or partial files.
    assert listing(out) == summary.fetched
    for name in summary.fetched:
        assert (out / "mini" / name).read_bytes() == upstream.body(name)
    assert str(summary).startswith("fetched 3, skipped 0 (already complete), failed 2: poet.mini.0.json (HTTP 404)")


def test_timeouts_are_retried_then_reported(upstream, out):
    upstream.plan("poet.mini.0.json", "slow")
    upstream.plan("poet.mini.1000.json", "slow", "ok")

    started = time.monotonic()
    summary = run(upstream, out, timeout=0.5, retries=1)
    elapsed = time.monotonic() - started

    assert elapsed < SLOW_SECONDS  # we did not wait for the stalled server
    assert summary.failed["poet.mini.0.json"].startswith("timed out")
    assert "poet.mini.1000.json" in summary.fetched
    assert upstream.count("poet.mini.0.json") == 2
    assert upstream.count("poet.mini.1000.json") == 2
    assert "poet.mini.0.json" not in listing(out)
    assert not [name for name in listing(out) if name.startswith(".")]


def test_connection_cut_mid_body_is_retried_then_reported(upstream, out):
    upstream.plan("poet.mini.0.json", "cut")
    summary = run(upstream, out, retries=2)
    assert summary.failed["poet.mini.0.json"].startswith("connection error")
    assert upstream.count("poet.mini.0.json") == 3
    assert listing(out) == MINI_FILES[1:]


def test_retry_after_is_honoured_but_capped(upstream, out, monkeypatch):
    monkeypatch.setattr(jc, "MAX_RETRY_AFTER", 0.05)
    upstream.plan("poet.mini.0.json", "429-long", "ok")
    started = time.monotonic()
    summary = run(upstream, out)
    assert time.monotonic() - started < 2
    assert summary.fetched == MINI_FILES
    assert upstream.count("poet.mini.0.json") == 2


@pytest.mark.parametrize("fault", ["ok", "no-length"])
def test_body_size_is_capped(upstream, out, fault):
    # "ok" announces its length and is refused up front; "no-length" must be counted.
    upstream.plan("poet.mini.0.json", fault)
    summary = run(upstream, out, max_bytes=100)
    assert summary.failed["poet.mini.0.json"] == "body larger than 100 bytes"
    assert upstream.count("poet.mini.0.json") == 1  # retrying cannot shrink it
    assert listing(out) == []


def test_body_without_length_under_the_cap_is_accepted(upstream, out):
    upstream.plan("poet.mini.0.json", "no-length")
    summary = run(upstream, out)
    assert summary.fetched == MINI_FILES
    assert (out / "mini" / "poet.mini.0.json").read_bytes() == upstream.body("poet.mini.0.json")


def test_valid_json_that_is_not_a_list_of_poems_is_refused(upstream, out):
    (upstream.root / FOLDER / "poet.mini.0.json").write_bytes(b'{"message": "Not Found"}')
    (upstream.root / FOLDER / "poet.mini.1000.json").write_bytes(b"[1, 2]")
    summary = run(upstream, out)
    assert summary.failed["poet.mini.0.json"].startswith("not a JSON list of poems")
    assert summary.failed["poet.mini.1000.json"].startswith("not a JSON list of poems")
    assert upstream.count("poet.mini.0.json") == 1
    assert listing(out) == MINI_FILES[2:]


def test_redirect_loops_are_not_followed_forever(upstream, out):
    upstream.plan("poet.mini.0.json", "redirect-loop")
    summary = run(upstream, out)
    assert "redirects" in summary.failed["poet.mini.0.json"]
    assert upstream.count("poet.mini.0.json") == jc.MAX_REDIRECTS + 1


def test_local_names_never_come_from_the_server(upstream, out):
    # A redirect to another file is followed, but the bytes land under our own name.
    upstream.plan("poet.mini.0.json", "redirect:poet.mini.4000.json")
    summary = run(upstream, out)
    assert summary.fetched == MINI_FILES
    assert listing(out) == sorted(MINI_FILES)
    assert (out / "mini" / "poet.mini.0.json").read_bytes() == upstream.body("poet.mini.4000.json")


def test_unwritable_destination_is_reported_not_raised(upstream, out):
    (out / "mini" / "poet.mini.0.json").mkdir(parents=True)  # a directory in the way
    summary = run(upstream, out)
    assert summary.failed["poet.mini.0.json"].startswith("cannot write")
    assert len(summary.fetched) == 4
    assert not [name for name in listing(out) if name.startswith(".")]


# --------------------------------------------------------------------------
# Summary text


def test_summary_line_matches_the_documented_form():
    summary = CrawlSummary(fetched=["a", "b", "c"], skipped=["x"] * 55, failed={"poet.tang.5000.json": "HTTP 404"})
    assert str(summary) == "fetched 3, skipped 55 (already complete), failed 1: poet.tang.5000.json (HTTP 404)"
    assert not summary.ok


def test_summary_line_stays_short_with_many_failures():
    failed = {f"poet.song.{n}.json": "HTTP 500 (gave up after 5 attempts)" for n in range(0, 8000, 1000)}
    text = str(CrawlSummary(failed=failed))
    assert text.count("poet.song.") == jc.SUMMARY_MAX_NAMED
    assert text.endswith(f"and {8 - jc.SUMMARY_MAX_NAMED} more")
    assert str(CrawlSummary(fetched=["a"])) == "fetched 1, skipped 0 (already complete), failed 0"
