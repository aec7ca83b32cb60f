"""Read and clean the classical poetry corpus into 五言/七言 quatrains.

Sources are the `chinese-poetry` JSON files (a JSON array of
`{"author", "title", "paragraphs": [...], "id"}` objects, traditional
characters) or the original project's plain `title:content` text format.

Cleaning (`clean_poem`) turns one poem's paragraphs into a list of lines,
each exactly `line_length` Han characters followed by `，` (odd lines) or
`。` (even lines), or returns a short drop-reason key (see `DROP_REASONS`).
`clean_corpus` applies it to a whole corpus, keeps 4-line poems as
quatrains, optionally cuts longer poems into 4-line stanzas, deduplicates, and
counts everything in a `CorpusStats`. `prepare_corpus` writes
`poems.txt`, `stanzas.txt` and `stats.json`.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import opencc
from tqdm import tqdm

from jueju.files import write_atomic
from jueju.text import HAN_CLASS, HAN_RANGES, LINE_MARKS, marked_lines

__all__ = [
    "DROP_REASONS",
    "CorpusStats",
    "clean_corpus",
    "clean_poem",
    "clean_title",
    "cut_quatrains",
    "poem_regex",
    "prepare_corpus",
    "read_source",
    "read_titles",
    "read_sources",
    "to_simplified",
]

# --------------------------------------------------------------------------
# Drop reasons (stable keys used in CorpusStats.dropped and returned by
# clean_poem).
# --------------------------------------------------------------------------
EMPTY = "empty"  # no text at all (or nothing left after removing notes)
BRACKETS = "brackets"  # unbalanced brackets: an unclosed note
PUNCTUATION = "punctuation"  # 、, missing final punctuation, odd line ending in 。, odd line count
NON_HAN = "non_han"  # a character that is neither a Han ideograph nor line punctuation
LINE_LENGTH = "line_length"  # a line that is not exactly line_length characters
NOT_FOUR_LINES = "not_four_lines"  # valid poem, but not 4 lines (and not cut into stanzas)
DUPLICATE = "duplicate"  # a quatrain whose exact text was already kept

DROP_REASONS = (EMPTY, BRACKETS, PUNCTUATION, NON_HAN, LINE_LENGTH, NOT_FOUR_LINES, DUPLICATE)

TITLES = "titles.tsv"  # each kept poem, a tab, its title (clean_title)
MAX_TITLE = 12  # Han characters of a title kept (and of a title a user may give)
_TITLE_HEAD = re.compile(f"{HAN_CLASS}+")

# --------------------------------------------------------------------------
# Character classes and precompiled regexes (Han characters: jueju.text).
# --------------------------------------------------------------------------
# Bracket pairs whose content is an editorial note (removed, content included).
_OPEN = "（(【[〔{<《〖〈［｛＜〘〚⦅｟"
_CLOSE = "）)】]〕}>》〗〉］｝＞〙〛⦆｠"
_O = re.escape(_OPEN)
_C = re.escape(_CLOSE)
_ANY_BRACKET = re.compile(f"[{_O}{_C}]")
# Innermost bracketed span (no other bracket inside); removed repeatedly so
# nested notes like （〖1〗《…》：「…」） disappear entirely.
_INNER_NOTE = re.compile(f"[{_O}][^{_O}{_C}]*[{_C}]")

# Whitespace (incl. U+3000 and zero-width characters) and quote marks.
_JUNK = re.compile(r"[\s\u200b-\u200d\u2060\ufeff「」『』“”‘’\"'＂＇﹁﹂﹃﹄〝〞〟]+")

# Half-width / variant punctuation -> the full-width forms used in output.
_PUNCT_TABLE = str.maketrans(
    {
        ",": "，",
        ".": "。",
        "?": "？",
        "!": "！",
        ";": "；",
        ":": "：",
        "．": "。",
        "｡": "。",
        "､": "、",
        "﹐": "，",
        "﹑": "、",
        "﹒": "。",
        "﹔": "；",
        "﹕": "：",
        "﹖": "？",
        "﹗": "！",
    }
)

_ODD_END = "，；？！"  # accepted at the end of lines 1, 3, 5, ... -> ，
_EVEN_END = "。？！；"  # accepted at the end of lines 2, 4, 6, ... -> 。
# A line-punctuation mark right after another one (or at the very start) is
# redundant: mostly the "。" left behind by "…依依。（見某書）。" once the note
# is gone, or a doubled "。。" in the source.
_PUNCT_RUN = re.compile(f"^[{LINE_MARKS}]+|(?<=[{LINE_MARKS}])[{LINE_MARKS}]+")
_OTHER_CHAR = re.compile(f"[^{HAN_RANGES}{LINE_MARKS}]")


class _Patterns:
    """Per-line-length compiled fast-path regexes."""

    __slots__ = ("valid", "pair")

    def __init__(self, n: int) -> None:
        pair = f"({HAN_CLASS}{{{n}}})[{_ODD_END}]({HAN_CLASS}{{{n}}})[{_EVEN_END}]"
        self.pair = re.compile(pair)
        self.valid = re.compile(f"(?:{pair})+")


_PATTERNS: dict[int, _Patterns] = {}


def _patterns(line_length: int) -> _Patterns:
    p = _PATTERNS.get(line_length)
    if p is None:
        if not isinstance(line_length, int) or line_length < 1:
            raise ValueError(f"line_length must be a positive int, got {line_length!r}")
        p = _PATTERNS[line_length] = _Patterns(line_length)
    return p


def poem_regex(line_length: int = 5, lines: int = 4) -> re.Pattern[str]:
    """The strict format of a cleaned poem string: `lines` lines of
    `line_length` Han characters, odd lines ending in ，, even lines in 。."""
    if lines % 2:
        raise ValueError("lines must be even")
    pair = f"{HAN_CLASS}{{{line_length}}}，{HAN_CLASS}{{{line_length}}}。"
    return re.compile(f"(?:{pair}){{{lines // 2}}}")


# --------------------------------------------------------------------------
# OpenCC converter, created once, lazily.
# --------------------------------------------------------------------------
_CONVERTER: Any = None
_CONVERTER_LOCK = threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC `t2s`; one converter per process)."""
    global _CONVERTER
    if _CONVERTER is None:
        with _CONVERTER_LOCK:
            if _CONVERTER is None:
                _CONVERTER = opencc.OpenCC("t2s")
    return _CONVERTER.convert(text)


