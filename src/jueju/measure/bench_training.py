"""The benchmark's measurements of preparing and training: this project's pipeline against the original's.

- prepare   clean + vocabulary + windows over the corpus (corpus.prepare_corpus and dataset.build_dataset
            into a temporary folder), in a child process (jueju.measure.bench_prepare): seconds and peak
            resident memory.
- training  samples/s after warm-up. Ours: integer windows, embedding on the device, model.fit on NumPy
            arrays at train.batch_size. The original's: one-hot float32 inputs (batch, window, vocab) and
            one-hot labels built on the host by a Python generator, batch 32, into the same LSTM stack reading
            one-hot floats. And as users train: the default sequence layout (each poem read once, a character
            predicted at every position) and the default model, in characters predicted per second.
- word2vec  training time on the training split (word2vec.train_word2vec, [word2vec] settings).

jueju.measure.bench runs them and reports.
"""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from jueju.config import Config

ORIGINAL = {"vocab_size": 6000, "lstm_units": [256, 512], "dropout": 0.6, "batch_size": 32}
# The prepare step runs in a child, `python -m jueju.measure.bench_prepare`, which imports only corpus and dataset
# (not Keras and its framework, whose memory is not the preparation's).
PREPARE_CHILD = "jueju.measure.bench_prepare"


# -- 1. prepare ------------------------------------------------------------------------------------------------


def measure_prepare(sources: list[Path], out: Path, config: Config) -> dict:
    """Clean and cut the data set in a child process, and measure the child's peak resident memory.

    The peak is the child's own high-water mark (VmHWM) read just before it exits. getrusage's
    ru_maxrss of the children is also recorded, but it is an upper bound only: Linux carries the
    parent's resident size at fork/exec into it, and this parent holds the deep-learning framework.
    """
    args = {
        "sources": [str(s) for s in sources],
        "out": str(out),
        "line_length": config.corpus.line_length,
        "stanzas": config.corpus.stanzas,
        "simplify": config.corpus.simplify,
        "dataset": {
            "vocab_size": ORIGINAL["vocab_size"],
            "window": config.dataset.window,
            "pad_start": config.dataset.pad_start,
            "valid_fraction": config.dataset.valid_fraction,
            "test_fraction": config.dataset.test_fraction,
            "seed": config.dataset.seed,
        },
    }
    started = time.perf_counter()
    result = run_child(PREPARE_CHILD, args, "the prepare step")
    wall = time.perf_counter() - started
    children_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    result.update(process_seconds=wall, children_ru_maxrss_mb=children_kb / 1024, sources=[str(s) for s in sources])
    return result


