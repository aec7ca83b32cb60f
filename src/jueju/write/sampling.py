"""Samplers: the decoding loop, and the strategies that pick each next character.

In the style of KerasHub's samplers: `Sampler.run` owns the loop; a strategy only
says how to choose ids from a batch of logits. The model is just a function
`next_logits(tokens, position) -> (batch, vocab) logits`, and the caller's
`allowed(tokens, position) -> (batch, vocab) bool` mask is how format and other
constraints are enforced, so everything here is testable with fake logits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

NextLogits = Callable[[np.ndarray, int], np.ndarray]
Allowed = Callable[[np.ndarray, int], np.ndarray]


class ConstraintError(ValueError):
    """No token satisfies the constraints at some position."""


class Sampler:
    """Fills tokens[:, start:] one position at a time; `forced[row, p] >= 0` fixes that id there.

    `run` returns the tokens and, per row, the model's total log-probability of the
    ids it chose (forced ids excluded), for reranking.
    """

    def __init__(self, temperature: float = 1.0):
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be a number > 0, got {temperature!r}")
        self.temperature = temperature

    def run(
        self,
        next_logits: NextLogits,
        tokens: np.ndarray,
        start: int,
        forced: np.ndarray,
        allowed: Allowed,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        tokens, scores = tokens.copy(), np.zeros(len(tokens))
        forced = np.broadcast_to(forced, tokens.shape)
        for position in range(start, tokens.shape[1]):
            fixed = forced[:, position] >= 0
            if fixed.all():  # punctuation, acrostic heads: no model step needed
                tokens[:, position] = forced[:, position]
                continue
            log_probs = log_softmax(next_logits(tokens, position))
            mask = allowed(tokens, position) | fixed[:, None]
            chosen = np.where(fixed, forced[:, position], self.choose(mask_logits(log_probs, mask), rng))
            tokens[:, position] = chosen
            scores += np.where(fixed, 0.0, log_probs[np.arange(len(tokens)), chosen])
        return tokens, scores

    def choose(self, logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Ids (batch,) from masked logits (batch, vocab); -inf marks forbidden ids."""
        return gumbel_argmax(logits / self.temperature, rng)


class Greedy(Sampler):
    def choose(self, logits, rng):
        return logits.argmax(axis=-1)


class Temperature(Sampler):
    """Draw from the whole softmax(logits / temperature)."""


class TopK(Sampler):
    def __init__(self, k: int = 20, temperature: float = 1.0):
        super().__init__(temperature)
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"top_k must be an integer of at least 1, got {k!r}")
        self.k = k

    def choose(self, logits, rng):
        k = min(self.k, logits.shape[-1])
        kth = np.partition(logits, -k, axis=-1)[:, -k:].min(axis=-1, keepdims=True)
        return super().choose(np.where(logits >= kth, logits, -np.inf), rng)


class TopP(Sampler):
    def __init__(self, p: float = 0.9, temperature: float = 1.0):
        super().__init__(temperature)
        if not isinstance(p, (int, float)) or not 0 < p <= 1:
            raise ValueError(f"top_p must be a number in (0, 1], got {p!r}")
        self.p = p

    def choose(self, logits, rng):
        order = np.argsort(-logits, axis=-1)
        probs = softmax(np.take_along_axis(logits, order, axis=-1) / self.temperature)
        # keep the smallest prefix whose mass reaches p (the first token always)
        keep_sorted = (np.cumsum(probs, axis=-1) - probs) < self.p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        return super().choose(np.where(keep, logits, -np.inf), rng)


class Beam(Sampler):
    """Keeps the `width` most probable partial poems per row; returns the best. Deterministic."""

    def __init__(self, width: int = 4, temperature: float = 1.0):
        super().__init__(temperature)
        if not isinstance(width, int) or isinstance(width, bool) or width < 1:
            raise ValueError(f"beam width must be an integer of at least 1, got {width!r}")
        self.width = width

    def run(self, next_logits, tokens, start, forced, allowed, rng):
        rows, width, length = len(tokens), self.width, tokens.shape[1]
        beams = np.repeat(tokens, width, axis=0)
        forced = np.repeat(np.broadcast_to(forced, tokens.shape), width, axis=0)
        scores = np.tile(np.r_[0.0, np.full(width - 1, -np.inf)], rows)  # all beams start as one
        for position in range(start, length):
            fixed = forced[:, position] >= 0
            if fixed.all():
                beams[:, position] = forced[:, position]
                continue
            log_probs = np.where(allowed(beams, position), log_softmax(next_logits(beams, position)), -np.inf)
            pinned = np.full_like(log_probs, -np.inf)
            pinned[np.arange(len(beams)), np.maximum(forced[:, position], 0)] = 0.0
            log_probs = np.where(fixed[:, None], pinned, log_probs)  # a fixed id costs nothing
            totals = (scores[:, None] + log_probs).reshape(rows, -1)  # (rows, width * vocab)
            if not np.isfinite(totals).any(axis=-1).all():  # judged on live beams only
                raise ConstraintError("no character satisfies the constraints at this position")
            best = np.argsort(-totals, axis=-1)[:, :width]
            source, token = np.divmod(best, log_probs.shape[-1])
            beams = beams.reshape(rows, width, length)[np.arange(rows)[:, None], source].reshape(-1, length)
            beams[:, position] = token.reshape(-1)
            scores = np.take_along_axis(totals, best, axis=-1).reshape(-1)
        top = scores.reshape(rows, width).argmax(axis=-1)
        pick = np.arange(rows) * width + top
        return beams[pick], scores[pick]


SAMPLERS = {"greedy": Greedy, "temperature": Temperature, "top_k": TopK, "top_p": TopP, "beam": Beam}


def make_sampler(
    name: str, temperature: float = 1.0, top_k: int = 20, top_p: float = 0.9, beam_width: int = 4
) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    if name == "top_k":
        return TopK(top_k, temperature)
    if name == "top_p":
        return TopP(top_p, temperature)
    if name == "beam":
        return Beam(beam_width, temperature)
    return SAMPLERS[name](temperature)


def mask_logits(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    masked = np.where(allowed, logits, -np.inf)
    if not np.isfinite(masked).any(axis=-1).all():
        raise ConstraintError("no character satisfies the constraints at this position")
    return masked


def gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A draw from softmax(logits) per row, vectorised: argmax of logits plus Gumbel noise."""
    return (logits + rng.gumbel(size=logits.shape)).argmax(axis=-1)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
