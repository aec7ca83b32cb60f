"""Perplexity on held-out poems: the LSTM's, and an interpolated Kneser-Ney character trigram's.

Perplexity is per character of lines 2-4 given line 1 (the punctuation is forced by
the decoder, so it is not scored), for the LSTM and for an interpolated Kneser-Ney
character trigram model trained on the same training split with the same vocabulary.
Both models' probabilities are **renormalised over the vocabulary's Han-character
tokens**: inside a line the decoder can emit nothing else, so mass a model puts on
punctuation, padding or <unk> there is wasted alike for both, and the comparison stays
fair. A test character outside the vocabulary (read as <unk>) can therefore not be
scored: such targets are left out for both models and counted (`oov_targets`). In
contexts, unknown characters are read as <unk>, as in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from jueju.data.condition import with_blocks
from jueju.data.dataset import PAD_ID, UNK_ID, Vocab, Windows, make_sequences, make_windows
from jueju.text import is_han

DISCOUNT = 0.75
PREDICT_BATCH = 1024  # windows per model.predict call when scoring

# ---------------------------------------------------------------------------------------------
# The baseline: an interpolated Kneser-Ney character trigram model


class TrigramKN:
    """Interpolated Kneser-Ney over the vocabulary's tokens (ids), trigram order, one discount.

    P3(w|u,v) = max(c(uvw) - D, 0) / c(uv.) + D N1+(uv.) / c(uv.) * P2(w|v)
    P2(w|v)   = max(N1+(.vw) - D, 0) / N1+(.v.) + D N1+(v.) / N1+(.v.) * P1(w)   (continuation counts)
    P1(w)     = max(N1+(.w) - D, 0) / N1+(..) + D N1+(w>0) / N1+(..) * 1/|V|
    An unseen context falls back to the lower order entirely. Every vocabulary token gets
    probability > 0 and each distribution sums to 1. Characters outside the vocabulary are
    read as <unk>, in training and in queries, so <unk> is a token like any other.
    """

    def __init__(self, sequences: Sequence[np.ndarray], vocab: Vocab, discount: float = DISCOUNT):
        if not 0 < discount < 1:
            raise ValueError(f"the discount must be in (0, 1), got {discount}")
        self.vocab, self.discount, size = vocab, discount, len(vocab)
        self.size = size
        keys = [((seq[:-2].astype(np.int64) * size + seq[1:-1]) * size + seq[2:]) for seq in sequences if len(seq) > 2]
        keys = np.concatenate(keys) if keys else np.zeros(0, dtype=np.int64)
        tri_keys, tri_counts = np.unique(keys, return_counts=True)
        # trigram counts grouped by context (u, v); sorted keys keep each context's entries together
        self._tri = _group(tri_keys // size, tri_keys % size, tri_counts)
        # bigram continuation counts N1+(. v w): how many distinct u precede each (v, w)
        bi_keys, bi_counts = np.unique(tri_keys % (size * size), return_counts=True)
        self._bi = _group(bi_keys // size, bi_keys % size, bi_counts)
        # unigram continuation counts N1+(. w): how many distinct v precede w
        continuation = np.bincount(bi_keys % size, minlength=size).astype(np.float64)
        total, seen = continuation.sum(), np.count_nonzero(continuation)
        if total:
            self._p1 = np.maximum(continuation - discount, 0) / total + discount * seen / total / size
        else:
            self._p1 = np.full(size, 1.0 / size)

    def probs(self, context) -> np.ndarray:
        """P(. | context) over the whole vocabulary (float64, sums to 1)."""
        u, v = self._context_ids(context)
        return self._probs_ids(u, v)

    def log_probs(self, context) -> np.ndarray:
        return np.log(self.probs(context))

    def prob(self, context, char: str) -> float:
        """P(char | context); a character outside the vocabulary is scored as <unk>."""
        return float(self.probs(context)[self._id(char)])

    def _probs_ids(self, u: int, v: int) -> np.ndarray:
        probs = self._interpolate(self._bi.get(v), self._p1)
        return self._interpolate(self._tri.get(u * self.size + v), probs)

    def _interpolate(self, entry, lower: np.ndarray) -> np.ndarray:
        if entry is None:
            return lower.copy()
        followers, counts = entry
        total = counts.sum()
        probs = lower * (self.discount * len(followers) / total)
        probs[followers] += (counts - self.discount) / total
        return probs

    def _id(self, token: str) -> int:
        return self.vocab.ids.get(token, UNK_ID)

    def _context_ids(self, context) -> tuple[int, int]:
        """Two context tokens: a str is read character by character, a list/tuple token by token, ids as ids.

        Shorter contexts are padded with <pad> on the left (the start of a poem).
        """
        if isinstance(context, str):
            tokens = [self._id(char) for char in context]
        else:
            tokens = [int(t) if isinstance(t, (int, np.integer)) else self._id(t) for t in context]
        tokens = [PAD_ID, PAD_ID, *tokens][-2:]
        return tokens[0], tokens[1]


def _group(contexts: np.ndarray, followers: np.ndarray, counts: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """{context: (follower ids, counts as float64)} from arrays sorted by context."""
    if not len(contexts):
        return {}
    starts = np.flatnonzero(np.r_[True, contexts[1:] != contexts[:-1]])
    ends = np.r_[starts[1:], len(contexts)]
    return {int(contexts[s]): (followers[s:e], counts[s:e].astype(np.float64)) for s, e in zip(starts, ends)}


def trigram_kn(train_poems: list[str], vocab: Vocab, discount: float = DISCOUNT) -> TrigramKN:
    """A Kneser-Ney trigram model of the training poems, each read from two <pad> tokens on."""
    return TrigramKN([_padded_ids(poem, vocab) for poem in train_poems], vocab, discount)


def _padded_ids(poem: str, vocab: Vocab) -> np.ndarray:
    return np.concatenate([[PAD_ID, PAD_ID], vocab.encode(poem)]).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Perplexity


def scored_targets(vocab: Vocab, poems: Sequence[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """The poems as an id matrix, the mask of the positions scored, and how many were left out as unknown.

    Scored: every Han character of lines 2-4 (after the first line's punctuation) that the
    vocabulary knows. Punctuation is forced by the decoder; unknown characters cannot be
    scored once probabilities are renormalised over the Han tokens.
    """
    if not poems:
        raise ValueError("no poems to score")
    lengths = {len(poem) for poem in poems}
    if len(lengths) > 1:
        raise ValueError(f"the poems must all have the same length, got lengths {sorted(lengths)}")
    ids = vocab.encode("".join(poems)).reshape(len(poems), -1)
    chars = np.array([list(poem) for poem in poems])
    han = np.vectorize(is_han, otypes=[bool])(chars)
    first_line = _first_line_length(poems[0])
    later = np.arange(ids.shape[1]) > first_line  # positions of lines 2-4
    han_ids = np.zeros(len(vocab), dtype=bool)
    han_ids[vocab.han_ids()] = True
    mask = later & han & han_ids[ids]
    unknown = int((later & han & (ids == UNK_ID)).sum())
    return ids, mask, unknown


def _first_line_length(poem: str) -> int:
    for position, char in enumerate(poem):
        if not is_han(char):
            return position
    raise ValueError(f"no punctuation after the first line in {poem!r}")


def perplexity_of(log_probs: np.ndarray) -> float:
    """The perplexity of scored targets: exp of their mean negative log-probability."""
    if not len(log_probs):
        raise ValueError("no character to score: every target is punctuation or unknown to the vocabulary")
    return float(math.exp(-float(np.mean(log_probs))))


def lstm_log_probs(
    model,
    vocab: Vocab,
    poems: list[str],
    window: int | None,
    pad_start: bool,
    batch_size: int = PREDICT_BATCH,
    blocks: np.ndarray | None = None,
) -> np.ndarray:
    """Log P(target) of every scored target (see `scored_targets`), renormalised over the Han tokens.

    Each target is scored by the window model directly from the `window` ids before it,
    as in training: with pad_start the poem is preceded by `window` <pad> ids (the
    dataset's windows); without it, windows start at the poem's start, and a target
    closer to the start than `window` gets a left-padded context, as the generator
    feeds it. window=None: a sequence model reads each whole poem once, as in training, after
    its conditioning block when `blocks` (one per poem) are given.
    """
    if window is None:
        return _sequence_log_probs(model, vocab, poems, pad_start, batch_size, blocks)
    if blocks is not None:
        raise ValueError("a window model reads no conditioning block")
    ids, mask, _ = scored_targets(vocab, poems)
    first = int(np.argmax(mask.any(axis=0)))  # the earliest scored position
    pad = window if pad_start else max(0, window - first)
    x, y = make_windows(np.pad(ids, ((0, 0), (pad, 0)), constant_values=PAD_ID), window, pad_start=False)
    # window j of a poem predicts position j + window - pad of that poem
    positions = np.arange(ids.shape[1] + pad - window) + window - pad
    keep = mask[:, positions].reshape(-1)
    x, y = x[keep], y[keep]
    han = vocab.han_ids()
    out = np.empty(len(y))
    chunk = 4 * batch_size  # windows per predict call: bounds the (chunk, vocab) probabilities held at once
    for start in range(0, len(y), chunk):
        stop = start + chunk
        probs = np.asarray(model.predict(x[start:stop], batch_size=batch_size, verbose=0))
        out[start:stop] = _han_log_probs(probs, y[start:stop], han)
    return out


def _sequence_log_probs(
    model, vocab: Vocab, poems: list[str], pad_start: bool, batch_size: int, blocks: np.ndarray | None = None
) -> np.ndarray:
    """lstm_log_probs of a sequence model: one pass over each poem scores all its positions."""
    ids, mask, _ = scored_targets(vocab, poems)
    x, y = make_sequences(ids, pad_start)
    if not pad_start:
        mask = mask[:, 1:]  # the first id is read, never predicted (it is never scored either)
    if blocks is not None:  # read first, never scored
        samples = with_blocks(Windows(x, y), blocks)
        x, y = samples.x, samples.y
        mask = np.pad(mask, ((0, 0), (blocks.shape[1], 0)))
    han = vocab.han_ids()
    out = []
    poems_per_call = max(1, batch_size // y.shape[1])  # bounds the (poems, length, vocab) probabilities held
    for start in range(0, len(y), poems_per_call):
        rows = slice(start, start + poems_per_call)
        probs = np.asarray(model.predict_on_batch(x[rows]))[mask[rows]]
        out.append(_han_log_probs(probs, y[rows][mask[rows]], han))
    return np.concatenate(out)


def _han_log_probs(probs: np.ndarray, targets: np.ndarray, han: np.ndarray) -> np.ndarray:
    """log P(target) per row of (rows, vocab) probabilities, renormalised over the Han tokens."""
    target = probs[np.arange(len(probs)), targets].astype(np.float64)
    return np.log(np.maximum(target, 1e-300)) - np.log(probs[:, han].sum(axis=-1, dtype=np.float64))


def lstm_perplexity(model, vocab: Vocab, poems: list[str], window: int | None, pad_start: bool) -> float:
    """Perplexity per Han character of lines 2-4 given line 1, renormalised over the Han tokens."""
    return perplexity_of(lstm_log_probs(model, vocab, poems, window, pad_start))


def poet_perplexity(poet, poems: list[str]) -> float:
    """A write.poet.Poet's unconditioned perplexity (read after empty blocks), as `jueju evaluate` reports it."""
    blocks = poet.blocks(len(poems))
    return perplexity_of(
        lstm_log_probs(poet.model, poet.vocab, poems, poet.window, poet.config.dataset.pad_start, blocks=blocks)
    )


def trigram_log_probs(kn: TrigramKN, vocab: Vocab, poems: list[str]) -> np.ndarray:
    """Log P(target) of every scored target under the trigram model, renormalised over the Han tokens."""
    ids, mask, _ = scored_targets(vocab, poems)
    padded = np.pad(ids, ((0, 0), (2, 0)), constant_values=PAD_ID).astype(np.int64)
    rows, cols = np.nonzero(mask)
    contexts = padded[rows, cols] * len(vocab) + padded[rows, cols + 1]
    targets = ids[rows, cols]
    han = vocab.han_ids()
    out = np.empty(len(targets))
    order = np.argsort(contexts, kind="stable")  # one distribution per distinct context
    bounds = np.flatnonzero(np.r_[True, contexts[order][1:] != contexts[order][:-1], True])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        members = order[start:stop]
        u, v = divmod(int(contexts[members[0]]), len(vocab))
        probs = kn._probs_ids(u, v)
        out[members] = np.log(probs[targets[members]]) - np.log(probs[han].sum())
    return out


def trigram_perplexity(kn: TrigramKN, vocab: Vocab, poems: list[str]) -> float:
    """Perplexity per Han character of lines 2-4 given line 1, renormalised over the Han tokens."""
    return perplexity_of(trigram_log_probs(kn, vocab, poems))


# ---------------------------------------------------------------------------------------------
# Generation metrics
