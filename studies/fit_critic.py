#!/usr/bin/env python
"""Fit the critic (jueju.rank.critic) to readers' judgements, held out by input and by reader.

    python studies/fit_critic.py --model-dir models/wuyan --ratings docs/ratings/wuyan-*.tsv
        [--out models/wuyan] [--overwrite] [--test-share 0.2] [--seed 1]

Feeds docs/results.md#the-critic. The ratings files are those jueju.measure.readings writes (one
judgement a row); files of 2026-12-04, before readers and mixes were recorded, count each prompt as a
reader. A share of the readers is drawn for testing, and with them every input they read: the critic
is fitted only on rows whose reader and input are both outside the test, and judged on the test
readers' judgements of our poems (real poems are read in fitting, never scored). It prints, and
writes to critic.json beside the model: the Spearman correlation of its predicted coherence with
the readers' coherence, and of two poems from one input that a reader scored differently, how often
it orders them as the reader did; the same for the forward model's log-probability and the reader
model, for comparison. The critic committed is the one these figures describe.
"""

import argparse
import collections
import csv
import datetime
import random
from pathlib import Path

import keras
import numpy as np
from scipy.stats import spearmanr

from jueju.measure.readings import pairs_in_order
from jueju.rank.critic import CRITIC, RANKS_BY, TARGETS, Critic, build_critic, critic_inputs
from jueju.rank.reader import poem_features
from jueju.write.poet import Poet

CHUNK = 2048  # poems read by the forward model per call
EPOCHS = 40  # at most; early stopping on a tenth of the fitting inputs picks the epoch
BATCH = 256


def load_rows(paths: list[Path], line_length: int) -> list[dict]:
    """Every judgement of a poem of this form, with reader and input named uniquely across files."""
    rows = []
    for path in paths:
        with open(path, encoding="utf-8", newline="") as file:
            for row in csv.DictReader(file, delimiter="\t"):
                if "reader" not in row:  # 2026-12-04: a prompt was one reader, inputs were numbered
                    row = {**row, "reader": f"{path.stem}:{row['prompt']}", "input": f"{path.stem}:{row['input']}"}
                    row["variant"] = "ours"
                if len(row["poem"]) != 4 * (line_length + 1):
                    continue
                rows.append({**row, **{name: float(row[name]) for name in TARGETS}})
    return rows


def centred(rows: list[dict]) -> np.ndarray:
    """(rows, TARGETS): each score less its reader's mean over our poems, plus the mean over all readers."""
    ours = [row for row in rows if row["variant"] != "real"]
    overall = {name: np.mean([row[name] for row in ours]) for name in TARGETS}
    by_reader = collections.defaultdict(list)
    for row in ours:
        by_reader[row["reader"]].append(row)
    leniency = {
        reader: {name: np.mean([row[name] for row in mine]) - overall[name] for name in TARGETS}
        for reader, mine in by_reader.items()
    }
    return np.array([[row[name] - leniency.get(row["reader"], {}).get(name, 0.0) for name in TARGETS] for row in rows])


