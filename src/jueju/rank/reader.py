"""The reader model: how a blind reader would score one of our poems, learned from readers' scores.

Blind readers agree with each other on which of our poems hang together (Spearman 0.65-0.68
between two readers), while the model's own probability barely does (docs/results.md). The
reader model closes part of that gap: a ridge regression from what the forward model reads in
each line (the mean, over the line's positions, of the features its softmax reads; the poem
read after an empty block, as text alone) and its mean log-probability of lines 2-4, to a
reader's coherence + READ_FLUENCY x fluency. `scripts/fit_reader.py` fits it from a ratings
file; `Poet` adds `reader` times its prediction to each candidate's reranking score.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

READER = "reader.npz"  # in a model's folder: its reader model (absent: the option reader is refused)
READ_FLUENCY = 0.5  # the weight of a reader's fluency beside coherence in what the reader model predicts
RIDGE = 1000.0  # the ridge penalty (on standardised features), the best of 30-10,000 in cross-validation


def poem_features(stepper, tokens: np.ndarray, line_length: int) -> np.ndarray:
    """(rows, 4 x width + 1): per line, the mean of the forward model's features over its positions
    (characters and punctuation), then the mean log-probability of lines 2-4; each poem read after
    an empty block."""
    with stepper.reading(None):
        reading = stepper.read(tokens, line_length)
    features, forward = reading.features, reading.score(line_length)
    rows, length, width = features.shape
    lines = features.reshape(rows, 4, length // 4, width).mean(axis=2).reshape(rows, -1)
    return np.concatenate([lines, forward[:, None]], axis=1)


@dataclass(frozen=True)
class Reader:
    """A linear reader: prediction = ((features - mean) / scale) @ weights + bias."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    @classmethod
    def fit(cls, features: np.ndarray, targets: np.ndarray, ridge: float = RIDGE) -> Reader:
        """The ridge regression of `targets` (one per row) on standardised `features`."""
        features, targets = np.asarray(features, np.float64), np.asarray(targets, np.float64)
        if features.ndim != 2 or targets.shape != (len(features),) or len(features) < 2:
            raise ValueError(f"features {features.shape} and targets {targets.shape}: one target per row, 2+ rows")
        mean, scale = features.mean(axis=0), features.std(axis=0) + 1e-6
        z = (features - mean) / scale
        weights = np.linalg.solve(z.T @ z + ridge * np.eye(z.shape[1]), z.T @ (targets - targets.mean()))
        return cls(mean, scale, weights, float(targets.mean()))

    def predict(self, features: np.ndarray) -> np.ndarray:
        if features.shape[-1] != len(self.weights):
            raise ValueError(f"the reader model reads {len(self.weights)} features, got {features.shape[-1]}")
        return ((np.asarray(features, np.float64) - self.mean) / self.scale) @ self.weights + self.bias

    def save(self, path: str | Path) -> None:
        np.savez(path, mean=self.mean, scale=self.scale, weights=self.weights, bias=np.array(self.bias))

    @classmethod
    def load(cls, path: str | Path) -> Reader:
        """Reads what `save` wrote; plain arrays only (no pickles), their shapes checked."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: np.asarray(data[name], np.float64) for name in ("mean", "scale", "weights", "bias")}
        width = len(arrays["weights"])
        if arrays["weights"].ndim != 1 or any(arrays[name].shape != (width,) for name in ("mean", "scale")):
            raise ValueError(f"{path} is not a reader model: its arrays have shapes of different widths")
        if arrays["bias"].shape != () or not all(np.isfinite(array).all() for array in arrays.values()):
            raise ValueError(f"{path} is not a reader model: a scalar bias and finite values are expected")
        return cls(arrays["mean"], arrays["scale"], arrays["weights"], float(arrays["bias"]))
