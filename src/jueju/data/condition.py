"""What a poem is written toward: its title and keywords, as the block of ids a conditioned model
reads before the poem.

A conditioned sequence model (dataset.condition) reads BLOCK ids before each poem's <pad> start
token: <pad> filler, then <title> and the title's characters, then <kw> and each keyword's
characters. A block of <pad> alone is an unconditioned poem, so one model writes both ways.
The block's targets are <pad>, which the loss ignores: the model learns to write toward a
title, never to write titles.

Training poems are conditioned on their own titles (from the chinese-poetry files) and on
keywords drawn from their own lines by `KeywordRule`, the same rule the evaluation uses.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jueju.data.corpus import MAX_TITLE, TITLES, read_titles, to_simplified
from jueju.data.dataset import PAD_ID, Vocab, Windows, read_poems
from jueju.files import atomic_path, write_atomic
from jueju.options import OptionError
from jueju.text import is_han, split_lines

TITLE, KEYWORD = "<title>", "<kw>"  # the block's markers: vocabulary tokens of a conditioned model
TOKENS = (TITLE, KEYWORD)
MAX_KEYWORDS = 4  # keywords a poem may be written toward: one a line
MAX_KEYWORD_CHARS = 2  # characters of one keyword
BLOCK = 1 + MAX_TITLE + MAX_KEYWORDS * (1 + MAX_KEYWORD_CHARS)  # ids of the block: the longest title and keywords

# How training poems are conditioned, one draw per poem: nothing (so the model still writes without a
# plan), the title, keywords, or both
MIXTURE = {"none": 0.2, "title": 0.3, "keywords": 0.25, "both": 0.25}
MIN_WORD = 20  # a two-character keyword is a pair the training lines write together this often
# function characters (虚词, pronouns, negations): they carry a line's grammar, never its subject
GRAMMAR = set("不无有自已如可为之而也其于以此谁何我吾君尔汝是非莫未犹亦欲将又还且乃则即虽若与及皆须应能得")
MIN_CHAR = 200  # a one-character keyword is a content character this common: one a user might give


def normalise_title(title, simplify: bool = True) -> str:
    """A user's title: 1-MAX_TITLE Han characters (spaces dropped); raises OptionError (field title)."""
    if not isinstance(title, str):
        raise OptionError("title", f"title must be a string of 1 to {MAX_TITLE} Han characters, e.g. '送友人'")
    text = "".join(title.split())
    if not 1 <= len(text) <= MAX_TITLE or not all(is_han(char) for char in text):
        raise OptionError("title", f"title must be 1 to {MAX_TITLE} Han characters, e.g. '送友人', got {title!r}")
    return to_simplified(text) if simplify else text


def block_ids(vocab, title: str = "", keywords: Sequence[str] = ()) -> np.ndarray:
    """The BLOCK ids a conditioned model reads before a poem written toward `title` and `keywords`."""
    ids: list[int] = []
    if title:
        ids += [vocab.ids[TITLE], *vocab.encode(title[:MAX_TITLE])]
    for word in list(keywords)[:MAX_KEYWORDS]:
        ids += [vocab.ids[KEYWORD], *vocab.encode(word[:MAX_KEYWORD_CHARS])]
    return np.array([PAD_ID] * (BLOCK - len(ids)) + ids, dtype=np.int32)


def is_conditioned(vocab) -> bool:
    """True for the vocabulary of a conditioned model (it holds the block's markers)."""
    return all(token in vocab for token in TOKENS)