def split(rows: list[dict], share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Masks (fit, test): test readers drawn at random with every input they read; fitting rows share neither."""
    readers = sorted({row["reader"] for row in rows if ":" not in row["reader"]})  # not the 2026-12-04 files,
    # which the reader model was fitted to: it would be judged on its own fitting data
    random.Random(seed).shuffle(readers)
    test_readers = set(readers[: max(1, round(share * len(readers)))])
    test_inputs = {row["input"] for row in rows if row["reader"] in test_readers}
    test = np.array([row["reader"] in test_readers for row in rows])
    fit = np.array([row["reader"] not in test_readers and row["input"] not in test_inputs for row in rows])
    return fit, test


def agreement(score: np.ndarray, rows: list[dict]) -> dict:
    coherence = np.array([row["C"] for row in rows])
    in_order, pairs = pairs_in_order(score, coherence, [(row["reader"], row["input"]) for row in rows])
    return {
        "spearman_coherence": round(float(spearmanr(score, coherence)[0]), 3),
        "spearman_meaningfulness": round(float(spearmanr(score, [row["M"] for row in rows])[0]), 3),
        "pairs_in_order": round(float(in_order), 3),
        "pairs": pairs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, default=Path("models/wuyan"))
    parser.add_argument("--ratings", type=Path, nargs="+", required=True, help="ratings files (.tsv)")
    parser.add_argument("--out", type=Path, help="folder for critic.keras and critic.json (default: --model-dir)")
    parser.add_argument("--overwrite", action="store_true", help="replace a critic already in --out")
    parser.add_argument("--test-share", type=float, default=0.2, help="share of readers held out for testing")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    out = args.out or args.model_dir
    if (out / CRITIC).exists() and not args.overwrite:
        parser.error(f"{out / CRITIC} exists: give another --out, or --overwrite to replace it")

    poet = Poet.load(args.model_dir)
    rows = load_rows(args.ratings, poet.line_length)
    tokens = np.stack([poet.vocab.encode(row["poem"]) for row in rows])
    distinct, back = np.unique(tokens, axis=0, return_inverse=True)  # a poem read by several readers is read once
    parts = [critic_inputs(poet.stepper, distinct[i : i + CHUNK]) for i in range(0, len(distinct), CHUNK)]
    features = np.concatenate([p[0] for p in parts])[back.reshape(-1)]
    surprise = np.concatenate([p[1] for p in parts])[back.reshape(-1)]
    targets = centred(rows)
    fit, test = split(rows, args.test_share, args.seed)
    ours = np.array([row["variant"] != "real" for row in rows])

    inputs = sorted({row["input"] for row, keep in zip(rows, fit) if keep})
    random.Random(args.seed + 1).shuffle(inputs)
    watch = set(inputs[: len(inputs) // 10])  # early stopping's inputs
    early = np.array([row["input"] in watch for row in rows]) & fit
    train = fit & ~early
    critic = build_critic(tokens.shape[1], features.shape[-1], poet.line_length, args.seed)
    critic.fit(
        [features[train], surprise[train]],
        targets[train],
        validation_data=([features[early], surprise[early]], targets[early]),
        epochs=EPOCHS,
        batch_size=BATCH,
        callbacks=[keras.callbacks.EarlyStopping(patience=4, restore_best_weights=True)],
        verbose=2,
    )
    judged = Critic(critic)
    held = test & ours
    test_rows = [row for row, keep in zip(rows, held) if keep]
    predicted = np.asarray(critic.predict([features[held], surprise[held]], verbose=0))
    score = sum(weight * predicted[:, TARGETS.index(name)] for name, weight in RANKS_BY.items())
    report = {
        "fitted": datetime.date.today().isoformat(),
        "ratings": [str(path) for path in args.ratings],
        "judgements": len(rows),
        "readers": len({row["reader"] for row in rows}),
        "fitting_rows": int(train.sum()),
        "early_stopping_rows": int(early.sum()),
        "test_rows_ours": int(held.sum()),
        "test_readers": len({row["reader"] for row in test_rows}),
        "held_out": {
            "critic (C + M)": agreement(score, test_rows),
            "critic, coherence head": agreement(predicted[:, TARGETS.index("C")], test_rows),
        },
        "readers_are_language_models": True,
    }
    with poet.stepper.reading(None):
        forward = poet.stepper.score(tokens[held], poet.line_length)
    report["held_out"]["forward log-probability"] = agreement(forward, test_rows)
    if poet.ranker.reader is not None:
        reader = poet.ranker.reader.predict(poem_features(poet.stepper, tokens[held], poet.line_length))
        report["held_out"]["reader model"] = agreement(reader, test_rows)
    for name, figures in report["held_out"].items():
        print(f"{name:26s} {figures}")
    judged.save(out, report)
    print(f"wrote {out / CRITIC}")


if __name__ == "__main__":
    main()
