#!/usr/bin/env python
"""Can a learned judge choose the poems readers find coherent? (docs/results.md, 2026-12-04)

    python studies/judge_study.py pairs  [--model-dir models/wuyan] [--data-dir data/wuyan] [--out DIR]
    python studies/judge_study.py train  [--out DIR]
    python studies/judge_study.py agree  [--out DIR] READING_DIR [READING_DIR ...]

- pairs: for PAIRS training poems (quatrains and stanzas), one of ours from the same first line
  (the model's defaults with rerank=1: the candidates reranking chooses among), to DIR/pairs.tsv.
- train: a judge (embedding, a bidirectional LSTM, max-pooling, a logit) trained so that the real
  poem of each pair outscores ours (a pairwise logistic loss); prints the held-out pair accuracy
  and saves DIR/judge.keras.
- agree: for readings made with ../shared/reading/blind.py (each dir: prompt.txt, key.json,
  ratings.txt), the Spearman correlation of each automatic score with the readers' coherence and
  fluency, over our poems only: what reranking needs is a score that orders *our* candidates as
  readers would. The judge, the reranking score of the defaults (backward 2) and the forward
  model's mean log-probability are compared.
"""

import argparse
import json
from pathlib import Path

import keras
import numpy as np
from keras import layers
from scipy.stats import spearmanr

from jueju.data.dataset import Vocab, read_poems
from jueju.text import split_lines
from jueju.write.poet import Poet

PAIRS = 61_440  # pairs drawn from the training split (seeded)
HELD_OUT = 0.08  # share of the pairs the judge is not trained on
BATCH = 256  # first lines written together


def write_pairs(model_dir: Path, data_dir: Path, out: Path) -> None:
    train = read_poems(data_dir / "train.txt")
    chosen = [train[i] for i in np.random.default_rng(7).permutation(len(train))[:PAIRS]]
    poet = Poet.load(model_dir)
    with open(out / "pairs.tsv", "w", encoding="utf-8") as file:
        for start in range(0, len(chosen), BATCH):
            real = chosen[start : start + BATCH]
            ours = poet.batch([split_lines(poem)[0] for poem in real], seed=start, rerank=1)
            file.writelines(f"{r}\t{o}\n" for r, o in zip(real, ours))


def judge_model(length: int, size: int) -> keras.Model:
    ids = keras.Input((length,), dtype="int32")
    x = layers.Embedding(size, 96)(ids)
    x = layers.Bidirectional(layers.LSTM(128, return_sequences=True))(x)
    x = layers.Dropout(0.3)(layers.GlobalMaxPooling1D()(x))
    x = layers.Dense(64, activation="relu")(x)
    return keras.Model(ids, layers.Dense(1)(x)[:, 0], name="judge")


def train_judge(model_dir: Path, out: Path, epochs: int = 4) -> None:
    vocab = Vocab.load(model_dir / "vocab.json")
    pairs = [line.rstrip("\n").split("\t") for line in open(out / "pairs.tsv", encoding="utf-8")]
    real, ours = (np.stack([vocab.encode(pair[k]) for pair in pairs]) for k in (0, 1))
    cut = int(len(pairs) * (1 - HELD_OUT))
    judge = judge_model(real.shape[1], len(vocab))
    first, second = keras.Input(real.shape[1:], dtype="int32"), keras.Input(real.shape[1:], dtype="int32")
    pair = keras.Model([first, second], judge(first) - judge(second))  # > 0: the first is judged real
    pair.compile(
        optimizer="adam",
        loss=keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    # each pair in both orders, so that the judge cannot learn which input is the real one
    x = [np.concatenate([real[:cut], ours[:cut]]), np.concatenate([ours[:cut], real[:cut]])]
    y = np.r_[np.ones(cut), np.zeros(cut)]
    held_out = ([real[cut:], ours[cut:]], np.ones(len(pairs) - cut))
    pair.fit(x, y, batch_size=256, epochs=epochs, validation_data=held_out, verbose=2)
    judge.save(out / "judge.keras")


def agree(model_dir: Path, out: Path, readings: list[Path]) -> None:
    poems, coherence, fluency = [], [], []
    for reading in readings:
        sources = json.loads((reading / "key.json").read_text("utf-8"))["sources"]
        real = json.loads((reading / "key.json").read_text("utf-8"))["real"]
        numbered = [line.split(". ", 1) for line in (reading / "prompt.txt").read_text("utf-8").splitlines()]
        text = {int(n): poem.strip() for n, poem in (row for row in numbered if len(row) == 2 and row[0].isdigit())}
        for line in (reading / "ratings.txt").read_text("utf-8").splitlines():
            n, f, c = (int(v) for v in line.split()[:3])
            if sources[n - 1] != real:
                poems.append(text[n]), fluency.append(f), coherence.append(c)
    poet = Poet.load(model_dir)
    judge = keras.saving.load_model(out / "judge.keras", safe_mode=True)
    tokens = np.stack([poet.vocab.encode(poem) for poem in poems])
    with poet.stepper.reading(None):
        scores = {
            "judge": np.asarray(judge.predict_on_batch(tokens)),
            "reranking (backward 2)": poet.ranker.scores(tokens, poet.line_length, None, {"backward": 2.0}),
            "forward": poet.stepper.score(tokens, poet.line_length),
        }
    print(f"{len(poems)} of our poems, {len(readings)} readings")
    for name, score in scores.items():
        print(
            f"{name:24s} rho with C {spearmanr(score, coherence)[0]:+.2f}, with F {spearmanr(score, fluency)[0]:+.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("pairs", "train", "agree"))
    parser.add_argument("readings", nargs="*", type=Path)
    parser.add_argument("--model-dir", type=Path, default=Path("models/wuyan"))
    parser.add_argument("--data-dir", type=Path, default=Path("data/wuyan"))
    parser.add_argument("--out", type=Path, default=Path("logs/judge"))
    args = parser.parse_intermixed_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.step == "pairs":
        write_pairs(args.model_dir, args.data_dir, args.out)
    elif args.step == "train":
        train_judge(args.model_dir, args.out)
    else:
        agree(args.model_dir, args.out, args.readings)


if __name__ == "__main__":
    main()
