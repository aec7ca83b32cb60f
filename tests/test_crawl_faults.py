"""Network faults that tests/test_crawl.py does not script, against a fault-injecting server on 127.0.0.1.

Each test scripts the answers for some files of a 5-file "mini" collection and checks
that every fault is retried or given up on as fits, is named in the summary, leaves
no partial or temporary file, and that a second run fetches only what is missing.
Also: remote names (redirect targets, Content-Disposition) never choose local paths.

Already covered by test_crawl.py and not repeated here: 404, 500, persistent truncation,
a cut connection, a stall before the headers, Retry-After capping, the size cap with and
without Content-Length, JSON that is not a list of poems, a redirect loop.
"""

from __future__ import annotations

import gzip
import json
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

import jueju.data.crawl as jc
from jueju.data.crawl import CrawlSummary, crawl

from local_server import clear_proxies, local_server

FOLDER = "全唐诗"
MINI = [f"poet.mini.{n}.json" for n in range(0, 5000, 1000)]
TRICKLE_EVERY = 0.2  # seconds between the bytes of a trickling body
HTML_PAGE = b"<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head><body><h1>Oops</h1></body></html>"


def poems(marker: str) -> bytes:
    return json.dumps(
        [{"author": "王之涣", "title": marker, "paragraphs": ["白日依山盡，黃河入海流。"]}], ensure_ascii=False
    ).encode("utf-8")


class Faulty:
    """Serves poet.mini.N.json under /全唐诗/ with scripted faults; any other path is a "stolen" file.

    plan(name, *faults): request k for that file gets faults[k]; the last one repeats.
    """

    def __init__(self) -> None:
        self.plans: dict[str, list[str]] = {}
        self.requests: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.stop = threading.Event()  # set at teardown: endless handlers end
        self.base_url = ""

    def plan(self, name: str, *faults: str) -> None:
        self.plans[name] = list(faults)

    def count(self, name: str) -> int:
        return self.requests[name]

    def next_fault(self, name: str) -> str:
        with self.lock:
            n = self.requests[name]
            self.requests[name] += 1
        plan = self.plans.get(name, ["ok"])
        return plan[min(n, len(plan) - 1)]


