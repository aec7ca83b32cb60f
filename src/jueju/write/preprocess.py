"""The text side of writing a poem: what a caller gives, as ids at positions, and ids back to text.

`normalise_first_line` and `normalise_acrostic` check and clean what a person typed.
`PoemPreprocessor` turns first lines or acrostics into the characters fixed at each
position of the poem (the givens), the ids decoding starts from, and the punctuation it
must write; and turns decoded ids back into the poem, givens as the caller wrote them.
Bad input raises `OptionError` naming the field it came in.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from jueju.config import FORMS
from jueju.data.corpus import to_simplified
from jueju.data.dataset import UNK_ID, Vocab
from jueju.options import MAX_NUM, OptionError
from jueju.text import PUNCTUATION, is_han, split_lines
from jueju.write.constraints import Layout

LINE_ENDS = ("，", "。", "，", "。")
FORM_NAMES = {5: "五言", 7: "七言"}
EXAMPLE_FIRST_LINES = {5: "床前明月光", 7: "朝辞白帝彩云间"}  # one well-known first line per form
MAX_INPUT = 1000  # characters; longer input is refused before any conversion work
BLANKS = "＿_□"  # a template's places for the model to write
INPUTS = {"first_lines": "first_line", "acrostics": "acrostic", "templates": "template"}  # batch argument -> field


class PoemPreprocessor:
    """First lines or acrostics -> givens, start ids and forced punctuation; ids -> poem text."""

    def __init__(self, vocab: Vocab, line_length: int, simplify: bool = True, pad_start: bool = True):
        missing = [mark for mark in "，。" if mark not in vocab]
        if missing:
            raise ValueError(f"the vocabulary lacks the punctuation {missing}: it was not built from poems")
        self.vocab, self.line_length, self.simplify, self.pad_start = vocab, line_length, simplify, pad_start
        self.layout = Layout(line_length)

    def givens(
        self,
        first_lines: Sequence[str] | None = None,
        acrostics: Sequence[str] | None = None,
        templates: Sequence[str] | None = None,
    ) -> list[dict[int, str]]:
        """Per poem, the characters fixed by the caller, by position: a first line, four line heads
        (acrostic) or any characters of a template."""
        inputs = {"first_lines": first_lines, "acrostics": acrostics, "templates": templates}
        given = [name for name, values in inputs.items() if values is not None]
        if len(given) != 1:
            raise OptionError(
                INPUTS[given[-1]] if given else "first_line",
                "give one of a first line, acrostic characters or a template, not several and not none",
            )
        if first_lines is not None:
            lines = [
                normalise_first_line(line, self.line_length, self.simplify)
                for line in _sequence("first_line", "first_lines", first_lines)
            ]
            return [dict(enumerate(line)) for line in lines]
        if not self.pad_start:
            field = "acrostic" if acrostics is not None else "template"
            raise OptionError(
                field, f"this model was trained without dataset.pad_start, so it cannot write first lines ({field})"
            )
        if templates is not None:
            return [
                normalise_template(text, self.line_length, self.simplify)
                for text in _sequence("template", "templates", templates)
            ]
        heads = [normalise_acrostic(text, self.simplify) for text in _sequence("acrostic", "acrostics", acrostics)]
        return [{self.layout.start(line): char for line, char in enumerate(four)} for four in heads]

    def prompt(self, givens: list[dict[int, str]]) -> tuple[np.ndarray, np.ndarray]:
        """(tokens, forced), one row per poem: the givens' ids in place, and per position the id that
        must stand there (punctuation, givens) or -1 where decoding chooses."""
        tokens = np.zeros((len(givens), self.layout.length), dtype=np.int32)
        forced = np.tile(self.punctuation(), (len(givens), 1))
        for row, given in enumerate(givens):
            for position, char in given.items():
                tokens[row, position] = forced[row, position] = self.vocab.ids.get(char, UNK_ID)  # <unk> if unknown
        return tokens, forced

    def template(self, given: dict[int, str]) -> str:
        """The template that keeps `given` (characters by position) and leaves the rest blank."""
        marks = {self.layout.end(line) + 1: mark for line, mark in enumerate(LINE_ENDS)}
        return "".join(marks.get(p) or given.get(p, BLANKS[0]) for p in range(self.layout.length))

    def punctuation(self) -> np.ndarray:
        """Per position: the punctuation id that must stand there, or -1 for a character."""
        forced = np.full(self.layout.length, -1, dtype=np.int32)
        for line, mark in enumerate(LINE_ENDS):
            forced[self.layout.end(line) + 1] = self.vocab.ids[mark]
        return forced

    def decode(self, row: np.ndarray, given: dict[int, str]) -> str:
        chars = [self.vocab.tokens[i] for i in row]
        for position, char in given.items():
            chars[position] = char  # as the caller wrote it, even when the model read <unk>
        return "".join(chars)


def normalise_first_line(text, line_length: int | None = None, simplify: bool = True) -> str:
    """The first line as the model reads it: no spaces or trailing punctuation, simplified, checked.

    Raises OptionError (field first_line) saying what is wrong and what is valid.
    """

    def bad(message: str) -> OptionError:
        return OptionError("first_line", message)

    if not isinstance(text, str):
        raise bad(f"the first line must be a string of Han characters, got {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise bad(f"the first line is {len(text)} characters long: give 5 or 7 Han characters")
    line = "".join(text.split()).rstrip(PUNCTUATION)
    if not line:
        raise bad("the first line is empty: give 5 or 7 Han characters, e.g. 床前明月光")
    not_han = sorted({char for char in line if not is_han(char)})
    if not_han:
        shown = "".join(not_han[:10])
        raise bad(f"the first line may hold only Han characters, but has {shown!r} in {_clip(text)!r}")
    if simplify:
        line = to_simplified(line)
    valid, wanted = _forms(line_length)
    if len(line) not in valid:
        raise bad(f"the first line must have {wanted} Han characters; {_clip(line)!r} has {len(line)}")
    return line


def normalise_template(text, line_length: int | None = None, simplify: bool = True) -> dict[int, str]:
    """A poem with blanks (＿, _ or □) where the model is to write: the kept characters by position.

    "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。" -> {0: 床, ..., 12: 举, 13: 头}. Four lines of 5
    or 7 places each, split by punctuation or line breaks; raises OptionError (field template).
    """

    def bad(message: str) -> OptionError:
        return OptionError("template", message)

    if not isinstance(text, str):
        raise bad(f"template must be a string of 4 lines with blanks (＿), got {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise bad(f"template is {len(text)} characters long: give 4 lines of 5 or 7 places")
    lines = split_lines(text)
    lengths = {len(line) for line in lines}
    valid, wanted = _forms(line_length)
    if len(lines) != 4 or len(lengths) != 1 or lengths.pop() not in valid:
        raise bad(
            f"template must have 4 lines of {wanted} places each, characters or blanks ＿, split by ，。 "
            f"(e.g. 床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。); got {_clip(text)!r}"
        )
    n = len(lines[0])
    odd = sorted({char for line in lines for char in line if not (is_han(char) or char in BLANKS)})
    if odd:
        raise bad(f"template may hold only Han characters and blanks ({BLANKS}), but has {''.join(odd[:10])!r}")
    if simplify:  # a line at a time, so that OpenCC reads words (乾坤 stays 乾坤; 乾 alone becomes 干)
        lines = [
            simple if len(simple := to_simplified(line)) == n else "".join(map(to_simplified, line)) for line in lines
        ]
    kept = {
        line * (n + 1) + column: char
        for line, text_ in enumerate(lines)
        for column, char in enumerate(text_)
        if char not in BLANKS
    }
    if len(kept) == 4 * n:
        raise bad("template has no blank (＿) to write: leave blank the characters to write")
    return kept


def template_form(text) -> int:
    """The line length (5 or 7) of a valid template; raises OptionError as normalise_template does."""
    normalise_template(text, simplify=False)
    return len(split_lines(text)[0])


def template_of(poem: str, keep: set[int]) -> str:
    """`poem` as a template that keeps the characters at `keep` (positions in the poem text) and blanks the rest."""
    return "".join(char if position in keep or not is_han(char) else BLANKS[0] for position, char in enumerate(poem))


def normalise_acrostic(text, simplify: bool = True) -> str:
    """Four Han characters, one to open each line (spaces and punctuation between them ignored)."""
    if not isinstance(text, str):
        raise OptionError("acrostic", f"acrostic must be a string of 4 Han characters, got {type(text).__name__}")
    if len(text) > MAX_INPUT:
        raise OptionError("acrostic", f"acrostic is {len(text)} characters long: give 4 Han characters, e.g. 春夏秋冬")
    heads = "".join(char for char in text if not char.isspace() and char not in PUNCTUATION)
    not_han = sorted({char for char in heads if not is_han(char)})
    if not_han or len(heads) != 4:
        raise OptionError("acrostic", f"acrostic must be 4 Han characters, e.g. 春夏秋冬; got {_clip(text)!r}")
    return to_simplified(heads) if simplify else heads


def _forms(line_length: int | None) -> tuple[tuple[int, ...], str]:
    """The line lengths valid here (one, or every form's), and them in words: "5 (五言) or 7 (七言)"."""
    valid = (line_length,) if line_length else tuple(FORMS)
    return valid, " or ".join(f"{n} ({FORM_NAMES[n]})" for n in valid)


def _sequence(field: str, argument: str, values) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise OptionError(field, f"{argument} must be a non-empty list of strings, got {type(values).__name__}")
    if len(values) > MAX_NUM:
        raise OptionError(field, f"{argument} may hold at most {MAX_NUM} poems a call, got {len(values)}")
    return list(values)


def _clip(text: str, limit: int = 30) -> str:
    return text if len(text) <= limit else text[:limit] + "…"
