"""Generation metrics of a set of poems: format, rhyme, tones, diversity, copying, BLEU-2.

Computed on poems written from the test poems' first lines and on the real test poems (the
human reference row): format compliance, rhyme rate (pingshui, xin), tonal compliance,
distinct-1/2, the share of lines copied verbatim from the training corpus, and BLEU-2
against the real poem.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

from jueju.data import prosody, tonal
from jueju.data.corpus import poem_regex
from jueju.text import split_lines
from jueju.write.sampling import ConstraintError

SCHEMES = ("pingshui", "xin")
GENERATE_BATCH = 256  # poems decoded together (one model step for all of them)


def form_pattern(line_length: int) -> re.Pattern:
    """The strict form: four lines of `line_length` Han characters ending in ，。，。 (corpus.poem_regex)."""
    return poem_regex(line_length, lines=4)


def _later_lines(poem: str) -> list[str]:
    return split_lines(poem)[1:4]


def distinct(poems: Sequence[str], n: int) -> float | None:
    """Distinct n-grams / all n-grams, over the characters of lines 2-4 (n-grams within a line)."""
    grams = [line[i : i + n] for poem in poems for line in _later_lines(poem) for i in range(len(line) - n + 1)]
    return len(set(grams)) / len(grams) if grams else None


def copy_rate(poems: Sequence[str], train_lines: set[str]) -> float | None:
    """The share of lines 2-4 found verbatim among the training corpus's lines."""
    lines = [line for poem in poems for line in _later_lines(poem)]
    return sum(line in train_lines for line in lines) / len(lines) if lines else None


def bleu2(poems: Sequence[str], references: Sequence[str]) -> float | None:
    """Corpus BLEU-2 of lines 2-4 against the reference poems' lines 2-4, character tokens.

    The geometric mean of the clipped unigram and bigram precisions (bigrams within a
    line), summed over the corpus; no brevity penalty (the form fixes the lengths).
    """
    if len(poems) != len(references):
        raise ValueError(f"{len(poems)} poems but {len(references)} references")
    matched, total = [0, 0], [0, 0]
    for poem, reference in zip(poems, references):
        for k, n in enumerate((1, 2)):
            hyp, ref = _ngrams(poem, n), _ngrams(reference, n)
            matched[k] += sum(min(count, ref[gram]) for gram, count in hyp.items())
            total[k] += sum(hyp.values())
    if not total[0] or not total[1]:
        return None
    return math.sqrt((matched[0] / total[0]) * (matched[1] / total[1]))


def _ngrams(poem: str, n: int) -> Counter:
    return Counter(line[i : i + n] for line in _later_lines(poem) for i in range(len(line) - n + 1))


def generation_metrics(poems: list[str], references: list[str] | None, train_lines: set[str], line_length: int) -> dict:
    """Metrics of a set of poems; `references` (the real poems, same order) for BLEU-2, or None.

    Rhyme (lines 2 and 4, per scheme) and tonal compliance (any standard pattern, lenient)
    are judged only on well-formed poems whose characters the prosody tables know; each
    rate is over the poems judged, and `*_judged` says how many that was.
    """
    pattern = form_pattern(line_length)
    formed = [poem for poem in poems if pattern.fullmatch(poem)]
    metrics: dict = {"poems": len(poems), "format": len(formed) / len(poems) if poems else None}
    for scheme in SCHEMES:
        judged = [prosody.poem_rhymes(poem, scheme=scheme) for poem in formed]
        metrics[f"rhyme_{scheme}"], metrics[f"rhyme_{scheme}_judged"] = _rate(judged)
    patterned = [tonal.tonal_compliance(poem, scheme="pingshui", lenient=True) for poem in formed]
    metrics["tonal"], metrics["tonal_judged"] = _rate(patterned)
    # the lines a generator writes after a given first line (which may itself break the rules)
    written = [tonal.tonal_compliance(poem, lines_checked=(1, 2, 3)) for poem in formed]
    metrics["tonal_234"], metrics["tonal_234_judged"] = _rate(written)
    metrics["distinct_1"], metrics["distinct_2"] = distinct(poems, 1), distinct(poems, 2)
    metrics["copy_rate"] = copy_rate(poems, train_lines)
    metrics["bleu_2"] = bleu2(poems, references) if references is not None else None
    return metrics


def _rate(verdicts: list) -> tuple[float | None, int]:
    judged = [verdict for verdict in verdicts if verdict is not None]
    return (sum(map(bool, judged)) / len(judged) if judged else None), len(judged)


# ---------------------------------------------------------------------------------------------
# Generation from many first lines


def generate_batch(
    poet, first_lines: Sequence[str], options: dict, seed: int, batch: int = GENERATE_BATCH, kind: str = "first_lines"
) -> list[str | None]:
    """One poem per first line (or per template, kind="templates") through `Poet.batch`, `batch` decoded together.

    A chunk the constraints cannot finish is redone one by one; one that still cannot be
    finished gives None (counted as `failed`).
    """
    poems: list[str | None] = []
    for number, start in enumerate(range(0, len(first_lines), batch)):
        chunk = list(first_lines[start : start + batch])
        try:
            poems += poet.batch(**{kind: chunk}, seed=seed + number, **options)
        except ConstraintError:
            for line in chunk:
                try:
                    poems += poet.batch(**{kind: [line]}, seed=seed + number, **options)
                except ConstraintError:
                    poems.append(None)
    return poems
