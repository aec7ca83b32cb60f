"""The context-length study (`jueju study-context`): which samples train the best model for the same time.

Each variant is a way of cutting the prepared training split into samples:
sliding windows of 6 and of 12 characters, the whole poem before each character (a
window of the poem's length - 1, left-padded), and sequences (each poem one sample,
a prediction at every position). All train the same network (the config's [model])
from the same initial weights for the same wall-clock time on this machine, then are
scored on the validation split with the evaluation's perplexity (per Han character of
lines 2-4 given line 1, renormalised over the Han tokens; jueju.measure.evaluate). Speed is
targets (characters predicted) per second of training, timed after the first step so
that compilation is left out. The trigram baseline on the same split is the yardstick.
"""

from __future__ import annotations

import logging
import time

import keras
import numpy as np

from jueju.config import Config
from jueju.data.dataset import Vocab, encode_poems, make_samples, read_poems
from jueju.measure.perplexity import lstm_perplexity, trigram_kn, trigram_perplexity
from jueju.model.network import compile_model, with_context
from jueju.train.loop import new_model

log = logging.getLogger(__name__)
# windows per step, as the window-6 model was trained (a CPU's throughput levels off there); sequences
# take train.batch_size poems (512 by default: 12,288 targets)
WINDOW_BATCH = 1024


def variants(config: Config) -> dict[str, int | None]:
    """Name -> window (None: sequences), for the config's form."""
    whole = 4 * (config.corpus.line_length + 1) - 1  # ids before a poem's last target
    return {"window 6": 6, "window 12": 12, f"whole poem (window {whole})": whole, "sequence": None}


def choose_variants(config: Config, names: list[str] | None = None) -> dict[str, int | None]:
    """The variants named (all when none are), checked before any work."""
    every = variants(config)
    unknown = [name for name in names or [] if name not in every]
    if unknown:
        raise ValueError(f"unknown study variant {unknown[0]!r}; valid: {', '.join(every)}")
    return {name: every[name] for name in names} if names else every


def run_study(config: Config, seconds: float, names: list[str] | None = None) -> dict:
    """Train every variant for `seconds` from the same start; returns the JSON-able results."""
    data = config.data_dir
    vocab = Vocab.load(data / "vocab.json")
    train_poems, valid_poems = read_poems(data / "train.txt"), read_poems(data / "valid.txt")
    ids = encode_poems(train_poems, vocab)
    chosen = choose_variants(config, names)
    start = _initial_model(config, vocab)  # every variant starts from a copy of these weights
    rows = {}
    for name, window in chosen.items():
        log.info("study: %s for %.0f s", name, seconds)
        rows[name] = train_variant(config, vocab, ids, valid_poems, window, start, seconds)
        log.info("study: %s -> %s", name, rows[name])
    trigram = trigram_perplexity(trigram_kn(train_poems, vocab), vocab, valid_poems)
    return {
        "seconds_per_variant": seconds,
        "model": {"lstm_units": config.model.lstm_units, "dropout": config.model.dropout, "input": config.model.input},
        "train_poems": len(train_poems),
        "valid_poems": len(valid_poems),
        "variants": rows,
        "trigram_kn_valid_perplexity": trigram,
        "backend": keras.backend.backend(),
    }


def train_variant(
    config: Config,
    vocab: Vocab,
    ids: np.ndarray,
    valid_poems: list[str],
    window: int | None,
    start: keras.Model,
    seconds: float,
) -> dict:
    """Train a copy of `start` on one variant's samples for `seconds`; its speed and validation perplexity."""
    context = "sequence" if window is None else "window"
    x, y = make_samples(ids, context, window or 0, config.dataset.pad_start)
    keras.utils.set_random_seed(config.train.seed)  # the same shuffling and dropout draws for every variant
    model = compile_model(with_context(start, window, every_position=window is None), config.train.learning_rate)
    batch = min(config.train.batch_size if window is None else WINDOW_BATCH, len(y))
    clock = TimeBudget(seconds)
    model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, callbacks=[clock], verbose=0)
    targets_per_step = batch * (y.shape[1] if y.ndim == 2 else 1)
    timed = max(clock.steps - 1, 0) * targets_per_step  # the first step compiles
    return {
        "window": window,
        "batch_size": batch,
        "targets_per_step": targets_per_step,
        "steps": clock.steps,
        "targets_seen": clock.steps * targets_per_step,
        "train_samples": len(y),
        "train_targets": int(y.size),
        "targets_per_second": timed / clock.timed_seconds if clock.timed_seconds > 0 else None,
        "valid_perplexity": lstm_perplexity(model, vocab, valid_poems, window, config.dataset.pad_start),
    }


def _initial_model(config: Config, vocab: Vocab) -> keras.Model:
    """The config's network as training would build it, as a sequence model."""
    keras.utils.set_random_seed(config.train.seed)
    return new_model(config, vocab, None)


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` have passed; counts the steps, and the time after the first."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds, self.steps, self.timed_seconds = seconds, 0, 0.0

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        now = time.perf_counter()
        self.steps += 1
        if self.steps == 1:
            self.after_first = now
        self.timed_seconds = now - self.after_first
        if now - self.started >= self.seconds:
            self.model.stop_training = True


def format_study(results: dict) -> str:
    """A Markdown table: one row per variant, best perplexity first."""
    rows = sorted(results["variants"].items(), key=lambda item: item[1]["valid_perplexity"])
    lines = [
        f"{results['seconds_per_variant']:.0f} s of training each, same initial weights, "
        f"LSTM {'x'.join(map(str, results['model']['lstm_units']))}, {results['backend']}; "
        f"trigram KN on the same split: {results['trigram_kn_valid_perplexity']:.1f}",
        "",
        "| samples | batch (targets/step) | steps | targets/s | valid perplexity |",
        "|---|---|---|---|---|",
    ]
    for name, row in rows:
        speed = row["targets_per_second"]
        lines.append(
            f"| {name} | {row['batch_size']} ({row['targets_per_step']:,}) | {row['steps']} | "
            f"{'-' if speed is None else f'{speed:,.0f}'} | {row['valid_perplexity']:.1f} |"
        )
    return "\n".join(lines)
