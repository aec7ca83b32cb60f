"""Sequence samples and models: known answers, window <-> sequence round trips, target alignment, the study."""

import math

import keras
import numpy as np
import pytest

from jueju.config import load_config
from jueju.data.dataset import PAD_ID, Vocab, Windows, build_dataset, encode_poems, make_samples, make_sequences
from jueju.measure.perplexity import lstm_log_probs
from jueju.model.network import build_model, is_sequence_model, stepping_model, with_context
from jueju.train.loop import fit_context
from jueju.write.poet import Poet, SequenceReader

POEMS = [
    "床前明月光，疑是地上霜。举头望明月，低头思故乡。",
    "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。",
    "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
]


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build(POEMS, 200)


def config_overrides(extra):
    return ["model.input=embedding", "model.lstm_units=16,12", "model.embedding_dim=8", *extra]


@pytest.fixture(scope="module")
def config():
    return load_config(overrides=config_overrides(["generate.rhyme=none", "generate.no_copy=false"]))


def test_sequences_known_answer(vocab):
    ids = encode_poems(POEMS[:1], vocab)
    x, y = make_sequences(ids, pad_start=True)
    assert x.tolist() == [[PAD_ID, *ids[0, :-1].tolist()]] and y.tolist() == ids.tolist()
    x, y = make_sequences(ids, pad_start=False)
    assert x.tolist() == [ids[0, :-1].tolist()] and y.tolist() == [ids[0, 1:].tolist()]
    assert vocab.decode(y[0]) == POEMS[0][1:]


def test_each_target_of_a_sequence_is_the_token_after_what_the_model_has_read(vocab):
    ids = encode_poems(POEMS, vocab)
    x, y = make_sequences(ids, pad_start=True)
    assert (x[:, 1:] == y[:, :-1]).all() and x.shape == y.shape == (4, 24)


def test_unknown_context_is_refused(vocab):
    with pytest.raises(ValueError, match="unknown dataset.context 'poem'; valid: window, sequence"):
        make_samples(encode_poems(POEMS, vocab), "poem", 6, True)


def test_build_dataset_writes_sequences(tmp_path):
    counts = build_dataset(
        POEMS,
        [],
        tmp_path,
        vocab_size=100,
        window=6,
        pad_start=True,
        valid_fraction=0.25,
        test_fraction=0.25,
        seed=0,
        context="sequence",
    )
    train = Windows.load(tmp_path / "train.npz")
    assert train.x.shape == train.y.shape == (counts["train_poems"], 24) == (2, 24)
    assert counts["train_targets"] == 48 and counts["context"] == "sequence" and "train_windows" not in counts


def test_config_window_is_none_for_sequences():
    assert load_config(overrides=["dataset.context=sequence"]).model_window is None
    assert load_config(overrides=["dataset.context=window", "dataset.window=12"]).model_window == 12


def random_ids(vocab, rows, length, seed=0):
    return np.random.default_rng(seed).integers(2, len(vocab), (rows, length)).astype("int32")


def test_window_model_as_sequence_model_and_back_keeps_its_predictions(config, vocab):
    window_model = build_model(config.model, len(vocab), 6)
    sequence_model = with_context(window_model, None, every_position=True)
    assert is_sequence_model(sequence_model) and not is_sequence_model(window_model)
    x = random_ids(vocab, 5, 6)
    # read 6 ids, a sequence model's prediction after the 6th is the window model's
    assert np.allclose(sequence_model.predict_on_batch(x)[:, -1], window_model.predict_on_batch(x), atol=1e-6)
    back = with_context(sequence_model, 6, every_position=False)
    assert np.array_equal(back.predict_on_batch(x), window_model.predict_on_batch(x))


def test_last_position_model_equals_the_last_row_of_the_sequence_output(config, vocab):
    model = build_model(config.model, len(vocab), None)
    last = with_context(model, None, every_position=False)
    for length in (1, 7, 24):
        x = random_ids(vocab, 3, length, seed=length)
        assert np.allclose(last.predict_on_batch(x), model.predict_on_batch(x)[:, -1], atol=1e-6)


def test_finetuning_a_window_model_for_sequences_carries_its_weights(config, vocab):
    window_model = build_model(config.model, len(vocab), 6)
    sequence_config = load_config(overrides=["dataset.context=sequence"])
    tuned = fit_context(window_model, sequence_config)
    assert is_sequence_model(tuned)
    assert all(np.array_equal(a, b) for a, b in zip(tuned.get_weights(), window_model.get_weights()))
    assert fit_context(window_model, load_config(overrides=["dataset.context=window"])) is window_model


