"""Redrawing lines: a chosen poem rewritten one line at a time, each redraw kept where the scores prefer it.

Reranking picks the best of K whole poems, but one weak line can spoil a poem whose other lines
hang together. `redraw` takes each line of each chosen poem in turn: the rest of the poem (and any
given character of the line) is kept as a template, the forward model writes `draws` new versions
of the line (knowing what comes before it; the constraints know the rhyme and tones of what is
kept after it), and every version, the line as it stood included, is scored as a whole poem by the
reranking score (jueju.rank.scores: the forward model reads what follows the new line, the
backward model how well the lines after it explain it, the critic how readers would judge the
whole). The best version stays, so a poem can only gain by the score that chose it.
"""

from __future__ import annotations

import numpy as np


def redraw(
    poet, poems: list[str], givens: list[dict[int, str]], blocks, options: dict, weights: dict, draws: int
) -> list[str]:
    """`poems` (one per row, written with `givens` kept and `blocks` read, one each or None) with
    each line's written characters (all but the givens) redrawn `draws` times (with the call's decoding
    `options`) and the version with the best reranking score (`weights`: Ranker.scores) kept; a
    redrawn line after the first also gains `weights["backward"]` times how well the lines after
    it explain it."""
    layout, n = poet.layout, poet.line_length
    poems = list(poems)
    for line in range(4):
        positions = set(range(layout.start(line), layout.start(line) + n))
        rows = [row for row, given in enumerate(givens) if positions - set(given)]  # something here was written
        if not rows:
            continue
        kept = [  # the poem as it stands, but for the characters this line's redraw may write
            {p: char for p, char in enumerate(poems[row]) if p not in positions or p in givens[row]} for row in rows
        ]
        templates = [poet.preprocessor.template(kept_chars) for kept_chars in kept]
        repeated = [template for template in templates for _ in range(draws)]
        row_blocks = None if blocks is None else np.repeat(blocks[rows], draws, axis=0)
        drawn = poet.batch(templates=repeated, blocks=row_blocks, **{**options, "rerank": 1, "redraw": 0})
        versions = [[poems[row], *drawn[k * draws : (k + 1) * draws]] for k, row in enumerate(rows)]
        flat = [poem for group in versions for poem in group]
        tokens = np.stack([poet.vocab.encode(poem) for poem in flat])
        version_blocks = None if blocks is None else np.repeat(blocks[rows], draws + 1, axis=0)
        with poet._lock:  # the stepper reads one batch at a time
            scores = poet.ranker.scores(tokens, 0, version_blocks, weights)
            if line and weights.get("backward"):
                scores = scores + weights["backward"] * poet.ranker.line_information(tokens, line, version_blocks)
        best = scores.reshape(len(rows), draws + 1).argmax(axis=1)
        for k, row in enumerate(rows):
            poems[row] = versions[k][best[k]]
    return poems
