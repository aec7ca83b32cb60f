"""The critic: a Keras model that reads a whole poem and predicts how blind readers judge it.

Readers agree with each other on which of our poems hang together (Spearman 0.65-0.69 between two
readers, docs/results.md#the-critic); the model's own probability barely does. The critic learns
the readers' view from their judgements (docs/ratings/): it reads what the forward model reads at
every position of the poem (the features its softmax reads, and how surprised it is by each
character: the poem read after an empty block, as text alone), runs a bidirectional LSTM over the
whole poem, so that each position sees every line before and after it, pools each line, and
compares the four lines in a dense layer. It predicts a reader's fluency, coherence and
meaningfulness (each 1-5, centred on the reader's own mean). `Poet` adds `critic` times its
predicted coherence + meaningfulness to each candidate's reranking score.

Its file, critic.keras in a model's folder, is loaded in safe mode: built-in layers only. Its
held-out agreement with readers is in critic.json beside it (scripts/fit_critic.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
from keras import layers

from jueju.model.stepper import in_chunks

CRITIC = "critic.keras"  # in a model's folder: its critic (absent: the option critic is refused)
CRITIC_REPORT = "critic.json"  # beside it: how it was fitted and how well it agrees with readers, held out
TARGETS = ("F", "C", "M")  # what it predicts, in this order
RANKS_BY = {"C": 1.0, "M": 1.0}  # what reranking adds up from its predictions
WIDTH = 64  # units of the per-position projection and of each direction of the LSTM
DROPOUT = 0.3
FLOOR = 1e-9  # the probability under which a character counts as this surprising (as fitted)


def critic_inputs(stepper, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What the critic reads of each poem (ids, rows x positions): the forward model's features at
    every position and the log-probability it gave the character there; read after an empty block,
    from the stepper's reading (decoding's own, where it kept one: the softmax does not run again)."""
    with stepper.reading(None):
        reading = stepper.read(tokens)
    surprise = np.maximum(np.nan_to_num(reading.log_probs, nan=0.0), np.log(FLOOR))
    return reading.features.astype(np.float32), surprise[:, :, None].astype(np.float32)


def build_critic(positions: int, width: int, line_length: int, seed: int = 0) -> keras.Model:
    """features (positions x width) and surprise (positions x 1) -> F, C, M."""
    keras.utils.set_random_seed(seed)
    features = keras.Input((positions, width), name="features")
    surprise = keras.Input((positions, 1), name="surprise")
    x = layers.Concatenate()([layers.Dropout(DROPOUT)(features), surprise])
    x = layers.Dense(WIDTH, activation="relu", name="project")(x)
    x = layers.Bidirectional(layers.LSTM(WIDTH, return_sequences=True), name="read_both_ways")(x)
    lines = layers.AveragePooling1D(pool_size=line_length + 1, name="per_line")(x)  # (4, 2 x WIDTH)
    x = layers.Concatenate()([layers.Flatten()(lines), layers.GlobalAveragePooling1D()(surprise)])
    x = layers.Dropout(DROPOUT)(x)
    x = layers.Dense(WIDTH, activation="relu", name="compare_lines")(x)
    outputs = layers.Dense(len(TARGETS), name="judgement")(x)
    model = keras.Model([features, surprise], outputs, name="critic")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    return model


class Critic:
    """A fitted critic: `judge` gives (rows, len(TARGETS)) predictions, `score` what reranking adds."""

    def __init__(self, model: keras.Model):
        self.model = model

    def judge(self, stepper, tokens: np.ndarray) -> np.ndarray:
        def judge(features, surprise):
            return self.model.predict_on_batch([features, surprise])

        # in bucketed chunks: a few batch sizes, each compiled once (no retracing), and memory bounded
        return in_chunks(judge, *critic_inputs(stepper, tokens))[0]

    def score(self, stepper, tokens: np.ndarray) -> np.ndarray:
        judged = self.judge(stepper, tokens)
        return sum(weight * judged[:, TARGETS.index(name)] for name, weight in RANKS_BY.items())

    def save(self, folder: str | Path, report: dict) -> None:
        folder = Path(folder)
        self.model.save(folder / CRITIC)
        (folder / CRITIC_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", "utf-8")

    @classmethod
    def load(cls, folder: str | Path) -> Critic:
        return cls(keras.saving.load_model(Path(folder) / CRITIC, safe_mode=True, compile=False))
