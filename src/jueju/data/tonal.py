"""The four standard tonal patterns (平仄) of a quatrain, and vocabulary masks for decoding.

This module owns `TONAL_PATTERNS` (per line length, the four lines' tones of each standard
pattern, built by 粘对 from the line types), `FREE_POSITIONS` (一三五不论: where either tone
is allowed), `tonal_compliance` (how well a poem follows its best pattern), and the masks that
constrained decoding applies (`allowed_mask`, `reading_matrix`: per vocabulary id, whether it
can be read with a tone or rhyme group; precomputed and cached per vocabulary). The tone and
rhyme tables they read are jueju.data.prosody's.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from jueju.data.prosody import PING, TONES, ZE, Scheme, get_scheme, poem_lines

__all__ = ["FREE_POSITIONS", "TONAL_PATTERNS", "allowed_mask", "reading_matrix", "tonal_compliance"]


def _pattern(line1: str, line3: str) -> tuple[str, str, str, str]:
    """A quatrain's pattern from its line 1 and line 3 (lines 2 and 4 follow by 粘对)."""
    return (line1, _LINE_AFTER[line1], line3, _LINE_AFTER[line3])


# The four 5-character line types and the line that must follow each (对).
# (A and C end in 仄, B and D in 平; a first line that rhymes swaps A -> D, C -> B.)
_A, _B, _C, _D = "仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平"
_LINE_AFTER = {_A: _B, _B: _D, _C: _D, _D: _B}
_FIVE = {
    "仄起首句不入韵": _pattern(_A, _C),
    "仄起首句入韵": _pattern(_D, _C),
    "平起首句不入韵": _pattern(_C, _A),
    "平起首句入韵": _pattern(_B, _A),
}
_OPPOSITE = {PING: ZE, ZE: PING}


def _seven(line: str) -> str:
    """A 7-character line: the 5-character one prefixed by two syllables of the opposite tone."""
    return _OPPOSITE[line[0]] * 2 + line


_SEVEN_OF = {"仄起": "平起", "平起": "仄起"}  # a 7-char form starts with the opposite tone

# line length -> pattern name -> the 4 lines' tones, e.g. TONAL_PATTERNS[5]["仄起首句不入韵"]
# == ("仄仄平平仄", "平平仄仄平", "平平平仄仄", "仄仄仄平平").
TONAL_PATTERNS: dict[int, dict[str, tuple[str, str, str, str]]] = {
    5: dict(_FIVE),
    7: {
        _SEVEN_OF[name[:2]] + name[2:]: tuple(_seven(line) for line in lines)  # type: ignore[misc]
        for name, lines in _FIVE.items()
    },
}
# 一三五不论: positions (0-based) whose tone is free when `lenient`.
FREE_POSITIONS = {5: frozenset({0, 2}), 7: frozenset({0, 2, 4})}


def _patterns_for(length: int, pattern: str | None) -> list[tuple[str, str, str, str]]:
    if length not in TONAL_PATTERNS:
        raise ValueError(f"tonal patterns exist for lines of {sorted(TONAL_PATTERNS)} characters, not {length}")
    named = TONAL_PATTERNS[length]
    if pattern is None:
        return list(named.values())
    if pattern not in named:
        raise ValueError(f"unknown tonal pattern {pattern!r}; valid: {', '.join(named)}")
    return [named[pattern]]


def tonal_compliance(
    poem: str,
    pattern: str | None = None,
    scheme: str | Scheme = "pingshui",
    lenient: bool = True,
    lines_checked: Iterable[int] = (0, 1, 2, 3),
) -> bool | None:
    """Whether the poem's tones fit `pattern` (a name in TONAL_PATTERNS[line length]),
    or any standard pattern when `pattern` is None.

    `lenient` applies 一三五不论 (`FREE_POSITIONS`). A character with
    both tones fits either. None when a checked position's character is unknown.
    `lines_checked` (0-based) limits the check, e.g. (1, 2, 3) for the lines a
    generator wrote after a given first line.
    """
    s = get_scheme(scheme)
    lines = poem_lines(poem)
    candidates = _patterns_for(len(lines[0]), pattern)
    free = FREE_POSITIONS[len(lines[0])] if lenient else frozenset()
    checked = []  # (line, position, tones)
    wanted = set(lines_checked)
    for li, line in enumerate(lines):
        if li not in wanted:
            continue
        for pos, ch in enumerate(line):
            if pos in free:
                continue
            t = s.tones(ch)
            if not t:
                return None
            checked.append((li, pos, t))
    return any(all(p[li][pos] in t for li, pos, t in checked) for p in candidates)


