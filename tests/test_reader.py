"""The reader model (jueju.rank.reader): its fit, its file, its features, and the option reader."""

import numpy as np
import pytest

from jueju.options import OptionError
from jueju.rank.reader import READER, Reader, poem_features
from jueju.write.poet import Poet

from conftest import tiny_quatrains, untrained_poet

QUIET = dict(rhyme="none", no_copy=False)


@pytest.fixture(scope="module")
def poet():
    """A conditioned sequence model (untrained) with a reader model fitted to made-up scores."""
    poet = untrained_poet(tiny_quatrains(), conditioned=True)
    poems = poet.batch(["白日依山尽"] * 12, seed=0, **QUIET)
    features = poem_features(poet.stepper, np.stack([poet.vocab.encode(p) for p in poems]), poet.line_length)
    poet.ranker.reader = Reader.fit(features, np.random.default_rng(0).normal(size=len(poems)), ridge=1.0)
    return poet


def test_fit_recovers_a_linear_rule():
    features = np.random.default_rng(1).normal(size=(200, 5)) * [1, 2, 3, 4, 5] + 7
    targets = features @ [0.5, -1.0, 0.0, 2.0, 0.25] + 3.0
    reader = Reader.fit(features, targets, ridge=1e-9)
    assert reader.predict(features) == pytest.approx(targets, abs=1e-6)
    shrunk = Reader.fit(features, targets, ridge=1e6)  # a large penalty predicts the mean
    assert shrunk.predict(features) == pytest.approx(np.full(200, targets.mean()), abs=0.1)


def test_a_fit_needs_one_target_per_row():
    with pytest.raises(ValueError, match="one target per row"):
        Reader.fit(np.zeros((4, 3)), np.zeros(5))


def test_a_reader_model_survives_its_file(tmp_path, poet):
    poet.ranker.reader.save(tmp_path / READER)
    loaded = Reader.load(tmp_path / READER)
    features = np.random.default_rng(2).normal(size=(3, len(poet.ranker.reader.weights)))
    assert loaded.predict(features) == pytest.approx(poet.ranker.reader.predict(features))
    with pytest.raises(ValueError, match=f"reads {len(loaded.weights)} features, got 4"):
        loaded.predict(np.zeros((1, 4)))


@pytest.mark.parametrize(
    "arrays, problem",
    [
        ({"mean": np.zeros(3), "scale": np.ones(2), "weights": np.zeros(3), "bias": np.array(0.0)}, "widths"),
        ({"mean": np.zeros(3), "scale": np.ones(3), "weights": np.zeros(3), "bias": np.zeros(2)}, "scalar bias"),
        ({"mean": np.zeros(3), "scale": np.ones(3), "weights": np.full(3, np.nan), "bias": np.array(0.0)}, "finite"),
    ],
)
def test_a_bad_reader_file_is_refused(tmp_path, arrays, problem):
    np.savez(tmp_path / READER, **arrays)
    with pytest.raises(ValueError, match=problem):
        Reader.load(tmp_path / READER)


def test_a_pickled_reader_file_is_refused(tmp_path):
    np.savez(tmp_path / READER, mean=np.array([object()]), scale=np.ones(1), weights=np.ones(1), bias=np.array(0.0))
    with pytest.raises(ValueError, match="allow_pickle=False"):
        Reader.load(tmp_path / READER)


def test_poem_features_are_each_lines_mean_features_and_the_forward_score(poet):
    poems = poet.batch(["白日依山尽", "床前明月光"], seed=3, **QUIET)
    tokens = np.stack([poet.vocab.encode(p) for p in poems])
    features = poem_features(poet.stepper, tokens, poet.line_length)
    with poet.stepper.reading(None):
        positions = poet.stepper.position_features(tokens)
        forward = poet.stepper.score(tokens, poet.line_length)
    width, n = positions.shape[-1], poet.line_length + 1
    assert features.shape == (2, 4 * width + 1)
    assert features[:, width : 2 * width] == pytest.approx(positions[:, n : 2 * n].mean(axis=1), abs=1e-6)
    assert features[:, -1] == pytest.approx(forward, abs=1e-6)


def test_poem_features_read_the_poem_as_text_alone(poet):
    tokens = np.stack([poet.vocab.encode(p) for p in poet.batch(["白日依山尽"] * 2, seed=4, **QUIET)])
    alone = poem_features(poet.stepper, tokens, poet.line_length)
    blocks = poet.blocks(2, "送友人")
    with poet.stepper.reading(blocks):  # an enclosing title block is set aside, and holds again after
        titled = poem_features(poet.stepper, tokens, poet.line_length)
        assert poet.stepper.reader.blocks.tolist() == blocks.tolist()
    assert titled == pytest.approx(alone, abs=1e-6)
    assert poet.stepper.reader.blocks is None


@pytest.mark.parametrize("weight", [0.0, 3.0])
def test_reranking_adds_reader_times_the_reader_models_prediction(poet, weight):
    candidates = poet.batch(["白日依山尽"] * 6, seed=5, rerank=1, **QUIET)
    chosen = poet.batch(["白日依山尽"], seed=5, rerank=6, reader=weight, **QUIET)[0]
    tokens = np.stack([poet.vocab.encode(p) for p in candidates])
    with poet.stepper.reading(None):
        scores = poet.stepper.score(tokens, poet.line_length)
    scores = scores + weight * poet.ranker.reader.predict(poem_features(poet.stepper, tokens, poet.line_length))
    assert chosen == candidates[int(np.argmax(scores))]


def test_a_large_reader_weight_changes_what_is_kept(poet):
    kept = [poet.poems("白日依山尽", num=4, seed=6, rerank=8, reader=weight, **QUIET) for weight in (0.0, 10.0)]
    assert kept[0] != kept[1]


def test_reader_without_a_reader_model_names_the_option():
    plain = untrained_poet(tiny_quatrains(), conditioned=True)
    plain.config.generate.reader = 4.0  # a model folder copied without its reader.npz
    assert plain.settings({})["reader"] == 0.0  # its default gives way; asking for it is an error
    with pytest.raises(OptionError, match="needs a reader model") as err:
        plain.poem("白日依山尽", rerank=4, reader=1.0)
    assert err.value.field == "reader"
    with pytest.raises(OptionError, match="reader must be a number from 0.0 to 10.0") as err:
        plain.poem("白日依山尽", reader=11.0)
    assert err.value.field == "reader"


def test_poet_load_reads_the_reader_model_beside_the_model(tmp_path, poet):
    from test_serve import save_tiny_model

    folder = save_tiny_model(tmp_path / "wuyan", conditioned=True)
    assert Poet.load(folder).ranker.reader is None
    loaded = Poet.load(folder)
    features = poem_features(loaded.stepper, np.zeros((1, 4 * (loaded.line_length + 1)), np.int32), 5)
    Reader.fit(np.concatenate([features, features + 1]), np.array([1.0, 2.0])).save(folder / READER)
    assert Poet.load(folder).ranker.reader is not None
