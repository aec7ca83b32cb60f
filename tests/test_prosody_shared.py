"""Integration: the prosody tables against the real Tang quatrains and the charlesix59 tables
(../shared/data, skipped when absent). Measured figures are printed (pytest -s) and recorded
as test properties."""

import json
from pathlib import Path

import pytest

from jueju.data import prosody as P
from jueju.data import tonal
from jueju.data.corpus import clean_corpus, read_source

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TANG = SHARED / "chinese-poetry" / "tang"
RHYME = SHARED / "rhyme"

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not SHARED.is_dir(), reason=f"shared data not found at {SHARED} (it sits beside the checkout in CI)"
    ),
]


@pytest.fixture(scope="module")
def tang5() -> list[str]:
    quatrains, _, _ = clean_corpus(read_source(TANG), line_length=5)
    assert len(quatrains) > 3000
    return quatrains


@pytest.fixture(scope="module")
def merged() -> P.PingshuiTable:
    return P.pingshui([RHYME / "Pingshui_Rhyme.json", RHYME / "Word_Tune.json"])


def report(record_property, name, value):
    record_property(name, value)
    print(f"{name}: {value}")


def test_rhyme_position_coverage(tang5, merged, record_property):
    package = P.coverage(tang5, P.pingshui(supplement=False))
    default = P.coverage(tang5, "pingshui")
    merged_only = P.coverage(
        tang5, P.pingshui([RHYME / "Pingshui_Rhyme.json", RHYME / "Word_Tune.json"], supplement=False)
    )
    full = P.coverage(tang5, merged)
    xin = P.coverage(tang5, "xin")
    for name, c in [
        ("package", package),
        ("package+supplement", default),
        ("package+shared", merged_only),
        ("package+supplement+shared", full),
        ("xin", xin),
    ]:
        report(record_property, f"coverage {name}", f"{c['known_chars']}/{c['rhyme_chars']} = {c['char_coverage']:.4f}")
    assert full["char_coverage"] >= 0.97 and merged_only["char_coverage"] >= 0.97
    assert full["char_coverage"] >= default["char_coverage"] >= package["char_coverage"]
    assert merged_only["char_coverage"] >= package["char_coverage"]
    assert "啼" in package["missing"] and "啼" not in default["missing"]
    assert xin["char_coverage"] >= 0.99


@pytest.mark.parametrize("scheme, low, high", [("pingshui", 0.85, 0.95), ("xin", 0.70, 0.95)])
def test_tang_quatrains_rhyme(tang5, merged, record_property, scheme, low, high):
    c = P.coverage(tang5, merged if scheme == "pingshui" else scheme)
    report(record_property, f"rhyme rate {scheme}", f"{c['rhyming']}/{c['both_known']} = {c['rhyme_rate']:.4f}")
    assert low <= c["rhyme_rate"] <= high


def test_tang_tonal_compliance(tang5, merged, record_property):
    rates = {}
    for lenient in (True, False):
        verdicts = [tonal.tonal_compliance(poem, scheme=merged, lenient=lenient) for poem in tang5]
        judged = [v for v in verdicts if v is not None]
        rates[lenient] = sum(judged) / len(judged)
        report(
            record_property,
            f"tonal compliance {'lenient' if lenient else 'strict'}",
            f"{sum(judged)}/{len(judged)} = {rates[lenient]:.4f}",
        )
    # many Tang 五绝 are 古绝; the regular ones mostly use 一三五不论
    assert 0.3 <= rates[True] <= 0.8 and rates[False] < rates[True] / 3


def test_shared_table_names_the_same_groups(merged):
    """charlesix59's 平水韵 file maps onto the canonical groups (all but 上声三讲) and mostly agrees with the
    package."""
    data = json.loads((RHYME / "Pingshui_Rhyme.json").read_text(encoding="utf-8"))
    shared = P.pingshui([RHYME / "Pingshui_Rhyme.json"], supplement=False)
    package = P.pingshui(supplement=False)
    assert sum(len(groups) for groups in data.values()) == 105
    names = {g for gs in shared.char_groups.values() for g in gs}
    assert names == set(P.PINGSHUI_GROUPS)  # the package supplies 上声三讲
    both = set(package.char_groups) & {c for groups in data.values() for chars in groups.values() for c in chars}
    adds_nothing = sum(shared.rhyme_groups(c) == package.rhyme_groups(c) for c in both)
    print(f"characters in both tables: {len(both)}, the shared file adds no group to {adds_nothing}")
    assert adds_nothing / len(both) > 0.95
    assert all(shared.tones(c) <= merged.tones(c) for c in "东光月看思")
