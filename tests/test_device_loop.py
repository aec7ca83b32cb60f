"""The decoding loop on the device against the host loop, its reference (sampling.Sampler.run).

Greedy and beam search must write the host loop's poems exactly, under every constraint and
kind of given characters. The random samplers draw other random numbers than the host (one
uniform a row and position, inverse CDF, instead of Gumbel noise), so a seed gives other poems
on the device than on the host: for them the tests check that every constraint holds for both,
that a seed repeats, and that each strategy draws from the same distribution as its host sampler.
Every comparison also checks that the device loop wrote its poems (`DeviceLoop.wrote_last_batch`):
were it to decline them, the host loop would be compared with itself. Speed is measured by the
benchmark (jueju bench), not here.
"""

import re

import keras
import numpy as np
import pytest
from keras import ops

from jueju.config import load_config
from jueju.data.dataset import PAD_ID, Vocab
from jueju.data.prosody import poem_rhymes
from jueju.data.tonal import tonal_compliance
from jueju.model.network import build_model
from jueju.text import split_lines
from jueju.write.constraints import Characters, LineIndex
from jueju.write.device_loop import DeviceLoop, strategy_for
from jueju.write.givens import decoding_constraints
from jueju.write.poet import Poet
from jueju.write.sampling import ConstraintError, Greedy, Sampler, make_sampler

from conftest import RHYME_WORDS, tiny_quatrains, untrained_poet

FIVE = re.compile(r"^([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。$")
SAMPLERS = ["greedy", "beam", "top_k", "top_p", "temperature"]
EXACT = ["greedy", "beam"]  # the same poems as the host loop
SHARPER = 30.0  # the test model's output weights, scaled
CONSTRAINTS = {
    "none": dict(rhyme="none", no_repeat=False, no_copy=False, tonal=False),
    "rhyme": dict(rhyme="pingshui", no_repeat=False, no_copy=False),
    "rhyme_first_line_and_tones": dict(rhyme="pingshui", rhyme_first_line=True, tonal=True, no_copy=False),
    "xin_and_tones": dict(rhyme="xin", tonal=True, no_repeat=False, no_copy=False),
    "no_repeat": dict(rhyme="none", no_repeat=True, no_copy=False),
    "no_copy": dict(rhyme="none", no_repeat=False, no_copy=True),
    "all": dict(rhyme="pingshui", rhyme_first_line=True, tonal=True, no_repeat=True, no_copy=True),
}
# one batch, three kinds of given characters: a first line, acrostic heads, kept characters anywhere
TEMPLATES = [
    "床前明月光，＿＿＿＿＿。＿＿＿＿＿，＿＿＿＿＿。",
    "春＿＿＿＿，夏＿＿＿＿。秋＿＿＿＿，冬＿＿＿＿。",
    "＿＿＿＿＿，＿山＿＿＿。举头＿＿＿，＿＿＿＿乡。",
    "千＿＿＿＿，＿＿＿＿＿。＿＿＿＿雪，＿＿＿＿＿。",
]


@pytest.fixture(scope="module")
def corpus():
    return tiny_quatrains()


@pytest.fixture(scope="module")
def poet(corpus):
    """A Poet over a small untrained sequence model (the default context): it decodes on the device."""
    config = load_config(overrides=["model.input=embedding", "model.lstm_units=16,24", "model.embedding_dim=8"])
    keras.utils.set_random_seed(0)  # the same weights whichever tests ran before
    vocab = Vocab.build(corpus + RHYME_WORDS, 2000)
    train_lines = LineIndex.from_lines({line for poem in corpus for line in split_lines(poem)}, vocab)
    model = build_model(config.model, len(vocab), None)
    # an untrained model's probabilities are all but uniform, where which of two partial poems beam search
    # keeps turns on float rounding (the two loops round differently); scaled up, it prefers as a trained one
    head = model.get_layer("next_char")
    head.set_weights([weight * SHARPER for weight in head.get_weights()])
    return Poet(model, vocab, config, train_lines)


def on_device(poet, call):
    """What `call()` writes, which must come from the device loop: a fallback to the host loop fails."""
    poet.device_loop.wrote_last_batch = False
    written = call()
    assert poet.device_loop.wrote_last_batch, "the device loop declined this batch: the host loop wrote it"
    return written


