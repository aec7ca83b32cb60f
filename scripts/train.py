#!/usr/bin/env python
"""Train a model: the script to run on a GPU box. Takes the flags of `jueju train`, e.g.

python scripts/train.py --set train.epochs=30
python scripts/train.py --resume
KERAS_BACKEND=jax python scripts/train.py
"""

import sys

from jueju.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
