"""A load run against `jueju serve`: many concurrent clients, poems per second and latency percentiles.

    run_load("http://127.0.0.1:8000", clients=64, requests=512)
    -> {"poems_per_s": ..., "p50_ms": ..., "p99_ms": ..., ...}

`benchmark(model_dirs)` starts `jueju serve` itself (a child process on a free port of
127.0.0.1, so the load generator does not share its CPU time) twice, with batching
(serve.max_batch) and without (max_batch = 1), and runs 1, 8 and 64 clients against each.
From the shell:

    python -m jueju.measure.loadtest --model models/wuyan --requests 256
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import httpx
import numpy as np

FIRST_LINES = (
    "床前明月光",
    "白日依山尽",
    "春眠不觉晓",
    "千山鸟飞绝",
    "红豆生南国",
    "空山不见人",
    "独坐幽篁里",
    "移舟泊烟渚",
    "向晚意不适",
    "君自故乡来",
    "人闲桂花落",
    "日暮苍山远",
)


def run_load(
    base_url: str,
    clients: int,
    requests: int,
    batching: bool | None = None,
    *,
    num: int = 1,
    options: dict | None = None,
    first_lines: Sequence[str] = FIRST_LINES,
    timeout: float = 120.0,
) -> dict:
    """`requests` POST /api/poems spread over `clients` concurrent connections, unseeded so they can batch.

    Returns poems_per_s (poems answered / wall time), p50_ms and p99_ms (latency of answered
    requests), and the counts behind them (ok, errors by status). Whether the server batches is
    its own setting (serve.max_batch; 1 = off); `batching`, when given, is checked against what
    /api/health reports, so a run is never labelled wrongly.
    """
    if clients < 1 or requests < 1:
        raise ValueError(f"clients and requests must be at least 1, got {clients} and {requests}")
    return asyncio.run(
        _run(base_url.rstrip("/"), clients, requests, batching, num, dict(options or {}), list(first_lines), timeout)
    )


async def _run(base_url, clients, requests, batching, num, options, first_lines, timeout) -> dict:
    async with httpx.AsyncClient(base_url=base_url, timeout=timeout) as client:
        health = (await client.get("/api/health")).raise_for_status().json()
        server_batches = health["max_batch"] > 1
        if batching is not None and batching != server_batches:
            raise ValueError(
                f"asked for a run with batching={batching}, but the server has max_batch = "
                f"{health['max_batch']}: start it with serve.max_batch "
                f"{'> 1' if batching else '= 1'}"
            )
        latencies: list[float] = []
        errors: Counter[str] = Counter()
        poems = 0
        numbers = iter(range(requests))  # shared by the clients: each request is sent once

        async def one_client(connection: httpx.AsyncClient) -> None:
            nonlocal poems
            for number in numbers:
                body = {"first_line": first_lines[number % len(first_lines)], "num": num, **options}
                started = time.perf_counter()
                try:
                    response = await connection.post("/api/poems", json=body)
                except httpx.HTTPError as err:
                    errors[type(err).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                    poems += len(response.json()["poems"])
                else:
                    errors[str(response.status_code)] += 1

        # a client of its own (one keep-alive connection) per simulated user: one shared pool of many
        # connections costs the load generator more than the server it measures
        connections = [httpx.AsyncClient(base_url=base_url, timeout=timeout) for _ in range(clients)]
        try:
            started = time.perf_counter()
            await asyncio.gather(*(one_client(connection) for connection in connections))
            seconds = time.perf_counter() - started
        finally:
            await asyncio.gather(*(connection.aclose() for connection in connections))
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000).tolist() if latencies else (math.nan, math.nan)
    return {
        "poems_per_s": poems / seconds,
        "p50_ms": p50,
        "p99_ms": p99,
        "clients": clients,
        "requests": requests,
        "ok": len(latencies),
        "errors": dict(errors),
        "seconds": seconds,
        "batching": server_batches,
        "max_batch": health["max_batch"],
    }


def benchmark(
    model_dirs: Sequence[str | Path],
    clients: Sequence[int] = (1, 8, 64),
    requests: int = 256,
    max_batch: int = 64,
    max_wait_ms: float = 5,
    options: dict | None = None,
    warmup: int = 16,
) -> list[dict]:
    """`jueju serve` the models in a process of its own, with batching and then without (max_batch = 1),
    and make one run_load per client count against each."""
    rows = []
    for batching in (True, False):
        settings = {
            "serve.max_batch": max_batch if batching else 1,
            "serve.max_wait_ms": max_wait_ms,
            "serve.queue_size": max(256, 2 * max(clients)),
        }
        with serve_process(model_dirs, settings) as url:
            run_load(url, min(8, warmup), warmup, options=options)  # first steps compile: keep them out
            for count in clients:
                rows.append(run_load(url, count, max(requests, count), batching, options=options))
    return rows


@contextlib.contextmanager
def serve_process(model_dirs: Sequence[str | Path], settings: dict, start_timeout: float = 180):
    """`python -m jueju serve` on a free port of 127.0.0.1 in a child process; yields its base URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "jueju", "serve", "--host", "127.0.0.1", "--port", str(port)]
    for model_dir in model_dirs:
        command += ["--model", str(model_dir)]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"jueju serve exited with {process.returncode}: {process.stderr.read()[-2000:]}")
            try:
                if httpx.get(url + "/api/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"jueju serve did not answer on {url} within {start_timeout:.0f} s")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stderr.close()


def format_rows(rows: list[dict]) -> str:
    lines = [f"{'batching':>8} {'clients':>7} {'requests':>8} {'poems/s':>9} {'p50 ms':>9} {'p99 ms':>9} errors"]
    for row in rows:
        lines.append(
            f"{'on' if row['batching'] else 'off':>8} {row['clients']:>7} {row['requests']:>8} "
            f"{row['poems_per_s']:>9.1f} {row['p50_ms']:>9.1f} {row['p99_ms']:>9.1f} "
            f"{row['errors'] or '-'}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jueju.measure.loadtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, metavar="DIR", help="a trained model folder")
    parser.add_argument("--clients", default="1,8,64", help="comma-separated client counts (default 1,8,64)")
    parser.add_argument("--requests", type=int, default=256, help="requests per run (default 256)")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument(
        "--options",
        type=json.loads,
        default=None,
        metavar="JSON",
        help='request options for every request, e.g. \'{"rhyme": "none"}\'',
    )
    args = parser.parse_args(argv)
    rows = benchmark(
        args.model,
        [int(c) for c in args.clients.split(",")],
        args.requests,
        args.max_batch,
        args.max_wait_ms,
        args.options,
    )
    print(format_rows(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
