"""Keyword plans: where in a poem each keyword stands, drawn so that the form can still hold.

A plan gives each keyword a line of its own and a place in it (a two-character keyword never
crosses a line's end), as the characters it fixes by position: what a template fixes. Plans
are drawn at random among those that keep rhyme and tones possible: a keyword at a rhyme
position must be level-tone and rhyme with whatever else stands there, and with `tonal` some
standard pattern must fit every fixed character. The caller writes a poem for each of several
plans and keeps the one the reranking score prefers (jueju.write.keywords).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jueju.data import prosody
from jueju.data.condition import MAX_KEYWORD_CHARS, MAX_KEYWORDS
from jueju.data.corpus import to_simplified
from jueju.options import OptionError
from jueju.text import is_han
from jueju.write.constraints import Layout, tonal_misfits

TRIES = 200  # random drafts per plan wanted, before a keyword is declared unplaceable


def normalise_keywords(keywords, simplify: bool = True) -> list[str]:
    """1-4 distinct keywords of 1-2 Han characters each; raises OptionError (field keywords)."""
    if isinstance(keywords, str):  # "秋,月,故乡" or "秋 月 故乡", as typed
        keywords = [word for word in keywords.replace("，", ",").replace(",", " ").split()]
    if not isinstance(keywords, Sequence) or not keywords or not all(isinstance(word, str) for word in keywords):
        raise OptionError("keywords", f"keywords must be a list of 1 to {MAX_KEYWORDS} words, e.g. ['秋', '月']")
    words = ["".join(word.split()) for word in keywords]
    for word in words:
        if not 1 <= len(word) <= MAX_KEYWORD_CHARS or not all(is_han(char) for char in word):
            raise OptionError("keywords", f"each keyword must be 1 or 2 Han characters, got {word!r}")
    if len(words) > MAX_KEYWORDS:
        raise OptionError("keywords", f"at most {MAX_KEYWORDS} keywords (one a line), got {len(words)}")
    words = [to_simplified(word) if simplify else word for word in words]
    if len(set(words)) != len(words):
        raise OptionError("keywords", f"keywords must differ from each other, got {words}")
    return words


def plans(
    keywords: list[str],
    layout: Layout,
    count: int,
    rng: np.random.Generator,
    given: dict[int, str] | None = None,
    rhyme: str = "none",
    rhyme_first_line: bool = False,
    tonal: bool = False,
) -> list[dict[int, str]]:
    """`count` plans: each the `given` characters (a first line) with every keyword placed in a free
    line. Raises OptionError naming the keyword that no plan can place."""
    given = dict(given or {})
    taken = {layout.line_and_column(position)[0] for position in given}
    free = [line for line in range(4) if line not in taken]
    missing = [word for word in keywords if not _written_in(word, given, layout)]
    if len(missing) > len(free):
        raise OptionError(
            "keywords", f"{len(missing)} keywords need a line each, but only {len(free)} lines are left to write"
        )
    found = []
    for _ in range(TRIES * count):
        draft = dict(given)
        for word, line in zip(missing, rng.permutation(free)):
            column = int(rng.integers(layout.line_length - len(word) + 1))
            draft.update({layout.start(int(line)) + column + i: char for i, char in enumerate(word)})
        if fits(draft, layout, rhyme, rhyme_first_line, tonal):
            found.append(draft)
            if len(found) == count:
                return found
    if not found:
        raise OptionError("keywords", _why_not(missing, layout, free, given, rhyme, rhyme_first_line, tonal))
    return [found[i % len(found)] for i in range(count)]  # the few plans that fit, again


def fits(draft: dict[int, str], layout: Layout, rhyme: str, rhyme_first_line: bool, tonal: bool) -> bool:
    """Whether rhyme and (with `tonal`) a standard tonal pattern can still hold around these characters."""
    if rhyme != "none":
        lines = (0, 1, 3) if rhyme_first_line else (1, 3)
        ends = [draft[layout.end(line)] for line in lines if layout.end(line) in draft]
        if any(prosody.PING not in prosody.tones(char, rhyme) for char in ends):
            return False
        if ends and not frozenset.intersection(*(prosody.rhyme_groups(char, rhyme) for char in ends)):
            return False
    return not tonal or tonal_misfits(draft, layout, rhyme_first_line, "xin" if rhyme == "xin" else "pingshui") == 0


def _written_in(word: str, given: dict[int, str], layout: Layout) -> bool:
    """Whether a given line (the first line) already holds the keyword."""
    lines = {}
    for position, char in sorted(given.items()):
        line, _ = layout.line_and_column(position)
        lines[line] = lines.get(line, "") + char
    return any(word in text for text in lines.values())


def _why_not(missing, layout, free, given, rhyme, rhyme_first_line, tonal) -> str:
    """The message for a keyword no plan could place: which one, and what stood in its way."""
    for word in missing:
        alone = [
            {**given, **{layout.start(line) + column + i: char for i, char in enumerate(word)}}
            for line in free
            for column in range(layout.line_length - len(word) + 1)
        ]
        if not any(fits(draft, layout, rhyme, rhyme_first_line, tonal) for draft in alone):
            constraint = "the tonal pattern" if tonal else "the rhyme"
            return (
                f"keyword {word!r} cannot be placed: no place in a free line keeps {constraint} possible "
                f"(its tones: {'/'.join(sorted(prosody.tones(word[0]))) or 'unknown'}); turn tonal off or choose "
                "another keyword"
            )
    return f"keywords {'、'.join(missing)} cannot all be placed together with the rhyme and tones asked for"
