"""Evaluation on the held-out test split: perplexity against a trigram baseline, and generation metrics.

`run_evaluation` does it all in one run and returns a JSON-able dict; `format_table`
prints it and `write_results` saves it.

Perplexity is per character of lines 2-4 given line 1 (the punctuation is forced by
the decoder, so it is not scored), for the LSTM and for an interpolated Kneser-Ney
character trigram model trained on the same training split with the same vocabulary.
Both models' probabilities are **renormalised over the vocabulary's Han-character
tokens**: inside a line the decoder can emit nothing else, so mass a model puts on
punctuation, padding or <unk> there is wasted alike for both, and the comparison stays
fair. A test character outside the vocabulary (read as <unk>) can therefore not be
scored: such targets are left out for both models and counted (`oov_targets`). In
contexts, unknown characters are read as <unk>, as in training.

Generation metrics are computed on poems written from the test poems' first lines
(one per test poem, in several decoding modes) and on the real test poems (the human
reference row): format compliance, rhyme rate (pingshui, xin), tonal compliance,
distinct-1/2, the share of lines copied verbatim from the training corpus, and BLEU-2
against the real poem.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import prosody
from .condition import KeywordRule, block_ids, read_titles_of, with_blocks
from .corpus import poem_regex
from .dataset import PAD_ID, UNK_ID, Vocab, Windows, make_sequences, make_windows, read_poems
from .files import write_atomic
from .preprocess import BLANKS, normalise_template, template_of
from .sampling import ConstraintError
from .text import is_han, split_lines

DISCOUNT = 0.75
SCHEMES = ("pingshui", "xin")
PREDICT_BATCH = 1024  # windows per model.predict call when scoring
GENERATE_BATCH = 256  # poems decoded together (one model step for all of them)

# Named generation settings (Poet.poems keyword arguments); options not named come from
# the model's [generate] config (sampler, temperature, no_repeat, ...). Rhyme, tones and
# no_copy are spelled out so that "sample" really is unconstrained sampling whatever the
# config says, and no_copy is off so that the copy rate measures the model, not the filter.
DEFAULT_MODES: dict[str, dict] = {
    "sample": {"rhyme": "none", "tonal": False, "no_copy": False},
    "rhyme": {"rhyme": "pingshui", "tonal": False, "no_copy": False},
    "rhyme+tone": {"rhyme": "pingshui", "tonal": True, "no_copy": False},
}


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
    tonal = [prosody.tonal_compliance(poem, scheme="pingshui", lenient=True) for poem in formed]
    metrics["tonal"], metrics["tonal_judged"] = _rate(tonal)
    # the lines a generator writes after a given first line (which may itself break the rules)
    written = [prosody.tonal_compliance(poem, lines_checked=(1, 2, 3)) for poem in formed]
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


TEMPLATE_KEEP = 0.3  # share of a test poem's characters a template keeps (drawn per poem, seeded)


def sample_templates(poems: Sequence[str], line_length: int, seed: int) -> list[str]:
    """Per test poem, a template keeping a random TEMPLATE_KEEP of its characters, rhyme positions
    (the ends of lines 2 and 4) left blank so that every template can rhyme."""
    rng = np.random.default_rng(seed)
    n = line_length + 1
    rhyme_ends = {2 * n - 2, 4 * n - 2}
    templates = []
    for poem in poems:
        places = [i for i, char in enumerate(poem) if is_han(char) and i not in rhyme_ends]
        keep = {p for p in places if rng.random() < TEMPLATE_KEEP}
        templates.append(template_of(poem, keep))
    return templates


KEYWORD_POEMS = 200  # test poems whose keywords are written into new poems (each costs KEYWORD_PLANS poems)


def sample_keywords(poems: Sequence[str], rule: KeywordRule, seed: int, count: int = 2) -> list[list[str]]:
    """Per test poem, the keywords of `count` of its lines (condition.KeywordRule, as in training)."""
    rng = np.random.default_rng(seed)
    return [rule.keywords(poem, count, rng) or [split_lines(poem)[0][:2]] for poem in poems]


def keyword_metrics(poet, test: Sequence[str], train: Sequence[str], seed: int) -> dict:
    """Poems written for keywords drawn from test poems (sample_keywords), rhyme on: the share with every
    keyword within one line, the format, the rhyme, and the model's mean log-probability per position
    beside poems written from nothing (every place blank): the keywords' cost in fluency."""
    keywords = sample_keywords(test[:KEYWORD_POEMS], KeywordRule(train), seed)
    options = {"rhyme": "pingshui", "seed": seed}
    poems = [poet.poems(keywords=words, **options)[0] for words in keywords]
    blank = poet.preprocessor.template({})
    free = generate_batch(poet, [blank] * len(keywords), {"rhyme": "pingshui"}, seed, kind="templates")
    free = [poem for poem in free if poem is not None]
    pattern = form_pattern(poet.line_length)

    def fluency(written: list[str]) -> float:  # unconditioned: the cost of the keywords themselves
        return float(poet.score(written).mean())

    return {
        "poems": len(poems),
        "keywords_present": float(
            np.mean(
                [
                    all(any(w in line for line in split_lines(poem)) for w in words)
                    for poem, words in zip(poems, keywords)
                ]
            )
        ),
        "format": float(np.mean([bool(pattern.fullmatch(poem)) for poem in poems])),
        "rhyme_pingshui": float(np.mean([prosody.poem_rhymes(poem, "pingshui") is True for poem in poems])),
        "log_prob_per_position": fluency(poems),
        "log_prob_per_position_without_keywords": fluency(free),
        "samples": [{"keywords": words, "poem": poem} for words, poem in zip(keywords[:5], poems[:5])],
    }


