"""The core that must work on every Keras backend: model, training step, saving, generation.

Run once per backend, each in its own process, by tests/test_backends.py:

    KERAS_BACKEND=jax .venv/bin/python -m pytest tests/backend_core_check.py

Not named test_*.py, so the ordinary test run does not collect it (in that process the
backend is already chosen).
"""

import os
import re

import keras
import numpy as np
import pytest

from jueju.config import load_config
from jueju.data.dataset import Vocab, encode_poems, make_sequences, make_windows
from jueju.data.prosody import rhymes
from jueju.model import distribute
from jueju.model.network import build_model, compile_model, load_model, save_inference_model
from jueju.write.poet import Poet

from conftest import RHYME_WORDS, tiny_overrides, tiny_quatrains

BACKEND = keras.backend.backend()
LINE = re.compile("[，。]")
FIVE = re.compile(r"^([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。([\u4e00-\u9fff]{5})，([\u4e00-\u9fff]{5})。$")
SPEC = ["model.input=embedding", "model.lstm_units=16,16", "model.embedding_dim=8"]


@pytest.fixture(scope="module")
def corpus():
    return tiny_quatrains()


@pytest.fixture(scope="module")
def vocab(corpus):
    return Vocab.build(corpus + RHYME_WORDS, 2000)


@pytest.fixture(scope="module")
def windows(corpus, vocab):
    return make_windows(encode_poems(corpus, vocab), 6, pad_start=True)


def train_lines(corpus, vocab):
    lines = {line for poem in corpus for line in LINE.split(poem) if line}
    try:
        from jueju.write.constraints import LineIndex
    except ImportError:  # a Poet that takes a set of lines
        return lines
    return LineIndex.from_lines(lines, vocab)


@pytest.fixture(scope="module")
def poet(corpus, vocab, windows):
    config = load_config(overrides=SPEC)
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config.model, len(vocab), config.dataset.window), 0.01)
    model.fit(*windows, batch_size=64, epochs=1, steps_per_epoch=3, verbose=0)
    return Poet(model, vocab, config, train_lines(corpus, vocab))


def test_the_backend_is_the_one_asked_for():
    assert BACKEND == os.environ.get("KERAS_BACKEND", "tensorflow")


@pytest.mark.parametrize("kind", ["embedding", "one-hot"])  # word2vec is an embedding with other first weights
def test_build_fit_save_and_load(kind, vocab, windows, tmp_path):
    config = load_config(overrides=[f"model.input={kind}", "model.lstm_units=16,16", "model.embedding_dim=8"])
    keras.utils.set_random_seed(1)
    model = compile_model(build_model(config.model, len(vocab), 6), 0.01)
    history = model.fit(*windows, batch_size=64, epochs=2, steps_per_epoch=2, verbose=0)
    assert all(np.isfinite(history.history["loss"]))
    x = windows[0][:5]
    probs = np.asarray(model.predict_on_batch(x))
    assert probs.shape == (5, len(vocab)) and probs.dtype == np.float32
    assert np.allclose(probs.sum(axis=-1), 1.0, atol=1e-4)
    model.save(tmp_path / "full.keras")
    reloaded = load_model(tmp_path / "full.keras")
    assert np.allclose(reloaded.predict_on_batch(x), probs, atol=1e-5)
    reloaded.fit(*windows, batch_size=64, epochs=1, steps_per_epoch=1, verbose=0)  # the optimizer state came back
    save_inference_model(model, tmp_path / "slim.keras")
    assert np.allclose(load_model(tmp_path / "slim.keras").predict_on_batch(x), probs, atol=1e-5)


@pytest.mark.parametrize("sampler", ["greedy", "temperature", "top_k", "top_p", "beam"])
def test_poems_have_the_exact_format(poet, sampler):
    poems = poet.poems("床前明月光", num=8, sampler=sampler, seed=3, rhyme="none", no_copy=False)
    assert len(poems) == 8
    for poem in poems:
        match = FIVE.match(poem)
        assert match and match.group(1) == "床前明月光", poem
        chars = [char for char in poem[6:] if char not in "，。"]
        assert len(chars) == len(set(chars)), poem  # no_repeat is on by default


def test_beam_is_deterministic(poet):
    assert poet.poems("白日依山尽", num=2, sampler="beam", beam_width=3, rhyme="none", no_copy=False) == poet.poems(
        "白日依山尽", num=2, sampler="beam", beam_width=3, rhyme="none", no_copy=False
    )