def reread(model, tokens, position, start_token=True):
    """The reference: a sequence model's probabilities after tokens[:, :position], read whole from the start."""
    read = tokens[:, :position]
    if start_token:
        read = np.pad(read, ((0, 0), (1, 0)), constant_values=PAD_ID)
    return model.predict_on_batch(read)[:, -1]


@pytest.mark.parametrize("pad_start", [True, False])
def test_poet_feeds_a_sequence_model_the_whole_poem_so_far(config, vocab, pad_start):
    model = build_model(config.model, len(vocab), None)
    poet = Poet(model, vocab, load_config(overrides=[f"dataset.pad_start={pad_start}"]))
    assert poet.window is None
    tokens = encode_poems(POEMS[:2], vocab)
    for position in (6, 13, 23):
        expected = np.log(reread(model, tokens, position, pad_start))
        assert np.allclose(poet.stepper.next_logits(tokens, position), expected, atol=1e-5)


@pytest.mark.parametrize("overrides", [[], ["model.input=one-hot", "model.dense_units=10"]])
def test_stepping_through_a_poem_in_stretches_gives_the_sequence_models_predictions(config, vocab, overrides):
    model = build_model(load_config(overrides=config_overrides(overrides)).model, len(vocab), None)
    stepper = stepping_model(model)
    x = random_ids(vocab, 3, 24, seed=5)
    every = model.predict_on_batch(x)
    states = [np.zeros((3, int(spec.shape[-1])), "float32") for spec in stepper.inputs[1:]]
    done = 0
    for end in (1, 6, 7, 12, 24):  # stretches of 1, 5, 1, 5 and 12 ids
        probs, *states = stepper.predict_on_batch([x[:, done:end], *states])
        assert np.allclose(probs, every[:, end - 1], atol=1e-5)
        done = end


class CountingStep:
    """Wraps a stepping model and records how many ids each call reads."""

    def __init__(self, step):
        self.step, self.lengths = step, []

    def predict_on_batch(self, inputs):
        self.lengths.append(inputs[0].shape[1])
        return self.step.predict_on_batch(inputs)


def test_the_reader_reads_each_id_once_and_follows_reordered_rows(config, vocab):
    model = build_model(config.model, len(vocab), None)
    reader = SequenceReader(model, start_token=True)
    reader.step = CountingStep(reader.step)
    tokens = encode_poems(POEMS, vocab)
    assert np.allclose(reader(tokens, 6), reread(model, tokens, 6), atol=1e-5)
    reordered = tokens[[2, 0, 0, 3]]  # as beam search keeps some rows twice and drops others
    assert np.allclose(reader(reordered, 8), reread(model, reordered, 8), atol=1e-5)
    assert np.allclose(reader(reordered, 8), reread(model, reordered, 8), atol=1e-5)  # asked again: nothing to read
    other = tokens[:, ::-1].copy()  # a batch it has not read: from the start
    assert np.allclose(reader(other, 9), reread(model, other, 9), atol=1e-5)
    assert reader.step.lengths == [7, 2, 10]


@pytest.mark.parametrize("sampler", ["greedy", "beam", "top_k"])
def test_poems_written_by_stepping_equal_poems_written_by_rereading(config, vocab, sampler):
    model = build_model(config.model, len(vocab), None)
    poet = Poet(model, vocab, config)
    poet.device_loop = None  # the host loop, which calls next_logits (tests/test_device_loop.py: the device's)
    stepped = poet.poems("床前明月光", num=5, sampler=sampler, seed=3)
    poet.stepper.next_logits = lambda tokens, position: np.log(reread(model, tokens, position))
    assert poet.poems("床前明月光", num=5, sampler=sampler, seed=3) == stepped


class OracleSequenceModel:
    """Puts probability 0.5 on the true next id after every prefix of the poems: tests the target alignment."""

    def __init__(self, vocab, poems, pad_start):
        x, y = make_sequences(encode_poems(poems, vocab), pad_start)
        self.next = {tuple(row[: t + 1]): int(row_y[t]) for row, row_y in zip(x.tolist(), y) for t in range(len(row))}
        self.size = len(vocab)

    def predict_on_batch(self, x):
        x = np.asarray(x).tolist()
        probs = np.full((len(x), len(x[0]), self.size), 0.5 / (self.size - 1))
        for i, row in enumerate(x):
            for t in range(len(row)):
                probs[i, t, self.next[tuple(row[: t + 1])]] = 0.5
        return probs


