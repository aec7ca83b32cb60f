"""Corpus reading and cleaning: every rule on small, hand-written messy examples."""

import json
from pathlib import Path

import pytest

from jueju.data.corpus import (
    DROP_REASONS,
    CorpusStats,
    clean_corpus,
    clean_poem,
    cut_quatrains,
    poem_regex,
    prepare_corpus,
    read_source,
    read_sources,
    read_titles,
    to_simplified,
)

TINY = Path(__file__).resolve().parent / "fixtures" / "tiny"
TINY_JSON = TINY / "poet.tang.0.json"
TINY_TXT = TINY / "poems.txt"

# 靜夜思 in traditional characters, two lines per paragraph as in chinese-poetry
JINGYESI_T = ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"]
JINGYESI = ["床前明月光，", "疑是地上霜。", "举头望明月，", "低头思故乡。"]
CHUNXIAO_T = ["春眠不覺曉，處處聞啼鳥。", "夜來風雨聲，花落知多少。"]
CHUNXIAO = "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"
# 賦得古原草送別: 8 lines of 5 characters
YUANCAO_T = [
    "離離原上草，一歲一枯榮。",
    "野火燒不盡，春風吹又生。",
    "遠芳侵古道，晴翠接荒城。",
    "又送王孫去，萋萋滿別情。",
]
YUANCAO_1 = "离离原上草，一岁一枯荣。野火烧不尽，春风吹又生。"
YUANCAO_2 = "远芳侵古道，晴翠接荒城。又送王孙去，萋萋满别情。"
# 早發白帝城: 7 characters a line
BAIDI_T = ["朝辭白帝彩雲間，千里江陵一日還。", "兩岸猿聲啼不住，輕舟已過萬重山。"]
BAIDI = ["朝辞白帝彩云间，", "千里江陵一日还。", "两岸猿声啼不住，", "轻舟已过万重山。"]

STRICT5 = poem_regex(5)
STRICT7 = poem_regex(7)


def poem(*paragraphs, **extra):
    return {"author": "無名氏", "title": "失題", "paragraphs": list(paragraphs), **extra}


# --------------------------------------------------------------------------
# clean_poem: what is kept, and how it is normalised
# --------------------------------------------------------------------------
def test_clean_poem_converts_to_simplified_lines():
    lines = clean_poem(JINGYESI_T)
    assert lines == JINGYESI
    assert all(len(line) == 6 for line in lines)


def test_simplify_false_keeps_traditional():
    assert clean_poem(JINGYESI_T, simplify=False) == ["牀前明月光，", "疑是地上霜。", "舉頭望明月，", "低頭思故鄉。"]


def test_to_simplified():
    assert to_simplified("舉頭望明月，低頭思故鄉。") == "举头望明月，低头思故乡。"
    assert to_simplified("") == ""