def make_handler(up: Faulty) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive and chunked bodies, like a real server

        def log_message(self, format, *args):
            pass

        def do_GET(self):
            path = unquote(urlsplit(self.path).path)
            prefix = f"/{FOLDER}/"
            if not path.startswith(prefix):  # e.g. /etc/passwd after a redirect: a hostile server answers
                self.send(200, poems(f"stolen {path}"), {"Content-Type": "application/json"})
                return
            name = path[len(prefix) :]
            try:
                self.answer(name, up.next_fault(name))
            except (BrokenPipeError, ConnectionResetError, OSError):
                self.close_connection = True  # the client gave up, which is the point

        def answer(self, name: str, fault: str) -> None:
            body = poems(name)
            kind, _, arg = fault.partition(":")
            if kind == "ok":
                self.send(200, body, {"Content-Type": "text/plain; charset=utf-8"})  # what GitHub raw sends
            elif kind == "status":
                self.send(int(arg), b"upstream trouble\n")
            elif kind == "429":
                self.send(429, b"slow down\n", {"Retry-After": arg})
            elif kind == "503-after":
                self.send(503, b"busy\n", {"Retry-After": arg})
            elif kind == "reset":  # RST instead of an answer
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
                self.close_connection = True
            elif kind == "truncate":
                self.send(200, body[: len(body) // 2])
            elif kind == "notjson":
                self.send(200, b"this is {not JSON at all", {"Content-Type": "application/json"})
            elif kind == "html":
                self.send(200, HTML_PAGE, {"Content-Type": "text/html; charset=utf-8"})
            elif kind == "endless":  # chunked, never ends, fast
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"[" + b" " * 65535
                for _ in range(4000):  # 256 MB at most, should the client not stop reading
                    if up.stop.is_set():
                        break
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.close_connection = True
            elif kind == "bad-gzip":  # says gzip, is not
                self.send(200, body, {"Content-Encoding": "gzip"})
            elif kind == "gzip-bomb":  # 20 kB on the wire, 20 MB decoded
                packed = gzip.compress(b"[" + b" " * 20_000_000, compresslevel=9)
                self.send(200, packed, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
            elif kind == "trickle":  # a byte every TRICKLE_EVERY seconds, forever (chunked: no length to refuse)
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.wfile.write(b"1\r\n[\r\n")
                while not up.stop.wait(TRICKLE_EVERY):
                    self.wfile.write(b"1\r\n \r\n")
                self.close_connection = True
            elif kind == "stall-body":  # half the body, then silence
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                up.stop.wait(5)
                self.close_connection = True
            elif kind == "redirect":
                self.send(302, b"", {"Location": arg})
            elif kind == "disposition":
                self.send(200, body, {"Content-Disposition": f"attachment; {arg}"})
            else:
                raise AssertionError(f"unknown fault {fault}")

        def send(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    clear_proxies(monkeypatch)


@pytest.fixture
def up(monkeypatch):
    monkeypatch.setitem(jc.COLLECTIONS, "mini", (FOLDER, 4000))
    faulty = Faulty()
    with local_server(make_handler(faulty)) as faulty.base_url:
        try:
            yield faulty
        finally:
            faulty.stop.set()  # endless handlers end before the server shuts down


@pytest.fixture
def out(tmp_path) -> Path:
    return tmp_path / "out"


def run(up: Faulty, out: Path, **kwargs) -> CrawlSummary:
    options = {"workers": 4, "timeout": 5.0, "retries": 2, "backoff": 0.01, "progress": False}
    options.update(kwargs)
    return crawl(up.base_url, out, ["mini"], **options)


def files_under(root: Path) -> list[str]:
    """Every file below root, hidden ones included, as relative paths."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def assert_clean(out: Path, summary: CrawlSummary) -> None:
    """Exactly the fetched and skipped files under their own names, each a complete copy; nothing else."""
    assert files_under(out) == sorted(f"mini/{name}" for name in summary.fetched + summary.skipped)
    for name in summary.fetched:
        data = json.loads((out / "mini" / name).read_bytes())
        assert isinstance(data, list) and data


# --------------------------------------------------------------------------
# Transient faults: retried, then fetched or reported


@pytest.mark.parametrize("fault", ["reset", "status:502", "status:503", "truncate", "stall-body"])
def test_a_transient_fault_once_is_retried_and_fetched(up, out, fault):
    up.plan("poet.mini.0.json", fault, "ok")
    summary = run(up, out, timeout=0.5)
    assert summary.fetched == MINI and summary.ok
    assert up.count("poet.mini.0.json") == 2
    assert (out / "mini" / "poet.mini.0.json").read_bytes() == poems("poet.mini.0.json")
    assert_clean(out, summary)


@pytest.mark.parametrize(
    "fault, reason",
    [
        ("reset", "connection error"),
        ("status:502", "HTTP 502"),
        ("status:503", "HTTP 503"),
        ("notjson", "invalid JSON"),
        ("stall-body", "timed out"),
        ("bad-gzip", "undecodable body"),
    ],
)
def test_a_persistent_transient_fault_is_retried_then_reported(up, out, fault, reason):
    up.plan("poet.mini.0.json", fault)
    summary = run(up, out, retries=2, timeout=0.3)
    assert summary.failed["poet.mini.0.json"].startswith(reason)
    assert summary.failed["poet.mini.0.json"].endswith("(gave up after 3 attempts)")
    assert up.count("poet.mini.0.json") == 3
    assert summary.fetched == MINI[1:]
    assert "poet.mini.0.json (" + reason in str(summary)
    assert_clean(out, summary)


def test_an_unreachable_server_is_reported_for_every_file(out, monkeypatch):
    monkeypatch.setitem(jc.COLLECTIONS, "mini", (FOLDER, 4000))
    with socket.socket() as sock:  # a port that nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    summary = crawl(f"http://127.0.0.1:{port}/", out, ["mini"], retries=1, backoff=0.01, progress=False)
    assert list(summary.failed) == MINI
    assert all(reason.startswith("connection error") for reason in summary.failed.values())
    assert files_under(out) == []


def test_retry_after_is_waited_for(up, out):
    up.plan("poet.mini.0.json", "429:0.6", "ok")
    started = time.monotonic()
    summary = run(up, out)
    assert time.monotonic() - started >= 0.6
    assert summary.fetched == MINI and up.count("poet.mini.0.json") == 2


def test_retry_after_as_an_http_date_falls_back_to_our_backoff(up, out):
    up.plan("poet.mini.0.json", "429:Wed, 21 Oct 2099 07:28:00 GMT", "ok")
    started = time.monotonic()
    summary = run(up, out)
    assert time.monotonic() - started < 5  # not until 2099, nor MAX_RETRY_AFTER
    assert summary.fetched == MINI and up.count("poet.mini.0.json") == 2


# --------------------------------------------------------------------------
# Permanent faults: not retried, reported at once


def test_an_html_error_page_served_as_200_is_refused_without_retrying(up, out):
    up.plan("poet.mini.0.json", "html")
    summary = run(up, out)
    assert summary.failed == {"poet.mini.0.json": "got an HTML page (text/html), not a JSON file"}
    assert up.count("poet.mini.0.json") == 1
    assert_clean(out, summary)


@pytest.mark.parametrize("fault", ["endless", "gzip-bomb"])
def test_an_endless_or_decompressing_body_stops_at_max_bytes(up, out, fault):
    up.plan("poet.mini.0.json", fault)
    started = time.monotonic()
    summary = run(up, out, max_bytes=1_000_000)
    assert time.monotonic() - started < 10
    assert summary.failed == {"poet.mini.0.json": "body larger than 1000000 bytes"}
    assert up.count("poet.mini.0.json") == 1  # retrying cannot shrink it
    assert_clean(out, summary)


def test_a_trickling_body_is_given_up_at_the_deadline(up, out):
    # A byte every 0.2 s never trips the 5 s read timeout; only the per-file deadline ends it.
    up.plan("poet.mini.0.json", "trickle")
    started = time.monotonic()
    summary = run(up, out, timeout=5.0, deadline=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 4
    assert summary.failed == {"poet.mini.0.json": "took longer than the 1 s deadline per file"}
    assert up.count("poet.mini.0.json") == 1  # no time is left for another attempt
    assert summary.fetched == MINI[1:]
    assert_clean(out, summary)


def test_no_retry_waits_past_the_deadline(up, out):
    up.plan("poet.mini.0.json", "503-after:30", "ok")
    started = time.monotonic()
    summary = run(up, out, deadline=2.0)
    assert time.monotonic() - started < 2
    reason = summary.failed["poet.mini.0.json"]
    assert reason.startswith("HTTP 503 (gave up after 1 attempt") and "2 s deadline per file" in reason
    assert up.count("poet.mini.0.json") == 1


def test_the_deadline_must_be_positive(up, out):
    with pytest.raises(ValueError, match="deadline"):
        run(up, out, deadline=0)
    assert not out.exists()


# --------------------------------------------------------------------------
# Remote names never choose local paths


@pytest.mark.parametrize(
    "fault",
    [
        "redirect:/../../etc/passwd",
        "redirect:/%2E%2E/%2E%2E/etc/passwd",
        "redirect:/..%2F..%2F..%2Fetc%2Fpasswd",
        'disposition:filename="../../evil.json"',
        "disposition:filename*=UTF-8''..%2F..%2Fevil.json",
    ],
)
def test_redirects_and_content_disposition_never_choose_where_files_go(up, tmp_path, out, fault):
    up.plan("poet.mini.0.json", fault)
    summary = run(up, out)
    assert summary.fetched == MINI
    # Whatever the server answered lands under our own name, and nowhere else.
    assert files_under(tmp_path) == sorted(f"out/mini/{name}" for name in MINI)
    if fault.startswith("redirect"):
        assert json.loads((out / "mini" / "poet.mini.0.json").read_bytes())[0]["title"].startswith("stolen")


def test_a_redirect_to_a_local_file_url_is_refused(up, tmp_path, out):
    up.plan("poet.mini.0.json", "redirect:file:///etc/passwd")
    summary = run(up, out)
    assert summary.failed["poet.mini.0.json"].startswith("unsupported URL")
    assert up.count("poet.mini.0.json") == 1
    assert files_under(tmp_path) == sorted(f"out/mini/{name}" for name in MINI[1:])


# --------------------------------------------------------------------------
# All at once, then a second run


def test_every_fault_is_reported_and_a_second_run_fetches_only_what_is_missing(up, out):
    up.plan("poet.mini.0.json", "reset")
    up.plan("poet.mini.1000.json", "html")
    up.plan("poet.mini.2000.json", "trickle")
    up.plan("poet.mini.3000.json", "status:503", "truncate", "ok")  # recovers on the third attempt
    first = run(up, out, retries=2, deadline=1.0)

    assert first.fetched == ["poet.mini.3000.json", "poet.mini.4000.json"]
    assert list(first.failed) == ["poet.mini.0.json", "poet.mini.1000.json", "poet.mini.2000.json"]
    assert first.failed["poet.mini.0.json"].startswith("connection error")
    assert first.failed["poet.mini.1000.json"].startswith("got an HTML page")
    assert first.failed["poet.mini.2000.json"] == "took longer than the 1 s deadline per file"
    assert up.count("poet.mini.3000.json") == 3
    assert str(first).startswith("fetched 2, skipped 0 (already complete), failed 3: poet.mini.0.json (connection")
    assert_clean(out, first)

    up.plans.clear()  # upstream is healthy again
    before = up.requests.copy()
    second = run(up, out)

    assert second.fetched == MINI[:3]
    assert second.skipped == ["poet.mini.3000.json", "poet.mini.4000.json"]
    assert second.ok
    requested = up.requests - before
    assert requested == Counter({name: 1 for name in MINI[:3]})
    assert_clean(out, second)