def on_host(poet, call):
    """What `call()` writes through the host loop."""
    loop, poet.device_loop = poet.device_loop, None
    try:
        return call()
    finally:
        poet.device_loop = loop


def check(poems, templates, options, training_lines):
    """Every constraint of `options` holds in every poem, judged from the poems' text alone."""
    for poem, template in zip(poems, templates):
        assert FIVE.match(poem), poem
        assert all(t in "＿" or t == c for t, c in zip(template, poem)), (poem, template)
        lines = split_lines(poem)
        if options.get("rhyme", "pingshui") != "none":
            assert poem_rhymes(poem, options["rhyme"], options.get("rhyme_first_line", False)), poem
        if options.get("tonal"):
            assert tonal_compliance(poem, scheme="xin" if options["rhyme"] == "xin" else "pingshui"), poem
        if options.get("no_repeat", True):  # it gives way to rhyme in a small vocabulary: rhyme ends aside
            ends = (0, 1, 3) if options.get("rhyme_first_line") else (1, 3)
            rhyming = options.get("rhyme", "pingshui") != "none"
            chars = "".join(line[:-1] if rhyming and i in ends else line for i, line in enumerate(lines))
            assert len(set(chars)) == len(chars), poem
        if options.get("no_copy", True):
            assert not set(lines[1:]) & training_lines, poem


def test_a_sequence_model_decodes_on_the_device_and_a_window_model_on_the_host(poet, corpus):
    assert isinstance(poet.device_loop, DeviceLoop)
    assert FIVE.match(on_device(poet, lambda: poet.poem("床前明月光", seed=1)))
    window = untrained_poet(corpus)
    assert window.device_loop is None and FIVE.match(window.poem("床前明月光", seed=1))


@pytest.mark.parametrize("constraints", list(CONSTRAINTS))
@pytest.mark.parametrize("sampler", EXACT)
def test_greedy_and_beam_write_the_host_loops_poems(poet, sampler, constraints):
    options = dict(sampler=sampler, seed=1, **CONSTRAINTS[constraints])
    device = on_device(poet, lambda: poet.batch(templates=TEMPLATES, **options))
    assert device == on_host(poet, lambda: poet.batch(templates=TEMPLATES, **options))
    first_lines = ["床前明月光", "前不见古人"]
    written = on_device(poet, lambda: poet.batch(first_lines, **options))
    assert written == on_host(poet, lambda: poet.batch(first_lines, **options))


@pytest.mark.parametrize("constraints", ["rhyme", "all"])
@pytest.mark.parametrize("first_line", [None, "床前明月光"])
def test_keyword_poems_are_written_on_the_device_as_on_the_host(poet, first_line, constraints):
    options = dict(sampler="greedy", seed=1, keywords=["秋", "故乡"], num=2, **CONSTRAINTS[constraints])
    device = on_device(poet, lambda: poet.poems(first_line, **options))
    assert device == on_host(poet, lambda: poet.poems(first_line, **options))
    assert all(any(word in line for line in split_lines(poem)) for poem in device for word in ("秋", "故乡"))


@pytest.mark.parametrize("constraints", list(CONSTRAINTS))
@pytest.mark.parametrize("sampler", ["top_k", "top_p", "temperature"])
def test_random_samplers_keep_every_constraint_as_the_host_loop_does(poet, corpus, sampler, constraints):
    options = dict(sampler=sampler, seed=2, temperature=1.5, top_p=0.95, **CONSTRAINTS[constraints])
    templates = TEMPLATES * 3
    training = {line for poem in corpus for line in split_lines(poem)}
    device = on_device(poet, lambda: poet.batch(templates=templates, **options))
    check(device, templates, options, training)
    check(on_host(poet, lambda: poet.batch(templates=templates, **options)), templates, options, training)
    assert len(set(device)) > 1  # drawn, not all the most probable


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_the_same_seed_writes_the_same_poems_on_the_device(poet, sampler):
    options = dict(sampler=sampler, rhyme="pingshui", no_copy=True)
    first = on_device(poet, lambda: poet.poems("白日依山尽", num=4, seed=5, **options))
    assert poet.poems("白日依山尽", num=4, seed=5, **options) == first
    if sampler not in EXACT:  # another seed, other draws
        assert poet.poems("白日依山尽", num=4, seed=6, **options) != first


