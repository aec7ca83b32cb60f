"""Safe loading: no pickle anywhere, Keras safe mode, damaged checkpoints, and mismatched vocabularies."""

from __future__ import annotations

import ast
import io
import logging
import re
import tokenize
from pathlib import Path

import keras
import pytest

import jueju
from jueju.config import load_config
from jueju.data.dataset import Vocab
from jueju.model.network import build_model, compile_model, load_model
from jueju.train.loop import _check_compatible, latest_checkpoint
from jueju.write.poet import Poet

PACKAGE = Path(jueju.__file__).resolve().parent
SOURCES = sorted(PACKAGE.rglob("*.py"))
POEMS = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"]
# Modules and names that deserialize arbitrary objects (code) from a file.
PICKLERS = {
    "pickle",
    "cPickle",
    "_pickle",
    "cloudpickle",
    "dill",
    "joblib",
    "shelve",
    "marshal",
    "read_pickle",
    "enable_unsafe_deserialization",
}
UNSAFE_LOADERS = {("torch", "load"), ("Word2Vec", "load"), ("KeyedVectors", "load"), ("FastText", "load")}


# --------------------------------------------------------------------------
# The package's source


def test_the_package_source_is_found():
    assert {"network.py", "loop.py", "poet.py", "dataset.py", "word2vec.py", "critic.py"} <= {p.name for p in SOURCES}


@pytest.mark.parametrize("pattern", [r"allow_pickle\s*=\s*True", r"safe_mode\s*=\s*False"])
def test_no_unsafe_loading_flag_anywhere_in_the_source(pattern):
    hits = [
        f"{path.name}:{n}"
        for path in SOURCES
        for n, line in enumerate(path.read_text("utf-8").splitlines(), 1)
        if re.search(pattern, line)
    ]
    assert not hits, f"{pattern} in {hits}"


def test_no_pickle_in_the_code():
    """`pickle` (and friends) as a name in code; comments and docstrings that say "no pickle" are fine."""
    hits = []
    for path in SOURCES:
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text("utf-8")).readline)
        hits += [
            f"{path.name}:{tok.start[0]} {tok.string}"
            for tok in tokens
            if tok.type == tokenize.NAME
            and (tok.string in PICKLERS or "pickle" in tok.string.lower())
            and tok.string != "allow_pickle"
        ]
    assert not hits, hits


def test_every_loader_call_is_explicitly_safe():
    """np.load says allow_pickle=False, keras load_model says safe_mode=True, and no pickle-based loader."""
    problems = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
            if not isinstance(node, ast.Call):
                continue
            where = f"{path.name}:{node.lineno}"
            keywords = {kw.arg: kw.value for kw in node.keywords}
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            owner = (
                getattr(func.value, "id", getattr(func.value, "attr", "")) if isinstance(func, ast.Attribute) else ""
            )
            if (owner, name) in UNSAFE_LOADERS:
                problems.append(f"{where} {owner}.{name} unpickles")
            if owner == "np" and name == "load":
                value = keywords.get("allow_pickle")
                if not (isinstance(value, ast.Constant) and value.value is False):
                    problems.append(f"{where} np.load without allow_pickle=False")
            if name == "load_model" and owner == "saving":
                value = keywords.get("safe_mode")
                if not (isinstance(value, ast.Constant) and value.value is True):
                    problems.append(f"{where} keras load_model without safe_mode=True")
    assert not problems, problems


