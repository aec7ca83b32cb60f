"""Keywords: every keyword stands within one line of the poem, the form, rhyme and tones still hold,
and a keyword that cannot be placed is an error naming it (plan.py, Poet.poems(keywords=...))."""

import re

import numpy as np
import pytest
from fastapi.testclient import TestClient

from jueju.cli import main
from jueju.data.prosody import poem_rhymes
from jueju.data.tonal import tonal_compliance
from jueju.options import OptionError
from jueju.serve import app as serve
from jueju.text import split_lines
from jueju.write.constraints import Layout, tonal_misfits
from jueju.write.keywords import KEYWORD_PLANS
from jueju.write.plan import normalise_keywords, plans
from test_serve import save_tiny_model

from conftest import tiny_quatrains, untrained_poet

FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")
QUIET = dict(rhyme="none", no_copy=False)


@pytest.fixture(scope="module")
def poet():
    return untrained_poet(tiny_quatrains())


def within_a_line(poem, word):
    return any(word in line for line in split_lines(poem))


@pytest.mark.parametrize(
    "given, words",
    [(["秋", "月", "故鄉"], ["秋", "月", "故乡"]), ("秋,月，故乡", ["秋", "月", "故乡"]), ("江 山", ["江", "山"])],
)
def test_keywords_are_read_as_typed(given, words):
    assert normalise_keywords(given) == words


@pytest.mark.parametrize(
    "given, says",
    [
        ([], "list of 1 to 4"),
        (["秋天的月"], "1 or 2 Han characters"),
        (["moon"], "1 or 2 Han characters"),
        (["秋", "月", "江", "山", "云"], "at most 4"),
        (["秋", "秋"], "differ"),
        ([3], "list of 1 to 4"),
    ],
)
def test_bad_keywords_name_the_field(given, says):
    with pytest.raises(OptionError, match=says) as err:
        normalise_keywords(given)
    assert err.value.field == "keywords"


@pytest.mark.parametrize("tonal", [False, True])
def test_plans_give_each_keyword_a_line_of_its_own_where_the_form_can_hold(tonal):
    layout = Layout(5)
    words = ["秋", "明月", "故乡"]
    for draft in plans(words, layout, 50, np.random.default_rng(1), rhyme="pingshui", tonal=tonal):
        lines = {}
        for position, char in draft.items():
            lines.setdefault(layout.line_and_column(position)[0], []).append((position, char))
        assert sorted("".join(c for _, c in sorted(chars)) for chars in lines.values()) == sorted(words)
        for chars in lines.values():  # a two-character keyword stands together
            assert [p for p, _ in sorted(chars)] == list(range(min(chars)[0], min(chars)[0] + len(chars)))
        if tonal:
            assert tonal_misfits(draft, layout) == 0


def test_too_many_keywords_for_the_lines_left_is_refused(poet):
    with pytest.raises(OptionError, match="only 3 lines are left") as err:
        poet.poems("床前明月光", keywords=["秋", "江", "山", "云"], **QUIET)
    assert err.value.field == "keywords"


def test_four_oblique_keywords_still_find_places_with_rhyme_and_tones(poet):
    poems = poet.poems(keywords=["月", "雪", "竹", "夜"], num=4, rhyme="pingshui", tonal=True, no_copy=False, seed=1)
    for poem in poems:
        assert all(within_a_line(poem, word) for word in "月雪竹夜"), poem
        assert poem_rhymes(poem, "pingshui") is True, poem
        assert tonal_compliance(poem) is True, poem


def test_a_keyword_no_place_can_take_is_an_error_naming_it(poet, monkeypatch):
    from jueju.write import plan

    monkeypatch.setattr(plan, "fits", lambda draft, *args: "月" not in draft.values())  # 月 fits nowhere
    with pytest.raises(OptionError, match="keyword '月' cannot be placed") as err:
        poet.poems(keywords=["秋", "月"], rhyme="pingshui", tonal=True, no_copy=False)
    assert err.value.field == "keywords"


@pytest.mark.parametrize("first_line", [None, "白日依山尽"])
def test_every_keyword_appears_within_one_line_and_the_form_holds(poet, first_line):
    words = ["秋", "故乡"] if first_line is None else ["黄河", "楼"]
    poems = poet.poems(first_line, num=12, keywords=words, rhyme="pingshui", no_copy=False, seed=2)
    assert len(poems) == 12
    for poem in poems:
        assert FIVE.match(poem) and all(within_a_line(poem, word) for word in words), poem
        assert poem_rhymes(poem, "pingshui") is True, poem
        if first_line:
            assert poem.startswith(first_line)


def test_keyword_poems_keep_the_most_probable_of_their_drafts(poet, monkeypatch):
    """Each keyword poem is the draft (one per plan) the model finds most probable as a whole."""
    drafts, batch = [], poet.batch

    def recording(*args, **options):
        written = batch(*args, **options)
        drafts.extend(written)
        return written

    monkeypatch.setattr(poet, "batch", recording)
    kept = poet.poems(num=3, keywords=["秋", "故乡"], rerank=1, seed=4, **QUIET)
    best = poet.score(drafts).reshape(3, KEYWORD_PLANS).argmax(axis=1)
    assert kept == [drafts[i * KEYWORD_PLANS + j] for i, j in enumerate(best)]
    assert best.any()  # not simply each poem's first draft


def test_keywords_refuse_an_acrostic_or_a_template(poet):
    for other in ({"acrostic": "春夏秋冬"}, {"template": "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。"}):
        with pytest.raises(OptionError, match="keywords combine with a first line") as err:
            poet.poems(keywords=["秋"], **other, **QUIET)
        assert err.value.field == next(iter(other))


def test_the_same_seed_gives_the_same_keyword_poems(poet):
    one = poet.poems(keywords=["秋", "月"], num=3, seed=5, **QUIET)
    assert one == poet.poems(keywords=["秋", "月"], num=3, seed=5, **QUIET)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    root = tmp_path_factory.mktemp("keywords")
    models = serve.load_models([save_tiny_model(root / "wuyan", 5)])
    with TestClient(serve.create_app(models)) as client:
        yield client


def test_the_api_writes_keyword_poems(client):
    response = client.post("/api/poems", json={"keywords": ["秋", "故鄉"], "num": 3, "seed": 1})
    assert response.status_code == 200, response.text
    texts = [poem["text"] for poem in response.json()["poems"]]
    assert len(texts) == 3 and all(within_a_line(text, "秋") and within_a_line(text, "故乡") for text in texts)
    after = client.post("/api/poems", json={"first_line": "白日依山尽", "keywords": ["黄河"], "seed": 1}).json()
    assert after["poems"][0]["text"].startswith("白日依山尽") and "黄河" in after["poems"][0]["text"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({"keywords": ["moon"]}, "keywords"),
        ({"keywords": ["秋", "月", "江", "山", "云"]}, "keywords"),
        ({"keywords": ["秋"], "acrostic": "春夏秋冬"}, "acrostic"),
        ({"keywords": ["秋"], "form": 7}, "form"),
    ],
)
def test_the_api_names_the_field_of_bad_keywords(client, body, field):
    response = client.post("/api/poems", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", field]


def test_cli_keywords(capsys):
    assert main(["generate", "--keywords", "秋,月", "--seed", "1"]) == 0
    poem = capsys.readouterr().out.strip()
    assert FIVE.match(poem) and within_a_line(poem, "秋") and within_a_line(poem, "月")
    assert main(["generate", "--keywords", "秋,月", "--acrostic", "春夏秋冬"]) == 2
