"""Samplers on fake logits: each strategy's choice, the loop, forced positions and masks."""

import numpy as np
import pytest

from jueju.write.sampling import Beam, ConstraintError, Greedy, Sampler, Temperature, TopK, TopP, make_sampler

LOGITS = np.log(np.array([[0.05, 0.5, 0.3, 0.1, 0.05]]))


def draws(sampler, logits=LOGITS, n=4000, seed=0):
    rng = np.random.default_rng(seed)
    return np.bincount(sampler.choose(np.repeat(logits, n, axis=0), rng), minlength=logits.shape[1]) / n


def test_greedy_takes_the_most_likely():
    assert Greedy().choose(LOGITS, np.random.default_rng(0)).tolist() == [1]


def test_temperature_sampling_follows_the_distribution():
    assert np.allclose(draws(Temperature(1.0)), np.exp(LOGITS[0]), atol=0.03)


def test_low_temperature_sharpens():
    assert draws(Temperature(0.1))[1] > 0.95


@pytest.mark.parametrize("k, support", [(1, {1}), (2, {1, 2}), (3, {1, 2, 3})])
def test_top_k_draws_only_among_the_k_best(k, support):
    assert set(np.flatnonzero(draws(TopK(k)))) == support


@pytest.mark.parametrize("p, support", [(0.4, {1}), (0.75, {1, 2}), (0.85, {1, 2, 3}), (1.0, {0, 1, 2, 3, 4})])
def test_top_p_draws_from_the_smallest_nucleus(p, support):
    assert set(np.flatnonzero(draws(TopP(p)))) == support


def table_model(table):
    """A fake model whose next-token log-probabilities depend only on the previous token."""
    with np.errstate(divide="ignore"):
        table = np.log(np.asarray(table, dtype=float))
    return lambda tokens, position: table[tokens[:, position - 1]]


def run(sampler, table, length, seed=0, start=1, allowed=None):
    tokens = np.zeros((1, length), dtype=np.int32)
    everything = allowed or (lambda tokens, position: np.ones((len(tokens), len(table)), dtype=bool))
    return sampler.run(table_model(table), tokens, start, np.full(length, -1), everything, np.random.default_rng(seed))


# From token 0, greedy takes 1 (0.6) and then must go on with p = 0.4; the path through 2 (0.4 then 1.0)
# is more probable overall (0.40 > 0.24): the classic case beam search exists for.
TRAP = [[0.0, 0.6, 0.4], [0.0, 0.6, 0.4], [0.0, 0.0, 1.0]]


def test_beam_finds_the_more_probable_path_greedy_misses():
    greedy, greedy_score = run(Greedy(), TRAP, 3)
    beam, beam_score = run(Beam(2), TRAP, 3)
    assert greedy[0].tolist() == [0, 1, 1] and beam[0].tolist() == [0, 2, 2]
    assert np.isclose(np.exp(beam_score[0]), 0.4) and np.isclose(np.exp(greedy_score[0]), 0.36)


def test_beam_of_width_one_is_greedy():
    assert run(Beam(1), TRAP, 4)[0].tolist() == run(Greedy(), TRAP, 4)[0].tolist()


def test_beam_respects_masks_and_forced_positions():
    forbid_2 = lambda tokens, position: np.tile([True, True, False], (len(tokens), 1))
    tokens, _ = run(Beam(3), TRAP, 4, allowed=forbid_2)
    assert 2 not in tokens[0, 1:]
    forced = np.array([-1, -1, 0, -1])
    out, _ = Beam(2).run(
        table_model(TRAP),
        np.zeros((2, 4), np.int32),
        1,
        forced,
        lambda t, p: np.ones((len(t), 3), dtype=bool),
        np.random.default_rng(0),
    )
    assert out.shape == (2, 4) and (out[:, 2] == 0).all()


@pytest.mark.parametrize("name", ["greedy", "temperature", "top_k", "top_p", "beam"])
def test_samplers_never_pick_a_masked_token(name):
    sampler = make_sampler(name, temperature=1.0, top_k=3, top_p=0.9)
    logits = np.repeat(LOGITS, 500, axis=0)
    masked = np.where(np.arange(5) == 1, -np.inf, logits)  # the favourite is forbidden
    assert 1 not in sampler.choose(masked, np.random.default_rng(0))
    tokens, _ = run(sampler, [[0.1, 0.9]] * 2, 6, allowed=lambda t, p: np.tile([True, False], (len(t), 1)))
    assert tokens[0, 1:].tolist() == [0] * 5


def test_loop_fills_positions_forces_punctuation_and_calls_model_only_when_needed():
    calls = []

    def next_logits(tokens, position):
        calls.append(position)
        logits = np.full((len(tokens), 6), -5.0)
        logits[:, position % 6] = 0.0  # the "model" prefers id = position mod 6
        return logits

    tokens = np.zeros((3, 8), dtype=np.int32)
    tokens[:, :2] = [4, 5]
    forced = np.array([-1, -1, -1, 9, -1, -1, -1, 9])
    allowed = lambda tokens, position: np.ones((len(tokens), 6), dtype=bool)
    out, scores = Greedy().run(next_logits, tokens, 2, forced, allowed, np.random.default_rng(0))
    assert out[0].tolist() == [4, 5, 2, 9, 4, 5, 0, 9]
    best = -np.log(1 + 5 * np.exp(-5.0))  # log-probability of the favourite under the fake model
    assert np.allclose(scores, 4 * best)
    assert calls == [2, 4, 5, 6]
    assert tokens[0, 2] == 0  # the input is not modified


def test_same_seed_same_draws():
    sampler = TopK(3, temperature=1.0)
    logits = np.repeat(LOGITS, 50, axis=0)
    first = sampler.choose(logits, np.random.default_rng(7))
    assert (first == sampler.choose(logits, np.random.default_rng(7))).all()


def test_impossible_constraint_is_a_clear_error():
    def nothing(tokens, position):
        return np.zeros((len(tokens), 5), dtype=bool)

    with pytest.raises(ConstraintError, match="no character"):
        Sampler().run(
            lambda t, p: LOGITS, np.zeros((1, 3), np.int32), 1, np.full(3, -1), nothing, np.random.default_rng(0)
        )


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: make_sampler("beam_me_up"), "unknown sampler"),
        (lambda: TopK(0), "top_k"),
        (lambda: TopP(0.0), "top_p"),
        (lambda: Temperature(0.0), "temperature"),
        (lambda: Temperature("hot"), "temperature"),
        (lambda: Beam(0), "beam width"),
    ],
)
def test_bad_sampler_settings(make, message):
    with pytest.raises(ValueError, match=message):
        make()