def template_metrics(poet, test: Sequence[str], seed: int) -> dict:
    """Poems written from sample_templates, rhyme on: the share with every kept character in place,
    the format, the rhyme, and the characters kept."""
    templates = sample_templates(test, poet.line_length, seed)
    poems = generate_batch(poet, templates, {"rhyme": "pingshui"}, seed, kind="templates")
    done = [(poem, template) for poem, template in zip(poems, templates) if poem is not None]
    pattern = form_pattern(poet.line_length)

    def share(test) -> float:
        return float(np.mean([bool(test(poem, template)) for poem, template in done])) if done else 0.0

    return {
        "poems": len(done),
        "failed": len(poems) - len(done),
        "kept_in_place": share(
            lambda poem, template: all(poem[p] == c for p, c in normalise_template(template, poet.line_length).items())
        ),
        "format": share(lambda poem, _: pattern.fullmatch(poem)),
        "rhyme_pingshui": share(lambda poem, _: prosody.poem_rhymes(poem, "pingshui") is True),
        "kept_per_poem": float(np.mean([sum(c != BLANKS[0] and is_han(c) for c in t) for t in templates])),
        "keep_share": TEMPLATE_KEEP,
    }


# ---------------------------------------------------------------------------------------------
# Conditioning (a conditioned model, jueju.condition)

FIDELITY_TITLES = 100  # test titles written for, each poem ranked against FIDELITY_RIVALS titles (its own one)
FIDELITY_RIVALS = 10


def _titles(data_dir: Path, count: int) -> list[str]:
    """The test poems' titles ("" for each when the data set was prepared without conditioning)."""
    path = data_dir / "test_titles.txt"
    return read_titles_of(data_dir, "test") if path.is_file() else [""] * count


def condition_metrics(poet, test: Sequence[str], titles: Sequence[str], train: Sequence[str], seed: int) -> dict:
    """Perplexity of the titled test poems (lines 2-4 given line 1) given nothing, their own title,
    keywords drawn from two of their lines (KeywordRule), and both; and title fidelity."""
    titled = [(poem, title) for poem, title in zip(test, titles) if title]
    if not titled:
        return {"poems": 0}
    poems = [poem for poem, _ in titled]
    words = sample_keywords(poems, KeywordRule(train), seed)
    pairs = {
        "none": [("", ())] * len(poems),
        "title": [(title, ()) for _, title in titled],
        "keywords": [("", w) for w in words],
        "title_and_keywords": [(title, w) for (_, title), w in zip(titled, words)],
    }
    perplexity = {
        name: perplexity_of(
            lstm_log_probs(
                poet.model,
                poet.vocab,
                poems,
                None,
                True,
                blocks=np.stack([block_ids(poet.vocab, t, w) for t, w in given]),
            )
        )
        for name, given in pairs.items()
    }
    unique = list(dict.fromkeys(title for _, title in titled))[:FIDELITY_TITLES]
    fidelity = title_fidelity(poet, unique, seed) if len(unique) > 1 else None  # one title has no rival
    return {"poems": len(poems), "perplexity": perplexity, "title_fidelity": fidelity}


def title_fidelity(poet, titles: Sequence[str], seed: int) -> dict:
    """A poem written for each title (model defaults), then scored as a whole under its own title and
    FIDELITY_RIVALS - 1 others: how often its own comes first (chance: 1 / FIDELITY_RIVALS)."""
    rng = np.random.default_rng(seed)
    blank = poet.preprocessor.template({})
    written = []
    for start in range(0, len(titles), GENERATE_BATCH):
        chunk = titles[start : start + GENERATE_BATCH]
        blocks = np.stack([block_ids(poet.vocab, title) for title in chunk])
        written += poet.batch(templates=[blank] * len(chunk), blocks=blocks, seed=seed + start)
    ranks, among = [], min(FIDELITY_RIVALS, len(titles))  # a data set this small has fewer titles to rank
    for i, poem in enumerate(written):
        rivals = rng.choice([j for j in range(len(titles)) if j != i], among - 1, replace=False)
        candidates = [titles[i], *(titles[j] for j in rivals)]
        scores = poet.score([poem] * len(candidates), np.stack([block_ids(poet.vocab, t) for t in candidates]))
        ranks.append(int((scores > scores[0]).sum()))
    return {
        "titles": len(titles),
        "rivals": among,
        "top1": float(np.mean([rank == 0 for rank in ranks])),
        "chance": 1 / among,
        "mean_rank": float(np.mean(ranks)) + 1,
        "samples": [{"title": t, "poem": p} for t, p in zip(titles[:10], written[:10])],
    }


