"""Han characters and poem lines: the character class and the line splitting every module shares."""

from __future__ import annotations

import re

__all__ = ["HAN", "HAN_CLASS", "HAN_RANGES", "LINE_MARKS", "PUNCTUATION", "is_han", "marked_lines", "split_lines"]

# Han ideographs, as the body of a regex character class: CJK Unified Ideographs, Extension A,
# the compatibility ideographs, and U+20000-U+3134F (Extensions B-G and I, the compatibility supplement).
HAN_RANGES = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
# One Han character, to build larger patterns from (f"{HAN_CLASS}{{5}}": a 五言 line).
HAN_CLASS = f"[{HAN_RANGES}]"
# HAN.fullmatch(char): whether `char` is one Han character.
HAN = re.compile(HAN_CLASS)

# The marks that may end a line of a cleaned poem (the corpus writes ，/。; sources also have ？！；).
LINE_MARKS = "，。？！；"
# Every mark that may end a line in a poem typed by a person or written by a program: the line
# marks, 、 and ：, and their ASCII forms. Lines are split at runs of these and of whitespace.
PUNCTUATION = "，。？！；、：,.?!;:"
_SEPARATORS = re.compile(rf"[{PUNCTUATION}\s]+")
_MARKED_LINE = re.compile(rf"([^{PUNCTUATION}\s]+)([{PUNCTUATION}\s]*)")


def is_han(char: str) -> bool:
    """Whether `char` is exactly one Han character."""
    return HAN.fullmatch(char) is not None


def split_lines(poem: str) -> list[str]:
    """The lines of a poem, punctuation and whitespace removed.

    "床前明月光，疑是地上霜。" -> ["床前明月光", "疑是地上霜"]; nothing is checked (see
    prosody.poem_lines for a quatrain's four equal lines).
    """
    return [line for line in _SEPARATORS.split(poem) if line]


def marked_lines(poem: str) -> list[tuple[str, str]]:
    """Each line of a poem with the mark that ends it ("" for a line without one).

    "床前明月光，疑是地上霜。" -> [("床前明月光", "，"), ("疑是地上霜", "。")]; the lines are those of
    `split_lines`, and a mark is the first punctuation mark after its line.
    """
    return [(line, next((char for char in gap if not char.isspace()), "")) for line, gap in _MARKED_LINE.findall(poem)]
