"""Decoding constraints: which vocabulary ids may stand at a position, as boolean masks.

Each constraint looks at the tokens written so far and the position to fill, and
returns a (rows, vocab) mask, or None where it has nothing to say. The decoder ANDs
them, so a poem can only come out in the right form: Han characters inside lines,
rhyme at the rhyme positions, the tones of a standard pattern, no line copied from the
training corpus, no character twice. Where they cannot all hold (a small vocabulary, a
rare rhyme group), the later ones give way, so a poem is always written.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from jueju.data.dataset import PAD_ID, UNK_ID
from jueju.data.prosody import tones
from jueju.data.tonal import FREE_POSITIONS, TONAL_PATTERNS, allowed_mask
from jueju.files import atomic_path


@dataclass(frozen=True)
class Layout:
    """Where things stand in a poem of 4 lines of `line_length` characters, each followed by its mark."""

    line_length: int

    @property
    def length(self) -> int:
        return 4 * (self.line_length + 1)

    def start(self, line: int) -> int:
        return line * (self.line_length + 1)

    def end(self, line: int) -> int:
        """Position of the last character of `line` (0-based lines)."""
        return self.start(line) + self.line_length - 1

    def line_and_column(self, position: int) -> tuple[int, int]:
        return divmod(position, self.line_length + 1)


class Constraint:
    # False: always holds. True: gives way, for a row at a position, where with the constraints
    # before it no id would be left
    yields = True

    def allowed(self, tokens: np.ndarray, position: int) -> np.ndarray | None:
        raise NotImplementedError


class Characters(Constraint):
    """Only these ids (e.g. the vocabulary's Han characters) anywhere."""

    yields = False

    def __init__(self, mask: np.ndarray):
        self.mask = mask

    def allowed(self, tokens, position):
        return np.broadcast_to(self.mask, (len(tokens), len(self.mask)))


class NoRepeat(Constraint):
    """No id that already stands elsewhere in the row, written earlier or kept later (except those in
    `exempt`, e.g. <unk>; places not yet written hold <pad>, which no constraint allows anyway)."""

    def __init__(self, vocab_size: int, exempt: tuple[int, ...] = ()):
        self.vocab_size, self.exempt = vocab_size, list(exempt)

    def allowed(self, tokens, position):
        mask = np.ones((len(tokens), self.vocab_size), dtype=bool)
        np.put_along_axis(mask, np.delete(tokens, position, axis=1), False, axis=-1)
        mask[:, self.exempt] = True
        return mask


class Rhyme(Constraint):
    """The last characters of lines 2 and 4 (and 1 with `first_line`) share a rhyme group and are level (平).

    The first rhyme position of a poem may take any level character the table knows;
    later ones must rhyme with every earlier one. Characters the table lacks are never chosen there.
    """

    def __init__(self, tokens: list[str], layout: Layout, scheme: str, first_line: bool = False):
        self.tokens, self.scheme = tokens, scheme
        self.positions = [layout.end(line) for line in ((0, 1, 3) if first_line else (1, 3))]
        self._rhyming: dict[int, np.ndarray] = {}  # id of the first rhyme character -> its mask

    @cached_property
    def level(self) -> np.ndarray:
        return allowed_mask(self.tokens, tone="平", scheme=self.scheme)

    def rhyming(self, char_id: int) -> np.ndarray:
        if char_id not in self._rhyming:
            self._rhyming[char_id] = allowed_mask(
                self.tokens, rhyme_with=self.tokens[char_id], tone="平", scheme=self.scheme
            )
        return self._rhyming[char_id]

    def allowed(self, tokens, position):
        if position not in self.positions:
            return None
        others = [p for p in self.positions if p != position]
        # rhyme with every other rhyme character already there: written earlier, or kept later (a template's
        # line 4 ending fixes line 2's group); 车 may rhyme 花 (麻) and 居 (鱼), but 花 and 居 do not
        # (<pad>: not written yet; <unk>: a kept character the vocabulary lacks, which nothing can rhyme with here)
        masks = [[self.rhyming(int(i)) for i in row if i not in (PAD_ID, UNK_ID)] for row in tokens[:, others]]
        return np.stack([np.logical_and.reduce(row) if row else self.level for row in masks])


class Tones(Constraint):
    """Each row follows its own tonal pattern ('平'/'仄' per character, '?' where free)."""

    def __init__(self, tokens: list[str], layout: Layout, patterns: list[str], scheme: str = "pingshui"):
        self.layout, self.patterns = layout, patterns  # one tonal_template per row
        self.masks = {tone: allowed_mask(tokens, tone=tone, scheme=scheme) for tone in ("平", "仄")}

    def allowed(self, tokens, position):
        line, column = self.layout.line_and_column(position)
        if column >= self.layout.line_length:
            return None
        wanted = [pattern[line * self.layout.line_length + column] for pattern in self.patterns]
        if all(tone == "?" for tone in wanted):
            return None
        full = np.ones(len(self.masks["平"]), dtype=bool)
        # beam search asks for `width` consecutive rows per poem (Beam repeats each row in place)
        copies = len(tokens) // len(self.patterns)
        return np.repeat(np.stack([self.masks.get(tone, full) for tone in wanted]), copies, axis=0)


class LineIndex:
    """The training corpus's lines as 32-bit hashes of their ids: what no_copy checks against.

    Four bytes a line keeps it small enough to ship beside the model even for the
    stanza corpus (a million lines); a false match (odds about lines / 2**32) only
    forbids one more character at a line's end. Saved as the compressed gaps between the
    sorted hashes (train_lines.npz, 2.7 MB for 1.2 M lines, against 4.8 MB raw).
    """

    FILE = "train_lines.npz"  # beside the model

    MULTIPLIER = np.uint64(1_000_003)
    MASK = np.uint64(0xFFFFFFFF)

    def __init__(self, hashes: np.ndarray):
        hashes = np.asarray(hashes, dtype=np.uint32)
        # a saved index is sorted and distinct already: checked in one pass, not sorted again (seconds at load)
        self.hashes = hashes if (hashes[1:] > hashes[:-1]).all() else np.unique(hashes)

    @classmethod
    def from_lines(cls, lines: Iterable[str], vocab) -> LineIndex:
        ids = [vocab.encode(line) for line in lines]
        rows = np.array([row for row in ids if len(row) and UNK_ID not in row], dtype=np.int64)
        return cls(cls.hash(rows) if len(rows) else np.zeros(0, np.uint32))

    @classmethod
    def hash(cls, ids: np.ndarray, start: np.ndarray | int = 0) -> np.ndarray:
        """Polynomial hash of each row of ids, continuing from `start` (a prefix's hash)."""
        value = np.asarray(start, dtype=np.uint64) * np.ones(len(ids), dtype=np.uint64)
        for column in np.asarray(ids, dtype=np.uint64).T:
            value = (value * cls.MULTIPLIER + column) & cls.MASK
        return value

    def contains(self, values: np.ndarray) -> np.ndarray:
        where = np.searchsorted(self.hashes, values).clip(max=max(len(self.hashes) - 1, 0))
        return self.hashes[where] == values if len(self.hashes) else np.zeros(values.shape, dtype=bool)

    def endings(self, prefixes: np.ndarray, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
        """(rows, ids): the ids < vocab_size that complete the line whose hash is prefixes[row] to one here.

        The same as contains() on every (prefix, id) pair, in two binary searches a row: the
        hashes of prefix + id, id < vocab_size, are the interval [prefix * MULTIPLIER, ... + vocab_size)
        modulo 2**32, so only the (few) stored hashes inside it are candidates.
        """
        base = (np.asarray(prefixes, dtype=np.uint64) * self.MULTIPLIER & self.MASK).astype(np.int64)
        wide, wrap = self._wide, 1 << 32
        rows, ids = [], []
        for lo, hi, shift in ((base, base + vocab_size, 0), (base - wrap, base + vocab_size - wrap, wrap)):
            first, last = np.searchsorted(wide, lo), np.searchsorted(wide, hi)  # the wrapped part: below 2**32
            counts = last - first
            row = np.repeat(np.arange(len(base)), counts)
            where = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts) + np.repeat(first, counts)
            rows.append(row)
            ids.append(wide[where] + shift - base[row])
        return np.concatenate(rows), np.concatenate(ids)

    @cached_property
    def _wide(self) -> np.ndarray:
        return self.hashes.astype(np.int64)  # searched with int64 bounds: no conversion of the index per call

    def save(self, path) -> None:
        with atomic_path(path) as tmp, open(tmp, "xb") as handle:  # a file: numpy adds no .npz to it
            np.savez_compressed(handle, gaps=np.diff(self.hashes, prepend=np.uint32(0)))

    @classmethod
    def load(cls, path) -> LineIndex:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):  # train_lines.npy (jueju before 2026-12-02): the hashes themselves
            return cls(loaded)
        with loaded:
            return cls(np.cumsum(loaded["gaps"], dtype=np.uint32))