# --------------------------------------------------------------------------
# Vocabulary masks.
# --------------------------------------------------------------------------
class _VocabIndex:
    """Per-vocabulary precomputation: which tokens have which (group, tone) readings."""

    def __init__(self, vocab: tuple[str, ...], scheme: Scheme) -> None:
        self.scheme = scheme
        self.size = n = len(vocab)
        by_reading: dict[tuple[str, str], list[int]] = defaultdict(list)
        by_tone: dict[str, list[int]] = defaultdict(list)
        self.known = np.zeros(n, dtype=bool)
        for i, token in enumerate(vocab):
            if not isinstance(token, str) or len(token) != 1:
                continue
            for reading in scheme.readings(token):
                by_reading[reading].append(i)
            token_tones = scheme.tones(token)
            for t in token_tones:
                by_tone[t].append(i)
            self.known[i] = bool(token_tones)
        self.by_reading = {r: np.asarray(ix, dtype=np.intp) for r, ix in by_reading.items()}
        self.tone_masks = {t: self._mask(by_tone.get(t, [])) for t in TONES}
        self._masks: dict[tuple[frozenset[str] | None, str | None], np.ndarray] = {}

    def _mask(self, indices: Iterable[int]) -> np.ndarray:
        mask = np.zeros(self.size, dtype=bool)
        mask[np.asarray(list(indices), dtype=np.intp)] = True
        return mask

    def mask(self, groups: frozenset[str] | None, tone: str | None) -> np.ndarray:
        key = (groups, tone)
        cached = self._masks.get(key)
        if cached is None:
            if groups is None:
                cached = self.known if tone is None else self.tone_masks[tone]
            else:
                cached = np.zeros(self.size, dtype=bool)
                for (g, t), ix in self.by_reading.items():
                    if g in groups and (tone is None or t == tone):
                        cached[ix] = True
            self._masks[key] = cached
        return cached.copy()


@lru_cache(maxsize=16)
def _vocab_index(vocab: tuple[str, ...], scheme: Scheme) -> _VocabIndex:
    return _VocabIndex(vocab, scheme)


def allowed_mask(
    vocab_tokens: Sequence[str],
    *,
    rhyme_with: str | None = None,
    tone: str | None = None,
    scheme: str | Scheme = "pingshui",
) -> np.ndarray:
    """Boolean mask over `vocab_tokens`: True for single characters known to the
    scheme that rhyme with `rhyme_with` (when given) and can take `tone` (when given).

    With both, a token qualifies through a reading in one of `rhyme_with`'s
    groups with that tone (平水韵: a group of that tone). Unknown tokens (and
    every token, when `rhyme_with` is unknown) are False. Precomputed per
    vocabulary and scheme, so repeated calls are cheap; the result is a fresh array.
    """
    if tone is not None and tone not in TONES:
        raise ValueError(f"unknown tone {tone!r}; valid: {', '.join(TONES)} or None")
    s = get_scheme(scheme)
    index = _vocab_index(tuple(vocab_tokens), s)
    groups = None
    if rhyme_with is not None:  # with a tone, only the groups where `rhyme_with` itself has that tone
        groups = frozenset(g for g, t in s.readings(rhyme_with) if tone is None or t == tone)
    return index.mask(groups, tone)


def reading_matrix(vocab_tokens: Sequence[str], tone: str, scheme: str | Scheme = "pingshui") -> np.ndarray:
    """(vocab, groups) booleans: token i has a reading of `tone` in group j (the scheme's groups of that tone).

    allowed_mask(rhyme_with=c, tone=tone)[i] is `(matrix[c] & matrix[i]).any()`: rhyme masks as one
    matrix product, for decoding on the device (jueju.write.device_loop).
    """
    if tone not in TONES:
        raise ValueError(f"unknown tone {tone!r}; valid: {', '.join(TONES)}")
    index = _vocab_index(tuple(vocab_tokens), get_scheme(scheme))
    groups = sorted({g for g, t in index.by_reading if t == tone})
    matrix = np.zeros((index.size, len(groups)), dtype=bool)
    for j, group in enumerate(groups):
        matrix[index.by_reading[(group, tone)], j] = True
    return matrix


# --------------------------------------------------------------------------
# Corpus statistics.
# --------------------------------------------------------------------------