@pytest.mark.parametrize("pad_start", [True, False])
def test_each_sequence_target_is_scored_from_the_poem_before_it(vocab, pad_start):
    scores = lstm_log_probs(
        OracleSequenceModel(vocab, POEMS, pad_start), vocab, POEMS, None, pad_start, batch_size=48
    )  # 2 poems per call
    size, han = len(vocab), len(vocab.han_ids())
    assert len(scores) == 15 * len(POEMS)
    assert np.allclose(scores, math.log(0.5 / (0.5 + (han - 1) * 0.5 / (size - 1))))


def test_sequence_scores_equal_the_generators_step_by_step_reading(config, vocab):
    """An independent check: score each target by feeding the generator's last-position model its prefix."""
    model = build_model(config.model, len(vocab), None)
    scores = lstm_log_probs(model, vocab, POEMS, None, pad_start=True)
    step = with_context(model, None, every_position=False)
    ids, han = encode_poems(POEMS, vocab), vocab.han_ids()
    scored = [position for position in range(6, 24) if position not in (11, 17, 23)]  # lines 2-4, no punctuation
    expected = []
    for position in scored:
        probs = step.predict_on_batch(np.pad(ids[:, :position], ((0, 0), (1, 0)), constant_values=PAD_ID))
        expected.append(np.log(probs[np.arange(4), ids[:, position]] / probs[:, han].sum(axis=-1)))
    assert np.allclose(scores, np.stack(expected, axis=1).reshape(-1), atol=1e-4)  # poem by poem, in order


def test_cosine_schedule_decays_to_a_tenth_over_all_epochs():
    from jueju.train.loop import learning_rate

    constant = load_config(overrides=["train.learning_rate=0.002"]).train
    assert learning_rate(constant, 100) == 0.002
    cosine = load_config(overrides=["train.learning_rate=0.002", "train.lr_schedule=cosine", "train.epochs=4"]).train
    schedule = learning_rate(cosine, 100)
    rates = [float(schedule(step)) for step in (0, 200, 400, 1000)]
    assert rates == pytest.approx([0.002, 0.0011, 0.0002, 0.0002])  # halfway: (1 + 0.1) / 2 of the start


def test_a_checkpoint_keeps_its_schedule_where_it_was(config, vocab, tmp_path):
    from jueju.model.network import compile_model, load_model
    from jueju.train.loop import learning_rate

    settings = load_config(overrides=["train.lr_schedule=cosine", "train.epochs=2"]).train
    model = compile_model(build_model(config.model, len(vocab), None), learning_rate(settings, 3))
    x, y = make_sequences(encode_poems(POEMS, vocab), pad_start=True)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # 2 of 6 steps
    model.save(tmp_path / "checkpoint.keras")
    loaded = load_model(tmp_path / "checkpoint.keras")
    assert int(loaded.optimizer.iterations) == 2
    assert float(loaded.optimizer.learning_rate) == pytest.approx(float(model.optimizer.learning_rate))
    assert float(loaded.optimizer.learning_rate) < settings.learning_rate


def test_batches_walk_on_through_the_data_across_epochs():
    from jueju.train.loop import Batches

    x = np.arange(10)[:, None]
    batches = Batches(x, np.arange(10), batch_size=3, steps=2, seed=0)  # 3 full batches a pass, 2 an epoch
    seen = []
    follow = batches.follow()
    for epoch in range(3):
        follow.on_epoch_begin(epoch)
        seen += [batches[i][1].tolist() for i in range(len(batches))]
    first_pass, second_pass = sum(seen[:3], []), sum(seen[3:6], [])
    assert len(set(first_pass)) == 9 and len(set(second_pass)) == 9  # no sample twice within a pass
    assert first_pass != second_pass  # a new order each pass
    resumed = Batches(x, np.arange(10), batch_size=3, steps=2, seed=0, first_epoch=2)
    assert [resumed[i][1].tolist() for i in range(2)] == seen[4:6]  # a resumed run reads what a straight run would
    with pytest.raises(ValueError, match="train.batch_size = 11 is larger than the 10 training samples"):
        Batches(x, np.arange(10), batch_size=11, steps=2, seed=0)


def test_keras_moves_batches_on_at_each_epoch_end(config, vocab):
    from jueju.model.network import compile_model
    from jueju.train.loop import Batches

    x, y = make_sequences(encode_poems(POEMS, vocab), pad_start=True)
    batches = Batches(x, y, batch_size=2, steps=3, seed=0)  # 2 batches a pass: epochs cross passes
    model = compile_model(build_model(config.model, len(vocab), None), 0.01)
    epochs = []
    seen = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: epochs.append(batches.epoch))
    history = model.fit(batches, epochs=3, shuffle=False, callbacks=[batches.follow(), seen], verbose=0)
    assert epochs == [0, 1, 2] and len(history.history["loss"]) == 3
