"""The backward model (model.direction = backward): poems read right to left, trained by the same
pipeline, and the reranking score it gives (Poet.first_line_information, the option backward)."""

import shutil

import numpy as np
import pytest
from fastapi.testclient import TestClient

from jueju.cli import main
from jueju.config import ConfigError, load_config
from jueju.data import condition
from jueju.data.dataset import PAD_ID, Windows, make_sequences, reversed_sequences
from jueju.data.pipeline import prepare
from jueju.measure.conditions import RERANK_RIVALS, rerank_metrics
from jueju.options import OptionError
from jueju.rank.reader import READER, Reader, poem_features
from jueju.serve import app as serve
from jueju.train import loop as training
from jueju.write.poet import Poet, backward_dir
from test_serve import save_tiny_model

from conftest import tiny_overrides, tiny_quatrains, untrained_poet

QUIET = dict(rhyme="none", no_copy=False)


def test_reversed_sequences_read_each_poem_last_character_first():
    poems = np.array([[3, 4, 5, 6], [7, 8, 9, 10]], dtype=np.int32)
    backward = reversed_sequences(Windows(*make_sequences(poems, pad_start=True)))
    assert backward.y.tolist() == [[6, 5, 4, 3], [10, 9, 8, 7]]
    assert backward.x.tolist() == [[PAD_ID, 6, 5, 4], [PAD_ID, 10, 9, 8]]


@pytest.mark.parametrize(
    "overrides", [["dataset.context=window", "dataset.condition=false"], ["dataset.pad_start=false"]]
)
def test_a_backward_model_needs_sequences_with_a_start_token(tmp_path, overrides):
    config = load_config(overrides=[*tiny_overrides(tmp_path), *overrides, "model.direction=backward"])
    with pytest.raises(ValueError, match="model.direction = backward needs dataset.context = sequence"):
        training.directed(Windows(np.zeros((1, 2), np.int32), np.zeros((1, 2), np.int32)), config)


