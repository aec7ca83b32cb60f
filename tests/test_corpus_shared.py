"""Integration: clean the real Tang collection (../shared/data, skipped when absent)."""

import time
from pathlib import Path

import pytest

from jueju.data.corpus import DROP_REASONS, clean_corpus, poem_regex, read_source

CHINESE_POETRY = Path(__file__).resolve().parents[2] / "shared" / "data" / "chinese-poetry"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(
        not (CHINESE_POETRY / "tang").is_dir(),
        reason=f"real corpus not found at {CHINESE_POETRY} (it sits beside the checkout in CI)",
    ),
]


@pytest.fixture(scope="module")
def tang():
    return list(read_source(CHINESE_POETRY / "tang"))


def check(quatrains, stanzas, stats, line_length):
    strict = poem_regex(line_length)
    bad = [p for p in quatrains + stanzas if not strict.fullmatch(p)]
    assert not bad, bad[:5]
    assert len(set(quatrains)) == len(quatrains) and len(set(stanzas)) == len(stanzas)
    assert not set(quatrains) & set(stanzas)
    assert stats.poems_read == stats.quatrains + stats.poems_cut + sum(stats.dropped.values())
    assert set(stats.dropped) <= set(DROP_REASONS)


def test_tang_read(tang):
    assert len(tang) == 57_607
    assert all(isinstance(p, dict) for p in tang)


def test_tang_five_character_quatrains(tang):
    start = time.perf_counter()
    quatrains, stanzas, stats = clean_corpus(tang, line_length=5)
    elapsed = time.perf_counter() - start
    check(quatrains, stanzas, stats, 5)
    assert stats.poems_read == 57_607
    # README: 3,707 by a strict per-paragraph regex on the raw text; removing notes
    # and stray punctuation rescues a few hundred, simplification merges a few.
    assert 3_600 <= stats.quatrains <= 4_400, stats.to_dict()
    assert stanzas == [] and stats.stanzas == 0
    assert 3_000 <= stats.distinct_chars <= 5_000
    assert stats.dropped["not_four_lines"] > 20_000  # the README's 27,172 5-char poems, most longer than 4 lines
    assert elapsed < 30, f"cleaning 57,607 poems took {elapsed:.1f}s"


def test_tang_five_character_with_stanzas(tang):
    quatrains, stanzas, stats = clean_corpus(tang, line_length=5, stanzas=True)
    check(quatrains, stanzas, stats, 5)
    assert 3_600 <= stats.quatrains <= 4_400
    assert 40_000 <= stats.stanzas <= 90_000, stats.to_dict()
    assert stats.poems_cut > 20_000
    assert 6_000 <= stats.distinct_chars <= 9_000
    assert stats.dropped.get("not_four_lines", 0) < 1_000  # only 2-line poems are left


def test_tang_seven_character(tang):
    quatrains, stanzas, stats = clean_corpus(tang, line_length=7, stanzas=True)
    check(quatrains, stanzas, stats, 7)
    assert 9_000 <= stats.quatrains <= 13_000, stats.to_dict()
    assert 15_000 <= stats.stanzas <= 30_000
    assert 5_000 <= stats.distinct_chars <= 8_000
