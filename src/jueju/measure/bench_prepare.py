"""The benchmark's prepare step, run by jueju.measure.bench in a child process of its own.

    python -m jueju.measure.bench_prepare '{"sources": [...], "out": DIR, "line_length": 5, ...}'

Cleans the corpus (corpus.prepare_corpus) and cuts the data set (dataset.build_dataset) into
`out`, then prints one JSON line: the seconds of each part and the peak resident memory of this
process. Only corpus and dataset are imported (`import jueju` loads nothing else), so the peak is
the preparation's, not the deep-learning framework's that the benchmark's own process holds.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from jueju.data.corpus import prepare_corpus
from jueju.data.dataset import build_dataset, read_poems


def main(argv: list[str] | None = None) -> int:
    args = json.loads((sys.argv[1:] if argv is None else argv)[0])
    started = time.perf_counter()
    stats = prepare_corpus(
        args["sources"],
        args["out"],
        line_length=args["line_length"],
        stanzas=args["stanzas"],
        simplify=args["simplify"],
        progress=False,
    )
    cleaned = time.perf_counter()
    out = Path(args["out"])
    counts = build_dataset(read_poems(out / "poems.txt"), read_poems(out / "stanzas.txt"), out, **args["dataset"])
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "peak_rss_mb": peak_rss_kb() / 1024,
                "clean_seconds": cleaned - started,
                "dataset_seconds": done - cleaned,
                "seconds": done - started,
                "poems_read": stats.poems_read,
                "quatrains": stats.quatrains,
                "stanzas": stats.stanzas,
                **counts,
            }
        )
    )
    return 0


def peak_rss_kb() -> int:
    """The peak resident memory of this process since exec, in kilobytes (VmHWM).

    Not ru_maxrss where /proc is there: that would also count the parent's pages at fork/exec.
    """
    status = Path("/proc/self/status")
    lines = status.read_text().splitlines() if status.exists() else []
    hwm = [line.split()[1] for line in lines if line.startswith("VmHWM:")]
    if hwm:
        return int(hwm[0])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


if __name__ == "__main__":
    sys.exit(main())