class NoCopy(Constraint):
    """No line (after the first) may be a line of the training corpus, checked at each line's last character."""

    def __init__(self, index: LineIndex, layout: Layout, vocab_size: int):
        self.index, self.layout = index, layout
        self.ends = {layout.end(line) for line in (1, 2, 3)}
        self.candidates = np.arange(vocab_size, dtype=np.uint64)

    def allowed(self, tokens, position):
        if position not in self.ends:
            return None
        prefix = LineIndex.hash(tokens[:, position - self.layout.line_length + 1 : position])
        mask = np.ones((len(tokens), len(self.candidates)), dtype=bool)
        mask[self.index.endings(prefix, len(self.candidates))] = False
        return mask


def combine(constraints: list[Constraint]):
    """One `allowed(tokens, position)` function: the AND of the constraints' masks, most important first.

    A constraint that `yields` is left out for a row, at a position, where with those before
    it no id would be left: no_repeat gives way before a rhyme does, not the other way round.
    """

    def allowed(tokens: np.ndarray, position: int) -> np.ndarray:
        mask = None
        for constraint in constraints:
            part = constraint.allowed(tokens, position)
            if part is None:
                continue
            earlier = np.ones(part.shape, dtype=bool) if mask is None else mask
            mask = earlier & part
            if constraint.yields:
                stuck = ~mask.any(axis=-1)
                mask[stuck] = earlier[stuck]
        return mask

    return allowed