def test_a_bad_direction_names_the_key():
    with pytest.raises(ConfigError, match="model.direction = 'sideways' is not one of: forward, backward"):
        load_config(overrides=["model.direction=sideways"])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny forward model and its backward model, trained by the pipeline into models/wuyan(-backward)."""
    root = tmp_path_factory.mktemp("directions")
    overrides = tiny_overrides(root, **{"train.epochs": 1})
    forward = load_config(overrides=overrides)
    prepare(forward)
    training.train(forward)
    backward = load_config(overrides=[*overrides, "model.direction=backward"])
    training.train(backward.writing_to(root / "models" / "wuyan-backward"))
    return forward, backward, root


def test_the_pipeline_trains_a_backward_model_on_poems_read_right_to_left(trained):
    forward, backward, root = trained
    samples = training.training_samples(backward)
    plain = training.training_samples(forward)
    block = condition.BLOCK  # both read the conditioning blocks first
    assert np.array_equal(samples.y[:, block:], plain.y[:, block:][:, ::-1])
    assert np.array_equal(samples.x[:, :block], plain.x[:, :block])
    log = (root / "logs" / "model.log").read_text("utf-8")
    assert "(a backward model: no sample poems)" in log  # a scorer writes none
    with pytest.raises(ValueError, match="this is a backward model"):
        Poet.load(root / "models" / "wuyan-backward")


def test_a_poet_finds_its_backward_model_beside_it(trained, tmp_path):
    _, _, root = trained
    assert backward_dir(root / "models" / "wuyan") == root / "models" / "wuyan-backward"
    assert Poet.load(root / "models" / "wuyan").ranker.backward is not None
    alone = save_tiny_model(tmp_path / "wuyan")
    assert backward_dir(alone) is None and Poet.load(alone).ranker.backward is None


@pytest.fixture(scope="module")
def poet(trained):
    return Poet.load(trained[2] / "models" / "wuyan")


@pytest.mark.parametrize("title", ["", "送友人"])
def test_first_line_information_is_the_backward_reading_of_line_1_after_the_rest(poet, title):
    poems = poet.batch(["白日依山尽"] * 3, seed=1, **QUIET) + poet.poems(title="送友人", seed=2, **QUIET)
    tokens = np.stack([poet.vocab.encode(poem) for poem in poems])
    blocks = poet.blocks(len(tokens), title)  # no title: an empty block
    backward = tokens[:, ::-1]  # line 1 last
    before = np.concatenate([blocks, np.full((len(tokens), 1), PAD_ID)], axis=1)  # the block, then <pad>
    probs = np.asarray(poet.ranker.backward.model.predict_on_batch(np.concatenate([before, backward[:, :-1]], axis=1)))
    log_probs = np.log(np.take_along_axis(probs[:, before.shape[1] - 1 :], backward[..., None], axis=-1)[..., 0])
    expected = log_probs[:, -poet.line_length :].mean(axis=1)
    information = poet.ranker.first_line_information(tokens, blocks if title else None)
    tolerance = 1e-5  # float32 rounding of two ways of reading (measured: 5e-7)
    assert information == pytest.approx(expected, abs=tolerance)
    if title:  # the block is read: the information differs from that read after an empty block
        assert np.abs(information - poet.ranker.first_line_information(tokens)).max() > tolerance


def test_scoring_a_span_is_the_mean_over_it(poet):
    tokens = np.stack([poet.vocab.encode(poem) for poem in poet.batch(["白日依山尽"] * 2, seed=5, **QUIET)])
    whole = [poet.stepper.score(tokens, start, start + 1) for start in range(tokens.shape[1])]
    assert poet.stepper.score(tokens, 6, 18) == pytest.approx(np.mean(whole[6:18], axis=0), abs=1e-5)
    assert poet.stepper.score(tokens, 0) == pytest.approx(np.mean(whole, axis=0), abs=1e-5)


@pytest.mark.parametrize("weight", [0.0, 2.0])
def test_reranking_keeps_the_candidate_of_best_forward_score_plus_backward_information(poet, weight):
    candidates = poet.batch(["白日依山尽"] * 6, seed=3, rerank=1, **QUIET)
    chosen = poet.batch(["白日依山尽"], seed=3, rerank=6, backward=weight, **QUIET)[0]
    tokens = np.stack([poet.vocab.encode(poem) for poem in candidates])
    scores = poet.stepper.score(tokens, poet.line_length) + weight * poet.ranker.first_line_information(tokens)
    poet.stepper.forget()
    assert chosen == candidates[int(np.argmax(scores))]


def test_backward_without_a_backward_model_names_the_option():
    plain = untrained_poet(tiny_quatrains())
    plain.config.generate.backward = 2.0  # a model folder copied without the backward model beside it
    assert plain.settings({})["backward"] == 0.0  # its default gives way; asking for it is an error
    with pytest.raises(OptionError, match="needs a backward model") as err:
        plain.poem("白日依山尽", rerank=4, backward=1.0)
    assert err.value.field == "backward"
    with pytest.raises(OptionError, match="backward must be a number from 0.0 to 10.0") as err:
        plain.poem("白日依山尽", backward=-1.0)
    assert err.value.field == "backward"


def test_rerank_metrics_rank_the_real_poem_among_ours(poet, trained):
    test = (trained[0].data_dir / "test.txt").read_text("utf-8").split()
    metrics = rerank_metrics(poet, test, seed=0)
    assert metrics["poems"] == len(test) and metrics["chance"] == 1 / (RERANK_RIVALS + 1)
    for judged in metrics["scores"].values():
        assert 0 <= judged["real_first"] <= 1 and 1 <= judged["real_mean_rank"] <= RERANK_RIVALS + 1
    assert rerank_metrics(untrained_poet(tiny_quatrains()), test, seed=0) is None


def test_a_backward_model_of_another_vocabulary_is_refused(tmp_path):
    forward = save_tiny_model(tmp_path / "wuyan", conditioned=True)
    save_tiny_model(tmp_path / "wuyan-backward")  # its vocabulary lacks the conditioning markers
    with pytest.raises(ValueError, match="has another vocabulary"):
        Poet.load(forward)


def test_backward_judges_only_poems_whose_first_line_is_given(poet):
    # where line 1 is written too, its information would favour unlikely first lines (backward_weight)
    for inputs in ({"title": "送友人"}, {"keywords": ["秋", "月"]}):
        written = [poet.poems(num=4, seed=4, rerank=8, backward=weight, **inputs, **QUIET) for weight in (0.0, 10.0)]
        assert written[0] == written[1], inputs
    for inputs in ({"first_line": "白日依山尽"}, {"first_line": "白日依山尽", "keywords": ["秋", "月"]}):
        written = [poet.poems(num=4, seed=4, rerank=8, backward=weight, **inputs, **QUIET) for weight in (0.0, 10.0)]
        assert written[0] != written[1], inputs


def test_a_stepper_forgets_what_it_read_even_when_decoding_fails(poet):
    tokens = np.stack([poet.vocab.encode(poem) for poem in poet.batch(["白日依山尽"] * 2, seed=6, **QUIET)])
    with pytest.raises(RuntimeError, match="stuck"):
        with poet.stepper.reading(poet.blocks(2, "送友人")):
            poet.stepper.next_logits(tokens, 3)
            assert poet.stepper.reader.read.shape[0] == 2
            raise RuntimeError("stuck")
    assert poet.stepper.reader.read.shape == (0, 0) and poet.stepper.reader.blocks is None


@pytest.fixture(scope="module")
def scored(trained, tmp_path_factory):
    """The tiny model with its backward model and a reader model (fitted to made-up scores of a few poems),
    in a folder of its own."""
    root = tmp_path_factory.mktemp("scored")
    for name in ("wuyan", "wuyan-backward"):
        shutil.copytree(trained[2] / "models" / name, root / name)
    poet = Poet.load(root / "wuyan")
    tokens = np.stack([poet.vocab.encode(poem) for poem in poet.batch(["白日依山尽"] * 40, seed=7, **QUIET)])
    features = poem_features(poet.stepper, tokens, poet.line_length)
    Reader.fit(features, np.random.default_rng(0).normal(size=len(features)), ridge=1.0).save(root / "wuyan" / READER)
    return root / "wuyan"


SCORED = dict(rerank=8, backward=4.0, reader=10.0, seed=3, **QUIET)


def test_the_api_and_the_cli_rerank_by_backward_and_reader(scored, capsys):
    poet = Poet.load(scored)
    expected = poet.poems("白日依山尽", num=2, **SCORED)
    assert expected != poet.poems("白日依山尽", num=2, **{**SCORED, "backward": 0.0, "reader": 0.0})  # they count
    with TestClient(serve.create_app(serve.load_models([scored]))) as client:
        response = client.post("/api/poems", json={"first_line": "白日依山尽", "num": 2, **SCORED})
    assert response.status_code == 200, response.text
    assert [poem["text"] for poem in response.json()["poems"]] == expected
    options = [f"--{name.replace('_', '-')}={value}" for name, value in SCORED.items() if name != "no_copy"]
    assert main(["generate", "白日依山尽", "--model", str(scored), "--num", "2", "--allow-copy", *options]) == 0
    assert capsys.readouterr().out.split() == expected