@pytest.mark.parametrize(
    "paragraphs",
    [
        pytest.param(["牀前明月光（一作：看月光），疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="fullwidth-parens"),
        pytest.param(["牀前明月光(一作看月光)，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="ascii-parens"),
        pytest.param(["牀前明月光【注】，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="lenticular"),
        pytest.param(["牀前明月光[看]，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="square"),
        pytest.param(["牀前明月光〔看〕，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="tortoise"),
        pytest.param(["牀前明月光{看}，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="curly"),
        pytest.param(["牀前明月光<看>，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="angle"),
        pytest.param(["牀前明月光《全唐詩》，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="book-title"),
        pytest.param(["牀前明月光〖1〗，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], id="white-lenticular"),
        pytest.param(
            [
                "牀前明月光，疑是地上霜。（按：《樂府詩集》作「看月光」，",
                "見《李太白集》卷六。）舉頭望明月，低頭思故鄉。",
            ],
            id="note-across-paragraphs",
        ),
        pytest.param(
            ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。（〖1〗《唐詩品彙》：「一作『舉頭望山月』。」）"],
            id="nested-notes",
        ),
        pytest.param(
            ["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉。（見《全唐詩》卷一六五）。"],
            id="note-then-stray-stop",
        ),
        pytest.param(["牀前明月光，疑是地上霜。。", "舉頭望明月，低頭思故鄉。"], id="doubled-stop"),
        pytest.param(["「牀前明月光，疑是地上霜。」", "『舉頭望明月』，“低頭”‘思’故鄉。"], id="cjk-quotes"),
        pytest.param(['"牀前明月光"，疑是地上霜。', "舉頭望'明月'，低頭思故鄉。"], id="ascii-quotes"),
        pytest.param(["牀前 明月光，\u3000疑是地上霜。\n", "\t舉頭望明月， 低頭思故鄉。 "], id="whitespace"),
        pytest.param(["牀前明月光,疑是地上霜.", "舉頭望明月,低頭思故鄉."], id="half-width"),
        pytest.param(["牀前明月光；疑是地上霜！", "舉頭望明月？低頭思故鄉？"], id="question-exclaim-semicolon"),
        pytest.param(["牀前明月光!疑是地上霜?", "舉頭望明月;低頭思故鄉!"], id="half-width-question-exclaim"),
        pytest.param(["牀前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"], id="one-paragraph"),
        pytest.param(["牀前明月光，", "疑是地上霜。", "舉頭望明月，", "低頭思故鄉。"], id="one-line-per-paragraph"),
    ],
)
def test_messy_variants_clean_to_the_same_lines(paragraphs):
    assert clean_poem(paragraphs) == JINGYESI


def test_uncommon_han_characters_are_kept():
    # Extension A (䍦) and Extension B (𤩌) ideographs are Han characters
    lines = clean_poem(["䍦前明月光，疑是地上𤩌。", "舉頭望明月，低頭思故鄉。"], simplify=False)
    assert lines[0] == "䍦前明月光，" and lines[1] == "疑是地上𤩌。"


def test_seven_character_mode():
    assert clean_poem(BAIDI_T, line_length=7) == BAIDI
    assert clean_poem(BAIDI_T, line_length=5) == "line_length"
    assert clean_poem(JINGYESI_T, line_length=7) == "line_length"


def test_long_poem_keeps_all_lines():
    lines = clean_poem(YUANCAO_T)
    assert len(lines) == 8
    assert "".join(lines) == YUANCAO_1 + YUANCAO_2


# --------------------------------------------------------------------------
# clean_poem: drop reasons
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "paragraphs, reason",
    [
        ([], "empty"),
        ([""], "empty"),
        (["\u3000 "], "empty"),
        (["（見《全唐詩》卷一）。"], "empty"),
        (["牀前明月光，疑是地上霜。（一作：", "舉頭望明月，低頭思故鄉。"], "brackets"),
        (["牀前明月光，疑是地上霜。）", "舉頭望明月，低頭思故鄉。"], "brackets"),
        (["牀前明月光，疑是地上霜。《全唐詩", "舉頭望明月，低頭思故鄉。"], "brackets"),
        (["春、夏、秋、冬，四時各有宜。", "花開與葉落，皆是天地知。"], "punctuation"),
        (["牀前明月光、疑是地上霜。", "舉頭望明月，低頭思故鄉。"], "punctuation"),
        (["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉"], "punctuation"),  # no final stop
        (["牀前明月光疑是地上霜", "舉頭望明月低頭思故鄉"], "punctuation"),  # no punctuation at all
        (["牀前明月光。疑是地上霜。", "舉頭望明月。低頭思故鄉。"], "punctuation"),  # odd line ends in 。
        (["牀前明月光，疑是地上霜，", "舉頭望明月，低頭思故鄉。"], "punctuation"),  # even line ends in ，
        (["牀前明月光，疑是地上霜。", "舉頭望明月。"], "punctuation"),  # odd number of lines
        (["鵝，鵝，鵝，曲項向天歌。", "白毛浮綠水，紅掌撥清波。"], "punctuation"),  # even line ends in ，
        (["牀前明月光，疑是地上霜。", "舉頭望明□，低頭思故鄉。"], "non_han"),  # lost character
        (["牀前明月光，疑是地上霜。", "舉頭望明○，低頭思故鄉。"], "non_han"),
        (["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉：。"], "non_han"),
        (["牀前明月光，疑是地上霜。", "舉頭望明月，低頭思故鄉…。"], "non_han"),
        (["牀前明月光，疑是地上霜。", "舉頭望明1，低頭思故鄉。"], "non_han"),
        (["牀前明月光，疑是地上霜。", "舉頭望明a，低頭思故鄉。"], "non_han"),
        (["牀前明月光，疑是地上霜。", "舉頭望明\ue815，低頭思故鄉。"], "non_han"),  # private use
        (["牀前明月，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], "line_length"),  # 4 characters
        (["牀前明月光光，疑是地上霜。", "舉頭望明月，低頭思故鄉。"], "line_length"),  # 6 characters
        (["鵝鵝鵝，曲項向天歌。", "白毛浮綠水，紅掌撥清波。"], "line_length"),
        (["牀前明月光（一作：看月光），疑是地上霜（霜", "舉頭望明月，低頭思故鄉。"], "brackets"),
    ],
)
def test_drop_reasons(paragraphs, reason):
    assert reason in DROP_REASONS
    assert clean_poem(paragraphs) == reason


def test_doubled_comma_is_collapsed():
    # a run of line punctuation keeps its first mark
    assert clean_poem(["牀前明月光，，疑是地上霜。", "舉頭望明月，低頭思故鄉。。"]) == JINGYESI


def test_clean_poem_accepts_a_string():
    assert clean_poem("".join(JINGYESI_T)) == JINGYESI


# --------------------------------------------------------------------------
# cut_quatrains
# --------------------------------------------------------------------------
@pytest.mark.parametrize("n_lines, n_quatrains", [(0, 0), (2, 0), (3, 0), (4, 1), (6, 1), (8, 2), (10, 2), (12, 3)])
def test_cut_quatrains_counts(n_lines, n_quatrains):
    lines = [f"L{i}" for i in range(n_lines)]
    out = cut_quatrains(lines)
    assert len(out) == n_quatrains
    assert out == ["".join(lines[i : i + 4]) for i in range(0, 4 * n_quatrains, 4)]


def test_cut_quatrains_on_a_real_poem():
    assert cut_quatrains(clean_poem(YUANCAO_T)) == [YUANCAO_1, YUANCAO_2]


# --------------------------------------------------------------------------
# clean_corpus
# --------------------------------------------------------------------------
def assert_accounting(stats: CorpusStats):
    assert stats.poems_read == stats.quatrains + stats.poems_cut + sum(stats.dropped.values())
    assert set(stats.dropped) <= set(DROP_REASONS)
    assert all(v > 0 for v in stats.dropped.values())


def test_clean_corpus_quatrains_only():
    poems = [poem(*JINGYESI_T), poem(*YUANCAO_T), poem(*CHUNXIAO_T), poem(*BAIDI_T), poem()]
    quatrains, stanzas, stats = clean_corpus(poems)
    assert quatrains == ["".join(JINGYESI), CHUNXIAO]
    assert stanzas == []
    assert stats.poems_read == 5 and stats.quatrains == 2 and stats.stanzas == 0 and stats.poems_cut == 0
    assert stats.dropped == {"not_four_lines": 1, "line_length": 1, "empty": 1}
    assert_accounting(stats)


def test_clean_corpus_cuts_stanzas_from_8_and_6_line_poems():
    six = YUANCAO_T[:3]
    poems = [poem(*YUANCAO_T), poem(*JINGYESI_T), poem(*six)]
    # the 6-line poem's first stanza duplicates the 8-line poem's first: use another 6-line poem too
    other_six = ["白日依山盡，黃河入海流。", "欲窮千里目，更上一層樓。", "遠芳侵古道，晴翠接荒城。"]
    poems.append(poem(*other_six))
    quatrains, stanzas, stats = clean_corpus(poems, stanzas=True)
    assert quatrains == ["".join(JINGYESI)]
    assert stanzas == [YUANCAO_1, YUANCAO_2, "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"]
    assert stats.stanzas == 3 and stats.poems_cut == 3
    assert stats.stanza_dropped == {"duplicate": 1, "leftover_lines": 4}
    assert_accounting(stats)
    assert all(STRICT5.fullmatch(s) for s in quatrains + stanzas)


def test_two_line_poem_is_never_a_stanza():
    for stanzas in (False, True):
        _, _, stats = clean_corpus([poem("牀前明月光，疑是地上霜。")], stanzas=stanzas)
        assert stats.dropped == {"not_four_lines": 1}


@pytest.mark.parametrize("quatrain_first", [True, False])
def test_stanza_equal_to_a_quatrain_is_dropped(quatrain_first):
    long_poem = poem(*JINGYESI_T, *CHUNXIAO_T)  # two stanzas; the first is also a quatrain
    poems = [poem(*JINGYESI_T), long_poem] if quatrain_first else [long_poem, poem(*JINGYESI_T)]
    quatrains, stanzas, stats = clean_corpus(poems, stanzas=True)
    assert quatrains == ["".join(JINGYESI)]
    assert stanzas == [CHUNXIAO]
    assert stats.stanza_dropped == {"equals_quatrain": 1}
    assert_accounting(stats)


def test_duplicates_are_dropped_keeping_first_appearance():
    poems = [
        poem(*CHUNXIAO_T),
        poem(*JINGYESI_T),
        poem(*CHUNXIAO_T, id="again"),  # exact duplicate
        poem("床前明月光，疑是地上霜。", "举头望明月，低头思故乡。"),  # same poem once simplified
        poem("牀前明月光（一作：看月光），疑是地上霜。", "舉頭望明月，低頭思故鄉。"),  # same once the note is gone
    ]
    quatrains, _, stats = clean_corpus(poems)
    assert quatrains == [CHUNXIAO, "".join(JINGYESI)]
    assert stats.dropped == {"duplicate": 3}
    assert_accounting(stats)


def test_simplify_false_does_not_merge_variants():
    poems = [poem(*JINGYESI_T), poem("床前明月光，疑是地上霜。", "举头望明月，低头思故乡。")]
    quatrains, _, stats = clean_corpus(poems, simplify=False)
    assert len(quatrains) == 2 and stats.dropped == {}
    assert quatrains[0] == "牀前明月光，疑是地上霜。舉頭望明月，低頭思故鄉。"


def test_seven_character_corpus():
    poems = [poem(*BAIDI_T), poem(*JINGYESI_T), poem(*BAIDI_T, *BAIDI_T)]
    quatrains, stanzas, stats = clean_corpus(poems, line_length=7, stanzas=True)
    assert quatrains == ["".join(BAIDI)]
    assert stanzas == []  # both stanzas of the long poem equal the quatrain
    assert stats.dropped == {"line_length": 1}
    assert stats.stanza_dropped == {"duplicate": 1, "equals_quatrain": 1}
    assert STRICT7.fullmatch(quatrains[0])
    assert_accounting(stats)


def test_malformed_poem_objects_count_as_empty():
    _, _, stats = clean_corpus([{"title": "no paragraphs"}, {"paragraphs": None}, "not a dict", poem(*JINGYESI_T)])
    assert stats.dropped == {"empty": 3} and stats.quatrains == 1
    assert_accounting(stats)


def test_distinct_chars_counts_han_characters_of_kept_text():
    _, _, stats = clean_corpus([poem(*JINGYESI_T)])
    assert stats.distinct_chars == len(set("床前明月光疑是地上霜举头望明月低头思故乡"))
    _, _, stats = clean_corpus([poem(*JINGYESI_T), poem(*YUANCAO_T)], stanzas=True)
    assert stats.distinct_chars == len(
        set("床前明月光疑是地上霜举头望明月低头思故乡" + YUANCAO_1 + YUANCAO_2) - set("，。")
    )


def test_invalid_line_length():
    with pytest.raises(ValueError):
        clean_corpus([], line_length=0)


def test_stats_to_dict_is_json_ready():
    _, _, stats = clean_corpus([poem(*JINGYESI_T), poem()], stanzas=True)
    d = stats.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert d["poems_read"] == 2 and d["quatrains"] == 1 and d["dropped"] == {"empty": 1} and d["dropped_total"] == 1
    assert d["stanzas_enabled"] is True and d["line_length"] == 5


def test_progress_bar_does_not_change_results(capsys):
    poems = [poem(*JINGYESI_T), poem(*CHUNXIAO_T)]
    assert clean_corpus(poems, progress=True)[0] == clean_corpus(iter(poems))[0]


# --------------------------------------------------------------------------
# the tiny fixture corpus (reused by the end-to-end tests)
# --------------------------------------------------------------------------
def test_tiny_fixture_has_enough_clean_quatrains():
    poems = list(read_source(TINY_JSON))
    quatrains, _, stats = clean_corpus(poems)
    assert stats.quatrains >= 60
    assert all(STRICT5.fullmatch(q) for q in quatrains)
    assert quatrains[0] == "".join(JINGYESI)
    # the messy entries exercise every drop reason
    assert {"duplicate", "not_four_lines", "line_length", "punctuation", "non_han", "brackets", "empty"} <= set(
        stats.dropped
    )
    assert_accounting(stats)
    # and the messy-but-fixable ones are kept, cleaned
    assert "绿蚁新醅酒，红泥小火炉。晚来天欲雪，能饮一杯无。" in quatrains  # note + ？
    assert "避贤初罢相，乐圣且衔杯。为问门前客，今朝几个来。" in quatrains  # 「」 + 【】
    assert "孤云将野鹤，岂向人间住。莫买沃洲山，时人已知处。" in quatrains  # half-width
    sevens, _, _ = clean_corpus(poems, line_length=7)
    assert len(sevens) >= 5 and all(STRICT7.fullmatch(q) for q in sevens)


def test_tiny_txt_fixture():
    quatrains, _, stats = clean_corpus(read_source(TINY_TXT))
    assert stats.poems_read == 10 and stats.quatrains == 10


# --------------------------------------------------------------------------
# read_source
# --------------------------------------------------------------------------
def write_json(path: Path, poems) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(poems, ensure_ascii=False), encoding="utf-8")
    return path


def test_read_source_directory_in_natural_order(tmp_path):
    for n in (10000, 2000, 0, 1000):
        write_json(tmp_path / f"poet.tang.{n}.json", [{"title": f"{n}-a", "paragraphs": []}, {"title": f"{n}-b"}])
    write_json(tmp_path / "sub" / "poet.song.0.json", [{"title": "song"}])
    (tmp_path / "notes.txt").write_text("ignored:床前明月光", encoding="utf-8")
    titles = [p["title"] for p in read_source(tmp_path)]
    assert titles == ["0-a", "0-b", "1000-a", "1000-b", "2000-a", "2000-b", "10000-a", "10000-b", "song"]
    assert [p["title"] for p in read_source(str(tmp_path))] == titles


def test_read_source_json_file(tmp_path):
    path = write_json(tmp_path / "one.json", [poem(*JINGYESI_T), poem(*CHUNXIAO_T)])
    poems = list(read_source(path))
    assert [p["paragraphs"] for p in poems] == [JINGYESI_T, CHUNXIAO_T]


def test_read_source_json_with_bom(tmp_path):
    path = tmp_path / "bom.json"
    path.write_bytes("\ufeff".encode() + json.dumps([poem(*JINGYESI_T)], ensure_ascii=False).encode())
    assert len(list(read_source(path))) == 1


def test_read_source_rejects_a_non_array(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('"just a string"', encoding="utf-8")
    with pytest.raises(ValueError, match="JSON array"):
        list(read_source(path))


def test_read_source_txt_file(tmp_path):
    path = tmp_path / "poems.txt"
    path.write_text(
        "静夜思:床前明月光，疑是地上霜。举头望明月，低头思故乡。\n\n   \n"
        " 春晓 : 春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。 \r\n"
        "无题的诗没有冒号\n",
        encoding="utf-8",
    )
    poems = list(read_source(path))
    assert poems == [
        {"title": "静夜思", "paragraphs": ["床前明月光，疑是地上霜。举头望明月，低头思故乡。"]},
        {"title": "春晓", "paragraphs": [CHUNXIAO]},
        {"title": "", "paragraphs": ["无题的诗没有冒号"]},
    ]
    assert clean_corpus(poems)[0] == ["".join(JINGYESI), CHUNXIAO]


@pytest.mark.parametrize("name", ["missing", "missing.json", "missing.txt"])
def test_read_source_missing_path(tmp_path, name):
    path = tmp_path / name
    with pytest.raises(FileNotFoundError, match=name):
        read_source(path)  # raised at call time, not on first iteration


def test_read_source_unsupported_file(tmp_path):
    path = tmp_path / "poems.csv"
    path.write_text("a,b\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unsupported"):
        read_source(path)


def test_read_sources_checks_every_path_first(tmp_path):
    path = write_json(tmp_path / "a.json", [poem(*JINGYESI_T)])
    assert len(list(read_sources([path, path]))) == 2
    with pytest.raises(FileNotFoundError, match="nope"):
        read_sources([path, tmp_path / "nope"])


# --------------------------------------------------------------------------
# prepare_corpus
# --------------------------------------------------------------------------
@pytest.mark.parametrize("stanzas", [False, True])
def test_prepare_corpus_writes_four_files(tmp_path, stanzas):
    out = tmp_path / "out" / "data"
    stats = prepare_corpus(TINY_JSON, out, stanzas=stanzas, progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["poems.txt", "stanzas.txt", "stats.json", "titles.tsv"]
    titles = read_titles(out / "titles.tsv")
    poems = out.joinpath("poems.txt").read_text(encoding="utf-8").splitlines()
    stanza_lines = out.joinpath("stanzas.txt").read_text(encoding="utf-8").splitlines()
    saved = json.loads(out.joinpath("stats.json").read_text(encoding="utf-8"))
    assert len(poems) == stats.quatrains >= 60 and all(STRICT5.fullmatch(p) for p in poems)
    assert len(stanza_lines) == stats.stanzas and all(STRICT5.fullmatch(s) for s in stanza_lines)
    assert (stats.stanzas > 0) == stanzas and (stats.poems_cut > 0) == stanzas
    assert not set(poems) & set(stanza_lines)
    assert list(titles) == poems + stanza_lines and any(titles.values())  # every kept poem, titled as read
    assert saved["poems_read"] == stats.poems_read == len(json.loads(TINY_JSON.read_text(encoding="utf-8")))
    assert saved["poems_read"] == saved["quatrains"] + saved["poems_cut"] + sum(saved["dropped"].values())
    assert saved["dropped_total"] == sum(saved["dropped"].values())
    assert {k: saved[k] for k in ("quatrains", "stanzas", "distinct_chars", "dropped")} == {
        "quatrains": stats.quatrains,
        "stanzas": stats.stanzas,
        "distinct_chars": stats.distinct_chars,
        "dropped": stats.dropped,
    }
    assert saved["source"] == [str(TINY_JSON)]
    text = out.joinpath("stats.json").read_text(encoding="utf-8")
    assert "\n  " in text  # pretty-printed


def test_prepare_corpus_overwrites_atomically(tmp_path):
    prepare_corpus(TINY_JSON, tmp_path, stanzas=True, progress=False)
    stats = prepare_corpus(TINY_TXT, tmp_path, progress=False)
    assert stats.quatrains == 10
    assert tmp_path.joinpath("stanzas.txt").read_text(encoding="utf-8") == ""
    assert len(tmp_path.joinpath("poems.txt").read_text(encoding="utf-8").splitlines()) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "poems.txt",
        "stanzas.txt",
        "stats.json",
        "titles.tsv",
    ]  # no temp files


def test_prepare_corpus_poems_txt_is_plain_utf8(tmp_path):
    prepare_corpus(TINY_TXT, tmp_path, progress=False)
    raw = tmp_path.joinpath("poems.txt").read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw
    assert raw.decode("utf-8").splitlines()[0] == "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    assert "\\u" not in tmp_path.joinpath("stats.json").read_text(encoding="utf-8")  # ensure_ascii=False


def test_prepare_corpus_from_several_sources_and_from_objects(tmp_path):
    stats = prepare_corpus([TINY_TXT, TINY_JSON], tmp_path / "a", progress=False)
    only_json = prepare_corpus(TINY_JSON, tmp_path / "b", progress=False)
    assert stats.poems_read == 10 + only_json.poems_read
    assert stats.quatrains == only_json.quatrains  # every txt poem is also in the json fixture
    from_objects = prepare_corpus([poem(*JINGYESI_T)], tmp_path / "c", progress=False)
    assert from_objects.quatrains == 1
    assert "source" not in json.loads((tmp_path / "c" / "stats.json").read_text(encoding="utf-8"))


def test_prepare_corpus_missing_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="no-such-dir"):
        prepare_corpus(tmp_path / "no-such-dir", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
