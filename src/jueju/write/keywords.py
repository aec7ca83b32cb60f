"""Writing toward keywords: plans drawn, a draft written for each, the most probable kept.

A keyword poem cannot be decoded left to right with the keyword forced wherever it fits: where it
stands decides the rhyme and the tones around it. So each poem asked for draws KEYWORD_PLANS (or
`rerank`, if more) plans of where each keyword stands (jueju.write.plan), writes a poem for each
plan as a template, and keeps the draft the reranking score prefers (jueju.rank.scores).
"""

from __future__ import annotations

import numpy as np

from jueju.rank.scores import reranking_weights
from jueju.write.plan import normalise_keywords, plans
from jueju.write.preprocess import normalise_first_line

KEYWORD_PLANS = 8  # plans drawn, and poems written, per keyword poem asked for (at least rerank)


def keyword_poems(poet, first_line: str | None, num: int, keywords, title: str, options: dict) -> list[str]:
    """`num` poems by `poet` (a write.poet.Poet) with every keyword standing within one line, after
    `first_line` if given, toward `title` ("" for none), with the call's `options`."""
    settings = poet.settings(options)
    simplify = poet.config.corpus.simplify
    words = normalise_keywords(keywords, simplify)
    given = {} if first_line is None else dict(enumerate(normalise_first_line(first_line, poet.line_length, simplify)))
    draws = max(settings["rerank"], KEYWORD_PLANS)
    rng = np.random.default_rng(settings["seed"])
    drafts = plans(
        words,
        poet.layout,
        num * draws,
        rng,
        given,
        settings["rhyme"],
        settings["rhyme_first_line"],
        settings["tonal"],
    )
    templates = [poet.preprocessor.template(draft) for draft in drafts]
    blocks = poet.blocks(len(templates), title, words)
    written = poet.batch(templates=templates, blocks=blocks, **{**options, "rerank": 1, "redraw": 0})
    scores = poet.rank(written, blocks, reranking_weights(settings, first_line is not None))
    best = scores.reshape(num, draws).argmax(axis=-1) + np.arange(num) * draws
    return [written[row] for row in best]
