#!/usr/bin/env python
"""What each reranking default costs the poems users get (docs/speed.md, "The defaults").

    python studies/default_costs.py [--model-dir models/wuyan] [--repeats 7] [--batch 64]

The committed model, first line 床前明月光 (the batch: the same line `--batch` times), the model's other
defaults; each variant adds one scorer to the one before. One poem: the median of `--repeats`, the
variants taking turns (so that a machine whose speed drifts slows them alike); the batch: one call each.
Everything is compiled first (one poem and one batch of every variant), so the figures are a warm
process's: a server's, a notebook's.
"""

import argparse
import statistics
import time

from jueju.write.poet import Poet

FIRST_LINE = "床前明月光"
VARIANTS = {  # each adds one scorer to the one before
    "rerank 1": dict(rerank=1),
    "16 candidates, forward score only": dict(rerank=16, backward=0.0, reader=0.0, critic=0.0),
    "+ backward 2": dict(rerank=16, backward=2.0, reader=0.0, critic=0.0),
    "+ critic 4": dict(rerank=16, backward=2.0, reader=0.0, critic=4.0),
    "+ reader 8": dict(rerank=16, backward=2.0, reader=8.0, critic=4.0),
    "64 candidates, backward 2, critic 4": dict(rerank=64, backward=2.0, reader=0.0, critic=4.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default="models/wuyan")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    poet = Poet.load(args.model_dir)
    lines = [FIRST_LINE] * args.batch
    for options in VARIANTS.values():
        poet.poem(FIRST_LINE, seed=0, **options)
        poet.batch(lines, seed=0, **options)
    one = {name: [] for name in VARIANTS}
    for repeat in range(args.repeats):
        for name, options in VARIANTS.items():
            started = time.perf_counter()
            poet.poem(FIRST_LINE, seed=repeat + 1, **options)
            one[name].append(time.perf_counter() - started)
    print(f"{'variant':40s} {'one poem':>10s} {f'{args.batch} poems':>12s}")
    base = statistics.median(one["rerank 1"])
    for name, options in VARIANTS.items():
        started = time.perf_counter()
        poet.batch(lines, seed=1, **options)
        rate = args.batch / (time.perf_counter() - started)
        latency = statistics.median(one[name])
        print(f"{name:40s} {latency * 1000:7.0f} ms ({latency / base:4.1f}x) {rate:8.1f} poems/s")


if __name__ == "__main__":
    main()
