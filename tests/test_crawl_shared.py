"""Integration: crawl the real Tang files from the shared mirror over local HTTP.

The mirror at ../shared/data/chinese-poetry has the local layout
(tang/poet.tang.N.json); the server below presents it in the upstream layout
(/全唐诗/poet.tang.N.json) so the crawler runs exactly as against GitHub.
"""

from __future__ import annotations

from functools import partial
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from jueju.data.crawl import collection_files, crawl

from local_server import clear_proxies, local_server

MIRROR = Path(__file__).resolve().parents[2] / "shared/data/chinese-poetry"
UPSTREAM_FOLDER = "全唐诗"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (MIRROR / "tang").is_dir(), reason=f"shared data mirror not found at {MIRROR}"),
]


class MirrorHandler(BaseHTTPRequestHandler):
    """Map /全唐诗/poet.{tang,song}.N.json to the mirror's {tang,song}/ folders."""

    def __init__(self, *args, mirror: Path, **kwargs):
        self.mirror = mirror
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        folder, _, name = unquote(urlsplit(self.path).path).lstrip("/").partition("/")
        parts = name.split(".")
        collection = parts[1] if len(parts) == 4 else ""
        file = self.mirror / collection / name
        if folder != UPSTREAM_FOLDER or collection not in ("tang", "song") or not file.is_file():
            self.send_error(404)
            return
        body = file.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def mirror_url(monkeypatch):
    clear_proxies(monkeypatch)
    with local_server(partial(MirrorHandler, mirror=MIRROR)) as url:
        yield url.rstrip("/")


def test_crawls_all_tang_files_byte_identical_then_skips_them(mirror_url, tmp_path):
    names = collection_files("tang")
    assert len(names) == 58

    first = crawl(mirror_url, tmp_path, ["tang"], backoff=0.01, progress=False)

    assert first.failed == {}
    assert first.fetched == names
    assert sorted(p.name for p in (tmp_path / "tang").iterdir()) == sorted(names)
    for name in names:
        assert (tmp_path / "tang" / name).read_bytes() == (MIRROR / "tang" / name).read_bytes(), name

    second = crawl(mirror_url, tmp_path, ["tang"], backoff=0.01, progress=False)

    assert second.fetched == [] and second.failed == {}
    assert second.skipped == names