def tonal_template(lines: tuple[str, ...], line_length: int, lenient: bool = True) -> str:
    """A pattern's 4 lines as one string of 平/仄 per character, '?' where the tone is free (一三五不论)."""
    free = FREE_POSITIONS[line_length] if lenient else ()
    return "".join("?" if column in free else tone for line in lines for column, tone in enumerate(line))


def choose_patterns(
    givens: list[dict[int, str]],
    layout: Layout,
    rng: np.random.Generator,
    rhyme_first_line: bool = False,
    scheme: str = "pingshui",
) -> list[str]:
    """A tonal template per poem: one its given characters (a first line, a template's kept ones) fit
    best, drawn at random among the best."""
    templates = standard_templates(layout, rhyme_first_line)
    chosen = []
    for given in givens:
        misfits = [_misfits(t, given, layout, scheme) for t in templates]
        fitting = [t for t, count in zip(templates, misfits) if count == min(misfits)]
        chosen.append(fitting[rng.integers(len(fitting))])
    return chosen


def standard_templates(layout: Layout, rhyme_first_line: bool = False) -> list[str]:
    """The form's standard tonal patterns as templates (with rhyme_first_line, those whose line 1 ends level)."""
    n = layout.line_length
    templates = [tonal_template(lines, n) for lines in TONAL_PATTERNS[n].values()]
    if rhyme_first_line:  # line 1 then ends in a level tone, like lines 2 and 4
        templates = [t for t in templates if t[n - 1] == "平"]
    return templates


def tonal_misfits(
    given: dict[int, str], layout: Layout, rhyme_first_line: bool = False, scheme: str = "pingshui"
) -> int:
    """The fewest given characters that a standard tonal pattern rules out (0: some pattern fits them all)."""
    return min(_misfits(t, given, layout, scheme) for t in standard_templates(layout, rhyme_first_line))


def _misfits(template: str, given: dict[int, str], layout: Layout, scheme: str) -> int:
    """Given characters whose known tones the template rules out at their places."""
    count = 0
    for position, char in given.items():
        line, column = layout.line_and_column(position)
        tone, have = template[line * layout.line_length + column], tones(char, scheme)
        count += tone != "?" and bool(have) and tone not in have
    return count