# --------------------------------------------------------------------------
# Models and checkpoints


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A small compiled model, its vocabulary and config, and its bytes as a .keras file."""
    config = load_config(
        overrides=["model.input=embedding", "model.lstm_units=8", "model.embedding_dim=4", "dataset.context=window"]
    )
    vocab = Vocab.build(POEMS, 100)
    model = compile_model(build_model(config.model, len(vocab), config.dataset.window), 0.01)
    model.optimizer.build(model.trainable_variables)  # saved with its optimizer state, like a checkpoint
    path = tmp_path_factory.mktemp("small") / "model.keras"
    model.save(path)
    return model, vocab, config, path.read_bytes()


LAMBDA_RAN = []


def _ran() -> None:
    LAMBDA_RAN.append(True)


def test_a_lambda_layer_is_refused_and_its_code_never_runs(tmp_path):
    ids = keras.Input(shape=(3,))
    out = keras.layers.Lambda(lambda x: x * 2 if _ran() is None else x)(ids)
    path = tmp_path / "evil.keras"
    keras.Model(ids, out).save(path)
    LAMBDA_RAN.clear()  # building the model ran it once; loading must not

    with pytest.raises(ValueError, match=rf"cannot load model {re.escape(str(path))}.*Lambda"):
        load_model(path)
    assert not LAMBDA_RAN


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage", "zip without model"])
def test_a_damaged_checkpoint_is_an_error_naming_the_file(small, tmp_path, damage):
    good = small[3]
    path = tmp_path / "epoch_0003.keras"
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "garbage":
        path.write_bytes(b"\x00not a keras file\xff" * 100)
    else:
        import zipfile

        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", "{not json")
    with pytest.raises(ValueError, match=rf"^cannot load model {re.escape(str(path))}: the file is damaged"):
        load_model(path)


def test_a_missing_model_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_model(tmp_path / "nope.keras")


def test_latest_checkpoint_falls_back_past_damaged_ones(small, tmp_path, caplog):
    good = small[3]
    (tmp_path / "epoch_0001.keras").write_bytes(good)
    (tmp_path / "epoch_0002.keras").write_bytes(good)
    (tmp_path / "epoch_0003.keras").write_bytes(good[: len(good) // 2])  # cut short
    (tmp_path / "epoch_0004.keras").mkdir()  # not even a file
    (tmp_path / ".epoch_0005.tmp.keras").write_bytes(good)  # a save that never finished its rename
    (tmp_path / "epoch_latest.keras").write_bytes(good)  # not a numbered checkpoint
    caplog.set_level(logging.ERROR)

    model, epoch = latest_checkpoint(tmp_path)

    assert epoch == 2 and isinstance(model, keras.Model)
    assert "epoch_0003.keras" in caplog.text and "epoch_0004.keras" in caplog.text
    assert caplog.text.count("falling back to the previous checkpoint") == 2


def test_latest_checkpoint_orders_by_number_not_by_name(small, tmp_path):
    (tmp_path / "epoch_9999.keras").write_bytes(small[3])
    (tmp_path / "epoch_10000.keras").write_bytes(small[3])
    assert latest_checkpoint(tmp_path)[1] == 10000


def test_latest_checkpoint_is_none_when_nothing_loads(small, tmp_path):
    assert latest_checkpoint(tmp_path) is None
    (tmp_path / "epoch_0001.keras").write_bytes(small[3][:100])
    assert latest_checkpoint(tmp_path) is None


# --------------------------------------------------------------------------
# A vocabulary that does not match the model


def test_poet_refuses_a_vocabulary_of_another_size(small):
    model, vocab, config, _ = small
    with pytest.raises(ValueError, match="different training runs"):
        Poet(model, Vocab.build(POEMS[:1], 100), config)


def test_poet_load_refuses_a_model_folder_whose_vocabulary_was_swapped(small, tmp_path):
    model, vocab, config, good = small
    (tmp_path / "model.keras").write_bytes(good)
    config.save_json(tmp_path / "config.json")
    Vocab.build(POEMS[:1], 100).save(tmp_path / "vocab.json")
    with pytest.raises(
        ValueError,
        match=rf"vocabulary has {len(Vocab.build(POEMS[:1], 100))} tokens but the model "
        rf"predicts {len(vocab)}",
    ):
        Poet.load(tmp_path)


def test_training_refuses_a_model_that_does_not_fit_the_data_set(small):
    model, vocab, config, _ = small
    _check_compatible(model, vocab, config)  # the matching pair is fine
    other = Vocab.build(POEMS[:1], 100)
    with pytest.raises(ValueError, match=rf"predicts {len(vocab)} tokens but the vocabulary has {len(other)}"):
        _check_compatible(model, other, config)
    wider = load_config(overrides=["dataset.context=window", "dataset.window=8"])
    with pytest.raises(ValueError, match="reads windows of 6 but .* has windows of 8"):
        _check_compatible(model, vocab, wider)
    with pytest.raises(ValueError, match="reads windows of 6 but .*dataset.context = sequence.* has sequences"):
        _check_compatible(model, vocab, load_config(overrides=["dataset.context=sequence"]))
    sequence_model = build_model(config.model, len(vocab), None)
    with pytest.raises(ValueError, match="reads sequences but .* has windows of 6"):
        _check_compatible(sequence_model, vocab, config)
