"""A throwaway HTTP server on 127.0.0.1 for the crawl tests (never any other address)."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import ThreadingHTTPServer

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True  # a stalled handler must never hold up teardown

    def handle_error(self, request, client_address):
        pass  # resets and dropped clients are what some tests are about


@contextmanager
def local_server(handler, server_class=QuietServer) -> Iterator[str]:
    """Serve `handler` on a free port of 127.0.0.1 in a thread; yields the base URL (with a trailing /)."""
    server = server_class(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def clear_proxies(monkeypatch) -> None:
    """httpx would send 127.0.0.1 traffic through a developer's proxy."""
    for var in PROXY_VARIABLES:
        monkeypatch.delenv(var, raising=False)