# --------------------------------------------------------------------------
# Reading sources.
# --------------------------------------------------------------------------
_DIGITS = re.compile(r"(\d+)")


def _natural_key(path: Path) -> tuple:
    key = []
    for part in path.parts:
        key.append(tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in _DIGITS.split(part) if t))
    return tuple(key)


def _read_json(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig") as f:
        data = json.load(f)
    if isinstance(data, dict):  # tolerate a single poem object
        data = [data]
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON array of poem objects, got {type(data).__name__}")
    for item in data:
        if isinstance(item, dict):
            yield item


def _read_txt(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8-sig") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            title, sep, content = line.partition(":")
            if not sep:  # no title
                title, content = "", line
            yield {"title": title.strip(), "paragraphs": [content.strip()]}


def read_source(path: str | os.PathLike) -> Iterator[dict]:
    """Yield poem objects (dicts with at least `paragraphs`) from `path`.

    * a directory: every `*.json` below it (recursively), in natural numeric
      order (`poet.tang.2000.json` before `poet.tang.10000.json`);
    * a `.json` file: a JSON array of poem objects;
    * a `.txt` file: one poem per line, `title:content`; blank lines skipped.

    Raises FileNotFoundError (at call time) when `path` does not exist and
    ValueError for another kind of file. Only `json.load` is ever used.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"corpus source not found: {p}")
    if p.is_dir():
        files = sorted((f for f in p.rglob("*.json") if f.is_file()), key=lambda f: _natural_key(f.relative_to(p)))
        return (poem for f in files for poem in _read_json(f))
    suffix = p.suffix.lower()
    if suffix == ".json":
        return _read_json(p)
    if suffix == ".txt":
        return _read_txt(p)
    raise ValueError(f"unsupported corpus source {p}: expected a directory, a .json or a .txt file")


def read_sources(paths: Iterable[str | os.PathLike]) -> Iterator[dict]:
    """`read_source` over several paths, in the order given. Every path is
    checked up front, so a missing one raises FileNotFoundError before any reading."""
    readers = [read_source(p) for p in paths]
    return (poem for reader in readers for poem in reader)


# --------------------------------------------------------------------------
# Cleaning.
# --------------------------------------------------------------------------
def _strip_notes(text: str) -> str | None:
    """Remove bracketed notes (nested included); None when brackets don't balance."""
    if not _ANY_BRACKET.search(text):
        return text
    n = 1
    while n:
        text, n = _INNER_NOTE.subn("", text)
    if _ANY_BRACKET.search(text):
        return None
    return text


def _diagnose(text: str, line_length: int) -> str:
    """Drop reason for normalised text that failed the fast-path regex."""
    if "、" in text:
        return PUNCTUATION
    if _OTHER_CHAR.search(text):
        return NON_HAN
    parts = marked_lines(text)
    if not parts or not parts[-1][1] or len(parts) % 2:  # trailing text without a mark, or odd line count
        return PUNCTUATION
    for i, (_, end) in enumerate(parts):
        if end not in (_ODD_END if i % 2 == 0 else _EVEN_END):
            return PUNCTUATION
    if any(len(body) != line_length for body, _ in parts):
        return LINE_LENGTH
    return PUNCTUATION  # not reached for well-formed input; be safe


def _clean_text(paragraphs: Any, line_length: int, simplify: bool) -> str:
    """Clean one poem into a single string of lines (，/。 normalised) or a reason key.

    A returned reason key is always one of DROP_REASONS (ASCII); a cleaned text
    always starts with a Han character, so the two never collide.
    """
    if isinstance(paragraphs, str):
        text = paragraphs
    elif not paragraphs:
        return EMPTY
    else:
        text = "".join(p for p in paragraphs if isinstance(p, str))
    text = _JUNK.sub("", text)
    if not text:
        return EMPTY
    text = _strip_notes(text)
    if text is None:
        return BRACKETS
    if not text:
        return EMPTY
    text = _PUNCT_RUN.sub("", text.translate(_PUNCT_TABLE))
    if not text:
        return EMPTY
    if simplify:
        text = to_simplified(text)
    pats = _patterns(line_length)
    if pats.valid.fullmatch(text) is None:
        return _diagnose(text, line_length)
    return pats.pair.sub(r"\1，\2。", text)


def clean_poem(paragraphs: list[str], line_length: int = 5, simplify: bool = True) -> list[str] | str:
    """Clean one poem.

    Returns the list of cleaned lines -- each exactly `line_length` Han
    characters followed by `，` (lines 1, 3, ...) or `。` (lines 2, 4, ...)
    -- or a drop-reason key from `DROP_REASONS` (a `str`).
    """
    text = _clean_text(paragraphs, line_length, simplify)
    if text in DROP_REASONS:
        return text
    return [line + mark for line, mark in marked_lines(text)]


def clean_title(raw: str) -> str:
    """A poem's title as conditioning reads it: its leading run of Han characters (before any space,
    bracket or note: "杂诗三首 其二" -> "杂诗三首"), at most MAX_TITLE of them; "" if it has none."""
    head = _TITLE_HEAD.match(raw.strip()) if isinstance(raw, str) else None
    return head.group()[:MAX_TITLE] if head else ""


def read_titles(path: str | os.PathLike) -> dict[str, str]:
    """TITLES as {poem: title}."""
    pairs = (line.split("\t", 1) for line in Path(path).read_text("utf-8").splitlines() if line)
    return {poem: title for poem, title in pairs}


def cut_quatrains(lines: list[str]) -> list[str]:
    """Join consecutive groups of 4 lines into poem strings; a remainder is dropped."""
    return ["".join(lines[i : i + 4]) for i in range(0, len(lines) - 3, 4)]


@dataclass
class CorpusStats:
    """What clean_corpus did.

    Accounting: `poems_read == quatrains + poems_cut + sum(dropped.values())`
    (every poem read is kept as a quatrain, cut into stanzas, or dropped for
    exactly one reason). Stanza-level losses are in `stanza_dropped`:
    `duplicate` (an earlier stanza had the same text), `equals_quatrain`
    (the same text is a kept quatrain) and `leftover_lines` (lines past the
    last full stanza, e.g. 2 for a 6-line poem).
    """

    poems_read: int = 0
    quatrains: int = 0
    stanzas: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    distinct_chars: int = 0
    poems_cut: int = 0
    stanza_dropped: dict[str, int] = field(default_factory=dict)
    line_length: int = 5
    simplify: bool = True
    stanzas_enabled: bool = False

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dropped"] = dict(sorted(self.dropped.items()))
        d["stanza_dropped"] = dict(sorted(self.stanza_dropped.items()))
        d["dropped_total"] = self.dropped_total
        return d


def _progress(poems: Iterable[dict], enabled: bool) -> Iterable[dict]:
    if not enabled:
        return poems
    total = len(poems) if hasattr(poems, "__len__") else None
    return tqdm(poems, total=total, unit="poem", desc="cleaning", mininterval=0.5)


def clean_corpus(
    poems: Iterable[dict],
    line_length: int = 5,
    stanzas: bool = False,
    simplify: bool = True,
    progress: bool = False,
    titles: dict[str, str] | None = None,
) -> tuple[list[str], list[str], CorpusStats]:
    """Clean a corpus of poem objects.

    Returns `(quatrains, stanzas, stats)`. `quatrains`: cleaned poems of
    exactly 4 lines. `stanzas` (only when `stanzas=True`): 4-line stanzas
    cut from longer valid poems (8, 12, ... lines; a 6- or 10-line poem loses
    its last 2 lines). Both are deduplicated on exact text, keeping the order of
    first appearance; a stanza equal to a kept quatrain is dropped.

    `titles`, when given, is filled with each kept quatrain's and stanza's title (simplified as the
    text is; "" for an untitled poem): what conditioned training writes toward.
    """
    _patterns(line_length)  # validate early
    step = line_length + 1
    quatrain_len = 4 * step
    dropped: Counter[str] = Counter()
    stanza_dropped: Counter[str] = Counter()
    seen: set[str] = set()
    quatrains: list[str] = []
    stanza_seen: dict[str, None] = {}  # ordered set
    read = cut = 0
    for poem in _progress(poems, progress):
        read += 1
        paragraphs = poem.get("paragraphs") if isinstance(poem, dict) else None
        text = _clean_text(paragraphs, line_length, simplify)
        if text in DROP_REASONS:
            dropped[text] += 1
            continue
        n = len(text)
        title = poem.get("title") if isinstance(poem.get("title"), str) else ""
        if titles is not None and simplify:
            title = to_simplified(title)
        if n == quatrain_len:
            if text in seen:
                dropped[DUPLICATE] += 1
            else:
                seen.add(text)
                quatrains.append(text)
                if titles is not None:
                    titles[text] = title
        elif not stanzas or n < quatrain_len:
            dropped[NOT_FOUR_LINES] += 1
        else:
            cut += 1
            whole = n - n % quatrain_len
            if whole != n:
                stanza_dropped["leftover_lines"] += (n - whole) // step
            for i in range(0, whole, quatrain_len):
                s = text[i : i + quatrain_len]
                if s in stanza_seen:
                    stanza_dropped[DUPLICATE] += 1
                else:
                    stanza_seen[s] = None
                    if titles is not None:
                        titles.setdefault(s, title)
    stanza_list: list[str] = []
    for s in stanza_seen:
        if s in seen:
            stanza_dropped["equals_quatrain"] += 1
        else:
            stanza_list.append(s)
    chars = set("".join(quatrains))
    chars.update("".join(stanza_list))
    chars.difference_update("，。")
    stats = CorpusStats(
        poems_read=read,
        quatrains=len(quatrains),
        stanzas=len(stanza_list),
        dropped={k: dropped[k] for k in DROP_REASONS if dropped[k]},
        distinct_chars=len(chars),
        poems_cut=cut,
        stanza_dropped={k: v for k, v in stanza_dropped.items() if v},
        line_length=line_length,
        simplify=simplify,
        stanzas_enabled=stanzas,
    )
    return quatrains, stanza_list, stats


# --------------------------------------------------------------------------
# Writing.
# --------------------------------------------------------------------------
def _lines_text(items: list[str]) -> str:
    return "".join(s + "\n" for s in items)


def _open_source(source: Any) -> tuple[Iterable[dict], list[str] | None]:
    """(poems, source paths or None) for a path, a list of paths, or poem objects."""
    if isinstance(source, (str, os.PathLike)):
        return read_source(source), [str(source)]
    if isinstance(source, (list, tuple)) and source and all(isinstance(s, (str, os.PathLike)) for s in source):
        return read_sources(source), [str(s) for s in source]
    return source, None


def prepare_corpus(
    source: str | os.PathLike | Iterable[str | os.PathLike] | Iterable[dict],
    out_dir: str | os.PathLike,
    line_length: int = 5,
    stanzas: bool = False,
    simplify: bool = True,
    progress: bool = True,
) -> CorpusStats:
    """Clean `source` and write `out_dir`/`poems.txt` (the quatrains, one
    per line), `stanzas.txt` (always; empty unless `stanzas`), `titles.tsv`
    (poem, tab, its title: each quatrain's and stanza's) and
    `stats.json`, each atomically (temp file + os.replace). Returns the stats.

    `source` is a path for `read_source`, a list/tuple of such paths
    (read in order), or an iterable of poem objects.
    """
    poems, paths = _open_source(source)
    titles: dict[str, str] = {}
    quatrains, stanza_list, stats = clean_corpus(
        poems, line_length=line_length, stanzas=stanzas, simplify=simplify, progress=progress, titles=titles
    )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "poems.txt", _lines_text(quatrains))
    write_atomic(out / "stanzas.txt", _lines_text(stanza_list))
    write_atomic(
        out / TITLES, _lines_text([f"{poem}\t{clean_title(titles[poem])}" for poem in [*quatrains, *stanza_list]])
    )
    payload = stats.to_dict()
    if paths is not None:
        payload["source"] = paths
    write_atomic(out / "stats.json", json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    return stats