def run_child(module: str, args: dict, what: str) -> dict:
    """`python -m module 'args as JSON'` in a child process of this very package (wherever the interpreter
    would otherwise find one): the JSON object on its last line of output."""
    package = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package, os.environ.get("PYTHONPATH")]))}
    child = subprocess.run([sys.executable, "-m", module, json.dumps(args)], capture_output=True, text=True, env=env)
    if child.returncode:
        raise RuntimeError(f"{what} failed: {child.stderr.strip()[-2000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


# -- 2. training -----------------------------------------------------------------------------------------------


def _epoch_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Wall time of each epoch: epoch 1 is the warm-up (tracing, compiling), epoch 2 is measured.

        Epoch-level hooks only: nothing here waits on the device between batches."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):  # Keras has already waited for the epoch's last loss
            self.seconds.append(time.perf_counter() - self._started)

    return EpochTimer()


def _steps(samples: int, batch_size: int, wanted: int) -> int:
    """Steps per epoch: `wanted`, fewer when two epochs would run past the data."""
    return max(1, min(wanted, samples // (2 * batch_size)))


def _enough(x: np.ndarray, y: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows repeated until there are `samples`: every measured batch is then a full one
    (a last, smaller batch would be a new shape, which JAX compiles again inside the timing)."""
    if len(y) >= samples:
        return x, y
    repeats = -(-samples // len(y))
    return np.tile(x, (repeats, 1)), np.tile(y, (repeats,) + (1,) * (y.ndim - 1))


def our_model_spec(config: Config, sizes: dict):
    return dataclasses.replace(
        config.model,
        input="embedding",
        lstm_units=list(sizes["lstm_units"]),
        dropout=ORIGINAL["dropout"],
        dense_units=[],
    )


def measure_training(config: Config, windows, vocab_size: int, sizes: dict):
    """Ours: int windows, embedding on the device, model.fit on NumPy arrays at train.batch_size."""
    spec = our_model_spec(config, sizes)
    return _fit(config, spec, vocab_size, config.dataset.window, windows.x, windows.y, sizes["train_steps"])


def measure_sequence_training(config: Config, train_poems: list[str], vocab, sizes: dict) -> dict:
    """Ours as users train by default: context = sequence (each poem read once, a target at every
    position) and the default model, at train.batch_size poems; in characters predicted per second."""
    from jueju.data.dataset import encode_poems, make_sequences

    poems = [poem for poem in train_poems if len(poem) == 4 * (config.corpus.line_length + 1)]
    x, y = make_sequences(encode_poems(poems, vocab), config.dataset.pad_start)
    spec = dataclasses.replace(config.model, input="embedding", dense_units=list(config.model.dense_units))
    if config.model.input == "word2vec":  # the same network: word2vec only initialises the embedding
        spec = dataclasses.replace(spec, embedding_dim=config.word2vec.vector_size)
    if sizes["sequence_units"]:
        spec = dataclasses.replace(spec, lstm_units=list(sizes["sequence_units"]))
    result, _ = _fit(config, spec, len(vocab), None, x, y, sizes["sequence_steps"])
    result["characters_per_s"] = result["samples_per_s"] * y.shape[1]  # a target at every position
    result.update(characters_per_sample=int(y.shape[1]), lstm_units=list(spec.lstm_units), dropout=spec.dropout)
    return result


def _fit(config: Config, spec, vocab_size: int, window: int | None, x: np.ndarray, y: np.ndarray, wanted: int):
    """Samples/s of model.fit at train.batch_size after a warm-up epoch, as jueju train runs it."""
    import keras

    from jueju.model import distribute
    from jueju.model.network import build_model, compile_model

    batch = config.train.batch_size
    keras.utils.set_random_seed(config.train.seed)
    with distribute.scope(config.train.distribution) as plan:
        plan.check_batch(batch)
        steps = _steps(len(y), batch, wanted)
        x, y = plan.trim(*_enough(x, y, 2 * steps * batch))
        with distribute.precision(config.train.mixed_precision):
            model = build_model(spec, vocab_size, window)
        compile_model(model, config.train.learning_rate)
        model.steps_per_execution = plan.steps_per_execution(steps)
        timer = _epoch_timer()
        model.fit(x, y, batch_size=batch, epochs=2, steps_per_epoch=steps, shuffle=True, verbose=0, callbacks=[timer])
    return {
        **_timed(timer, steps, batch),
        "distribution": plan.name,
        "replicas": plan.replicas,
        "mixed_precision": config.train.mixed_precision,
        "steps_per_execution": plan.steps_per_execution(steps),
    }, model


def build_original_model(vocab_size: int, window: int, lstm_units, dropout: float, learning_rate: float):
    """The original's network: one-hot floats (batch, window, vocab) -> LSTM -> LSTM -> softmax."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=(window, vocab_size), dtype="float32", name="one_hot")
    x = inputs
    for i, units in enumerate(lstm_units):
        x = layers.LSTM(units, return_sequences=i < len(lstm_units) - 1)(x)
        x = layers.Dropout(dropout)(x)
    outputs = layers.Dense(vocab_size, activation="softmax")(x)
    model = keras.Model(inputs, outputs, name="original_one_hot_lstm")
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="categorical_crossentropy")
    return model


def one_hot_batches(x: np.ndarray, y: np.ndarray, vocab_size: int, batch_size: int):
    """The original's input pipeline: a Python generator building one-hot float32 arrays on the host."""
    rows = np.arange(batch_size)
    while True:
        for start in range(0, len(y) - batch_size + 1, batch_size):
            features = np.zeros((batch_size, x.shape[1], vocab_size), dtype=np.float32)
            labels = np.zeros((batch_size, vocab_size), dtype=np.float32)
            features[rows[:, None], np.arange(x.shape[1]), x[start : start + batch_size]] = 1.0
            labels[rows, y[start : start + batch_size]] = 1.0
            yield features, labels


def measure_original_training(config: Config, windows, vocab_size: int, sizes: dict):
    import keras

    keras.utils.set_random_seed(config.train.seed)
    batch = ORIGINAL["batch_size"]
    model = build_original_model(
        vocab_size, config.dataset.window, sizes["lstm_units"], ORIGINAL["dropout"], config.train.learning_rate
    )
    steps = _steps(len(windows.y), batch, sizes["original_steps"])
    timer = _epoch_timer()
    model.fit(
        one_hot_batches(windows.x, windows.y, vocab_size, batch),
        epochs=2,
        steps_per_epoch=steps,
        shuffle=False,
        verbose=0,
        callbacks=[timer],
    )
    return _timed(timer, steps, batch), model


def _timed(timer, steps: int, batch: int) -> dict:
    """Samples per second over the second epoch of `steps` steps of `batch` (the first compiles)."""
    seconds = timer.seconds[-1]
    return {
        "samples_per_s": steps * batch / seconds,
        "batch_size": batch,
        "steps": steps,
        "seconds": seconds,
        "warmup_seconds": timer.seconds[0],
    }


# -- 4. word2vec -----------------------------------------------------------------------------------------------


def measure_word2vec(config: Config, train_poems: list[str], sizes: dict) -> dict:
    from jueju.data.word2vec import train_word2vec

    settings = dataclasses.asdict(config.word2vec)
    if sizes["word2vec_epochs"]:
        settings["epochs"] = sizes["word2vec_epochs"]
    started = time.perf_counter()
    train_word2vec(train_poems, **settings)
    return {
        "seconds": time.perf_counter() - started,
        "poems": len(train_poems),
        "epochs": settings["epochs"],
        "workers": settings["workers"],
        "vector_size": settings["vector_size"],
    }
