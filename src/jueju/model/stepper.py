"""The model side of writing a poem: next-character log-probabilities, one character at a time.

`Stepper` hides how a model reads a poem so far: a window model reads its last `window`
ids again each step; a sequence model reads each id once, its LSTM states carried from one
character to the next (`SequenceReader`). A conditioned model first reads each row's block
(jueju.data.condition: what the poem is written toward; all <pad> when nothing is asked), set with
`condition`. Nothing here knows about text or constraints.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras
import numpy as np

from jueju.data.dataset import PAD_ID
from jueju.model.distribute import for_sampling
from jueju.model.network import model_window, stepping_model


class Stepper:
    """`next_logits(tokens, position)`: log-probabilities of the next id after tokens[:, :position]."""

    def __init__(self, model, start_token: bool, block: int = 0):
        self.model = model
        # a window model reads the last `window` ids; a sequence model (window None) the whole poem so far
        self.window = model_window(model)
        if block and self.window is not None:
            raise ValueError("only a sequence model reads a conditioning block")
        self.reader = SequenceReader(model, start_token, block) if self.window is None else None
        self._features = None  # built at the first score of a sequence model

    @property
    def features(self):
        """For scoring: [ids, *states] -> [what the softmax reads at every position, *states], so the LSTMs
        read each prefix once and the softmax (`model`'s next_char layer) runs only where a score needs it."""
        if self._features is None:
            self._features = for_sampling(stepping_model(self.model, features=True))
        return self._features

    def condition(self, blocks: np.ndarray | None) -> None:
        """Each row's conditioning block (rows, block) from now until `forget`; None: empty blocks."""
        if self.reader is not None:
            self.reader.blocks = None if blocks is None else np.asarray(blocks, dtype=np.int32)

    @contextmanager
    def reading(self, blocks: np.ndarray | None):
        """`with stepper.reading(blocks):` conditioned on `blocks` inside, and what was read forgotten
        after, even when decoding fails (the next poems must not read this batch's states); the blocks
        of an enclosing `reading` hold again after it."""
        enclosing = None if self.reader is None else self.reader.blocks
        self.condition(blocks)
        try:
            yield self
        finally:
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
        return np.log(np.maximum(np.asarray(probs, dtype=np.float32), np.finfo(np.float32).tiny))

    def score(self, tokens: np.ndarray, start: int, stop: int | None = None) -> np.ndarray:
        """Per row, the mean log-probability of tokens[:, start:stop], read as whole poems in one model
        call (what reranking compares: kept characters and punctuation count as much as written ones)."""
        rows, length = tokens.shape
        stop = length if stop is None else stop
        if self.window is None:
            return self.score_features(self.position_features(tokens[:, :stop]), tokens, start, stop)
        padded = np.pad(tokens, ((0, 0), (self.window, 0)), constant_values=PAD_ID)
        windows = np.stack([padded[:, p : p + self.window] for p in range(start, length)], axis=1)
        probs = np.asarray(self.model.predict_on_batch(windows.reshape(-1, self.window)))
        return _mean_log_prob(probs.reshape(rows, length - start, -1), tokens, start, stop)

    def score_features(self, features: np.ndarray, tokens: np.ndarray, start: int, stop: int | None = None):
        """`score` from a sequence model's `position_features` of `tokens` (or of a prefix reaching
        `stop`), for callers that read the features anyway: the LSTMs do not read the poems again."""
        stop = tokens.shape[1] if stop is None else stop
        offset = 0 if self.reader.block or self.reader.start else 1  # nothing before the poem: its first id is read
        head = self.model.get_layer("next_char")
        probs = keras.ops.convert_to_numpy(head(features[:, start - offset :]))
        return _mean_log_prob(probs, tokens, start, stop)

    def position_features(self, tokens: np.ndarray) -> np.ndarray:
        """A sequence model's (rows, positions, width) features, what its softmax reads: at position k,
        after the block, the start token and tokens[:, :k] (without a block or start token, position 0
        is after tokens[:, 0])."""
        before = self.reader.start_ids(len(tokens))  # block and start token
        states = self._states_after(before[:, :-1])
        ids = np.concatenate([before[:, -1:], tokens[:, :-1]], axis=1) if before.shape[1] else tokens
        features, *_ = self.features.predict_on_batch([ids, *states])
        return np.asarray(features)

    def _states_after(self, prefixes: np.ndarray) -> list[np.ndarray]:
        """The LSTM states after each row's `prefixes` (rows, ids), each distinct prefix read once (the
        candidates of a poem share their block, and poems without one an all-<pad> block)."""
        if not prefixes.shape[1]:
            return [np.zeros((len(prefixes), width), dtype) for width, dtype in self.reader.state_shapes]
        distinct, rows = np.unique(prefixes, axis=0, return_inverse=True)
        bucket = 1 << (len(distinct) - 1).bit_length()  # a few batch sizes, each compiled once
        distinct = np.pad(distinct, ((0, bucket - len(distinct)), (0, 0)), mode="edge")
        _, *states = self.reader.step.predict_on_batch(
            [distinct, *(np.zeros((bucket, width), dtype) for width, dtype in self.reader.state_shapes)]
        )
        return [np.asarray(state)[rows.reshape(-1)] for state in states]

    def forget(self) -> None:
        """Drop what was read: the next call starts new poems."""
        if self.reader is not None:
            self.reader.forget()


def _mean_log_prob(probs: np.ndarray, tokens: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Per row, the mean log of probs[:, k] at token tokens[:, start + k], for k up to stop - start."""
    chosen = np.take_along_axis(probs[:, : stop - start], tokens[:, start:stop, None], axis=-1)[..., 0]
    return np.log(np.maximum(chosen, np.finfo(np.float32).tiny)).mean(axis=-1)


class SequenceReader:
    """A sequence model's next-character probabilities after tokens[:, :position], each id read once.

    It keeps every row's LSTM states after the ids it has read, so a call reads only the
    ids written since the last one. Rows are matched to the states by the ids read (beam
    search reorders its rows between calls); a batch it has not seen is read from the start.
    """

    def __init__(self, model, start_token: bool, block: int = 0):
        stepper = stepping_model(model)
        self.step = for_sampling(stepper)
        self.state_shapes = [(int(x.shape[-1]), x.dtype) for x in stepper.inputs[1:]]  # h and c of each LSTM
        self.start = [PAD_ID] if start_token else []  # the start token the model was trained with
        self.block = block  # ids of a conditioned model's block (0: the model reads none)
        self.forget()

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
