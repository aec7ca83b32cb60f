"""Samplers: the decoding loop, and the strategies that pick each next character.

In the style of KerasHub's samplers: `Sampler.run` owns the loop; a strategy only
says how to choose ids from a batch of logits. The model is just a function
`next_logits(tokens, position) -> (batch, vocab) logits`, and the caller's
`allowed(tokens, position) -> (batch, vocab) bool` mask is how format and other
constraints are enforced, so everything here is testable with fake logits.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

NextLogits = Callable[[np.ndarray, int], np.ndarray]
Allowed = Callable[[np.ndarray, int], np.ndarray]


class ConstraintError(ValueError):
    """No token satisfies the constraints at some position."""


class Sampler:
    """Fills tokens[:, start:] one position at a time; `forced[p] >= 0` fixes position p to that id."""

    def __init__(self, temperature: float = 1.0):
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = temperature

    def run(self, next_logits: NextLogits, tokens: np.ndarray, start: int, forced: np.ndarray,
            allowed: Allowed, rng: np.random.Generator) -> np.ndarray:
        tokens = tokens.copy()
        for position in range(start, tokens.shape[1]):
            if forced[position] >= 0:
                tokens[:, position] = forced[position]
                continue
            logits = mask_logits(next_logits(tokens, position), allowed(tokens, position))
            tokens[:, position] = self.choose(logits, rng)
        return tokens

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
        if k < 1:
            raise ValueError(f"top_k must be at least 1, got {k}")
        self.k = k

    def choose(self, logits, rng):
        k = min(self.k, logits.shape[-1])
        kth = np.partition(logits, -k, axis=-1)[:, -k:].min(axis=-1, keepdims=True)
        return super().choose(np.where(logits >= kth, logits, -np.inf), rng)


class TopP(Sampler):
    def __init__(self, p: float = 0.9, temperature: float = 1.0):
        super().__init__(temperature)
        if not 0 < p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {p}")
        self.p = p

    def choose(self, logits, rng):
        order = np.argsort(-logits, axis=-1)
        probs = softmax(np.take_along_axis(logits, order, axis=-1) / self.temperature)
        # keep the smallest prefix whose mass reaches p (the first token always)
        keep_sorted = (np.cumsum(probs, axis=-1) - probs) < self.p
        keep = np.zeros_like(keep_sorted)
        np.put_along_axis(keep, order, keep_sorted, axis=-1)
        return super().choose(np.where(keep, logits, -np.inf), rng)


SAMPLERS = {"greedy": Greedy, "temperature": Temperature, "top_k": TopK, "top_p": TopP}


def make_sampler(name: str, temperature: float = 1.0, top_k: int = 20, top_p: float = 0.9) -> Sampler:
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; valid: {', '.join(SAMPLERS)}")
    if name == "top_k":
        return TopK(top_k, temperature)
    if name == "top_p":
        return TopP(top_p, temperature)
    return SAMPLERS[name](temperature)


def mask_logits(logits: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    masked = np.where(allowed, logits, -np.inf)
    if not np.isfinite(masked).any(axis=-1).all():
        raise ConstraintError("no character satisfies the constraints at this position")
    return masked


def gumbel_argmax(logits: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A draw from softmax(logits) per row, vectorised: argmax of logits plus Gumbel noise."""
    return (logits + rng.gumbel(size=logits.shape)).argmax(axis=-1)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)