RERANK_POEMS = 200  # test first lines of the reranking study, each with its real poem among RERANK_RIVALS of ours
RERANK_RIVALS = 15
BACKWARD_WEIGHTS = (0.0, 1.0, 2.0, 4.0)  # weights of the first line's information compared (option backward)


def rerank_metrics(poet, test: Sequence[str], seed: int) -> dict | None:
    """What each reranking score is worth as a judge: per test first line, the real poem among
    RERANK_RIVALS of ours written from it (model defaults, no reranking), all scored as reranking
    scores them: the forward model's mean log-probability of lines 2-4, plus `backward` times how
    much lines 2-4 tell of line 1 (Poet.first_line_information). How often the real poem scores
    best (chance 1 / (RERANK_RIVALS + 1)), and its mean rank. None without a backward model."""
    from .generate import with_information  # here: the rest of this module runs without Keras

    if poet.backward is None:
        return None
    real = list(test[:RERANK_POEMS])
    firsts = [split_lines(poem)[0] for poem in real for _ in range(RERANK_RIVALS)]
    ours = generate_batch(poet, firsts, {"rerank": 1}, seed)
    groups = [
        [poem, *rivals]
        for i, poem in enumerate(real)
        if None not in (rivals := ours[i * RERANK_RIVALS : (i + 1) * RERANK_RIVALS])
    ]
    tokens = np.stack([poet.vocab.encode(poem) for group in groups for poem in group])
    forward, information = [], []
    for start in range(0, len(tokens), GENERATE_BATCH):
        chunk = tokens[start : start + GENERATE_BATCH]
        information.append(poet.first_line_information(chunk))
        forward.append(poet.stepper.score(chunk, poet.line_length))
    shape = (len(groups), RERANK_RIVALS + 1)
    forward, information = np.concatenate(forward).reshape(shape), np.concatenate(information).reshape(shape)
    scores = {f"backward={weight:g}": with_information(forward, information, weight) for weight in BACKWARD_WEIGHTS}
    scores["first_line_information"] = information

    def judged(score: np.ndarray) -> dict:
        ranks = (score[:, 1:] > score[:, :1]).sum(axis=1)
        return {"real_first": float(np.mean(ranks == 0)), "real_mean_rank": float(np.mean(ranks)) + 1}

    return {
        "poems": len(groups),
        "rivals": RERANK_RIVALS,
        "chance": 1 / (RERANK_RIVALS + 1),
        "scores": {name: judged(score) for name, score in scores.items()},
    }


# ---------------------------------------------------------------------------------------------
# The whole evaluation


