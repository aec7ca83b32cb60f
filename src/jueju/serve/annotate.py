"""A poem annotated for display: each character's tone (平仄) and the rhyme characters' groups.

This module owns one thing: turning a generated poem into lines and characters labelled from
the prosody tables (`jueju.data.prosody` holds the tables, lookups and checks; this module only
reads them). Tone labels are 平, 仄, `TONE_BOTH` (a character read both ways) and
`TONE_UNKNOWN` (not in the table); unknown characters are never guessed.
"""

from __future__ import annotations

import functools

from jueju.data import prosody
from jueju.text import marked_lines

__all__ = ["TONE_BOTH", "TONE_UNKNOWN", "annotate", "rhyme_groups_of", "tone_of"]

TONE_BOTH, TONE_UNKNOWN = "平仄", "unknown"


@functools.lru_cache(maxsize=1 << 16)
def tone_of(char: str, scheme: str) -> str:
    """平, 仄, 平仄 (read both ways: 多音字 or a character listed under both tones) or unknown."""
    found = prosody.tones(char, scheme)
    if found == {prosody.PING, prosody.ZE}:
        return TONE_BOTH
    return next(iter(found)) if found else TONE_UNKNOWN


@functools.lru_cache(maxsize=1 << 16)
def rhyme_groups_of(char: str, scheme: str) -> frozenset[str]:
    """`prosody.rhyme_groups`, cached per (character, scheme name)."""
    return prosody.rhyme_groups(char, scheme)


def annotate(poem: str, scheme: str = "pingshui", rhyme_first_line: bool = False) -> dict:
    """The poem split into lines and characters, with tones, rhyme positions and rhyme groups."""
    lines = marked_lines(poem)
    ends = [text[-1] for text, _ in lines]
    groups = [rhyme_groups_of(char, scheme) for char in ends]
    rhyming = {1, 3} if len(lines) == 4 else set(range(1, len(lines), 2))
    if len(lines) == 4:
        shared = groups[1] & groups[3]
        target = shared or (groups[1] | groups[3])
        if rhyme_first_line or groups[0] & target:
            rhyming.add(0)
        common = frozenset.intersection(*(groups[i] for i in rhyming)) if rhyming else frozenset()
        rhyme_group = sorted(common or shared)
    else:
        rhyme_group = []
    annotated = []
    for index, (text, mark) in enumerate(lines):
        chars = []
        for column, char in enumerate(text):
            rhymes = index in rhyming and column == len(text) - 1
            chars.append(
                {
                    "char": char,
                    "tone": tone_of(char, scheme),
                    "rhyme": rhymes,
                    "rhyme_groups": sorted(groups[index]) if rhymes else [],
                }
            )
        annotated.append({"text": text, "punctuation": mark, "chars": chars})
    return {"text": poem, "lines": annotated, "rhyme_group": rhyme_group}
