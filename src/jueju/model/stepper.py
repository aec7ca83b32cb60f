"""The model side of writing a poem: next-character log-probabilities one character at a time, and what a
model reads of whole poems.

`Stepper` hides how a model reads a poem so far: a window model reads its last `window`
ids again each step; a sequence model reads each id once, its LSTM states carried from one
character to the next (`SequenceReader`). A conditioned model first reads each row's block
(jueju.data.condition: what the poem is written toward; all <pad> when nothing is asked), set with
`condition`. Nothing here knows about text or constraints.

Scoring reads whole poems (`Stepper.read`: a `Reading`, the features the softmax reads at every
position and the log-probability of each id). While a caller reads (`with stepper.reading(blocks)`)
the stepper keeps its last READINGS readings, so the scorers of one batch (forward score, mutual
information, reader model, critic) read the candidates once, and a decoder that read them already
hands its reading over (`remember`). Every model call reads at most CHUNK rows, padded to one of a few
sizes (`bucket`), so memory per call is bounded whatever the batch and no compiled call is traced
again for a new batch size.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

import keras
import numpy as np
from keras import ops

from jueju.data.dataset import PAD_ID
from jueju.model.distribute import for_sampling
from jueju.model.network import model_window, stepping_model

CHUNK = 1024  # rows one model call reads at most (decoding and scoring): memory per call is bounded
POSITIONS = 4096  # positions one softmax call scores at most (with 6,000 ids: 98 MB of probabilities)
READINGS = 2  # readings kept while a caller reads: a batch's, after its blocks and after none (plain)
BLOCKS = 64  # the LSTM states after this many distinct blocks are kept from call to call (the empty one first)
TINY = float(np.finfo(np.float32).tiny)  # the floor under probabilities before their log


class BoundedTracing(logging.Filter):
    """Keeps TensorFlow's "triggered tf.function retracing" warning from users: it counts the traces of every
    Keras model's predict function as one function's (they share their code), so the first calls of the
    forward, backward and critic models trip it (5 traces in 7 calls), though every call here has one of a
    few fixed shapes (`bucket`) and each function is traced a bounded number of times."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


logging.getLogger("tensorflow").addFilter(BoundedTracing())


