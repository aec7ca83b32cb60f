#!/usr/bin/env python
"""Fit a reader model (jueju.rank.reader) to readers' scores of our poems, and say how well it agrees.

    python studies/fit_reader.py --ratings docs/ratings/wuyan-2026-12-04.tsv --out models/wuyan/reader.npz
        [--model-dir models/wuyan] [--overwrite]

The ratings file (tab-separated, a header line): poem, written_from (first_line or title), input
(an id: poems of one id were written from one first line or title), prompt (the reading it was
scored in), F, C, M, P, taken_for, confidence. Before fitting on all of them, it cross-validates
over four folds of inputs (no input on both sides) and prints the Spearman correlation of the
held-out predictions with the readers' coherence, and how often, of two poems from one input that
readers scored differently, the prediction orders them as the readers did; the forward model's
log-probability alone, for comparison.
"""

import argparse
import csv
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

from jueju.measure.readings import pairs_in_order
from jueju.rank.reader import READ_FLUENCY, RIDGE, Reader, poem_features
from jueju.write.poet import Poet

FOLDS = 4


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="where to write the reader model (.npz)")
    parser.add_argument("--model-dir", type=Path, default=Path("models/wuyan"))
    parser.add_argument("--ratings", type=Path, required=True, help="readers' scores of the model's poems (.tsv)")
    parser.add_argument("--overwrite", action="store_true", help="replace the reader model at --out")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        parser.error(f"{args.out} exists: give another --out, or --overwrite to replace it")
    with open(args.ratings, encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t"))
    poet = Poet.load(args.model_dir)
    tokens = np.stack([poet.vocab.encode(row["poem"]) for row in rows])
    features = poem_features(poet.stepper, tokens, poet.line_length)
    coherence = np.array([float(row["C"]) for row in rows])
    targets = coherence + READ_FLUENCY * np.array([float(row["F"]) for row in rows])
    inputs = np.array([int(row["input"]) for row in rows])
    fold = np.unique(inputs, return_inverse=True)[1] % FOLDS  # every input's poems in one fold
    held_out = np.zeros(len(rows))
    for k in range(FOLDS):
        held_out[fold == k] = Reader.fit(features[fold != k], targets[fold != k], RIDGE).predict(features[fold == k])
    print(f"{len(rows)} rated poems from {len(np.unique(inputs))} first lines and titles")
    for name, score in (("reader model, held out", held_out), ("forward log-probability", features[:, -1])):
        in_order, _ = pairs_in_order(score, coherence, inputs)
        print(
            f"{name:24s} Spearman with coherence {spearmanr(score, coherence)[0]:+.3f}, pairs in order {in_order:.3f}"
        )
    Reader.fit(features, targets, RIDGE).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
