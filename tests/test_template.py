"""Templates and revision: characters kept anywhere, the blanks written, and kept characters later
in the poem shaping what comes before them (rhyme group, no-repeat, tonal pattern, whole-poem rerank)."""

import re

import numpy as np
import pytest

from jueju.cli import main
from jueju.config import PROJECT_ROOT
from jueju.data.prosody import rhyme_groups
from jueju.data.tonal import tonal_compliance
from jueju.options import OptionError
from jueju.write.preprocess import normalise_template, template_form, template_of

from conftest import tiny_quatrains, untrained_poet

FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")
QUIET = dict(rhyme="none", no_copy=False)
COMMITTED = PROJECT_ROOT / "models" / "wuyan"
SAMPLERS = ["greedy", "temperature", "top_k", "top_p", "beam"]


@pytest.fixture(scope="module")
def poet():
    return untrained_poet(tiny_quatrains())


@pytest.fixture(scope="module")
def committed():
    if not (COMMITTED / "model.keras").is_file():
        pytest.skip(f"no committed model in {COMMITTED}")
    from jueju.write.poet import get_poet

    return get_poet(COMMITTED)


def kept(poem: str, template: str) -> bool:
    return len(poem) == len(template) and all(t in "＿_□" or t == p for t, p in zip(template, poem))


def test_known_answer():
    assert normalise_template("床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。") == {
        **dict(enumerate("床前明月光")),
        12: "举",
        13: "头",
    }
    assert normalise_template("牀前__＿\n□□□□霜\n_____\n____鄉") == {0: "床", 1: "前", 10: "霜", 22: "乡"}
    assert template_form("朝辞白帝彩云间，＿＿＿＿＿＿＿。＿＿＿＿＿＿＿，＿＿＿＿＿＿＿。") == 7
    assert template_of("床前明月光，疑是地上霜。", {0, 1, 10}) == "床前＿＿＿，＿＿＿＿霜。"


def test_simplification_reads_words_not_lone_characters():
    # 乾 alone becomes 干 (dry), but 乾坤 (heaven and earth) stays: a keyword plan keeps it as drawn
    assert normalise_template("如何乾坤＿，＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿＿。")[2] == "乾"
    assert normalise_template("乾＿＿＿＿，＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿＿。")[0] == "干"


@pytest.mark.parametrize(
    "text, says",
    [
        ("床前明月光，＿＿＿＿＿。举头＿＿＿。", "4 lines"),
        ("床前明月光，＿＿＿＿。举头＿＿＿，＿＿＿＿＿。", "4 lines"),
        ("床前明月光，＿＿＿＿＿。举头＿＿x，＿＿＿＿＿。", "only Han characters and blanks"),
        ("床前明月光，疑是地上霜。举头望明月，低头思故乡。", "no blank"),
        ("＿" * 2000, "characters long"),
        (12345, "must be a string"),
    ],
)
def test_bad_templates_name_the_field(poet, text, says):
    with pytest.raises(OptionError, match=says) as err:
        poet.poems(template=text, **QUIET)
    assert err.value.field == "template"


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_kept_character_stays_where_it_was(poet, sampler):
    template = "＿＿明＿光，疑＿＿＿＿。＿头＿明＿，＿＿＿故乡。"
    poems = poet.poems(template=template, num=12, seed=3, sampler=sampler, **QUIET)
    assert len(poems) == 12
    for poem in poems:
        assert FIVE.match(poem) and kept(poem, template), poem


def test_kept_characters_are_never_written_again_elsewhere(poet):
    template = "＿＿＿＿＿，＿＿＿＿＿。＿＿＿＿月，＿＿＿＿光。"
    for poem in poet.poems(template=template, num=24, seed=4, no_repeat=True, **QUIET):
        assert poem.count("月") == 1 and poem.count("光") == 1, poem


def test_a_kept_line_4_ending_fixes_line_2s_rhyme_group(poet):
    for ending in "乡花秋":
        template = f"＿＿＿＿＿，＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿{ending}。"
        judged = 0
        for poem in poet.poems(template=template, num=16, seed=5, rhyme="pingshui", no_copy=False):
            assert kept(poem, template)
            assert rhyme_groups(poem[10]) & rhyme_groups(ending), poem
            judged += 1
        assert judged == 16


def test_kept_characters_choose_the_tonal_pattern(committed):
    template = "＿＿＿＿＿，＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿乡。"
    poems = committed.poems(template=template, num=8, seed=6, tonal=True)
    assert all(kept(poem, template) and tonal_compliance(poem, lines_checked=(0, 1, 2, 3)) for poem in poems), poems


@pytest.mark.parametrize(
    "template, says",
    [
        ("＿＿＿＿＿，＿＿＿＿月。＿＿＿＿＿，＿＿＿＿＿。", "not a level-tone"),
        ("＿＿＿＿＿，＿＿＿＿花。＿＿＿＿＿，＿＿＿＿乡。", "share no rhyme group"),
    ],
)
def test_kept_rhyme_characters_that_cannot_rhyme_are_refused(poet, template, says):
    with pytest.raises(OptionError, match=says) as err:
        poet.poems(template=template, rhyme="pingshui", no_copy=False)
    assert err.value.field == "template"
    assert poet.poems(template=template, rhyme="none", no_copy=False)  # fine without the rhyme


def test_revise_keeps_the_chosen_characters_and_lines(poet):
    poem = "床前明月光，疑是地上霜。举头望明月，低头思故乡。"
    for again in poet.revise(poem, keep=[2, 3, 19], keep_lines=[3], num=8, seed=7, **QUIET):
        assert again[2:4] == "明月" and again[18:23] == "低头思故乡" and FIVE.match(again), again
    with pytest.raises(OptionError, match="keep must list whole numbers from 0 to 19") as err:
        poet.revise(poem, keep=[20])
    assert err.value.field == "keep"
    with pytest.raises(OptionError, match="20 Han characters") as err:
        poet.revise("床前明月光", keep=[0])
    assert err.value.field == "poem"


def test_whole_poem_scores_are_the_step_by_step_log_probabilities(poet):
    poems = poet.poems(template="床前＿＿＿，＿＿＿＿霜。＿＿＿＿＿，＿＿＿＿＿。", num=4, seed=8, **QUIET)
    tokens = np.stack([poet.vocab.encode(poem) for poem in poems])
    stepped = np.mean(
        [poet.stepper.next_logits(tokens, p)[np.arange(4), tokens[:, p]] for p in range(tokens.shape[1])], axis=0
    )
    poet.stepper.forget()
    assert np.allclose(poet.stepper.score(tokens, 0), stepped, atol=1e-4)


def test_rerank_keeps_the_candidate_the_model_scores_best(poet):
    template = "＿＿＿＿＿，＿＿＿＿＿。举头望明月，＿＿＿＿＿。"
    best = poet.poems(template=template, seed=9, rerank=8, **QUIET)[0]
    candidates = poet.poems(template=template, num=8, seed=9, rerank=1, **QUIET)
    scores = poet.stepper.score(np.stack([poet.vocab.encode(poem) for poem in [best, *candidates]]), 0)
    assert scores[0] >= scores[1:].max() - 1e-5


def test_cli_template(capsys):
    assert main(["generate", "--template", "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。", "--seed", "1"]) == 0
    assert kept(capsys.readouterr().out.strip(), "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。")
    assert main(["generate", "床前明月光", "--template", "床前明月光，＿＿＿＿＿。举头＿＿＿，＿＿＿＿＿。"]) == 2
    assert "one of the first three" in capsys.readouterr().err
