"""Reranking: what the candidates of one poem are compared by, added up in one score.

`Ranker.scores` reads every candidate (ids, after its block) and adds up:
- its forward score: the mean log-probability of the whole poem under the forward model;
- with a title or keywords, MI_WEIGHT times how much more probable its block makes it (the
  pointwise mutual information of poem and block: a poem about its title beats a generic one);
- `backward` times how much lines 2-4 tell of a given line 1 (`first_line_information`, read right
  to left by the backward model in <model>-backward: do the later lines explain the first?);
- `reader` times how a blind reader would score it (the reader model, jueju.rank.reader);
- `critic` times what the critic predicts readers would say (jueju.rank.critic).

All reads run in chunks of at most CHUNK candidates, so memory per call is bounded whatever the
number of poems asked for. The scorers share what the forward model read of a chunk (`Stepper.read`
keeps it): the candidates are read once after their blocks (or taken from decoding) and once after
none, and when their blocks are empty these are one reading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from jueju.model.stepper import CHUNK
from jueju.rank.critic import CRITIC
from jueju.rank.reader import READER, poem_features

MI_WEIGHT = 1.0  # reranking poems written toward a title or keywords: weight of their mutual information with it
BACKWARD = "{}-backward"  # the folder of a model's backward scorer, beside it: models/wuyan -> models/wuyan-backward
SCORERS = {  # option -> what it needs, said where it is missing
    "backward": "a backward model beside this one (<model>-backward, trained with model.direction = backward)",
    "reader": f"a reader model in the model's folder ({READER}, studies/fit_reader.py)",
    "critic": f"a critic in the model's folder ({CRITIC}, studies/fit_critic.py)",
}


def backward_dir(model_dir: str | Path) -> Path | None:
    """The folder of the backward model that reranks for the model in `model_dir`; None if it has none."""
    folder = Path(model_dir).with_name(BACKWARD.format(Path(model_dir).name))
    return folder if (folder / "model.keras").is_file() else None


def backward_weight(settings: dict, first_line_given: bool) -> float:
    """The weight of `first_line_information` in reranking: `settings`' backward where line 1 is
    given, else 0. Where line 1 is written too, the score would favour unlikely first lines (and
    readers scored such poems lower, docs/results.md)."""
    return settings["backward"] if first_line_given else 0.0


def reranking_weights(settings: dict, first_line_given: bool) -> dict:
    """The weights `Ranker.scores` adds its scorers by, from a call's checked settings."""
    return {
        "backward": backward_weight(settings, first_line_given),
        "reader": settings["reader"],
        "critic": settings["critic"],
    }


def with_information(forward: np.ndarray, information: np.ndarray, backward: float) -> np.ndarray:
    """A reranking score: the forward score plus `backward` times `Ranker.first_line_information`."""
    return forward + backward * information


class Ranker:
    """The scorers of one forward model: its stepper, and the backward model, reader model and critic
    where it has them (None where not)."""

    def __init__(self, stepper, line_length: int, backward=None, reader=None, critic=None):
        self.stepper, self.line_length = stepper, line_length
        self.backward, self.reader, self.critic = backward, reader, critic

    def missing(self, option: str) -> str | None:
        """What the option needs and this model lacks (None: it has it)."""
        return None if getattr(self, option) is not None else SCORERS[option]

    def scores(self, tokens: np.ndarray, start: int, blocks: np.ndarray | None, weights: dict) -> np.ndarray:
        """Per candidate, the reranking score; `weights` holds backward, reader and critic (0: left out),
        and the stepper reads `blocks` (one per candidate, or None). In chunks of CHUNK candidates."""
        parts = []
        for row in range(0, len(tokens), CHUNK):
            chunk = slice(row, row + CHUNK)
            part = None if blocks is None else blocks[chunk]
            with self.stepper.reading(part):
                parts.append(self._scores(tokens[chunk], start, part, weights))
        return np.concatenate(parts) if parts else np.zeros(0)

    def _scores(self, tokens: np.ndarray, start: int, blocks: np.ndarray | None, weights: dict) -> np.ndarray:
        scores = self.stepper.score(tokens, start)
        if blocks is not None:
            with self.stepper.reading(None):
                plain = self.stepper.score(tokens, start)
            scores = scores + MI_WEIGHT * (scores - plain)
        if weights.get("backward"):
            scores = with_information(scores, self.first_line_information(tokens, blocks), weights["backward"])
        if weights.get("reader"):
            scores = scores + weights["reader"] * self.reader.predict(
                poem_features(self.stepper, tokens, self.line_length)
            )
        if weights.get("critic"):
            scores = scores + weights["critic"] * self.critic.score(self.stepper, tokens)
        return scores

    def first_line_information(self, tokens: np.ndarray, blocks: np.ndarray | None = None) -> np.ndarray:
        """Per poem (ids, read after `blocks`), how much its lines 2-4 tell of its first line: the
        backward model's mean log-probability of line 1's characters read after the rest, right to
        left. Among poems of one first line this orders them as the pointwise mutual information of
        line 1 and the rest, as log P(line 1) is the same for all of them."""
        return self.line_information(tokens, 0, blocks)

    def line_information(self, tokens: np.ndarray, line: int, blocks: np.ndarray | None = None) -> np.ndarray:
        """Per poem, the backward model's mean log-probability of line `line`'s characters (0-3) read
        right to left after the lines that follow it: how well what follows explains that line."""
        end = tokens.shape[1] - line * (self.line_length + 1)  # in the poem read backwards, where the line ends
        with self.backward.reading(blocks):
            return self.backward.score(tokens[:, ::-1], end - self.line_length, end)