# no two equal: where several ids tie with the k-th, the host's top-k keeps them all, the device's the first k
LOGITS = np.log(np.array([[0.07, 0.45, 0.3, 0.12, 0.06]]))


@pytest.mark.parametrize(
    "name, settings",
    [
        ("temperature", dict(temperature=1.0)),
        ("temperature", dict(temperature=0.5)),
        ("temperature", dict(temperature=2.0)),
        ("top_k", dict(top_k=2)),
        ("top_k", dict(top_k=3, temperature=0.7)),
        ("top_p", dict(top_p=0.75)),
        ("top_p", dict(top_p=0.85, temperature=1.5)),
    ],
)
def test_each_strategy_draws_from_its_host_samplers_distribution(name, settings):
    sampler, n = make_sampler(name, **settings), 20000
    logits = np.repeat(LOGITS, n, axis=0)
    masked = np.where(np.arange(5) == 3, -np.inf, logits)  # one id forbidden, as the constraints forbid
    host = np.bincount(sampler.choose(masked, np.random.default_rng(0)), minlength=5) / n
    weights = np.where(np.isfinite(masked), np.exp(masked), 0.0).astype(np.float32)
    uniform = (1.0 - np.random.default_rng(1).random(n)).astype(np.float32)
    chosen = ops.convert_to_numpy(strategy_for(sampler).choose(ops.convert_to_tensor(weights), uniform))
    device = np.bincount(chosen, minlength=5) / n
    assert device[3] == 0 and set(np.flatnonzero(device)) == set(np.flatnonzero(host))
    assert np.allclose(device, host, atol=0.015), (device, host)


def test_greedy_takes_the_most_probable_allowed_id():
    weights = np.array([[0.1, 0.0, 0.3, 0.2], [0.0, 0.0, 0.0, 0.9]], dtype=np.float32)
    chosen = strategy_for(Greedy()).choose(ops.convert_to_tensor(weights), np.ones(2, np.float32))
    assert ops.convert_to_numpy(chosen).tolist() == [2, 3]


def test_no_copy_forbids_the_lines_the_model_would_write(poet):
    """Greedy poems, then an index of their own lines 2-4: with no_copy they must change at those lines."""
    options = dict(sampler="greedy", rhyme="none", no_repeat=False, tonal=False)
    first_lines = ["床前明月光", "白日依山尽", "千山鸟飞绝"]
    free = poet.batch(first_lines, no_copy=False, **options)
    written = {line for poem in free for line in split_lines(poem)[1:]}
    kept, poet.train_lines = poet.train_lines, LineIndex.from_lines(written, poet.vocab)
    try:
        guarded = on_device(poet, lambda: poet.batch(first_lines, no_copy=True, **options))
        assert guarded == on_host(poet, lambda: poet.batch(first_lines, no_copy=True, **options))
    finally:
        poet.train_lines = kept
    for poem, before in zip(guarded, free):
        assert not set(split_lines(poem)[1:]) & written, (poem, before)
        assert split_lines(poem)[1][:4] == split_lines(before)[1][:4]  # only the line's last character changes


@pytest.mark.parametrize("sampler", ["greedy", "beam", "top_k"])
def test_no_character_left_is_a_constraint_error(poet, sampler):
    tokens, forced = poet.preprocessor.prompt([dict(enumerate("床前明月光"))])
    nothing = [Characters(np.zeros(len(poet.vocab), dtype=bool))]
    with pytest.raises(ConstraintError, match="no character"):
        poet.device_loop.run(make_sampler(sampler), tokens, 5, forced, nothing, np.random.default_rng(0))