class KeywordRule:
    """Keywords drawn from a poem's own lines, one per line: the line's likeliest word.

    A classical line reads in beats of two characters with a last one or two (五言 2+3, 七言 2+2+3),
    so a line's candidate words are the pairs that start a beat (and the last pair). A word is such
    a pair the training lines write together at least MIN_WORD times, without a function
    character (GRAMMAR); the one of highest pointwise mutual information wins (明月, 故乡, 芙蓉).
    A line with no such pair gives its rarest content character seen MIN_CHAR times.
    """

    def __init__(self, poems: Sequence[str]):
        lines = [line for poem in poems for line in split_lines(poem)]
        self.chars = Counter(char for line in lines for char in line)
        self.pairs = Counter(line[i : i + 2] for line in lines for i in range(len(line) - 1))
        self.total = sum(self.chars.values())

    def word(self, line: str) -> str | None:
        """The keyword of one line (punctuation ignored); None for a line of rare or function characters."""
        text = "".join(char for char in line if is_han(char))
        starts = {*range(0, len(text) - 2, 2), len(text) - 2}  # the beats' pairs, and the last pair
        pairs = [text[i : i + 2] for i in sorted(starts) if i >= 0]
        pairs = [
            pair for pair in pairs if self.pairs[pair] >= MIN_WORD and pair[0] != pair[1] and not set(pair) & GRAMMAR
        ]
        if pairs:
            return max(pairs, key=self._pmi)
        singles = [char for char in text if self.chars[char] >= MIN_CHAR and char not in GRAMMAR]
        return min(singles, key=lambda char: (self.chars[char], char)) if singles else None

    def keywords(self, poem: str, count: int, rng: np.random.Generator) -> list[str]:
        """The words of `count` of the poem's lines, drawn at random, in line order and distinct."""
        lines = split_lines(poem)
        chosen = sorted(rng.choice(len(lines), size=min(count, len(lines)), replace=False))
        words = [self.word(lines[line]) for line in chosen]
        return list(dict.fromkeys(word for word in words if word))

    def _pmi(self, pair: str) -> float:
        return math.log(self.pairs[pair] * self.total / (self.chars[pair[0]] * self.chars[pair[1]]))


def training_blocks(vocab, poems: Sequence[str], titles: Sequence[str], rule: KeywordRule, seed: int) -> np.ndarray:
    """One block per training poem, drawn from MIXTURE (a title-less poem falls back to keywords)."""
    rng = np.random.default_rng(seed)
    kinds = rng.choice(list(MIXTURE), size=len(poems), p=list(MIXTURE.values()))
    blocks = np.empty((len(poems), BLOCK), dtype=np.int32)
    for row, (poem, title, kind) in enumerate(zip(poems, titles, kinds)):
        if kind == "title" and not title:
            kind = "keywords"
        words = rule.keywords(poem, int(rng.integers(1, MAX_KEYWORDS + 1)), rng) if kind in ("keywords", "both") else []
        blocks[row] = block_ids(vocab, title if kind in ("title", "both") else "", words)
    return blocks


BLOCKS = "train_blocks.npy"  # the training poems' blocks, row for row with train.txt
SPLITS = ("train", "valid", "test")


def titles_file(split: str) -> str:
    """The titles of a split's poems, line for line with {split}.txt."""
    return f"{split}_titles.txt"


def prepare_condition(data_dir: str | Path, seed: int) -> dict:
    """Write the conditioning of the data set in `data_dir` (prepared with dataset.condition): each
    split's titles and the training poems' blocks. Returns counts for the log."""
    data_dir = Path(data_dir)
    vocab = Vocab.load(data_dir / "vocab.json")
    if not is_conditioned(vocab):
        raise ValueError(f"the vocabulary in {data_dir} has no {TITLE}/{KEYWORD}: prepare it with dataset.condition")
    known = read_titles(data_dir / TITLES)
    titles = {}
    for split in SPLITS:
        titles[split] = [known.get(poem, "") for poem in read_poems(data_dir / f"{split}.txt")]
        write_atomic(data_dir / titles_file(split), "".join(title + "\n" for title in titles[split]))
    train = read_poems(data_dir / "train.txt")
    blocks = training_blocks(vocab, train, titles["train"], KeywordRule(train), seed)
    with atomic_path(data_dir / BLOCKS) as tmp, open(tmp, "xb") as handle:
        np.save(handle, blocks)
    return {split: sum(map(bool, found)) for split, found in titles.items()} | {"blocks": len(blocks)}


def read_titles_of(data_dir: str | Path, split: str) -> list[str]:
    """A split's titles, line for line with its poems ("" for an untitled poem)."""
    return Path(data_dir, titles_file(split)).read_text("utf-8").split("\n")[:-1]


def with_blocks(samples: Windows, blocks: np.ndarray | None = None) -> Windows:
    """Sequence samples read after their conditioning blocks (None: empty blocks, unconditioned);
    the blocks' targets are <pad>, which the loss ignores."""
    rows = len(samples.x)
    if blocks is None:
        blocks = np.full((rows, BLOCK), PAD_ID, dtype=np.int32)
    if len(blocks) != rows:
        raise ValueError(f"{len(blocks)} conditioning blocks for {rows} poems: prepare the data set again")
    ignored = np.full((rows, BLOCK), PAD_ID, dtype=samples.y.dtype)
    return Windows(np.concatenate([blocks, samples.x], axis=1), np.concatenate([ignored, samples.y], axis=1))
