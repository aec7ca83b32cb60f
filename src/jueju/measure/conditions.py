"""What the conditions keep: keywords, templates, titles, and what reranking chooses.

Each writes poems from test poems (their keywords, a template of their characters, their
titles, their first lines) with a Poet and measures what was asked for: keywords kept,
kept characters in place, title fidelity (is a poem ranked first for its own title among
rivals?), and how often reranking puts the real poem above ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jueju.data import prosody
from jueju.data.condition import KeywordRule, block_ids, read_titles_of
from jueju.measure.metrics import (
    GENERATE_BATCH,
    form_pattern,
    generate_batch,
)
from jueju.measure.perplexity import (
    lstm_log_probs,
    perplexity_of,
)
from jueju.text import is_han, split_lines
from jueju.write.preprocess import BLANKS, normalise_template, template_of

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
# Conditioning (a conditioned model, jueju.data.condition)

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
    FIDELITY_RIVALS - 1 others: how often its own comes first (chance: 1 / FIDELITY_RIVALS). A rival that
    scores the same as the own title shares the place with it, as a coin toss would: a model blind to
    titles ranks at chance, not first."""
    rng = np.random.default_rng(seed)
    blank = poet.preprocessor.template({})
    written = []
    for start in range(0, len(titles), GENERATE_BATCH):
        chunk = titles[start : start + GENERATE_BATCH]
        blocks = np.stack([block_ids(poet.vocab, title) for title in chunk])
        written += poet.batch(templates=[blank] * len(chunk), blocks=blocks, seed=seed + start)
    ranks, firsts, among = [], [], min(FIDELITY_RIVALS, len(titles))  # a small data set has fewer titles to rank
    for i, poem in enumerate(written):
        rivals = rng.choice([j for j in range(len(titles)) if j != i], among - 1, replace=False)
        candidates = [titles[i], *(titles[j] for j in rivals)]
        scores = poet.score([poem] * len(candidates), np.stack([block_ids(poet.vocab, t) for t in candidates]))
        above, tied = int((scores[1:] > scores[0]).sum()), int((scores[1:] == scores[0]).sum())
        ranks.append(above + tied / 2)
        firsts.append(0.0 if above else 1 / (tied + 1))
    return {
        "titles": len(titles),
        "rivals": among,
        "top1": float(np.mean(firsts)),
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
    from jueju.rank.scores import with_information  # here: the rest of this module runs without Keras

    if poet.ranker.backward is None:
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
        information.append(poet.ranker.first_line_information(chunk))
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