def test_both_loops_read_the_start_sequence_the_reader_gives(poet, monkeypatch):
    """The hook for a per-row start (a conditioning prefix): both loops read what start_ids returns."""
    options = dict(sampler="greedy", rhyme="pingshui", no_copy=True)
    plain = poet.poems(acrostic="春夏秋冬", num=2, **options)
    reader = poet.stepper.reader
    monkeypatch.setattr(reader, "start_ids", lambda rows: np.full((rows, 3), PAD_ID, dtype=np.int32))
    longer = on_device(poet, lambda: poet.poems(acrostic="春夏秋冬", num=2, **options))
    assert longer == on_host(poet, lambda: poet.poems(acrostic="春夏秋冬", num=2, **options))
    assert longer != plain


class Recording(Sampler):
    """A sampler the device loop does not know: the host loop runs it."""

    runs = 0

    def run(self, *args):
        Recording.runs += 1
        return super().run(*args)


def test_what_the_device_loop_does_not_know_goes_to_the_host_loop_and_says_so(poet):
    on_device(poet, lambda: poet.batch(["床前明月光"], seed=3))
    poems = poet.batch(["床前明月光"], sampler=Recording(), seed=3)
    assert Recording.runs == 1 and FIVE.match(poems[0])
    assert not poet.device_loop.wrote_last_batch  # the fallback is visible to the caller
    on_device(poet, lambda: poet.batch(["床前明月光"], seed=3))  # and the next batch is the device's again
    assert not poet.device_loop.supports(Recording(), [Characters(poet.han)], 5)
    constraints = decoding_constraints(
        poet.settings({"no_copy": True}),
        [{}],
        np.random.default_rng(0),
        poet.vocab,
        poet.layout,
        poet.han,
        poet.train_lines,
    )
    assert poet.device_loop.supports(Greedy(), constraints, 5)
    assert not poet.device_loop.supports(Greedy(), constraints[::-1], 5)  # another order: another meaning


def recorded_and_read(poet, sampler, blocks=None, **givens):
    """The poems the device loop wrote, what it recorded of them and what the stepper reads of them afresh."""
    settings = poet.settings({"sampler": sampler, "rhyme": "pingshui", "no_copy": True})
    given = poet.preprocessor.givens(givens.get("first_lines"), givens.get("acrostics"), givens.get("templates"))
    tokens, forced = poet.preprocessor.prompt(given)
    start = poet.line_length if "first_lines" in givens else 0
    rng = np.random.default_rng(0)
    constraints = decoding_constraints(settings, given, rng, poet.vocab, poet.layout, poet.han, poet.train_lines)
    with poet.stepper.reading(blocks):
        written, reading = poet.device_loop.run(make_sampler(sampler), tokens, start, forced, constraints, rng, True)
        return written, reading, poet.stepper.read(written, 0)


@pytest.mark.parametrize("sampler", ["greedy", "beam", "top_k"])
@pytest.mark.parametrize(
    "givens",
    [
        {"first_lines": ["床前明月光", "前不见古人", "白日依山尽"]},
        {"templates": TEMPLATES},
        {"acrostics": ["春夏秋冬"]},
    ],
)
def test_what_the_loop_records_is_what_the_model_reads_of_the_poems_it_wrote(poet, sampler, givens):
    """Reranking scores the candidates from what decoding read of them: it must be the reading itself, at
    every position (given characters, punctuation and written ones)."""
    _, recorded, read = recorded_and_read(poet, sampler, **givens)
    assert recorded.start == 0 and not np.isnan(recorded.log_probs).any()
    assert recorded.log_probs == pytest.approx(read.log_probs, abs=1e-5)
    assert recorded.features == pytest.approx(read.features, abs=1e-5)


def test_the_loop_records_what_a_conditioned_model_reads_after_each_block(corpus):
    poet = untrained_poet(corpus, conditioned=True)
    blocks = np.concatenate([poet.blocks(2, "送友人"), poet.blocks(1)])  # two titled poems and one without
    written, recorded, read = recorded_and_read(poet, "top_k", blocks, first_lines=["床前明月光"] * 3)
    assert recorded.log_probs == pytest.approx(read.log_probs, abs=1e-5)
    assert recorded.features == pytest.approx(read.features, abs=1e-5)
    with poet.stepper.reading(None):  # read after empty blocks, the titled poems read otherwise
        plain = poet.stepper.read(written, 0).features
    assert np.abs(plain - read.features)[:2].max() > 1e-4 and plain[2] == pytest.approx(read.features[2], abs=1e-5)