def run_evaluation(
    model_dir, data_dir, modes: dict[str, dict] | None = None, limit: int | None = None, seed: int = 0
) -> dict:
    """Evaluate the model in `model_dir` on `data_dir`/test.txt (the training split: train.txt).

    modes: {name: Poet.poems options} (default DEFAULT_MODES); limit: only the first N test
    poems; seed: the seed of every generated poem (one per test poem, the same across modes).
    Returns {"perplexity": {...}, "generation": {mode: metrics, ..., "real": metrics},
    "test_poems": n, ...}, all JSON-able.
    """
    from .generate import Poet  # here, not at the top: the rest of this module runs without Keras

    model_dir, data_dir = Path(model_dir), Path(data_dir)
    modes = DEFAULT_MODES if modes is None else modes
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"limit must be a positive integer or None, got {limit!r}")
    for name in ("test.txt", "train.txt"):
        if not (data_dir / name).is_file():
            raise FileNotFoundError(f"no {name} in {data_dir}: prepare the data set with `jueju prepare`")
    poet = Poet.load(model_dir)
    vocab, config, line_length = poet.vocab, poet.config, poet.line_length
    test = read_poems(data_dir / "test.txt")[:limit]
    train = read_poems(data_dir / "train.txt")
    if not test:
        raise ValueError(f"the test split {data_dir / 'test.txt'} is empty: raise dataset.test_fraction")
    pattern = form_pattern(line_length)
    if not all(pattern.fullmatch(poem) for poem in test):
        raise ValueError(
            f"the test poems in {data_dir} are not all {line_length}-character quatrains: "
            "is this the data set of another form?"
        )

    _, mask, unknown = scored_targets(vocab, test)
    kn = trigram_kn(train, vocab)
    perplexity = {
        "lstm": perplexity_of(
            lstm_log_probs(
                poet.model, vocab, test, poet.window, config.dataset.pad_start, blocks=poet.blocks(len(test))
            )
        ),
        "trigram_kn": trigram_perplexity(kn, vocab, test),
        "targets": int(mask.sum()),
        "oov_targets": unknown,
        "han_tokens": int(len(vocab.han_ids())),
    }

    train_lines = {line for poem in train for line in split_lines(poem)}
    first_lines = [split_lines(poem)[0] for poem in test]
    generation, samples = {}, {}
    for name, options in modes.items():
        if "seed" in options:
            raise ValueError(f"mode {name!r} sets a seed: give run_evaluation's seed instead")
        poems = generate_batch(poet, first_lines, options, seed)
        kept = [(poem, real) for poem, real in zip(poems, test) if poem is not None]
        metrics = generation_metrics([p for p, _ in kept], [r for _, r in kept], train_lines, line_length)
        metrics["failed"] = len(poems) - len(kept)
        generation[name], samples[name] = metrics, [p for p, _ in kept[:3]]
    generation["real"] = generation_metrics(test, None, train_lines, line_length)
    return {
        "perplexity": perplexity,
        "generation": generation,
        "templates": template_metrics(poet, test, seed) if config.dataset.pad_start else None,
        "keywords": keyword_metrics(poet, test, train, seed) if config.dataset.pad_start else None,
        "conditioning": condition_metrics(
            poet, test, _titles(data_dir, len(read_poems(data_dir / "test.txt"))), train, seed
        )
        if poet.conditioned
        else None,
        "reranking": rerank_metrics(poet, test, seed),
        "test_poems": len(test),
        "modes": {name: dict(options) for name, options in modes.items()},
        "seed": seed,
        "model_dir": str(model_dir),
        "data_dir": str(data_dir),
        "samples": samples,
    }


COLUMNS = [
    ("format", "format"),
    ("rhyme_pingshui", "rhyme ps"),
    ("rhyme_xin", "rhyme xin"),
    ("tonal", "tonal"),
    ("tonal_234", "tonal 2-4"),
    ("distinct_1", "dist-1"),
    ("distinct_2", "dist-2"),
    ("copy_rate", "copy"),
    ("bleu_2", "BLEU-2"),
]


def format_table(results: dict) -> str:
    """A plain-text table (modes as rows, metrics as columns) and the perplexity lines."""
    ppl = results["perplexity"]
    lines = [
        f"test poems: {results['test_poems']}",
        f"perplexity per Han character of lines 2-4 given line 1 ({ppl['targets']} characters, "
        f"{ppl['oov_targets']} unknown left out; renormalised over {ppl['han_tokens']} Han tokens):",
        f"  LSTM        {ppl['lstm']:10.2f}",
        f"  trigram KN  {ppl['trigram_kn']:10.2f}",
        "",
    ]
    rows = [["mode", *(title for _, title in COLUMNS)]]
    for mode, metrics in results["generation"].items():
        rows.append([mode, *(_cell(metrics, key) for key, _ in COLUMNS)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for k, row in enumerate(rows):
        cells = [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells))
        if k == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(
        "rhyme: lines 2 and 4, over the poems judged (n); tonal: any standard pattern, lenient; "
        "copy: lines 2-4 found in the training corpus"
    )
    kept = results.get("templates")
    if kept:
        lines.append(
            f"templates ({kept['keep_share']:.0%} of each test poem's characters kept, rhyme on; "
            f"{kept['poems']} poems, {kept['failed']} failed): kept in place {kept['kept_in_place']:.3f}, "
            f"format {kept['format']:.3f}, rhyme {kept['rhyme_pingshui']:.3f}"
        )
    words = results.get("keywords")
    if words:
        lines.append(
            f"keywords (two drawn from each of {words['poems']} test poems, rhyme on): present "
            f"{words['keywords_present']:.3f}, format {words['format']:.3f}, rhyme {words['rhyme_pingshui']:.3f}; "
            f"log-probability per position {words['log_prob_per_position']:.3f} "
            f"(without keywords {words['log_prob_per_position_without_keywords']:.3f})"
        )
    return "\n".join(lines)


def _cell(metrics: dict, key: str) -> str:
    value = metrics.get(key)
    text = "-" if value is None else f"{value:.3f}"
    judged = metrics.get(f"{key}_judged")
    return f"{text} ({judged})" if judged is not None else text


def write_results(results: dict, path) -> None:
    """The results as JSON (UTF-8, characters as written), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(results, ensure_ascii=False, indent=2) + "\n")