def test_every_constraint_at_once(poet, corpus):
    training = {line for poem in corpus for line in LINE.split(poem) if line}
    poems = poet.poems(acrostic="春夏秋冬", num=8, seed=5, rhyme="pingshui", tonal=True, no_copy=True)
    for poem in poems:
        assert FIVE.match(poem), poem
        lines = [line for line in LINE.split(poem) if line]
        assert [line[0] for line in lines] == list("春夏秋冬")
        assert rhymes(lines[1][-1], lines[3][-1], "pingshui"), poem
        assert not training & set(lines), poem


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_mixed_precision_trains_a_step_and_generates(policy, vocab, windows, tmp_path):
    config = load_config(overrides=SPEC)
    with distribute.precision(policy):
        model = compile_model(build_model(config.model, len(vocab), 6), 0.01)
    assert keras.config.dtype_policy().name == "float32"  # the policy does not leak out
    assert model.get_layer("lstm_1").compute_dtype == policy.split("_")[1]
    assert model.get_layer("next_char").compute_dtype == "float32"
    history = model.fit(*windows, batch_size=64, epochs=1, steps_per_epoch=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "mixed.keras")
    with distribute.precision(policy):  # loaded the way `jueju train --resume` loads it
        reloaded = load_model(tmp_path / "mixed.keras")
    assert type(reloaded.optimizer).__name__ == type(model.optimizer).__name__
    poems = Poet(reloaded, vocab, config).poems("床前明月光", num=4, seed=1, rhyme="none", no_copy=False)
    assert all(FIVE.match(poem) for poem in poems), poems


def test_train_end_to_end(tmp_path):
    from jueju.train.loop import train

    config = load_config(overrides=tiny_overrides(tmp_path, **{"train.epochs": 1}))
    state = train(config)
    assert state.epoch == 1 and np.isfinite(state.best_val_loss)
    poem = Poet.load(config.model_dir).poem("床前明月光", seed=1)
    assert FIVE.match(poem) and poem.startswith("床前明月光，")


@pytest.fixture(scope="module")
def sequence_poet(corpus, vocab):
    """A sequence model (the default context), one short fit: Poet decodes it on the device."""
    config = load_config(overrides=SPEC)
    keras.utils.set_random_seed(0)
    model = compile_model(build_model(config.model, len(vocab), None), 0.01)
    model.fit(*make_sequences(encode_poems(corpus, vocab), True), batch_size=32, epochs=1, steps_per_epoch=2, verbose=0)
    return Poet(model, vocab, config, train_lines(corpus, vocab))


@pytest.mark.parametrize("sampler", ["greedy", "temperature", "top_k", "top_p", "beam"])
def test_decoding_on_the_device_keeps_every_constraint(sequence_poet, corpus, sampler):
    assert sequence_poet.device_loop is not None
    training = {line for poem in corpus for line in LINE.split(poem) if line}
    options = dict(sampler=sampler, seed=4, rhyme="pingshui", tonal=True, no_copy=True)
    sequence_poet.device_loop.wrote_last_batch = False
    poems = sequence_poet.poems(acrostic="春夏秋冬", num=6, **options)
    assert sequence_poet.device_loop.wrote_last_batch  # not a fallback to the host loop
    for poem in poems:
        assert FIVE.match(poem), poem
        lines = [line for line in LINE.split(poem) if line]
        assert [line[0] for line in lines] == list("春夏秋冬")
        assert rhymes(lines[1][-1], lines[3][-1], "pingshui"), poem
        assert not training & set(lines[1:]), poem
        assert len(set("".join(lines))) == 20, poem
    if sampler in ("greedy", "beam"):  # exactly the host loop's poems
        loop, sequence_poet.device_loop = sequence_poet.device_loop, None
        try:
            assert sequence_poet.poems(acrostic="春夏秋冬", num=6, **options) == poems
        finally:
            sequence_poet.device_loop = loop


def test_a_mixed_precision_sequence_model_decodes_on_the_device(vocab):
    config = load_config(overrides=SPEC)
    with distribute.precision("mixed_bfloat16"):
        model = build_model(config.model, len(vocab), None)
    poet = Poet(model, vocab, config)
    assert poet.device_loop is not None
    poems = poet.poems("床前明月光", num=4, seed=1, no_copy=False)
    assert poet.device_loop.wrote_last_batch
    assert all(FIVE.match(poem) for poem in poems), poems
