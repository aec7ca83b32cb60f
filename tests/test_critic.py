"""The critic (jueju.rank.critic), its place in the reranking score, and redrawing lines (jueju.write.redraw)."""

import re

import numpy as np
import pytest

from jueju.options import OptionError
from jueju.rank.critic import CRITIC, RANKS_BY, TARGETS, Critic, build_critic, critic_inputs
from jueju.rank.scores import MI_WEIGHT, reranking_weights

from conftest import tiny_quatrains, untrained_poet

FIVE = re.compile(r"^([\u4e00-\u9fff]{5}[，。]){4}$")


@pytest.fixture(scope="module")
def poet():
    """An untrained conditioned sequence model with an untrained critic over its features."""
    poet = untrained_poet(tiny_quatrains(), conditioned=True)
    tokens = np.stack([poet.vocab.encode(poem) for poem in tiny_quatrains()[:4]])
    features, _ = critic_inputs(poet.stepper, tokens)
    poet.ranker.critic = Critic(build_critic(tokens.shape[1], features.shape[-1], poet.line_length, seed=3))
    return poet


def test_critic_inputs_are_the_forward_models_features_and_its_log_probability_of_each_character(poet):
    poems = tiny_quatrains()[:3]
    tokens = np.stack([poet.vocab.encode(poem) for poem in poems])
    features, surprise = critic_inputs(poet.stepper, tokens)
    assert features.shape[:2] == tokens.shape and surprise.shape == (*tokens.shape, 1)
    # averaged over the poem, the log-probabilities are the forward model's score of the whole poem
    whole = poet.score(poems)
    assert surprise[:, :, 0].mean(axis=1) == pytest.approx(whole, abs=1e-4)


def test_a_saved_critic_loads_in_safe_mode_and_judges_alike(poet, tmp_path):
    tokens = np.stack([poet.vocab.encode(poem) for poem in tiny_quatrains()[:5]])
    before = poet.ranker.critic.judge(poet.stepper, tokens)
    poet.ranker.critic.save(tmp_path, {"held_out": {}})
    assert (tmp_path / CRITIC).is_file() and (tmp_path / "critic.json").is_file()
    after = Critic.load(tmp_path).judge(poet.stepper, tokens)
    assert before.shape == (5, len(TARGETS)) and after == pytest.approx(before, abs=1e-5)


def test_the_reranking_score_adds_critic_times_its_coherence_plus_meaningfulness(poet):
    tokens = np.stack([poet.vocab.encode(poem) for poem in tiny_quatrains()[:6]])
    plain = poet.ranker.scores(tokens, poet.line_length, None, {})
    judged = poet.ranker.critic.judge(poet.stepper, tokens)
    by_hand = sum(weight * judged[:, TARGETS.index(name)] for name, weight in RANKS_BY.items())
    for weight in (0.5, 3.0):
        scores = poet.ranker.scores(tokens, poet.line_length, None, {"critic": weight})
        assert scores == pytest.approx(plain + weight * by_hand, abs=1e-4)
    assert MI_WEIGHT == 1.0  # the title's information keeps its weight beside the critic


def test_critic_is_refused_naming_it_where_the_model_has_none():
    bare = untrained_poet(tiny_quatrains(), conditioned=True)
    assert bare.settings({})["critic"] == 0.0
    with pytest.raises(OptionError) as caught:
        bare.poem("白日依山尽", critic=2.0)
    assert caught.value.field == "critic" and "critic.keras" in str(caught.value)


@pytest.mark.parametrize("request_", [{"first_line": "白日依山尽"}, {"title": "秋夜"}, {"acrostic": "春夏秋冬"}])
def test_redrawing_keeps_the_givens_and_never_lowers_the_score_that_chose(poet, request_):
    options = {"rerank": 2, "critic": 2.0, "seed": 5, "rhyme": "pingshui"}
    plain = poet.poems(num=3, **request_, **options)
    redrawn = poet.poems(num=3, **request_, **options, redraw=4)
    assert all(FIVE.match(poem) for poem in redrawn)
    if "first_line" in request_:
        assert all(poem.startswith("白日依山尽，") for poem in redrawn)
    if "acrostic" in request_:
        assert all([line[0] for line in re.split("[，。]", poem)[:4]] == list("春夏秋冬") for poem in redrawn)
    blocks = poet.blocks(3, request_.get("title", ""))
    weights = reranking_weights(poet.settings(options), "first_line" in request_)
    scored = [poet.rank(poems, blocks, weights) for poems in (plain, redrawn)]
    assert np.all(scored[1] >= scored[0] - 1e-4)
    assert redrawn != plain  # four redraws of every written line changed something in three poems