def bucket(rows: int) -> int:
    """The rows a call of `rows` rows is padded to: a power of two up to 256, then a multiple of 256."""
    return 1 << max(0, rows - 1).bit_length() if rows <= 256 else -(-rows // 256) * 256


def padded(array: np.ndarray, rows: int) -> np.ndarray:
    """`array` with its last row repeated up to `rows` rows: rows a bucket adds read nothing new."""
    extra = rows - len(array)
    return array if not extra else np.concatenate([array, np.repeat(array[-1:], extra, axis=0)])


def in_chunks(call, *arrays: np.ndarray, size: int = CHUNK) -> list[np.ndarray]:
    """`call(*arrays)`'s outputs (an array or a list of them), called on at most `size` rows at a time, each
    piece padded to its bucket, and put back together without the padding."""
    pieces = []
    for row in range(0, len(arrays[0]), size):
        part = [array[row : row + size] for array in arrays]
        rows = len(part[0])
        out = call(*(padded(array, bucket(rows)) for array in part))
        pieces.append([np.asarray(ops.convert_to_numpy(x))[:rows] for x in (out if isinstance(out, list) else [out])])
    return [np.concatenate(parts) for parts in zip(*pieces)]


def compiled(function):
    """`function` as one compiled call on the backend: a traced graph (TensorFlow, JAX) or, on PyTorch, as is."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        # one trace for every batch size; written with keras.ops' own loops and conditions, so AutoGraph's
        # rewriting of the Python (seconds, at every trace) is not needed
        return tf.function(function, reduce_retracing=True, autograph=False)
    if backend == "jax":
        import jax

        return jax.jit(function)
    return function


@dataclass(frozen=True)
class Reading:
    """What a sequence model read of rows of ids, each after its block and start token: at every position
    the features its softmax reads, and from `start` on the log-probability of the id there (NaN before)."""

    features: np.ndarray  # (rows, positions, width)
    log_probs: np.ndarray  # (rows, positions)
    start: int

    def score(self, start: int, stop: int | None = None) -> np.ndarray:
        """Per row, the mean log-probability of the ids at start..stop - 1."""
        if start < self.start:
            raise ValueError(f"this reading has log-probabilities from position {self.start}, not {start}")
        return self.log_probs[:, start:stop].mean(axis=-1)


class Stepper:
    """`next_logits(tokens, position)`: log-probabilities of the next id after tokens[:, :position];
    `read(tokens, start)`: what the model reads of whole poems (a sequence model's)."""

    def __init__(self, model, start_token: bool, block: int = 0):
        self.model = model
        # a window model reads the last `window` ids; a sequence model (window None) the whole poem so far
        self.window = model_window(model)
        if block and self.window is not None:
            raise ValueError("only a sequence model reads a conditioning block")
        self.reader = SequenceReader(model, start_token, block) if self.window is None else None
        self._readings: dict[tuple, Reading] = {}  # kept while a caller reads (`reading`), newest last
        self._blocks: dict[bytes, list[np.ndarray]] = {}  # the states after a block's ids, newest last
        self._depth = 0  # `reading` contexts open

    @cached_property
    def features(self):
        """[ids, *states] -> [what the softmax reads at every position, *states]: the LSTMs read each prefix once
        and the softmax (`model`'s next_char layer) runs only where a score needs it. Built when first used."""
        return for_sampling(stepping_model(self.model, features=True))

    @cached_property
    def _log_probs(self):
        """(features (n, width), ids (n,)) -> the log-probability of each id after its features, compiled."""
        head = self.model.get_layer("next_char")

        def log_probs(features, ids):
            chosen = ops.take_along_axis(head(features), ops.cast(ids, "int32")[:, None], axis=-1)[:, 0]
            return ops.log(ops.maximum(ops.cast(chosen, "float32"), TINY))

        return compiled(log_probs)

    def condition(self, blocks: np.ndarray | None) -> None:
        """Each row's conditioning block (rows, block) from now until `forget`; None: empty blocks."""
        if self.reader is not None:
            self.reader.blocks = None if blocks is None else np.asarray(blocks, dtype=np.int32)

    @contextmanager
    def reading(self, blocks: np.ndarray | None):
        """`with stepper.reading(blocks):` conditioned on `blocks` inside, and what was read forgotten
        after, even when decoding fails (the next poems must not read this batch's states); the blocks
        of an enclosing `reading` hold again after it. Readings are kept until the outermost one ends."""
        enclosing = None if self.reader is None else self.reader.blocks
        self.condition(blocks)
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            if not self._depth:
                self._readings.clear()
            self.forget()
            self.condition(enclosing)

    def next_logits(self, tokens: np.ndarray, position: int) -> np.ndarray:
        if self.reader is not None:
            probs = self.reader(tokens, position)
        else:
            context = tokens[:, max(0, position - self.window) : position]
            if context.shape[1] < self.window:
                context = np.pad(context, ((0, 0), (self.window - context.shape[1], 0)), constant_values=PAD_ID)
            probs = self.model.predict_on_batch(context)
        return np.log(np.maximum(np.asarray(probs, dtype=np.float32), TINY))

    def score(self, tokens: np.ndarray, start: int, stop: int | None = None) -> np.ndarray:
        """Per row, the mean log-probability of tokens[:, start:stop], read as whole poems (what reranking
        compares: kept characters and punctuation count as much as written ones)."""
        if self.window is None:
            reading = self.read(tokens[:, :stop], start)  # the ids after `stop` need no reading
            return reading.score(max(start, reading.start))
        rows, length = tokens.shape
        stop = length if stop is None else stop
        padded_tokens = np.pad(tokens, ((0, 0), (self.window, 0)), constant_values=PAD_ID)
        windows = np.stack([padded_tokens[:, p : p + self.window] for p in range(start, stop)], axis=1)
        probs = in_chunks(self.model.predict_on_batch, windows.reshape(-1, self.window), size=POSITIONS // 8)[0]
        chosen = np.take_along_axis(probs.reshape(rows, stop - start, -1), tokens[:, start:stop, None], axis=-1)
        return np.log(np.maximum(chosen[..., 0], TINY)).mean(axis=-1)

    def read(self, tokens: np.ndarray, start: int = 0) -> Reading:
        """What a sequence model reads of `tokens` (rows, positions) after the current blocks: its features at
        every position, and the log-probabilities of the ids from `start` (the softmax runs there only; from
        position 1 where nothing is read before a poem). A reading kept from earlier in the batch is reused."""
        tokens = np.asarray(tokens, dtype=np.int32)
        known = self._readings.get(self._key(tokens))
        if known is not None and known.start <= start:
            return known
        return self._reading(tokens, self._read_features(tokens) if known is None else known.features, start, known)

    def remember(self, tokens: np.ndarray, reading: Reading) -> None:
        """Keep what a decoder read of `tokens` after the current blocks, for the scorers of this batch."""
        if self._depth:
            self._keep(self._key(np.asarray(tokens, dtype=np.int32)), reading)

    def position_features(self, tokens: np.ndarray) -> np.ndarray:
        """A sequence model's (rows, positions, width) features, what its softmax reads: at position k,
        after the block, the start token and tokens[:, :k] (without a block or start token, position 0
        is after tokens[:, 0])."""
        return self.read(tokens, tokens.shape[1]).features

    def log_probs(self, features: np.ndarray, ids: np.ndarray) -> np.ndarray:
        """The log-probability of each id (n,) after its features (n, width), POSITIONS at a time."""
        return in_chunks(self._log_probs, features, ids, size=POSITIONS)[0]

    def run(self, ids: np.ndarray, states: list[np.ndarray] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
        """The features at every position of `ids` (rows, n), read after `states` (None: the start of a
        row), and the states after the last id: CHUNK rows at a time."""
        if states is None:
            states = [np.zeros((len(ids), width), dtype) for width, dtype in self.reader.state_shapes]
        features, *states = in_chunks(lambda *x: self.features.predict_on_batch(list(x)), ids, *states)
        return features, states

    def _read_features(self, tokens: np.ndarray) -> np.ndarray:
        before = self.reader.start_ids(len(tokens))  # block and start token
        if not before.shape[1]:  # nothing before a poem: its first id is read first
            return self.run(tokens)[0]
        ids = np.concatenate([before[:, -1:], tokens[:, :-1]], axis=1)
        return self.run(ids, self._states_after(before[:, :-1]))[0]

    def _reading(self, tokens: np.ndarray, features: np.ndarray, start: int, known: Reading | None) -> Reading:
        """The reading of `tokens` from their `features`, with log-probabilities from `start` (those `known` has
        already are kept), kept for the batch."""
        offset = 0 if self.reader.block or self.reader.start else 1  # features[:, k] is after tokens[:, :k + offset]
        start = max(start, offset)
        rows, length = tokens.shape
        stop = length if known is None else min(known.start, length)
        log_probs = np.full((rows, length), np.nan, dtype=np.float32) if known is None else known.log_probs.copy()
        if start < stop:
            scored = features[:, start - offset : stop - offset]
            ids = tokens[:, start:stop]
            log_probs[:, start:stop] = self.log_probs(scored.reshape(-1, scored.shape[-1]), ids.reshape(-1)).reshape(
                rows, -1
            )
        return self._keep(self._key(tokens), Reading(features, log_probs, start))

    def _states_after(self, blocks: np.ndarray) -> list[np.ndarray]:
        """The LSTM states after each row's `blocks` (rows, ids): each distinct one read once, and kept for
        later calls (the candidates of a poem share their block, and poems without one an all-<pad> block)."""
        if not blocks.shape[1]:
            return [np.zeros((len(blocks), width), dtype) for width, dtype in self.reader.state_shapes]
        distinct, rows = np.unique(blocks, axis=0, return_inverse=True)
        found = {row.tobytes(): self._blocks.get(row.tobytes()) for row in distinct}
        new = np.array([row for row in distinct if found[row.tobytes()] is None])
        if len(new):
            states = self.run(new)[1]
            for i, row in enumerate(new):
                found[row.tobytes()] = self._blocks[row.tobytes()] = [state[i] for state in states]
            for key in list(self._blocks)[: max(0, len(self._blocks) - BLOCKS)]:
                del self._blocks[key]
        known = [found[row.tobytes()] for row in distinct]
        return [np.stack(parts)[rows.reshape(-1)] for parts in zip(*known)]

    def _key(self, tokens: np.ndarray) -> tuple:
        """What a reading of `tokens` depends on: the ids and the blocks read before them (none and all-<pad>
        blocks are one and the same)."""
        blocks = self.reader.blocks
        empty = blocks is None or not (blocks != PAD_ID).any()
        return tokens.shape, tokens.tobytes(), None if empty else (blocks.shape, blocks.tobytes())

    def _keep(self, key: tuple, reading: Reading) -> Reading:
        if self._depth:
            self._readings.pop(key, None)
            self._readings[key] = reading
            while len(self._readings) > READINGS:
                del self._readings[next(iter(self._readings))]
        return reading

    def forget(self) -> None:
        """Drop what was read: the next call starts new poems."""
        if self.reader is not None:
            self.reader.forget()


class SequenceReader:
    """A sequence model's next-character probabilities after tokens[:, :position], each id read once.

    It keeps every row's LSTM states after the ids it has read, so a call reads only the
    ids written since the last one. Rows are matched to the states by the ids read (beam
    search reorders its rows between calls); a batch it has not seen is read from the start.
    """

    def __init__(self, model, start_token: bool, block: int = 0):
        self.model = model
        lstms = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
        self.state_shapes = [(layer.units, layer.compute_dtype) for layer in lstms for _ in "hc"]  # h, c of each
        self.start = [PAD_ID] if start_token else []  # the start token the model was trained with
        self.block = block  # ids of a conditioned model's block (0: the model reads none)
        self.forget()

    @cached_property
    def step(self):
        """[ids, *states] -> [probs after the last id, *states]: the host loop's model step, built when first used."""
        return for_sampling(stepping_model(self.model))

    def forget(self) -> None:
        self.read = np.zeros((0, 0), dtype=np.int32)  # (rows, ids read), block and start token included
        self.states: list[np.ndarray] = []
        self.probs = np.zeros((0, 0), dtype=np.float32)  # after the last id read
        self.blocks: np.ndarray | None = None  # (rows, block), or None for empty ones

    def start_ids(self, rows: int) -> np.ndarray:
        """(rows, ids) read before each row's first character: its block (if the model reads one), then
        the start token the model was trained with. Both decoding loops read it (this one and
        device_loop.DeviceLoop).

        `rows` may be a multiple of the blocks set: each block then serves that many consecutive
        rows (a beam search's beams of one poem).
        """
        blocks = self.blocks
        if blocks is None:
            blocks = np.full((rows, self.block), PAD_ID, dtype=np.int32)
        elif blocks.shape[1] != self.block or not len(blocks) or rows % len(blocks):
            raise ValueError(f"conditioning blocks of shape {blocks.shape} for {rows} rows, blocks of {self.block}")
        else:
            blocks = np.repeat(blocks, rows // len(blocks), axis=0)
        return np.concatenate([blocks, np.full((rows, len(self.start)), PAD_ID, dtype=np.int32)], axis=1)

    def __call__(self, tokens: np.ndarray, position: int) -> np.ndarray:
        written = np.asarray(tokens[:, :position], dtype=np.int32)
        context = np.concatenate([self.start_ids(len(tokens)), written], axis=1)
        rows = self._rows_read(context)
        if rows is None:
            states, done = [np.zeros((len(context), width), dtype) for width, dtype in self.state_shapes], 0
        else:
            states, done = [s[rows] for s in self.states], self.read.shape[1]
        if done == context.shape[1]:
            probs = self.probs[rows]
        else:
            probs, *states = self.step.predict_on_batch([context[:, done:], *states])
            probs, states = np.asarray(probs), [np.asarray(s) for s in states]
        self.read, self.states, self.probs = context, states, probs
        return probs

    def _rows_read(self, context: np.ndarray) -> np.ndarray | None:
        """For each row of `context`, a row whose states were read from the same ids; None if any has none."""
        done = self.read.shape[1]
        if not done or done > context.shape[1]:
            return None
        where = {row.tobytes(): i for i, row in enumerate(self.read)}
        rows = [where.get(row.tobytes()) for row in context[:, :done]]
        return None if None in rows else np.array(rows)
