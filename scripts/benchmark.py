#!/usr/bin/env python
"""The speed benchmark (also `jueju bench`): our pipeline against the original's method.

    python scripts/benchmark.py --quick                 # a check that it runs (seconds)
    python scripts/benchmark.py                         # the measurement (minutes; run on an idle machine)
    KERAS_BACKEND=jax python scripts/benchmark.py       # on another backend

See src/jueju/bench.py for what is measured; prints a table and writes logs/benchmark.json.
"""

import sys

from jueju.measure.bench import main

if __name__ == "__main__":
    sys.exit(main())
